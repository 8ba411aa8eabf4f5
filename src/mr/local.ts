import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { addCounters } from "../counters.js";
import type { Counters } from "../types.js";
import type { App } from "./app.js";
import { partitionRange, runMapTask, type MapOutput, type MapTaskOptions } from "./mapTask.js";
import {
  commitPartFile,
  makeTemporaryPartDirs,
  markOutputSucceeded,
  prepareOutputDir,
  temporaryPartPath,
} from "./output.js";
import { runReduceTask, type ReduceTaskOptions } from "./reduceTask.js";
import { listInputObjects, uploadPending } from "./s3.js";
import { isS3Uri, type S3Options } from "./s3Uri.js";
import {
  abortS3Output,
  commitS3Output,
  emptyS3Output,
  partLocation,
  type CommittedUpload,
} from "./s3Output.js";
import { splitInputs } from "./split.js";
import type { EngineTunables } from "./tunables.js";

export interface LocalJobOptions {
  app: App;
  params: Record<string, string>;
  inputs: readonly string[];
  outputDir: string;
  reducers: number;
  splitSizeBytes: number;
  /** Counted for each file packed into a split; default DEFAULT_OPEN_COST_BYTES. */
  openCostBytes?: number;
  /** Empty the output directory first (see prepareOutputDir). */
  overwrite?: boolean;
  /** The sort buffer, the merge factor and the rest; default DEFAULT_TUNABLES. */
  tunables?: Readonly<EngineTunables>;
  /** The object store of `s3://` inputs and outputs. */
  s3?: S3Options;
  /** Where the tasks run, and how many at once; default this thread, one at a time. */
  tasks?: TaskPool;
}

/**
 * Where a local job's tasks run: `slots` of them at once. The default runs them in this thread;
 * `mr run --local` runs them on the worker's pool of task threads (threadPool in
 * worker/taskThreads.ts), so that a local job uses every core as a worker does.
 */
export interface TaskPool {
  slots: number;
  map(
    task: Pick<MapTaskOptions, "split" | "reducers" | "path" | "spillDir" | "s3">,
    signal: AbortSignal,
  ): Promise<{ counters: Counters; output: MapOutput }>;
  reduce(
    task: Pick<ReduceTaskOptions, "inputs" | "outputPath" | "workDir">,
    signal: AbortSignal,
  ): Promise<Counters>;
}

/** A pool of one slot: the tasks of `options`' app run in this thread, one after another. */
function inThisThread(options: LocalJobOptions): TaskPool {
  const { app, params, tunables } = options;
  return {
    slots: 1,
    map: (task, signal) => runMapTask({ app, params, tunables, signal, ...task }),
    reduce: (task, signal) => runReduceTask({ app, params, tunables, signal, ...task }),
  };
}

/** A local reduce's attempt id, for its file under `_temporary`: one per partition, as they may run at once. */
const localAttempt = (r: number): string => `local-r${r}`;

/**
 * Runs a whole job in this process with the same engine the workers use: every map, then
 * every reduce, as many at once as the pool has slots, and the same commit protocol. It is the
 * oracle the distributed output is checked against.
 */
export async function runLocalJob(options: LocalJobOptions): Promise<{ maps: number; counters: Counters }> {
  const s3 = options.s3 ?? {};
  const files = await Promise.all(options.inputs.map((path) => inputFile(path, s3)));
  const splits = splitInputs(files, options);
  const toStore = isS3Uri(options.outputDir);
  if (!toStore) prepareOutputDir(options.outputDir, options.overwrite ?? false);
  else if (options.overwrite) await emptyS3Output(options.outputDir, s3);
  const workDir = mkdtempSync(join(tmpdir(), "mr-local-"));
  const counters: Counters = {};
  const uploads: CommittedUpload[] = [];
  const pool = options.tasks ?? inThisThread(options);
  try {
    const outputs = await eachAtOnce(splits, pool.slots, async (split, m, signal) => {
      const { counters: more, output } = await pool.map(
        {
          split,
          reducers: options.reducers,
          s3,
          path: join(workDir, `m${m}.out`),
          spillDir: join(workDir, `m${m}`),
        },
        signal,
      );
      addCounters(counters, more);
      return output;
    });
    const partitions = Array.from({ length: options.reducers }, (_, r) => r);
    await eachAtOnce(partitions, pool.slots, async (r, _, signal) => {
      const inputs = outputs.map((output) => partitionRange(output, r));
      const outputPath = toStore
        ? join(workDir, `r${r}.out`)
        : temporaryPartPath(options.outputDir, localAttempt(r), r);
      if (!toStore) makeTemporaryPartDirs(outputPath);
      addCounters(
        counters,
        await pool.reduce({ inputs, outputPath, workDir: join(workDir, `r${r}`) }, signal),
      );
      if (!toStore) {
        commitPartFile(options.outputDir, localAttempt(r), r);
        return;
      }
      const upload = await uploadPending(outputPath, partLocation(options.outputDir, r), s3, signal);
      uploads.push({ partition: r, uploadId: upload.uploadId, etags: upload.etags, completed: false });
    });
    if (toStore) {
      await commitS3Output(options.outputDir, options.reducers, uploads, [], s3, { completed: () => {} });
    } else {
      markOutputSucceeded(options.outputDir);
    }
    return { maps: splits.length, counters };
  } catch (err) {
    if (toStore) await abortS3Output(options.outputDir, uploads, s3).catch(() => undefined);
    throw err;
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}

/**
 * Calls `run` on every item, at most `slots` at once, and returns the results in the items'
 * order. The first failure aborts the calls under way (through their signal), starts no more,
 * and is thrown once they have ended.
 */
async function eachAtOnce<T, R>(
  items: readonly T[],
  slots: number,
  run: (item: T, index: number, signal: AbortSignal) => Promise<R>,
): Promise<R[]> {
  const results: R[] = [];
  const stop = new AbortController();
  let next = 0;
  let failure: { err: unknown } | undefined;
  const slot = async (): Promise<void> => {
    while (next < items.length && !failure) {
      const index = next++;
      try {
        results[index] = await run(items[index]!, index, stop.signal);
      } catch (err) {
        failure ??= { err };
        stop.abort();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(slots, items.length) }, slot));
  if (failure) throw failure.err;
  return results;
}

/** An input file or object and its size. */
async function inputFile(path: string, s3: S3Options): Promise<{ path: string; size: number }> {
  if (!isS3Uri(path)) return { path: resolve(path), size: statSync(path).size };
  const [object] = await listInputObjects(path, s3, 1);
  return { path, size: object!.size };
}
