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
}

const LOCAL_ATTEMPT = "local";

/**
 * Runs a whole job in this process with the same engine the workers use: every map, then
 * every reduce, one at a time. It is the oracle the distributed output is checked against.
 */
export async function runLocalJob(options: LocalJobOptions): Promise<{ maps: number; counters: Counters }> {
  const files = options.inputs.map((path) => ({ path: resolve(path), size: statSync(path).size }));
  const splits = splitInputs(files, options);
  prepareOutputDir(options.outputDir, options.overwrite ?? false);
  const workDir = mkdtempSync(join(tmpdir(), "mr-local-"));
  const counters: Counters = {};
  try {
    const outputs: MapOutput[] = [];
    for (const [m, split] of splits.entries()) {
      const { counters: more, output } = await runMapTask({
        ...options,
        split,
        path: join(workDir, `m${m}.out`),
        spillDir: join(workDir, `m${m}`),
      });
      addCounters(counters, more);
      outputs.push(output);
    }
    for (let r = 0; r < options.reducers; r++) {
      const inputs = outputs.map((output) => partitionRange(output, r));
      const outputPath = temporaryPartPath(options.outputDir, LOCAL_ATTEMPT, r);
      makeTemporaryPartDirs(outputPath);
      addCounters(
        counters,
        await runReduceTask({ ...options, inputs, outputPath, workDir: join(workDir, `r${r}`) }),
      );
      commitPartFile(options.outputDir, LOCAL_ATTEMPT, r);
    }
    markOutputSucceeded(options.outputDir);
    return { maps: splits.length, counters };
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}
