/** ShuffleService: streams partitions of this worker's map outputs to reducers. */
import type { ServerWritableStream, UntypedServiceImplementation } from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { closeSync, openSync, readSync } from "node:fs";
import type { Logger } from "pino";
import { toError } from "../errors.js";
import type * as pb from "../gen/mapreduce.js";
import { sameSecret } from "../auth.js";
import { LIMITS } from "../limits.js";
import type { MapOutput } from "../mr/mapTask.js";
import type { HeldOutput } from "./mapOutputs.js";

/** The most a chunk carries, in bytes. */
export const CHUNK_BYTES = 1 << 20;
/** Chunks a stream may have written and not yet passed to its connection. */
const UNSENT_CHUNKS = 2;
/** The most map attempts one request may name. */
export const MAX_FETCH_ATTEMPTS = 1000;

type FetchCall = ServerWritableStream<pb.FetchPartitionRequest, pb.Chunk>;

/**
 * Serves partitions of committed map attempts only: the output of an attempt the driver
 * refused, or has not accepted yet, is never read by a reducer. Each attempt is found by id
 * among the outputs this worker holds, never by a path, and is served only to a fetch that
 * names its job and shows the job's shuffle key, which only workers given a task of the job
 * have. One request carries many attempts, so a reduce over a thousand small maps opens a few
 * streams, not a thousand.
 */
export function createShuffleService(
  committedOutput: (attemptId: string) => HeldOutput | undefined,
  log: Logger,
): UntypedServiceImplementation {
  let open = 0;
  const fetchPartition = (call: FetchCall): void => {
    const { attemptIds, partition } = call.request;
    const invalid = checkRequest(attemptIds, partition);
    if (invalid) {
      call.emit("error", { code: status.INVALID_ARGUMENT, details: invalid });
      return;
    }
    // Each stream holds a chunk and a file: only so many at once, whatever callers do.
    if (open >= LIMITS.shuffleStreams) {
      call.emit("error", {
        code: status.RESOURCE_EXHAUSTED,
        details: `this worker already serves ${open} fetches, as many as it may (try again shortly)`,
      });
      return;
    }
    open++;
    streamPartitions(call, committedOutput)
      .then(
        () => {
          if (!call.cancelled) call.end();
        },
        (err: unknown) => {
          log.warn({ err: toError(err).message, partition }, "shuffle fetch failed");
          call.emit("error", {
            code: status.INTERNAL,
            details: `could not send map output: ${toError(err).message}`,
          });
        },
      )
      .finally(() => open--);
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
  committedOutput: (attemptId: string) => HeldOutput | undefined,
): Promise<void> {
  const { attemptIds, partition, jobId, shuffleKey } = call.request;
  const window = new SendWindow(call);
  const owned = (output: HeldOutput | undefined): HeldOutput | undefined =>
    output?.jobId === jobId && sameSecret(output.shuffleKey, shuffleKey) ? output : undefined;
  for (const [output, attemptId] of attemptIds.entries()) {
    if (call.cancelled) return;
    const send = (chunk: Omit<pb.Chunk, "output">): Promise<void> => window.send({ output, ...chunk });
    // Another job's attempt, or a wrong key, reads as an attempt this worker does not hold.
    const mapOutput = owned(committedOutput(attemptId));
    const range = mapOutput?.partitions[partition];
    if (mapOutput === undefined || range === undefined) {
      const error =
        mapOutput === undefined
          ? `attempt ${attemptId} has no committed output of job ${jobId} on this worker`
          : `attempt ${attemptId} has no partition ${partition} (it wrote ${mapOutput.partitions.length})`;
      await send({ data: Buffer.alloc(0), last: true, error });
      continue;
    }
    try {
      await sendRange(mapOutput, range, send, () => call.cancelled);
    } catch (err) {
      await send({ data: Buffer.alloc(0), last: true, error: toError(err).message });
    }
  }
}

/**
 * Writes chunks only as fast as the reducer reads them: at most UNSENT_CHUNKS written and not
 * yet passed to the connection (which HTTP/2 flow control holds back while the reducer does not
 * read). grpc-js's own signal, write() returning false, comes only after 16 messages of any
 * size, so a stream nobody reads would otherwise read its whole output into memory. Once the
 * caller has gone, nothing waits.
 */
class SendWindow {
  private unsent = 0;
  private wake: (() => void) | undefined;

  constructor(private readonly call: FetchCall) {
    const release = (): void => this.wake?.();
    call.on("cancelled", release);
    call.on("close", release);
  }

  async send(chunk: pb.Chunk): Promise<void> {
    while (this.unsent >= UNSENT_CHUNKS && !this.call.cancelled) {
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    if (this.call.cancelled) return;
    this.unsent++;
    this.call.write(chunk, () => {
      this.unsent--;
      this.wake?.();
    });
  }
}

/**
 * Sends bytes [start, end) of an output, from memory or from its file, ending with `last`.
 * Reads block: the worker is often busy with a task that lets I/O run only now and then (every
 * YIELD_EVERY_MS), and a promise read would take a turn of the loop for each of its open,
 * read and close, so a reducer's fetch would wait behind the task for each.
 */
async function sendRange(
  output: MapOutput,
  [start, end]: [number, number],
  send: (chunk: Omit<pb.Chunk, "output">) => Promise<void>,
  cancelled: () => boolean,
): Promise<void> {
  const { data: inMemory, path } = output;
  const fd = inMemory ? undefined : openSync(path, "r");
  const read = (at: number, length: number): Buffer => {
    if (inMemory) return inMemory.subarray(at, at + length);
    const data = Buffer.allocUnsafe(length);
    if (readSync(fd!, data, 0, length, at) < length)
      throw new Error(`the map output in ${path} was cut short`);
    return data;
  };
  try {
    let at = start;
    do {
      const data = read(at, Math.min(CHUNK_BYTES, end - at));
      at += data.length;
      await send({ data, last: at === end, error: "" });
    } while (at < end && !cancelled());
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
