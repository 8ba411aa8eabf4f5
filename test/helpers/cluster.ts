import { openSync } from "node:fs";
import { join } from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { MR_BIN, spawnMr, type MrProcess } from "../../src/cli/processes.js";
import { uniquePrefix } from "./tmp.js";

const run = promisify(execFile);

export interface Cluster {
  dir: string;
  driver: MrProcess;
  workers: MrProcess[];
  env: NodeJS.ProcessEnv;
  startDriver(): Promise<MrProcess>;
  startWorker(): Promise<MrProcess>;
  stop(): Promise<void>;
}

/**
 * A real driver and real workers, as child processes, in `dir`: the driver's database and
 * every process's log live there. The driver listens on a fixed free port so that a restarted
 * driver is found at the same address.
 */
export async function startCluster(options: {
  dir: string;
  redisUrl: string;
  workers: number;
  driverArgs?: string[];
}): Promise<Cluster> {
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
    workers: [],
    async startDriver() {
      const driver = await spawnMr(
        [
          "driver",
          "--listen",
          `127.0.0.1:${driverPort}`,
          "--redis",
          options.redisUrl,
          "--queue-prefix",
          prefix,
          ...(options.driverArgs ?? []),
        ],
        { env: serverEnv(), stderr: log("driver") },
      );
      driverPort = Number(driver.address.split(":")[1]);
      env.MR_DRIVER = driver.address;
      cluster.driver = driver;
      return driver;
    },
    async startWorker() {
      const worker = await spawnMr(["worker", "--port", "0", "--data-dir", join(dir, `worker-${++starts}`)], {
        env: serverEnv(),
        stderr: log(`worker-${starts}`),
      });
      cluster.workers.push(worker);
      return worker;
    },
    async stop() {
      await Promise.all(cluster.workers.map((worker) => worker.stop()));
      await cluster.driver?.stop();
    },
  };
  await cluster.startDriver();
  for (let i = 0; i < options.workers; i++) await cluster.startWorker();
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
