/** `mr submit` and `mr run --local`. */
import type { Command } from "commander";
import { resolve } from "node:path";
import { BUILTIN_APPS } from "../mr/apps/index.js";
import { runLocalJob } from "../mr/local.js";
import { outputConflict } from "../mr/output.js";
import { DEFAULT_SPLIT_SIZE_BYTES } from "../mr/split.js";
import { JobState } from "../types.js";
import { loadApps } from "../worker/apps.js";
import { addDriverOptions, connectDriver, type DriverClient, type DriverFlags } from "./client.js";
import { JobDidNotSucceed, UsageError } from "./errors.js";
import { jobJson } from "./format.js";
import { collectParam, parseBytes, parsePositiveInt } from "./options.js";
import { followJob, progressReporter } from "./watch.js";

interface JobOptions {
  app: string;
  reducers: number;
  output: string;
  splitSize?: number;
  param?: Record<string, string>;
}

function addJobOptions(command: Command): Command {
  return command
    .requiredOption("--app <name>", `the app to run (built in: ${Object.keys(BUILTIN_APPS).join(", ")})`)
    .requiredOption(
      "--reducers <R>",
      "number of reduce partitions, and of output files",
      parsePositiveInt("--reducers"),
    )
    .requiredOption("--output <dir>", "output directory; must not hold a finished job")
    .option(
      "--split-size <bytes>",
      "largest input split, such as 64MiB (default 64MiB)",
      parseBytes("--split-size"),
    )
    .option("--param <key=value>", "a parameter for the app; repeatable", collectParam)
    .argument("<inputs...>", "input files, or directories of them");
}

export function addSubmitCommands(program: Command, env: NodeJS.ProcessEnv): void {
  addDriverOptions(addJobOptions(program.command("submit").description("submit a job to the driver")))
    .option("--wait", "follow the job with progress bars; exit 0 only if it succeeds")
    .option("--json", "print the job as JSON")
    .action(
      async (inputs: string[], options: JobOptions & DriverFlags & { wait?: boolean; json?: boolean }) => {
        const client = connectDriver(options, env);
        try {
          let job = await client.submitJob({
            app: options.app,
            inputs: inputs.map((input) => resolve(input)),
            outputDir: resolve(options.output),
            reducers: options.reducers,
            splitSizeBytes: options.splitSize ?? 0,
            params: options.param ?? {},
          });
          if (!options.json)
            console.error(`submitted job ${job.id}: ${job.mapsTotal} maps, ${job.reducesTotal} reduces`);
          if (options.wait) job = await waitWithProgress(client, job.id);
          if (options.json) console.log(JSON.stringify(jobJson(job), null, 2));
          else if (!options.wait) console.log(job.id);
          if (options.wait) reportOutcome(job);
        } finally {
          client.close();
        }
      },
    );

  addJobOptions(program.command("run").description("run a job in this process: no driver, no Redis"))
    .option("--local", "run in this process (the only mode of run)")
    .option("--apps-dir <dir>", "offer every DIR/NAME.mjs or DIR/NAME.js module as app NAME")
    .action(async (inputs: string[], options: JobOptions & { local?: boolean; appsDir?: string }) => {
      if (!options.local) throw new UsageError("run works only with --local (to use a cluster, mr submit)");
      const apps = await loadApps(options.appsDir === undefined ? undefined : resolve(options.appsDir));
      const app = apps[options.app];
      if (!app) {
        throw new UsageError(
          `unknown app ${JSON.stringify(options.app)} (available: ${Object.keys(apps).join(", ")})`,
        );
      }
      const outputDir = resolve(options.output);
      const conflict = outputConflict(outputDir);
      if (conflict !== undefined) {
        throw new UsageError(
          `output directory ${outputDir} ${conflict} (choose another --output, or remove them)`,
        );
      }
      const started = performance.now();
      const { maps } = await runLocalJob({
        app,
        params: options.param ?? {},
        inputs: inputs.map((input) => resolve(input)),
        outputDir,
        reducers: options.reducers,
        splitSizeBytes: options.splitSize ?? DEFAULT_SPLIT_SIZE_BYTES,
      });
      const seconds = ((performance.now() - started) / 1000).toFixed(2);
      console.error(
        `ran ${maps} maps and ${options.reducers} reduces in ${seconds}s; output in ${outputDir}`,
      );
    });
}

export async function waitWithProgress(client: DriverClient, jobId: number) {
  const progress = progressReporter(process.stderr);
  try {
    return await followJob(client, jobId, (job) => progress.update(job));
  } finally {
    progress.stop();
  }
}

/** Says how a job ended; a job that did not succeed makes the command exit 1. */
export function reportOutcome(job: { id: number; state: string; error: string; outputDir: string }): void {
  if (job.state === JobState.SUCCEEDED) {
    console.error(`job ${job.id} SUCCEEDED; output in ${job.outputDir}`);
    return;
  }
  console.error(
    `mr: job ${job.id} ${job.state}${job.error ? `: ${job.error}` : ""} (see mr jobs show ${job.id})`,
  );
  throw new JobDidNotSucceed(job.state);
}
