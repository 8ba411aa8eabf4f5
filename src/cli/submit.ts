/** `mr submit` and `mr run --local`. */
import type { Command } from "commander";
import { resolve } from "node:path";
import { validateSubmit } from "../driver/submitCheck.js";
import type * as pb from "../gen/mapreduce.js";
import { BUILTIN_APPS } from "../mr/apps/index.js";
import { runLocalJob } from "../mr/local.js";
import { checkEndpoint, isS3Uri } from "../mr/s3Uri.js";
import { DEFAULT_SPLIT_SIZE_BYTES } from "../mr/split.js";
import { MAX_JOB_PRIORITY } from "../limits.js";
import { Roots } from "../roots.js";
import { JobState } from "../types.js";
import { loadApps } from "../worker/apps.js";
import { TaskThreads, threadPool } from "../worker/taskThreads.js";
import { DEFAULT_REDUCE_SLOWSTART, DEFAULT_SLOTS, DEFAULT_TASK_TIMEOUT_MS, MAX_SLOTS } from "../config.js";
import { DEFAULT_TUNABLES } from "../mr/tunables.js";
import { addDriverOptions, connectDriver, type DriverClient, type DriverFlags } from "./client.js";
import { JobDidNotSucceed, UsageError } from "./errors.js";
import { jobJson } from "../json.js";
import {
  collectParam,
  parseBytes,
  parseDuration,
  parseIntRange,
  parseNumberRange,
  parsePositiveInt,
  s3EndpointOption,
} from "./options.js";
import { followJob, progressView } from "./watch.js";

interface JobOptions {
  app: string;
  reducers: number;
  output: string;
  splitSize?: number;
  openCost?: number;
  param?: Record<string, string>;
  overwrite?: boolean;
  priority?: number;
  maxRunningTasks?: number;
  /** False with --no-speculation. */
  speculation?: boolean;
  reduceSlowstart?: number;
}

/** A local path made absolute, as the driver needs it; an `s3://` path as it is. */
function absolute(path: string): string {
  return isS3Uri(path) ? path : resolve(path);
}

/** The job the flags describe, as the driver takes it: `mr submit` and `mr run` both start here. */
function submitRequest(inputs: string[], options: JobOptions): pb.SubmitJobRequest {
  return {
    app: options.app,
    inputs: inputs.map(absolute),
    outputDir: absolute(options.output),
    reducers: options.reducers,
    splitSizeBytes: options.splitSize ?? 0,
    openCostBytes: options.openCost,
    params: options.param ?? {},
    overwrite: options.overwrite ?? false,
    priority: options.priority ?? 0,
    maxRunningTasks: options.maxRunningTasks ?? 0,
    noSpeculation: options.speculation === false,
    reduceSlowstart: options.reduceSlowstart,
  };
}

function addJobOptions(command: Command): Command {
  return command
    .requiredOption("--app <name>", `the app to run (built in: ${Object.keys(BUILTIN_APPS).join(", ")})`)
    .requiredOption(
      "--reducers <R>",
      "number of reduce partitions, and of output files",
      parsePositiveInt("--reducers"),
    )
    .requiredOption("--output <dir>", "output directory; must be empty or not yet exist")
    .option("--overwrite", "empty the output directory first, whatever it holds")
    .option(
      "--split-size <bytes>",
      "largest input split, such as 64MiB (default 64MiB)",
      parseBytes("--split-size"),
    )
    .option(
      "--open-cost <bytes>",
      "what each file counts for, beside its bytes, when small files are packed into one split (default 16KiB; as big as --split-size: a map per file)",
      parseBytes("--open-cost", { zero: true }),
    )
    .option("--param <key=value>", "a parameter for the app; repeatable", collectParam)
    .argument("<inputs...>", "input files, or directories of them");
}

/** `mr run`'s own flags, beside the job's. */
type LocalRunOptions = JobOptions & { appsDir?: string; slots?: number; s3Endpoint?: string };

export function addSubmitCommands(program: Command, env: NodeJS.ProcessEnv): void {
  addDriverOptions(addJobOptions(program.command("submit").description("submit a job to the driver")))
    .option("--wait", "follow the job with progress bars; exit 0 only if it succeeds")
    .option(
      "--timeout <duration>",
      "with --wait, stop waiting after this long, such as 90s or 10m (the job goes on)",
      parseDuration("--timeout"),
    )
    .option(
      "--priority <n>",
      `0 (the default) to ${MAX_JOB_PRIORITY}: a job of a higher priority has its tasks handed out first`,
      parseIntRange("--priority", 0, MAX_JOB_PRIORITY),
    )
    .option(
      "--max-running-tasks <n>",
      "at most this many of the job's tasks run at once, leaving the rest of the workers to others (default no cap)",
      parsePositiveInt("--max-running-tasks"),
    )
    .option(
      "--no-speculation",
      "never start a backup attempt of a straggling task: for an app that must not run twice at once",
    )
    .option(
      "--reduce-slowstart <share>",
      `the share of the maps, 0 to 1, that must commit before the reduces start fetching their output (default ${DEFAULT_REDUCE_SLOWSTART}; 1: once every map has)`,
      parseNumberRange("--reduce-slowstart", 0, 1),
    )
    .option("--json", "print the job as JSON")
    .action(
      async (
        inputs: string[],
        options: JobOptions & DriverFlags & { wait?: boolean; timeout?: number; json?: boolean },
      ) => {
        if (options.timeout !== undefined && !options.wait)
          throw new UsageError("--timeout goes with --wait");
        const client = connectDriver(options, env);
        try {
          let job = await client.submitJob(submitRequest(inputs, options));
          if (!options.json)
            console.error(`submitted job ${job.id}: ${job.mapsTotal} maps, ${job.reducesTotal} reduces`);
          if (options.wait) job = await waitWithProgress(client, job.id, options.timeout);
          if (options.json) console.log(JSON.stringify(jobJson(job), null, 2));
          else if (!options.wait) console.log(job.id);
          if (options.wait) reportOutcome(job);
        } finally {
          client.close();
        }
      },
    );

  addJobOptions(program.command("run").description("run a job in this process: no driver, no Redis"))
    .option("--local", "run in this process (the only mode of run, and the default)")
    .option("--apps-dir <dir>", "offer every DIR/NAME.mjs or DIR/NAME.js module as app NAME")
    .option(
      "--slots <n>",
      `tasks run at once, each on a thread of its own (default ${DEFAULT_SLOTS}, the cores)`,
      parsePositiveInt("--slots"),
    )
    .addOption(s3EndpointOption())
    .action(async (inputs: string[], options: LocalRunOptions) => {
      const slots = options.slots ?? DEFAULT_SLOTS;
      if (slots > MAX_SLOTS) throw new UsageError(`--slots is at most ${MAX_SLOTS}`);
      const appsDir = options.appsDir === undefined ? undefined : resolve(options.appsDir);
      const apps = await loadApps(appsDir);
      // The driver's own check of a submit, so that both refuse the same things in the same words.
      const s3Endpoint = options.s3Endpoint ?? env.MR_S3_ENDPOINT;
      if (s3Endpoint !== undefined) checkEndpoint(s3Endpoint);
      const job = await validateSubmit(
        submitRequest(inputs, options),
        { defaultSplitSizeBytes: DEFAULT_SPLIT_SIZE_BYTES, s3Endpoint },
        Roots.NONE,
        Object.keys(apps),
      );
      const started = performance.now();
      const threads = new TaskThreads({ appsDir, taskTimeoutMs: DEFAULT_TASK_TIMEOUT_MS });
      const tasks = threadPool(threads, slots, {
        app: job.app,
        params: job.params,
        tunables: DEFAULT_TUNABLES,
      });
      const { maps } = await runLocalJob({
        app: apps[job.app]!,
        params: job.params,
        inputs: job.inputs.map(({ path }) => path),
        outputDir: job.outputDir,
        reducers: job.reducers,
        splitSizeBytes: job.splitSizeBytes,
        openCostBytes: job.openCostBytes,
        overwrite: options.overwrite,
        s3: { endpoint: s3Endpoint },
        tasks,
      }).finally(() => threads.close());
      const seconds = ((performance.now() - started) / 1000).toFixed(2);
      console.error(
        `ran ${maps} maps and ${job.reducers} reduces in ${seconds}s; output in ${job.outputDir}`,
      );
    });
}

/**
 * Follows a job with a progress view until it ends, or until `timeoutMs` has passed. Ctrl-C (or
 * SIGTERM) stops the wait, not the job: the screen is put back as it was, and the user told how
 * to wait again.
 */
export async function waitWithProgress(client: DriverClient, jobId: number, timeoutMs?: number) {
  const view = progressView(process.stderr, client.address);
  const interrupted = (): void => {
    view.stop();
    process.stderr.write(
      `\njob ${jobId} goes on without this wait; mr jobs wait ${jobId} to follow it again\n`,
    );
    process.exit(130);
  };
  process.once("SIGINT", interrupted);
  process.once("SIGTERM", interrupted);
  try {
    return await followJob(client, jobId, view, timeoutMs === undefined ? undefined : Date.now() + timeoutMs);
  } finally {
    process.removeListener("SIGINT", interrupted);
    process.removeListener("SIGTERM", interrupted);
    view.stop();
  }
}

/** Says how a job ended; a job that did not succeed makes the command exit 1. */
export function reportOutcome(job: {
  id: number;
  state: string;
  error: string;
  outputDir: string;
  outputFinished: boolean;
}): void {
  if (job.state === JobState.SUCCEEDED && job.outputFinished) {
    console.error(`job ${job.id} SUCCEEDED; output in ${job.outputDir}`);
    return;
  }
  if (job.state === JobState.SUCCEEDED) {
    console.error(
      `mr: job ${job.id} SUCCEEDED, but its output in ${job.outputDir} is not committed yet: the driver could not finish it, and tries again (see its log; mr jobs wait ${job.id} to wait for it)`,
    );
    throw new JobDidNotSucceed(job.state);
  }
  console.error(
    `mr: job ${job.id} ${job.state}${job.error ? `: ${job.error}` : ""} (see mr jobs show ${job.id})`,
  );
  throw new JobDidNotSucceed(job.state);
}
