/**
 * A whole cluster on this machine, as child processes: one driver and N workers on a Redis the
 * caller gives. The one launcher of `mr demo`, the benchmarks and the tests.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connectDriver, type DriverClient } from "./client.js";
import { spawnMr, type MrProcess } from "./processes.js";

export interface LocalClusterOptions {
  redisUrl: string;
  /** MR_HOME of every process: the driver's database, the workers' default data directories. */
  home: string;
  /** Workers started at once; more may be started later. */
  workers: number;
  /** Key prefix of the queue in Redis; default one of this cluster's own. */
  queuePrefix?: string;
  /** The environment of the processes, before MR_HOME; default this process's. */
  env?: NodeJS.ProcessEnv;
  driverArgs?: readonly string[];
  /** Arguments of the `n`th worker started (1, 2, …). */
  workerArgs?: (n: number) => readonly string[];
  /** Where a process's stderr (its JSON log) goes: `driver`, `worker-1`, …; default "ignore". */
  logTo?: (name: string) => number | "ignore";
  /** MR_LOG_LEVEL of the processes, not of `mr` commands run in `env`. */
  logLevel?: string;
  /**
   * Secrets for both roles, made afresh in `home` (mode 0600): the driver asks for them, the
   * workers send theirs, and `env` (MR_TOKEN_FILE) and `client` carry the client's. Default off.
   */
  tokens?: boolean;
  /**
   * TLS for every connection: the driver and the workers serve this certificate and ask for
   * one the CA signed; `env` (MR_TLS_*) and `client` use it too. Default none.
   */
  tls?: { cert: string; key: string; ca: string };
}

export class LocalCluster {
  /** The driver as last started. */
  driver!: MrProcess;
  readonly workers: MrProcess[] = [];
  /** A client of the driver; it follows the driver across restarts, at the same address. */
  client!: DriverClient;
  /** The environment for `mr` commands against this cluster: MR_DRIVER and MR_HOME. */
  readonly env: NodeJS.ProcessEnv;
  private driverPort = 0;
  private httpPort = 0;
  private started = 0;
  /** Set while dead workers are replaced (replaceDeadWorkers). */
  private stopReplacing: (() => Promise<void>) | undefined;
  private readonly queuePrefix: string;
  /** The files of the two roles' secrets, when the cluster has them. */
  readonly tokenFiles: { client: string; worker: string } | undefined;

  private constructor(private readonly options: LocalClusterOptions) {
    this.env = { ...(options.env ?? process.env), MR_HOME: options.home };
    delete this.env.MR_DRIVER;
    for (const name of ["MR_TOKEN_FILE", "MR_TLS_CERT", "MR_TLS_KEY", "MR_TLS_CA"]) delete this.env[name];
    if (options.logLevel !== undefined) delete this.env.MR_LOG_LEVEL;
    if (options.tokens) {
      mkdirSync(options.home, { recursive: true });
      this.tokenFiles = {
        client: join(options.home, "client.token"),
        worker: join(options.home, "worker.token"),
      };
      for (const file of Object.values(this.tokenFiles)) {
        writeFileSync(file, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
      }
      this.env.MR_TOKEN_FILE = this.tokenFiles.client;
    }
    if (options.tls) {
      Object.assign(this.env, {
        MR_TLS_CERT: options.tls.cert,
        MR_TLS_KEY: options.tls.key,
        MR_TLS_CA: options.tls.ca,
      });
    }
    this.queuePrefix = options.queuePrefix ?? `mr-${process.pid}-${Date.now().toString(36)}`;
  }

  /** Starts the driver, then the workers one by one; on a failure, stops what it started. */
  static async start(options: LocalClusterOptions): Promise<LocalCluster> {
    const cluster = new LocalCluster(options);
    try {
      await cluster.startDriver();
      for (let i = 0; i < options.workers; i++) await cluster.startWorker();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** Starts the driver; after the first time, on the address it had, so that all find it again. */
  async startDriver(): Promise<MrProcess> {
    // Both ports picked afresh the first time, and kept after, so that a restart keeps its addresses.
    const args = [
      "driver",
      "--listen",
      `127.0.0.1:${this.driverPort}`,
      "--http",
      `127.0.0.1:${this.httpPort}`,
      "--redis",
      this.options.redisUrl,
    ];
    if (this.tokenFiles) {
      args.push("--client-token-file", this.tokenFiles.client, "--worker-token-file", this.tokenFiles.worker);
    }
    const driver = await spawnMr(
      [...args, "--queue-prefix", this.queuePrefix, ...(this.options.driverArgs ?? [])],
      {
        env: this.processEnv(),
        stderr: this.options.logTo?.("driver") ?? "ignore",
      },
    );
    if (this.driverPort === 0) {
      this.driverPort = Number(driver.address.slice(driver.address.lastIndexOf(":") + 1));
      this.httpPort = Number(driver.httpAddress?.slice(driver.httpAddress.lastIndexOf(":") + 1) ?? 0);
      this.env.MR_DRIVER = driver.address;
      this.client = connectDriver({ driver: driver.address }, this.env);
    }
    this.driver = driver;
    return driver;
  }

  /** Starts one more worker; `env` adds to its environment (a test app may read it: a slow host, a bad one). */
  async startWorker(env: NodeJS.ProcessEnv = {}): Promise<MrProcess> {
    const n = ++this.started;
    const args = ["worker", "--port", "0", "--driver", this.env.MR_DRIVER!];
    if (this.tokenFiles) args.push("--token-file", this.tokenFiles.worker);
    const worker = await spawnMr([...args, ...(this.options.workerArgs?.(n) ?? [])], {
      env: { ...this.processEnv(), ...env },
      stderr: this.options.logTo?.(`worker-${n}`) ?? "ignore",
    });
    this.workers.push(worker);
    return worker;
  }

  /** The worker process serving at `address`. */
  workerAt(address: string): MrProcess {
    const worker = this.workers.find((candidate) => candidate.address === address);
    if (!worker) throw new Error(`no worker of this cluster serves ${address}`);
    return worker;
  }

  /** Stops the workers (each drains), then the driver. */
  /**
   * From now on, starts a new worker each time one exits (for tests and benchmarks that kill
   * them), until the returned function is called, which waits for the starts under way.
   */
  replaceDeadWorkers(): () => Promise<void> {
    let replacing = true;
    const starting = new Set<Promise<unknown>>();
    const watch = (worker: MrProcess): void => {
      worker.child.once("exit", () => {
        if (!replacing) return;
        const start = this.startWorker().then(watch, () => undefined);
        starting.add(start);
        void start.finally(() => starting.delete(start));
      });
    };
    this.workers.filter((worker) => worker.running()).forEach(watch);
    const stopReplacing = async (): Promise<void> => {
      replacing = false;
      await Promise.allSettled([...starting]);
    };
    this.stopReplacing = stopReplacing;
    return stopReplacing;
  }

  /** SIGKILLs the worker started longest ago that still runs; false if none does. */
  async killOldestWorker(): Promise<boolean> {
    const oldest = this.workers.find((worker) => worker.running());
    await oldest?.stop("SIGKILL");
    return oldest !== undefined;
  }

  async stop(): Promise<void> {
    await this.stopReplacing?.();
    this.client?.close();
    await Promise.all(this.workers.map((worker) => worker.stop()));
    await this.driver?.stop();
  }

  /** The driver's web UI, `http://127.0.0.1:PORT`, unless its arguments turned HTTP off. */
  get httpUrl(): string | undefined {
    return this.driver.httpAddress === undefined ? undefined : `http://${this.driver.httpAddress}`;
  }

  /** Where the driver keeps its database. */
  get dbPath(): string {
    return join(this.options.home, "driver.db");
  }

  private processEnv(): NodeJS.ProcessEnv {
    const { logLevel } = this.options;
    return logLevel === undefined ? this.env : { ...this.env, MR_LOG_LEVEL: logLevel };
  }
}
