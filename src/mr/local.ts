import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { addCounters } from "../counters.js";
import type { Counters } from "../types.js";
import type { App } from "./app.js";
import { partitionRange, runMapTask, type MapOutput } from "./mapTask.js";
import {
  commitPartFile,
  makeTemporaryPartDirs,
  markOutputSucceeded,
  prepareOutputDir,
  temporaryPartPath,
} from "./output.js";
import { runReduceTask } from "./reduceTask.js";
import { isS3Uri, listInputObjects, uploadPending, type S3Options } from "./s3.js";
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
}

const LOCAL_ATTEMPT = "local";

/**
 * Runs a whole job in this process with the same engine the workers use: every map, then
 * every reduce, one at a time, and the same commit protocol. It is the oracle the distributed
 * output is checked against.
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
  try {
    const outputs: MapOutput[] = [];
    for (const [m, split] of splits.entries()) {
      const { counters: more, output } = await runMapTask({
        ...options,
        s3,
        split,
        path: join(workDir, `m${m}.out`),
        spillDir: join(workDir, `m${m}`),
      });
      addCounters(counters, more);
      outputs.push(output);
    }
    for (let r = 0; r < options.reducers; r++) {
      const inputs = outputs.map((output) => partitionRange(output, r));
      const outputPath = toStore
        ? join(workDir, `r${r}.out`)
        : temporaryPartPath(options.outputDir, LOCAL_ATTEMPT, r);
      if (!toStore) makeTemporaryPartDirs(outputPath);
      addCounters(
        counters,
        await runReduceTask({ ...options, inputs, outputPath, workDir: join(workDir, `r${r}`) }),
      );
      if (!toStore) {
        commitPartFile(options.outputDir, LOCAL_ATTEMPT, r);
        continue;
      }
      const upload = await uploadPending(outputPath, partLocation(options.outputDir, r), s3);
      uploads.push({ partition: r, uploadId: upload.uploadId, etags: upload.etags, completed: false });
    }
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

/** An input file or object and its size. */
async function inputFile(path: string, s3: S3Options): Promise<{ path: string; size: number }> {
  if (!isS3Uri(path)) return { path: resolve(path), size: statSync(path).size };
  const [object] = await listInputObjects(path, s3, 1);
  return { path, size: object!.size };
}
