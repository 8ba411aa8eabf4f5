/** ShuffleService: streams the partition files of this worker's map attempts to reducers. */
import type { ServerWritableStream, UntypedServiceImplementation } from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { createReadStream } from "node:fs";
import { once } from "node:events";
import type { Logger } from "pino";
import { toError } from "../errors.js";
import type * as pb from "../gen/mapreduce.js";
import { partitionFile } from "../mr/mapTask.js";
import { attemptDir } from "./dataDir.js";

/** The most a chunk carries, in bytes. */
export const CHUNK_BYTES = 1 << 20;

/**
 * Serves partitions of committed map attempts only: the output of an attempt the driver
 * refused, or has not accepted yet, is never read by a reducer.
 */
export function createShuffleService(
  dataDir: string,
  isCommitted: (attemptId: string) => boolean,
  log: Logger,
): UntypedServiceImplementation {
  const fetchPartition = (call: ServerWritableStream<pb.FetchPartitionRequest, pb.Chunk>): void => {
    const { attemptId, partition } = call.request;
    if (!isCommitted(attemptId)) {
      call.emit("error", {
        code: status.FAILED_PRECONDITION,
        details: `attempt ${attemptId} has no committed output on this worker`,
      });
      return;
    }
    let path: string;
    try {
      path = partitionFile(attemptDir(dataDir, attemptId), partition);
    } catch (err) {
      call.emit("error", { code: status.INVALID_ARGUMENT, details: toError(err).message });
      return;
    }
    if (!Number.isInteger(partition) || partition < 0) {
      call.emit("error", {
        code: status.INVALID_ARGUMENT,
        details: `partition: must be >= 0, got ${partition}`,
      });
      return;
    }
    streamFile(call, path).catch((err: unknown) => {
      const missing = (err as NodeJS.ErrnoException).code === "ENOENT";
      if (!missing) log.warn({ err: toError(err).message, attemptId, partition }, "shuffle fetch failed");
      call.emit("error", {
        code: missing ? status.NOT_FOUND : status.INTERNAL,
        details: missing
          ? `no output of attempt ${attemptId}, partition ${partition}, on this worker`
          : `could not read map output: ${toError(err).message}`,
      });
    });
  };
  return { fetchPartition };
}

/** Writes a file as chunks, waiting for the client to drain each time the stream is full. */
async function streamFile(
  call: ServerWritableStream<pb.FetchPartitionRequest, pb.Chunk>,
  path: string,
): Promise<void> {
  const file = createReadStream(path, { highWaterMark: CHUNK_BYTES });
  try {
    for await (const data of file as AsyncIterable<Buffer>) {
      if (call.cancelled) return;
      if (!call.write({ data })) await once(call, "drain");
    }
  } finally {
    file.destroy();
  }
  call.end();
}
