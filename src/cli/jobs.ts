/** `mr jobs …` and `mr workers …`: reading and steering what the driver holds. */
import type { Command } from "commander";
import { JobState } from "../types.js";
import { addDriverOptions, connectDriver, type DriverClient, type DriverFlags } from "./client.js";
import { UsageError } from "./errors.js";
import { jobDetailJson, jobJson, workerJson } from "../json.js";
import { jobDetailText, jobsTable, workersTable } from "./format.js";
import { parseDuration, parseJobId, parsePositiveInt } from "./options.js";
import { reportOutcome, waitWithProgress } from "./submit.js";
import { UNREACHABLE_LIMIT_MS } from "./watch.js";

async function withClient<T>(
  flags: DriverFlags,
  env: NodeJS.ProcessEnv,
  use: (client: DriverClient) => Promise<T>,
) {
  const client = connectDriver(flags, env);
  try {
    return await use(client);
  } finally {
    client.close();
  }
}

export function addJobsCommands(program: Command, env: NodeJS.ProcessEnv): void {
  const jobs = program.command("jobs").description("list, inspect, wait on and cancel jobs");
  addDriverOptions(jobs.command("list"))
    .description("jobs, newest first")
    .option("--state <state>", "only jobs in this state: running, succeeded, failed or cancelled")
    .option("--app <app>", "only jobs of this app")
    .option("--limit <n>", "at most this many jobs (default 50)", parsePositiveInt("--limit"))
    .option("--json", "print JSON")
    .action((options: { driver?: string; state?: string; app?: string; limit?: number; json?: boolean }) =>
      withClient(options, env, async (client) => {
        const state = options.state?.toUpperCase() ?? "";
        if (state !== "" && !Object.hasOwn(JobState, state)) {
          throw new UsageError(
            `--state must be running, succeeded, failed or cancelled, got ${JSON.stringify(options.state)}`,
          );
        }
        // The driver ends a page early when its jobs are big: follow its tokens to the limit.
        const page = await followPages(async (pageToken, want) => {
          const reply = await client.listJobs({ state, app: options.app ?? "", limit: want, pageToken });
          return { items: reply.jobs, next: reply.nextPageToken };
        }, options.limit ?? 50);
        if (options.json) console.log(JSON.stringify(page.map(jobJson), null, 2));
        else if (page.length === 0) console.log("no jobs");
        else console.log(jobsTable(page));
      }),
    );

  addDriverOptions(jobs.command("show"))
    .description("a job's tasks, attempts, counters and events")
    .argument("<JOB_ID>", "the job", parseJobId)
    .option("--all", "every event on a line of its own, rather than runs of one kind grouped")
    .option("--json", "print JSON (every event)")
    .action((jobId: number, options: { driver?: string; all?: boolean; json?: boolean }) =>
      withClient(options, env, async (client) => {
        const detail = await client.getJob(jobId);
        console.log(
          options.json ? JSON.stringify(jobDetailJson(detail), null, 2) : jobDetailText(detail, options.all),
        );
      }),
    );

  addDriverOptions(jobs.command("wait"))
    .description("follow a job with progress bars; exit 0 on success, 1 on failure or cancel")
    .argument("<JOB_ID>", "the job", parseJobId)
    .option(
      "--timeout <duration>",
      `stop waiting after this long, such as 90s or 10m (the job goes on); a driver that does not answer is tried for ${UNREACHABLE_LIMIT_MS / 1000}s without it`,
      parseDuration("--timeout"),
    )
    .action((jobId: number, options: { driver?: string; timeout?: number }) =>
      withClient(options, env, async (client) => {
        reportOutcome(await waitWithProgress(client, jobId, options.timeout));
      }),
    );

  addDriverOptions(jobs.command("cancel"))
    .description("cancel a running job")
    .argument("<JOB_ID>", "the job", parseJobId)
    .action((jobId: number, options: { driver?: string }) =>
      withClient(options, env, async (client) => {
        const job = await client.cancelJob(jobId);
        console.log(`job ${job.id} ${job.state}`);
      }),
    );

  addStatusCommand(program, env);
  const workers = program.command("workers").description("workers known to the driver");
  addDriverOptions(workers.command("list"))
    .description(
      "each worker's address, state, last heartbeat and running attempts: those alive, and those that left in the last 10 minutes",
    )
    .option("--all", "also the workers that left long ago")
    .option("--json", "print JSON")
    .action((options: { driver?: string; all?: boolean; json?: boolean }) =>
      withClient(options, env, async (client) => {
        const workers = await followPages(async (pageToken) => {
          const reply = await client.listWorkers({ all: options.all ?? false, pageToken });
          return { items: reply.workers, next: reply.nextPageToken };
        });
        if (options.json) console.log(JSON.stringify(workers.map(workerJson), null, 2));
        else if (workers.length === 0) console.log("no workers");
        else console.log(workersTable(workers));
      }),
    );
}

/**
 * `mr status`: the driver's health, its live workers and running jobs. Exits 1 unless the
 * driver is SERVING.
 */
function addStatusCommand(program: Command, env: NodeJS.ProcessEnv): void {
  addDriverOptions(program.command("status"))
    .description(
      "the driver's health (SERVING once it reaches Redis and has recovered), live workers, running jobs",
    )
    .option("--json", "print JSON")
    .action((options: DriverFlags & { json?: boolean }) =>
      withClient(options, env, async (client) => {
        const health = await client.checkHealth();
        const workers = await followPages(async (pageToken) => {
          const reply = await client.listWorkers({ pageToken });
          return { items: reply.workers, next: reply.nextPageToken };
        });
        const running = await followPages(async (pageToken) => {
          const reply = await client.listJobs({ state: "running", limit: 1000, pageToken });
          return { items: reply.jobs, next: reply.nextPageToken };
        });
        const alive = workers.filter((worker) => worker.state === "ALIVE");
        const status = {
          driver: client.address,
          health,
          workers: alive.length,
          slots: alive.reduce((sum, worker) => sum + worker.slots, 0),
          slotsBusy: alive.reduce((sum, worker) => sum + worker.runningAttempts.length, 0),
          runningJobs: running.map((job) => job.id),
        };
        if (options.json) console.log(JSON.stringify(status, null, 2));
        else {
          const why =
            health === "SERVING" ? "" : " (it cannot reach Redis, or is still recovering after a start)";
          console.log(`driver   ${status.driver}: ${health}${why}`);
          console.log(
            `workers  ${status.workers} alive, running ${status.slotsBusy} attempts in ${status.slots} slot${status.slots === 1 ? "" : "s"}`,
          );
          console.log(
            `jobs     ${running.length} running${running.length > 0 ? `: ${status.runningJobs.join(", ")}` : ""}`,
          );
        }
        if (health !== "SERVING") process.exitCode = 1;
      }),
    );
}

/** The items of page after page, each asked for with the last one's token, up to `limit`. */
async function followPages<T>(
  page: (token: string, want: number) => Promise<{ items: T[]; next: string }>,
  limit = Infinity,
): Promise<T[]> {
  const items: T[] = [];
  let token = "";
  do {
    const reply = await page(token, limit - items.length);
    items.push(...reply.items);
    token = reply.next;
  } while (token !== "" && items.length < limit);
  return items;
}
