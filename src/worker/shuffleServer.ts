/** ShuffleService: streams the partition files of this worker's map attempts to reducers. */
import type { ServerWritableStream, UntypedServiceImplementation } from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { once } from "node:events";
import { open } from "node:fs/promises";
import type { Logger } from "pino";
import { toError } from "../errors.js";
import type * as pb from "../gen/mapreduce.js";
import { partitionFile } from "../mr/mapTask.js";
import { attemptDir } from "./dataDir.js";

/** The most a chunk carries, in bytes. */
export const CHUNK_BYTES = 1 << 20;
/** The most map attempts one request may name. */
export const MAX_FETCH_ATTEMPTS = 1000;

type FetchCall = ServerWritableStream<pb.FetchPartitionRequest, pb.Chunk>;

/**
 * Serves partitions of committed map attempts only: the output of an attempt the driver
 * refused, or has not accepted yet, is never read by a reducer. One request carries many
 * attempts, so a reduce over a thousand small maps opens a few streams, not a thousand.
 */
export function createShuffleService(
  dataDir: string,
  isCommitted: (attemptId: string) => boolean,
  log: Logger,
): UntypedServiceImplementation {
  const fetchPartition = (call: FetchCall): void => {
    const { attemptIds, partition } = call.request;
    const invalid = checkRequest(attemptIds, partition);
    if (invalid) {
      call.emit("error", { code: status.INVALID_ARGUMENT, details: invalid });
      return;
    }
    streamPartitions(call, dataDir, isCommitted).then(
      () => call.end(),
      (err: unknown) => {
        log.warn({ err: toError(err).message, partition }, "shuffle fetch failed");
        call.emit("error", {
          code: status.INTERNAL,
          details: `could not send map output: ${toError(err).message}`,
        });
      },
    );
  };
  return { fetchPartition };
}

function checkRequest(attemptIds: readonly string[], partition: number): string | undefined {
  if (!Number.isInteger(partition) || partition < 0) return `partition: must be >= 0, got ${partition}`;
  if (attemptIds.length === 0 || attemptIds.length > MAX_FETCH_ATTEMPTS) {
    return `attempt_ids: name 1 to ${MAX_FETCH_ATTEMPTS} map attempts, got ${attemptIds.length}`;
  }
  return undefined;
}

/**
 * Sends each attempt's partition in turn, ending each with a `last` chunk. An attempt that
 * cannot be served gets a `last` chunk with its error, and the stream goes on.
 */
async function streamPartitions(
  call: FetchCall,
  dataDir: string,
  isCommitted: (attemptId: string) => boolean,
): Promise<void> {
  const { attemptIds, partition } = call.request;
  for (const [output, attemptId] of attemptIds.entries()) {
    if (call.cancelled) return;
    const send = async (chunk: Omit<pb.Chunk, "output">): Promise<void> => {
      if (!call.write({ output, ...chunk })) await once(call, "drain");
    };
    if (!isCommitted(attemptId)) {
      await send({
        data: Buffer.alloc(0),
        last: true,
        error: `attempt ${attemptId} has no committed output on this worker`,
      });
      continue;
    }
    let file;
    try {
      file = await open(partitionFile(attemptDir(dataDir, attemptId), partition), "r");
    } catch (err) {
      const missing = (err as NodeJS.ErrnoException).code === "ENOENT";
      await send({
        data: Buffer.alloc(0),
        last: true,
        error: missing
          ? `no output of attempt ${attemptId}, partition ${partition}, on this worker`
          : toError(err).message,
      });
      continue;
    }
    try {
      // Map output is written once and never changes: its size at open is its size.
      const { size } = await file.stat();
      let sent = 0;
      do {
        const data = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, size - sent));
        const { bytesRead } = await file.read(data, 0, data.length, sent);
        if (bytesRead < data.length) throw new Error(`map output of attempt ${attemptId} was cut short`);
        sent += bytesRead;
        await send({ data, last: sent === size, error: "" });
      } while (sent < size && !call.cancelled);
    } finally {
      await file.close();
    }
  }
}
