/** Wires the driver together: store, queue, core and gRPC services, liveness and recovery. */
import { Server } from "@grpc/grpc-js";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type { Logger } from "pino";
import type { DriverConfig } from "../config.js";
import { toError } from "../errors.js";
import { JobServiceService, TaskServiceService } from "../gen/mapreduce.js";
import { listen, shutdown } from "../grpc.js";
import { openDb } from "../store/db.js";
import { listJobsWithOutputToFinish } from "../store/jobs.js";
import { Dispatcher } from "./dispatcher.js";
import { JobEffects } from "./jobEffects.js";
import { createJobService } from "./jobService.js";
import { LivenessMonitor } from "./livenessMonitor.js";
import { BullmqTaskQueue } from "./queue.js";
import { extendRunningLeases, reconcileQueue, resumeAfterRestart } from "./recovery.js";
import { createTaskService } from "./taskService.js";
import { GroupCommit } from "../store/groupCommit.js";

export interface Driver {
  /** The address the gRPC server is bound to. */
  address: string;
  close(): Promise<void>;
}

export async function startDriver(config: DriverConfig, log: Logger): Promise<Driver> {
  mkdirSync(dirname(config.dbPath), { recursive: true });
  const db = openDb(config.dbPath);
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
  const commits = new GroupCommit(db);
  const dispatcher = new Dispatcher(commits, db, queue, config.pollWaitMs, log);
  const effects = new JobEffects(db, queue, dispatcher, log);
  const liveness = new LivenessMonitor(db, effects, config, log);
  resumeAfterRestart(db, config.workerTimeoutMs, Date.now());
  // A job that ended just before the last driver stopped may still lack its _SUCCESS.
  for (const job of listJobsWithOutputToFinish(db)) effects.finishOutput(job);

  const reconcile = async (reason: string): Promise<void> => {
    if (!queue.isConnected()) return;
    try {
      if ((await reconcileQueue(db, queue, reason, log)) > 0) dispatcher.wake();
    } catch (err) {
      log.error({ err: toError(err).message }, "could not rebuild the queue");
    }
  };
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
    })();
  });
  // A flushed Redis, or an entry lost between a commit and its queue call, is found here.
  const reconcileTimer = setInterval(
    () => void reconcile("tasks missing from the queue"),
    config.reconcileMs,
  );
  liveness.start();

  const stopBackground = async (): Promise<void> => {
    clearInterval(reconcileTimer);
    liveness.stop();
    await queue.close();
  };
  const server = new Server();
  const deps = { db, commits, queue, dispatcher, effects, config, log };
  server.addService(JobServiceService, createJobService(deps));
  server.addService(TaskServiceService, createTaskService(deps));
  let address: string;
  try {
    address = await listen(server, config.listen);
  } catch (err) {
    await stopBackground();
    db.close();
    throw err;
  }
  log.info({ address, db: config.dbPath, redis: config.redisUrl }, "driver listening");
  return {
    address,
    async close() {
      await shutdown(server, 1000);
      await effects.drain();
      await stopBackground();
      db.close();
    },
  };
}
