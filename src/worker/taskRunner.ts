/** Runs one assigned attempt on this worker with the engine of src/mr. */
import { createWriteStream, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { FetchFailedError, UnrecoverableTaskError, toError } from "../errors.js";
import { ShuffleServiceClient, type Chunk, type MapOutput, type TaskAssignment } from "../gen/mapreduce.js";
import { CHANNEL_OPTIONS, credentials } from "../grpc.js";
import type { App } from "../mr/app.js";
import { Counter } from "../mr/context.js";
import { runMapTask } from "../mr/mapTask.js";
import { temporaryPartPath } from "../mr/output.js";
import { runReduceTask } from "../mr/reduceTask.js";
import { TaskKind, type Counters } from "../types.js";
import { attemptDir, clearAttemptDirs } from "./dataDir.js";

/** Map outputs a reduce fetches at once, as Hadoop's parallel copies. */
const PARALLEL_FETCHES = 4;
/** Tries of one fetch before the map's output is reported lost, and the pause between them. */
const FETCH_TRIES = 3;
const FETCH_RETRY_MS = 300;

export interface TaskRunnerOptions {
  dataDir: string;
  sortBufferBytes: number;
  apps: Readonly<Record<string, App>>;
}

export class TaskRunner {
  private readonly shuffleClients = new Map<string, ShuffleServiceClient>();

  constructor(private readonly options: TaskRunnerOptions) {}

  /** Runs the attempt; map output stays in the data directory, reduce output in `_temporary`. */
  async run(task: TaskAssignment, signal: AbortSignal): Promise<Counters> {
    const app = this.options.apps[task.app];
    if (!app) throw new UnrecoverableTaskError(`this worker does not offer app ${JSON.stringify(task.app)}`);
    const dir = attemptDir(this.options.dataDir, task.attemptId);
    if (task.kind === TaskKind.MAP) {
      if (!task.split) throw new UnrecoverableTaskError("a map task came without its split");
      return runMapTask({
        app,
        params: task.params,
        split: task.split,
        reducers: task.reducers,
        dir,
        sortBufferBytes: this.options.sortBufferBytes,
        signal,
      });
    }
    try {
      const { inputs, bytes } = await this.fetchInputs(task, dir, signal);
      const counters = await runReduceTask({
        app,
        params: task.params,
        inputs,
        outputPath: temporaryPartPath(task.outputDir, task.attemptId, task.index),
        signal,
      });
      return { ...counters, [Counter.SHUFFLE_BYTES]: bytes };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** Deletes what an attempt left: its map output or fetched inputs, and a reduce's uncommitted file. */
  discard(task: TaskAssignment): void {
    rmSync(attemptDir(this.options.dataDir, task.attemptId), { recursive: true, force: true });
    if (task.kind === TaskKind.REDUCE) {
      rmSync(dirname(temporaryPartPath(task.outputDir, task.attemptId, task.index)), {
        recursive: true,
        force: true,
      });
    }
  }

  /** Deletes every attempt's files in the data directory. */
  discardAll(): void {
    clearAttemptDirs(this.options.dataDir);
  }

  close(): void {
    for (const client of this.shuffleClients.values()) client.close();
    this.shuffleClients.clear();
  }

  /** Copies partition `index` of every map output into `dir`, a few at a time. */
  private async fetchInputs(
    task: TaskAssignment,
    dir: string,
    signal: AbortSignal,
  ): Promise<{ inputs: string[]; bytes: number }> {
    mkdirSync(dir, { recursive: true });
    const inputs = task.mapOutputs.map((output) => join(dir, `in-m${output.mapIndex}`));
    let bytes = 0;
    let next = 0;
    const fetchOne = async (): Promise<void> => {
      while (next < task.mapOutputs.length) {
        const i = next++;
        bytes += await this.fetchWithRetries(task.mapOutputs[i]!, task.index, inputs[i]!, signal);
      }
    };
    await Promise.all(Array.from({ length: PARALLEL_FETCHES }, fetchOne));
    return { inputs, bytes };
  }

  /** A few tries, then a FetchFailedError that names the map: its output is gone. */
  private async fetchWithRetries(
    output: MapOutput,
    partition: number,
    path: string,
    signal: AbortSignal,
  ): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.fetchPartition(output, partition, path, signal);
      } catch (err) {
        signal.throwIfAborted();
        if (attempt >= FETCH_TRIES) {
          throw new FetchFailedError(
            output.mapIndex,
            output.attemptId,
            `could not fetch map ${output.mapIndex} (attempt ${output.attemptId}) from ${output.address}: ${toError(err).message}`,
            { cause: err },
          );
        }
        await sleep(FETCH_RETRY_MS * attempt, undefined, { signal });
      }
    }
  }

  private async fetchPartition(
    output: MapOutput,
    partition: number,
    path: string,
    signal: AbortSignal,
  ): Promise<number> {
    const stream = this.shuffleClient(output.address).fetchPartition({
      attemptId: output.attemptId,
      partition,
    });
    const cancel = (): void => stream.cancel();
    signal.addEventListener("abort", cancel, { once: true });
    let bytes = 0;
    try {
      await pipeline(async function* () {
        for await (const chunk of stream as AsyncIterable<Chunk>) {
          bytes += chunk.data.length;
          yield chunk.data;
        }
      }, createWriteStream(path));
      return bytes;
    } finally {
      signal.removeEventListener("abort", cancel);
    }
  }

  private shuffleClient(address: string): ShuffleServiceClient {
    let client = this.shuffleClients.get(address);
    if (!client) {
      client = new ShuffleServiceClient(address, credentials.createInsecure(), CHANNEL_OPTIONS);
      this.shuffleClients.set(address, client);
    }
    return client;
  }
}
