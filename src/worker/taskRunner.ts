/** Runs one assigned attempt on this worker with the engine of src/mr. */
import { mkdirSync, rmSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { withToken } from "../auth.js";
import { DEFAULT_TASK_TIMEOUT_MS } from "../config.js";
import { channelCredentials, type Tls } from "../tls.js";
import { FetchFailedError, UnrecoverableError, toError } from "../errors.js";
import {
  ShuffleServiceClient,
  type AwaitMapOutputsRequest,
  type Chunk,
  type MapOutput,
  type TaskAssignment,
} from "../gen/mapreduce.js";
import { CHANNEL_OPTIONS } from "../grpc.js";
import type { App } from "../mr/app.js";
import { Counter, Progress } from "../mr/context.js";
import { makeTemporaryPartDirs, partFileName, temporaryPartPath } from "../mr/output.js";
import { rangeBytes, type RecordRange } from "../mr/records.js";
import { abortUpload, uploadPending, type PendingUpload } from "../mr/s3.js";
import { isS3Uri, type S3Location, type S3Options } from "../mr/s3Uri.js";
import { partLocation } from "../mr/s3Output.js";
import type { EngineTunables } from "../mr/tunables.js";
import { TaskKind, type Counters } from "../types.js";
import type { Roots } from "../roots.js";
import { heldBitmap } from "../heldMaps.js";
import { attemptDir } from "./dataDir.js";
import { MapOutputs } from "./mapOutputs.js";
import { TaskThreads, mapOutputOf } from "./taskThreads.js";

/**
 * A shuffle channel lets the serving worker send 4 MiB before it must read a window update
 * from the reducer (HTTP/2's default is 64 KiB). The serving worker is usually busy with a task
 * that lets I/O run only now and then, so each window update would cost the reducer a wait for
 * its next turn. It is also the most a connection holds unread: 16 MiB for 4 parallel fetches.
 */
const SHUFFLE_CHANNEL_OPTIONS = { ...CHANNEL_OPTIONS, "grpc-node.flow_control_window": 4 << 20 };

/** What a reduce's fetches have brought so far, by map index. */
interface Fetched {
  ranges: (RecordRange | undefined)[];
  /** How many of `ranges` are set. */
  count: number;
  /** The last error of each map's output not yet fetched, by map index. */
  errors: Map<number, string>;
  bytes: number;
  /** What more fetched output may be held in memory rather than written to a file. */
  memoryLeft: number;
}

/**
 * Groups outputs (indexes into `outputs`) by the worker that holds them, in batches of at most
 * `batchSize`; the batches of different workers alternate, so that parallel streams spread
 * over the workers.
 */
export function batchByAddress(
  indexes: readonly number[],
  outputs: readonly MapOutput[],
  batchSize: number,
): number[][] {
  const byAddress = new Map<string, number[][]>();
  for (const i of indexes) {
    const address = outputs[i]!.address;
    let batches = byAddress.get(address);
    if (!batches) byAddress.set(address, (batches = [[]]));
    if (batches.at(-1)!.length === batchSize) batches.push([]);
    batches.at(-1)!.push(i);
  }
  const lists = [...byAddress.values()];
  const longest = Math.max(0, ...lists.map((batches) => batches.length));
  const interleaved: number[][] = [];
  for (let k = 0; k < longest; k++)
    for (const batches of lists) if (batches[k]) interleaved.push(batches[k]!);
  return interleaved;
}

const APPEND_BUFFER_BYTES = 1 << 20;

/**
 * A reducer's own disk failed it (ENOSPC, EIO, …) while it kept fetched map output: the reduce
 * attempt fails with the disk's error, and no map is blamed.
 */
class LocalWriteError extends Error {
  constructor(path: string, cause: unknown) {
    super(`could not write fetched map output to ${path}: ${toError(cause).message}`, { cause });
    this.name = "LocalWriteError";
  }
}

/**
 * Appends to a new file through a buffer, counting its bytes; the file is created at the first
 * write. Its own failures are LocalWriteErrors; its descriptor is closed whatever happens, once
 * close or discard is called.
 */
class AppendFile {
  private handle: Promise<FileHandle> | undefined;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private written = 0;
  private closed = false;
  /** Bytes appended, written or not. */
  bytes = 0;

  constructor(private readonly path: string) {}

  async append(data: Uint8Array): Promise<void> {
    this.pending.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    this.pendingBytes += data.byteLength;
    this.bytes += data.byteLength;
    if (this.pendingBytes >= APPEND_BUFFER_BYTES) await this.flush();
  }

  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      await this.discard();
    }
  }

  /** Closes the file without writing what is still buffered. */
  async discard(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.pending = [];
    this.pendingBytes = 0;
    const handle = await this.handle?.catch(() => undefined);
    await handle?.close().catch(() => undefined);
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const data = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    try {
      this.handle ??= open(this.path, "w");
      const handle = await this.handle;
      let done = 0;
      while (done < data.length) {
        const { bytesWritten } = await handle.write(data, done, data.length - done, this.written + done);
        done += bytesWritten;
      }
    } catch (err) {
      throw new LocalWriteError(this.path, err);
    }
    this.written += data.length;
  }
}

export interface TaskRunnerOptions {
  dataDir: string;
  tunables: Readonly<EngineTunables>;
  /** The worker secret, which other workers' shuffle services ask for. */
  token?: string;
  /** TLS to other workers' shuffle services. */
  tls?: Tls;
  apps: Readonly<Record<string, App>>;
  /** The directories jobs may read and write, as the driver last gave them. */
  roots: () => Roots;
  /** Where the task threads load apps from, beside the built-in ones; default none. */
  appsDir?: string;
  /** An attempt that makes no progress this long fails, in ms; default 600000. */
  taskTimeoutMs?: number;
  /** Task threads to start at once, one per slot; default none (each starts with its first task). */
  threads?: number;
  /** The object store of `s3://` inputs and outputs. */
  s3?: S3Options;
  /**
   * A reduce's long poll of the driver (AwaitMapOutputs): says which map outputs the attempt
   * holds and could not fetch, and returns committed ones it lacks. Without it, a reduce reads
   * the outputs of its assignment only, and one it cannot fetch fails the attempt.
   */
  awaitMapOutputs?: (
    request: Omit<AwaitMapOutputsRequest, "workerId">,
    signal: AbortSignal,
  ) => Promise<MapOutput[]>;
}

/**
 * Reports of unreachable map outputs a reduce makes in a row, with nothing fetched between them,
 * before it blames its own network: it then fails as a fetch failure, charged to its losses.
 */
const UNREACHABLE_REPORTS_IN_A_ROW = 3;

/** What an attempt leaves for the driver to commit. */
export interface AttemptResult {
  counters: Counters;
  /** A reduce's part in object storage, uploaded but not completed. */
  upload?: PendingUpload;
}

export class TaskRunner {
  private readonly shuffleClients = new Map<string, ShuffleServiceClient>();
  /** The output of every map attempt run here and not discarded. */
  readonly mapOutputs: MapOutputs;

  /** Where app code runs: threads of their own, so that it never blocks this one. */
  private readonly threads: TaskThreads;
  /** The uploads of reduce attempts not yet committed, to abort if they never are. */
  private readonly uploads = new Map<string, { target: S3Location; uploadId: string }>();

  constructor(private readonly options: TaskRunnerOptions) {
    // Small outputs in memory, up to one sort buffer's worth in all.
    this.mapOutputs = new MapOutputs(options.dataDir, options.tunables.sortBufferBytes);
    this.threads = new TaskThreads({
      appsDir: options.appsDir,
      taskTimeoutMs: options.taskTimeoutMs ?? DEFAULT_TASK_TIMEOUT_MS,
    });
    this.threads.warm(options.threads ?? 0);
  }

  /**
   * Runs the attempt, keeping `progress` up to date; map output stays in `mapOutputs`, reduce
   * output in `_temporary`, or in an upload that is not completed for an `s3://` output.
   */
  async run(task: TaskAssignment, signal: AbortSignal, progress = new Progress()): Promise<AttemptResult> {
    const app = this.options.apps[task.app];
    // Retryable: another worker may offer it (a worker's queue lanes are those of its own apps).
    if (!app) throw new Error(`this worker does not offer app ${JSON.stringify(task.app)}`);
    const dir = attemptDir(this.options.dataDir, task.attemptId);
    if (task.kind === TaskKind.MAP) {
      if (task.split.length === 0) throw new UnrecoverableError("a map task came without its split");
      const roots = this.options.roots();
      // The roots confine files; what a store's objects may be read is for its credentials to say.
      const split = task.split.map((range) => ({
        ...range,
        file: isS3Uri(range.file) ? range.file : confined(() => roots.checkInput(range.file)),
      }));
      const { path, memoryBytes } = this.mapOutputs.placeFor(task.attemptId);
      const { counters, map } = await this.threads.run(
        {
          kind: "map",
          app: task.app,
          params: task.params,
          tunables: this.options.tunables,
          map: { split, reducers: task.reducers, path, memoryBytes, spillDir: dir, s3: this.options.s3 },
        },
        signal,
        progress,
      );
      this.mapOutputs.add(
        task.attemptId,
        { jobId: task.jobId, shuffleKey: task.shuffleKey },
        mapOutputOf(map!),
      );
      return { counters: counters! };
    }
    // To object storage, the part is written here, then uploaded whole: a store has no append.
    const toStore = isS3Uri(task.outputDir);
    let outputPath: string;
    if (toStore) {
      mkdirSync(dir, { recursive: true });
      outputPath = join(dir, partFileName(task.index));
    } else {
      confined(() => this.options.roots().checkOutput(task.outputDir));
      outputPath = temporaryPartPath(task.outputDir, task.attemptId, task.index);
      makeTemporaryPartDirs(outputPath);
    }
    try {
      const { inputs, bytes } = await this.fetchInputs(task, dir, signal, progress);
      const { counters } = await this.threads.run(
        {
          kind: "reduce",
          app: task.app,
          params: task.params,
          tunables: this.options.tunables,
          reduce: {
            inputs,
            outputPath,
            workDir: dir,
          },
        },
        signal,
        progress,
      );
      const result: AttemptResult = { counters: { ...counters, [Counter.SHUFFLE_BYTES]: bytes } };
      if (toStore) {
        const target = partLocation(task.outputDir, task.index);
        result.upload = await uploadPending(outputPath, target, this.options.s3 ?? {}, signal);
        this.uploads.set(task.attemptId, { target, uploadId: result.upload.uploadId });
      }
      return result;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** The driver committed the attempt: what it left is the driver's now. */
  committed(task: TaskAssignment): void {
    this.uploads.delete(task.attemptId);
  }

  /**
   * Deletes what an attempt left: its map output or fetched inputs, and a reduce's uncommitted
   * file or upload. Only the upload's abort is awaited; it throws if the store refuses.
   */
  async discard(task: TaskAssignment): Promise<void> {
    if (task.kind === TaskKind.MAP) this.mapOutputs.discard(task.attemptId);
    rmSync(attemptDir(this.options.dataDir, task.attemptId), { recursive: true, force: true });
    if (task.kind !== TaskKind.REDUCE) return;
    const upload = this.uploads.get(task.attemptId);
    if (upload) {
      this.uploads.delete(task.attemptId);
      await abortUpload(upload.target, upload.uploadId, this.options.s3 ?? {});
    } else if (!isS3Uri(task.outputDir)) {
      rmSync(dirname(temporaryPartPath(task.outputDir, task.attemptId, task.index)), {
        recursive: true,
        force: true,
      });
    }
  }

  /** Deletes every attempt's output and files. */
  discardAll(): void {
    this.mapOutputs.discardAll();
  }

  close(): void {
    for (const client of this.shuffleClients.values()) client.close();
    this.shuffleClients.clear();
    void this.threads.close();
  }

  /**
   * Copies partition `index` of every map's output into `dir`, or into memory while it fits: the
   * outputs of the assignment first, then each one the driver says has committed since (an
   * early reduce starts before its job's last map ends). Each round fetches what is known and
   * not yet held, one stream per batch of outputs on the same worker, a few streams at once,
   * and asks again, up to `fetchTries` times, for what did not arrive; what still did not is
   * reported unreachable, so that its map runs again. Without a driver to tell, the first such
   * output fails the attempt, as it does after UNREACHABLE_REPORTS_IN_A_ROW fruitless reports.
   */
  private async fetchInputs(
    task: TaskAssignment,
    dir: string,
    signal: AbortSignal,
    progress: Progress,
  ): Promise<{ inputs: RecordRange[]; bytes: number }> {
    mkdirSync(dir, { recursive: true });
    const total = Math.max(task.mapsTotal, task.mapOutputs.length);
    const fetched: Fetched = {
      ranges: new Array(total),
      count: 0,
      errors: new Map(),
      bytes: 0,
      // Hadoop's shuffle input buffer: small outputs are never written at all. A quarter of what
      // the merge may hold, so that fetching adds little to the worker's peak.
      memoryLeft: Math.floor(this.options.tunables.mergeMemoryBytes / 4),
    };
    progress.phase(0, 0.5, () => (total === 0 ? 1 : fetched.count / total));
    const files = { next: 0 };
    let known = task.mapOutputs;
    let fruitless = 0;
    let countAtLastReport = -1;
    const { awaitMapOutputs } = this.options;
    const held = (): Buffer =>
      heldBitmap(
        total,
        fetched.ranges.flatMap((range, m) => (range ? [m] : [])),
      );
    for (;;) {
      const unreachable = await this.fetchKnown(task, known, dir, files, fetched, signal);
      if (fetched.count === total) {
        // Said in the background: a worker lost from now on costs this reduce nothing (shuffle.ts).
        void awaitMapOutputs?.({ attemptId: task.attemptId, held: held(), unreachable: [] }, signal).catch(
          () => undefined,
        );
        break;
      }
      if (unreachable.length > 0) {
        fruitless = fetched.count === countAtLastReport ? fruitless + 1 : 1;
        countAtLastReport = fetched.count;
        if (!awaitMapOutputs || fruitless >= UNREACHABLE_REPORTS_IN_A_ROW) {
          const lost = unreachable[0]!;
          throw new FetchFailedError(
            lost.mapIndex,
            lost.attemptId,
            `could not fetch map ${lost.mapIndex} (attempt ${lost.attemptId}) from ${lost.address}: ${fetched.errors.get(lost.mapIndex)}`,
          );
        }
      } else if (!awaitMapOutputs) {
        throw new Error(`the assignment names ${known.length} of the ${total} map outputs this reduce reads`);
      }
      signal.throwIfAborted();
      known = (
        await awaitMapOutputs!({ attemptId: task.attemptId, held: held(), unreachable }, signal)
      ).filter(({ mapIndex }) => mapIndex < total && fetched.ranges[mapIndex] === undefined);
    }
    const inputs = fetched.ranges as RecordRange[];
    // Some did not fit: the merge goes through files, and what is held would only add to its
    // memory. It goes to a file too, in one write, as Hadoop merges its in-memory outputs to disk.
    if (inputs.some((input) => "path" in input)) await this.writeHeld(inputs, join(dir, `in-${files.next}`));
    return { inputs, bytes: fetched.bytes };
  }

  /**
   * Fetches `outputs` (those not held yet), in up to `fetchTries` rounds; returns those that did
   * not arrive.
   */
  private async fetchKnown(
    task: TaskAssignment,
    outputs: readonly MapOutput[],
    dir: string,
    files: { next: number },
    fetched: Fetched,
    signal: AbortSignal,
  ): Promise<MapOutput[]> {
    let pending = outputs.map((_, i) => i);
    for (let round = 1; pending.length > 0; round++) {
      const { fetchBatch, parallelFetches, fetchTries, fetchRetryMs } = this.options.tunables;
      const batches = batchByAddress(pending, outputs, fetchBatch);
      let next = 0;
      const fetchSome = async (): Promise<void> => {
        while (next < batches.length) {
          const batch = batches[next++]!.map((i) => outputs[i]!);
          await this.fetchBatch(task, batch, join(dir, `in-${files.next++}`), fetched, signal);
        }
      };
      await Promise.all(Array.from({ length: Math.min(parallelFetches, batches.length) }, fetchSome));
      pending = pending.filter((i) => fetched.ranges[outputs[i]!.mapIndex] === undefined);
      if (pending.length === 0 || round >= fetchTries) break;
      await sleep(fetchRetryMs * round, undefined, { signal });
    }
    return pending.map((i) => outputs[i]!);
  }

  /** Writes the inputs held in memory to the file `path`, and points them at it. */
  private async writeHeld(inputs: RecordRange[], path: string): Promise<void> {
    const file = new AppendFile(path);
    try {
      for (const [i, input] of inputs.entries()) {
        if (!("data" in input)) continue;
        const start = file.bytes;
        await file.append(input.data);
        inputs[i] = { path, start, end: file.bytes };
      }
      await file.close();
    } catch (err) {
      await file.discard();
      throw err;
    }
  }

  /**
   * Fetches one batch of outputs, all on one worker: each output that arrives whole is kept in
   * memory while `fetched.memoryLeft` allows, else in one file for the batch, and gets its range.
   * An output that does not arrive whole gets its error instead.
   */
  private async fetchBatch(
    task: TaskAssignment,
    batch: readonly MapOutput[],
    path: string,
    fetched: Fetched,
    signal: AbortSignal,
  ): Promise<void> {
    const stream = this.shuffleClient(batch[0]!.address).fetchPartition({
      attemptIds: batch.map(({ attemptId }) => attemptId),
      partition: task.index,
      jobId: task.jobId,
      shuffleKey: task.shuffleKey,
    });
    const cancel = (): void => stream.cancel();
    signal.addEventListener("abort", cancel, { once: true });
    // A worker that froze answers nothing, and would hold this reduce for as long as it is frozen.
    const { fetchIdleMs } = this.options.tunables;
    let idle = false;
    let idleTimer: NodeJS.Timeout | undefined;
    const stillAlive = (): void => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => {
        idle = true;
        stream.cancel();
      }, fetchIdleMs);
    };
    stillAlive();
    const file = new AppendFile(path);
    let start = 0;
    /** The chunks of the output under way while it stays in memory; undefined once it goes to the file. */
    let held: Uint8Array[] | undefined = [];
    let heldBytes = 0;
    const nextOutput = (): void => {
      start = file.bytes;
      held = [];
      heldBytes = 0;
    };
    const giveBackHeld = (): void => {
      fetched.memoryLeft += heldBytes;
      heldBytes = 0;
    };
    try {
      for await (const chunk of stream as AsyncIterable<Chunk>) {
        stillAlive();
        const i = batch[chunk.output]?.mapIndex;
        if (i === undefined)
          throw new Error(`the shuffle server sent output ${chunk.output} of ${batch.length}`);
        if (chunk.error) {
          fetched.errors.set(i, chunk.error);
          if (held) giveBackHeld();
          nextOutput();
          continue;
        }
        if (held && chunk.data.byteLength <= fetched.memoryLeft) {
          held.push(chunk.data);
          heldBytes += chunk.data.byteLength;
          fetched.memoryLeft -= chunk.data.byteLength;
        } else {
          if (held) {
            for (const data of held) await file.append(data); // it does not fit: to the file, all of it
            giveBackHeld();
            held = undefined;
          }
          await file.append(chunk.data);
        }
        if (chunk.last) {
          const range = held ? { data: joined(held, heldBytes) } : { path, start, end: file.bytes };
          fetched.ranges[i] = range;
          fetched.count++;
          fetched.bytes += rangeBytes(range);
          nextOutput();
        }
      }
      await file.close();
    } catch (err) {
      if (held) giveBackHeld();
      await file.discard();
      signal.throwIfAborted();
      if (err instanceof LocalWriteError) {
        stream.cancel();
        throw err; // this reducer's disk, not the map's worker: the reduce attempt fails
      }
      const message = idle
        ? `nothing came from ${batch[0]!.address} for ${fetchIdleMs} ms (is that worker frozen?)`
        : toError(err).message;
      for (const { mapIndex } of batch)
        if (fetched.ranges[mapIndex] === undefined) fetched.errors.set(mapIndex, message);
    } finally {
      clearTimeout(idleTimer);
      signal.removeEventListener("abort", cancel);
    }
  }

  private shuffleClient(address: string): ShuffleServiceClient {
    let client = this.shuffleClients.get(address);
    if (!client) {
      client = new ShuffleServiceClient(
        address,
        channelCredentials(this.options.tls),
        withToken(SHUFFLE_CHANNEL_OPTIONS, this.options.token),
      );
      this.shuffleClients.set(address, client);
    }
    return client;
  }
}

/** Chunks as one array of its own, so that it moves to a task thread without dragging along more. */
function joined(chunks: readonly Uint8Array[], bytes: number): Uint8Array {
  const data = new Uint8Array(bytes);
  let at = 0;
  for (const chunk of chunks) {
    data.set(chunk, at);
    at += chunk.byteLength;
  }
  return data;
}

/**
 * Runs a check of the roots: a path outside them (changed since the submit, or never checked)
 * fails the attempt and its job at once, since no retry can make it allowed.
 */
function confined<T>(check: () => T): T {
  try {
    return check();
  } catch (err) {
    throw new UnrecoverableError(toError(err).message, { cause: err });
  }
}
