/** Wires the driver together: store, queue, core and gRPC services, liveness and recovery. */
import { Server } from "@grpc/grpc-js";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type { Logger } from "pino";
import { TokenCheck, isLoopback, readTokenFile } from "../auth.js";
import type { DriverConfig } from "../config.js";
import { InvalidArgumentError, toError } from "../errors.js";
import { LIMITS } from "../limits.js";
import { Roots } from "../roots.js";
import { readTls, serverCredentials } from "../tls.js";
import { JobServiceService, TaskServiceService } from "../gen/mapreduce.js";
import { addService, listen, shutdown } from "../grpc.js";
import { openDb } from "../store/db.js";
import { Dispatcher } from "./dispatcher.js";
import { DriverLease } from "./driverLease.js";
import { JobEffects } from "./jobEffects.js";
import { createJobService } from "./jobService.js";
import { LivenessMonitor } from "./livenessMonitor.js";
import { BullmqTaskQueue } from "./queue.js";
import { extendRunningLeases, reconcileQueue, resumeAfterRestart } from "./recovery.js";
import { Speculator } from "./speculation.js";
import { createTaskService } from "./taskService.js";
import { UnservedJobs } from "./unservedJobs.js";
import { GroupCommit } from "../store/groupCommit.js";
import { Health } from "../health.js";
import type { HttpServer } from "../http.js";
import { startDriverHttp } from "./http.js";
import { JobWatches } from "./jobWatch.js";
import { DriverMetrics } from "./metrics.js";

/** How often the health status is brought up to date with Redis, in ms. */
const HEALTH_CHECK_MS = 500;
const JOB_SERVICE = "mr.v1.JobService";
const TASK_SERVICE = "mr.v1.TaskService";

export interface Driver {
  /** The address the gRPC server is bound to. */
  address: string;
  /** Where the web UI, the JSON API and /metrics are served; undefined with `--http off`. */
  httpAddress: string | undefined;
  /** Settles once another driver has taken the database: this one has stopped, for the reason given. */
  lost: Promise<string>;
  close(): Promise<void>;
}

/**
 * The secrets of the two roles, from their files: both or neither, and not the same one. A
 * driver that listens beyond loopback needs them, unless it is told `insecure`.
 */
function readDriverTokens(config: DriverConfig, log: Logger): TokenCheck {
  const { clientTokenFile, workerTokenFile } = config;
  if ((clientTokenFile === undefined) !== (workerTokenFile === undefined)) {
    throw new InvalidArgumentError(
      "give both --client-token-file and --worker-token-file, or neither (each role has its own secret)",
    );
  }
  if (clientTokenFile === undefined || workerTokenFile === undefined) {
    if (!listensOnLoopback(config) && !config.insecure) {
      throw new InvalidArgumentError(
        `listening on ${config.listen} lets anyone who reaches it run jobs and report tasks (give --client-token-file and --worker-token-file, or --insecure if that is intended)`,
      );
    }
    log.warn({ listen: config.listen }, "no secrets: any process that reaches the driver may call it");
    return new TokenCheck({}, log);
  }
  const client = readTokenFile(clientTokenFile, "--client-token-file");
  const worker = readTokenFile(workerTokenFile, "--worker-token-file");
  if (client === worker) {
    throw new InvalidArgumentError(
      "the client and worker secrets are the same (give each role its own, so a client cannot act as a worker)",
    );
  }
  return new TokenCheck({ client, worker }, log);
}

/**
 * The directories jobs may read and write, as real paths. A driver that listens beyond
 * loopback needs both kinds, unless it is told `insecure`; without them, jobs may touch any
 * file the workers' user can, which the log says.
 */
function readRoots(config: DriverConfig, log: Logger): Roots {
  const roots = Roots.resolve(config.inputRoots, config.outputRoots);
  if (roots.input.length > 0 && roots.output.length > 0) {
    log.info({ inputRoots: roots.input, outputRoots: roots.output }, "jobs confined to their roots");
    return roots;
  }
  const missing = roots.input.length === 0 ? "--input-root" : "--output-root";
  if (!listensOnLoopback(config) && !config.insecure) {
    throw new InvalidArgumentError(
      `listening on ${config.listen} without ${missing} lets any client name any file the workers can reach (give --input-root and --output-root, or --insecure if that is intended)`,
    );
  }
  log.warn(
    { inputRoots: roots.input, outputRoots: roots.output },
    `no ${missing}: jobs may ${missing === "--input-root" ? "read" : "write"} any path the workers' user can`,
  );
  return roots;
}

/**
 * The web UI, the API and /metrics answer anyone who reaches them, without a secret: beyond
 * loopback, only with `insecure`.
 */
function checkHttpListen(config: DriverConfig): void {
  if (config.http === null || config.insecure) return;
  if (!isLoopback(config.http.slice(0, config.http.lastIndexOf(":")))) {
    throw new InvalidArgumentError(
      `--http ${config.http}: the web UI, its API and /metrics need no secret, so anyone who reaches them could read every job (serve them on 127.0.0.1 behind a proxy that checks who asks, or give --insecure if that is intended)`,
    );
  }
}

function listensOnLoopback(config: DriverConfig): boolean {
  return isLoopback(config.listen.slice(0, config.listen.lastIndexOf(":")));
}

export async function startDriver(config: DriverConfig, log: Logger): Promise<Driver> {
  const tokens = readDriverTokens(config, log);
  const roots = readRoots(config, log);
  checkHttpListen(config);
  const tls = readTls({ cert: config.tlsCert, key: config.tlsKey, ca: config.tlsCa });
  const credentials = serverCredentials(tls);
  mkdirSync(dirname(config.dbPath), { recursive: true });
  const db = openDb(config.dbPath);
  let lease: DriverLease;
  try {
    lease = await DriverLease.acquire(
      db,
      { address: config.listen, dbPath: config.dbPath, takeover: config.takeover },
      log,
    );
  } catch (err) {
    db.close();
    throw err;
  }
  const queue = BullmqTaskQueue.open(
    {
      redisUrl: config.redisUrl,
      prefix: config.queuePrefix,
      lockDurationMs: config.leaseMs,
      maxAttempts: config.maxAttempts,
      retryBackoffMs: config.retryBackoffMs,
      maxStalledCount: config.maxLostAttempts,
    },
    log,
  );
  // Set once the driver serves: a failed sync of the database stops it (see GroupCommit).
  let stopForDisk: ((err: Error) => void) | undefined;
  const commits = new GroupCommit(db, { onSyncFailed: (err) => stopForDisk?.(err) });
  const metrics = new DriverMetrics(db, queue);
  const speculator = new Speculator(db, commits, config, log);
  const dispatcher = new Dispatcher(commits, db, queue, config.pollWaitMs, log, speculator, metrics);
  const effects = new JobEffects(db, queue, dispatcher, log, roots, { endpoint: config.s3Endpoint });
  const watches = new JobWatches(db, effects);
  const liveness = new LivenessMonitor(db, effects, config, log);
  resumeAfterRestart(db, config.workerTimeoutMs, Date.now());
  // A job that ended just before the last driver stopped may still lack its _SUCCESS.
  effects.retryOutputs();

  // Never two checks at once: one that finds a check under way waits for it instead.
  let reconciling: Promise<void> | undefined;
  const reconcile = (reason: string): Promise<void> => {
    if (!queue.isConnected()) return Promise.resolve();
    reconciling ??= (async () => {
      try {
        const restored = await reconcileQueue(db, queue, reason, log, effects.enqueuingJobs());
        if (restored > 0) dispatcher.wake();
      } catch (err) {
        log.error({ err: toError(err).message }, "could not rebuild the queue");
      } finally {
        reconciling = undefined;
      }
    })();
    return reconciling;
  };
  // SERVING once the first connection to Redis has extended the leases and rebuilt the queue,
  // and while Redis is reachable.
  let recovered = false;
  const health = new Health([JOB_SERVICE, TASK_SERVICE]);
  const healthTimer = setInterval(() => health.set(recovered && queue.isConnected()), HEALTH_CHECK_MS);
  let firstConnection = true;
  queue.onReady(() => {
    const started = firstConnection;
    firstConnection = false;
    queue
      .checkEvictionPolicy()
      .catch((err: unknown) => log.warn({ err: toError(err).message }, "could not read redis config"));
    void (async () => {
      if (started) await extendRunningLeases(db, queue, log);
      await reconcile(started ? "driver started" : "redis reconnected");
      if (started) recovered = true;
      health.set(recovered && queue.isConnected());
    })();
  });
  // A flushed Redis, or an entry lost between a commit and its queue call, is found here.
  // So is an output in object storage that could not be committed (the store was down).
  const reconcileTimer = setInterval(() => {
    void reconcile("tasks missing from the queue");
    effects.retryOutputs();
  }, config.reconcileMs);
  liveness.start();
  speculator.start();
  const unserved = new UnservedJobs(db, effects, config.noWorkerTimeoutMs, log);
  unserved.start();

  const stopBackground = async (): Promise<void> => {
    clearInterval(reconcileTimer);
    clearInterval(healthTimer);
    speculator.stop();
    unserved.stop();
    liveness.stop();
    await queue.close();
  };
  const server = new Server({ "grpc.max_receive_message_length": LIMITS.driverMessageBytes });
  const deps = { db, watches, commits, queue, dispatcher, effects, config, roots, log };
  addService(server, JobServiceService, tokens.guard(JobServiceService, createJobService(deps), "client"));
  addService(server, TaskServiceService, tokens.guard(TaskServiceService, createTaskService(deps), "worker"));
  health.addTo(server);
  let address: string;
  let http: HttpServer | undefined;
  try {
    address = await listen(server, config.listen, credentials);
    if (config.http !== null) {
      http = await startDriverHttp(config.http, { db, watches, health, metrics, log });
    }
  } catch (err) {
    await shutdown(server, 0);
    await stopBackground();
    lease.release();
    db.close();
    throw err;
  }
  lease.setAddress(address);
  log.info(
    {
      address,
      db: config.dbPath,
      redis: withoutPassword(config.redisUrl),
      tls: tls === undefined ? "off" : tls.ca ? "mutual" : "on",
      http: http?.address ?? "off",
    },
    "driver listening",
  );
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      lease.stop();
      await http?.close();
      await shutdown(server, 1000);
      await effects.drain();
      await stopBackground();
      lease.release();
      db.close();
    })());
  const lost = new Promise<string>((resolve) => {
    lease.start((by) => {
      const reason = `another driver took the database over${by ? ` (pid ${by.pid} on ${by.host}, listening on ${by.address})` : ""}; this one has stopped`;
      log.error({ by }, "driver lease lost: stopping");
      void close().then(() => resolve(reason));
    });
    stopForDisk = (err) => {
      log.fatal({ err: err.message }, "database sync failed: stopping");
      void close().then(() => resolve(`${err.message} (this driver has stopped)`));
    };
  });
  return { address, httpAddress: http?.address, lost, close };
}

/** A Redis URL fit for a log: its password, if it has one, left out. */
export function withoutPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password === "") return url;
    parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(a redis URL)";
  }
}
