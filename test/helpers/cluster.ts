import Database from "better-sqlite3";
import { execFile } from "node:child_process";
import { openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import type { DriverClient } from "../../src/cli/client.js";
import { LocalCluster } from "../../src/cli/cluster.js";
import { MR_BIN } from "../../src/cli/processes.js";
import type * as pb from "../../src/gen/mapreduce.js";
import { uniquePrefix } from "./tmp.js";

const run = promisify(execFile);

/** The test-only apps, such as `faulty`. */
export const FIXTURE_APPS = join(import.meta.dirname, "..", "fixtures", "apps");

export type Cluster = LocalCluster;

export interface ClusterOptions {
  dir: string;
  redisUrl: string;
  workers: number;
  driverArgs?: string[];
  workerArgs?: string[];
  /** Secrets for both roles; default on, so that every test runs as a deployment should. */
  tokens?: boolean;
  /** TLS for every connection (see LocalClusterOptions). */
  tls?: { cert: string; key: string; ca: string };
  /** The queue's key prefix in Redis; default one no other test uses. */
  queuePrefix?: string;
  /** Added to the environment of every process, and of `mr` commands. */
  env?: NodeJS.ProcessEnv;
  /**
   * Each worker's task slots: default 1, so that which worker runs what stays predictable;
   * "cores" leaves the worker its own default.
   */
  slots?: number | "cores";
}

/**
 * The shared LocalCluster, set up for tests in `dir`: the driver's database and every
 * process's log (at debug) live there, each worker has its own data directory, and workers
 * offer the fixture apps.
 */
export function startCluster(options: ClusterOptions): Promise<Cluster> {
  const { dir } = options;
  return LocalCluster.start({
    env: options.env && { ...process.env, ...options.env },
    redisUrl: options.redisUrl,
    home: join(dir, "home"),
    workers: options.workers,
    queuePrefix: options.queuePrefix ?? uniquePrefix(),
    driverArgs: options.driverArgs,
    workerArgs: (n) => [
      "--data-dir",
      join(dir, `worker-${n}`),
      "--apps-dir",
      FIXTURE_APPS,
      ...(options.slots === "cores" ? [] : ["--slots", String(options.slots ?? 1)]),
      ...(options.workerArgs ?? []),
    ],
    logTo: (name) => openSync(join(dir, `${name}.log`), "a"),
    logLevel: "debug",
    tokens: options.tokens ?? true,
    tls: options.tls,
  });
}

/** The secret of `role` in a cluster started with tokens. */
export function tokenOf(cluster: Cluster, role: "client" | "worker"): string {
  return readFileSync(cluster.tokenFiles![role], "utf8").trim();
}

/** A job's shuffle key, read from the driver's database as only the driver and workers know it. */
export function shuffleKeyOf(cluster: Cluster, jobId: number): string {
  const db = new Database(cluster.dbPath, { readonly: true });
  try {
    const row = db.prepare("SELECT shuffle_key AS key FROM jobs WHERE id = ?").get(jobId) as { key: string };
    return row.key;
  } finally {
    db.close();
  }
}

export interface MrResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real `mr` command and returns its exit code and output, whatever the code. */
export async function mr(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<MrResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [MR_BIN, ...args], { env, maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const failed = err as { code?: number; stdout?: string; stderr?: string };
    if (typeof failed.code !== "number") throw err;
    return { code: failed.code, stdout: failed.stdout ?? "", stderr: failed.stderr ?? "" };
  }
}

export interface RunningAttempt {
  task: pb.Task;
  attempt: pb.Attempt;
  worker: pb.Worker;
}

/** Waits until some attempt of a `kind` task of the job is RUNNING, and says where. */
export async function waitForRunningAttempt(
  client: DriverClient,
  jobId: number,
  kind: "MAP" | "REDUCE",
  timeoutMs = 30_000,
): Promise<RunningAttempt> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const detail = await client.getJob(jobId);
    for (const task of detail.tasks.filter((candidate) => candidate.kind === kind)) {
      const attempt = task.attempts.find((candidate) => candidate.state === "RUNNING");
      if (!attempt) continue;
      const { workers } = await client.listWorkers();
      const worker = workers.find((candidate) => candidate.id === attempt.workerId);
      if (worker) return { task, attempt, worker };
    }
    await sleep(50);
  }
  throw new Error(`no ${kind} attempt of job ${jobId} ran within ${timeoutMs} ms`);
}

/** Waits for the job to end and returns it. */
export async function waitForJobEnd(
  client: DriverClient,
  jobId: number,
  timeoutMs = 120_000,
): Promise<pb.JobDetail> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const detail = await client.getJob(jobId).catch(() => undefined); // the driver may be restarting
    if (detail && detail.job!.state !== "RUNNING") return detail;
    if (Date.now() > deadline) throw new Error(`job ${jobId} still running after ${timeoutMs} ms`);
    await sleep(200);
  }
}

/**
 * Every task committed exactly one attempt: the invariant of any run that succeeded. A map's
 * committed attempt may have left SUCCEEDED since, its output lost once every reduce held it
 * (a map-output-lost event says so); it was not run again.
 */
export function committedOnce(detail: pb.JobDetail): boolean {
  const lostHeld = new Set(
    detail.events
      .filter((event) => event.type === "map-output-lost")
      .map((event) => Number(/^map (\d+):/.exec(event.message)![1])),
  );
  return detail.tasks.every((task) => {
    const committed = task.attempts.filter((attempt) => attempt.state === "SUCCEEDED").length;
    return committed === 1 || (committed === 0 && task.kind === "MAP" && lostHeld.has(task.index));
  });
}

/** A job's counters by name, as numbers: every count a test makes is a safe integer. */
export function countersOf(detail: pb.JobDetail): Record<string, number> {
  return Object.fromEntries(detail.counters.map(({ name, value }) => [name, Number(value)]));
}
