import { execFile } from "node:child_process";
import { openSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { DriverClient } from "../../src/cli/client.js";
import { MR_BIN, spawnMr, type MrProcess } from "../../src/cli/processes.js";
import type * as pb from "../../src/gen/mapreduce.js";
import { uniquePrefix } from "./tmp.js";

const run = promisify(execFile);

/** The test-only apps, such as `faulty`. */
export const FIXTURE_APPS = join(import.meta.dirname, "..", "fixtures", "apps");

export interface Cluster {
  dir: string;
  driver: MrProcess;
  workers: MrProcess[];
  /** The environment for `mr` commands against this cluster (MR_DRIVER, MR_HOME). */
  env: NodeJS.ProcessEnv;
  client: DriverClient;
  startDriver(): Promise<MrProcess>;
  startWorker(): Promise<MrProcess>;
  /** The worker process serving at `address`. */
  workerAt(address: string): MrProcess;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  dir: string;
  redisUrl: string;
  workers: number;
  driverArgs?: string[];
  workerArgs?: string[];
}

/**
 * A real driver and real workers, as child processes, in `dir`: the driver's database and
 * every process's log live there. The driver listens on a fixed free port so that a restarted
 * driver is found at the same address. Workers offer the fixture apps.
 */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const { dir } = options;
  const env: NodeJS.ProcessEnv = { ...process.env, MR_HOME: join(dir, "home") };
  delete env.MR_DRIVER;
  delete env.MR_LOG_LEVEL;
  // The processes log everything to their files; the CLI runs in `env` print as users see it.
  const serverEnv = () => ({ ...env, MR_LOG_LEVEL: "debug" });
  const prefix = uniquePrefix();
  let driverPort = 0;
  let starts = 0;
  const log = (name: string) => openSync(join(dir, `${name}.log`), "a");
  const cluster: Cluster = {
    dir,
    env,
    driver: undefined as unknown as MrProcess,
    client: undefined as unknown as DriverClient,
    workers: [],
    async startDriver() {
      const args = ["driver", "--listen", `127.0.0.1:${driverPort}`, "--redis", options.redisUrl];
      const driver = await spawnMr([...args, "--queue-prefix", prefix, ...(options.driverArgs ?? [])], {
        env: serverEnv(),
        stderr: log("driver"),
      });
      if (driverPort === 0) {
        driverPort = Number(driver.address.split(":")[1]);
        env.MR_DRIVER = driver.address;
        cluster.client = new DriverClient(driver.address);
      }
      cluster.driver = driver;
      return driver;
    },
    async startWorker() {
      const n = ++starts;
      const args = [
        "worker",
        "--port",
        "0",
        "--data-dir",
        join(dir, `worker-${n}`),
        "--apps-dir",
        FIXTURE_APPS,
      ];
      const worker = await spawnMr([...args, ...(options.workerArgs ?? [])], {
        env: serverEnv(),
        stderr: log(`worker-${n}`),
      });
      cluster.workers.push(worker);
      return worker;
    },
    workerAt(address) {
      const worker = cluster.workers.find((candidate) => candidate.address === address);
      if (!worker) throw new Error(`no worker of this cluster serves ${address}`);
      return worker;
    },
    async stop() {
      cluster.client?.close();
      await Promise.all(cluster.workers.map((worker) => worker.stop()));
      await cluster.driver?.stop();
    },
  };
  try {
    await cluster.startDriver();
    for (let i = 0; i < options.workers; i++) await cluster.startWorker();
  } catch (err) {
    await cluster.stop(); // leave no process behind
    throw err;
  }
  return cluster;
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

/** Every task committed exactly one attempt: the invariant of any run that succeeded. */
export function committedOnce(detail: pb.JobDetail): boolean {
  return detail.tasks.every(
    (task) => task.attempts.filter((attempt) => attempt.state === "SUCCEEDED").length === 1,
  );
}
