/** Wires the driver together: store, queue, core and gRPC services. */
import { Server } from "@grpc/grpc-js";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type { Logger } from "pino";
import type { DriverConfig } from "../config.js";
import { toError } from "../errors.js";
import { JobServiceService, TaskServiceService } from "../gen/mapreduce.js";
import { listen, shutdown } from "../grpc.js";
import { openDb } from "../store/db.js";
import { Dispatcher } from "./dispatcher.js";
import { JobEffects } from "./jobEffects.js";
import { createJobService } from "./jobService.js";
import { TaskQueue } from "./queue.js";
import { reconcileQueue } from "./recovery.js";
import { createTaskService } from "./taskService.js";

export interface Driver {
  /** The address the gRPC server is bound to. */
  address: string;
  close(): Promise<void>;
}

export async function startDriver(config: DriverConfig, log: Logger): Promise<Driver> {
  mkdirSync(dirname(config.dbPath), { recursive: true });
  const db = openDb(config.dbPath);
  const queue = TaskQueue.open(
    {
      redisUrl: config.redisUrl,
      prefix: config.queuePrefix,
      lockDurationMs: config.workerTimeoutMs,
      maxAttempts: config.maxAttempts,
      retryBackoffMs: config.retryBackoffMs,
      maxStalledCount: config.maxLostAttempts,
    },
    log,
  );
  const dispatcher = new Dispatcher(db, queue, config.pollWaitMs, log);
  const effects = new JobEffects(queue, dispatcher, log);
  let firstConnection = true;
  queue.onReady(() => {
    const reason = firstConnection ? "driver started" : "redis reconnected";
    firstConnection = false;
    queue
      .checkEvictionPolicy()
      .catch((err: unknown) => log.warn({ err: toError(err).message }, "could not read redis config"));
    reconcileQueue(db, queue, reason, log)
      .then((restored) => restored > 0 && dispatcher.wake())
      .catch((err: unknown) => log.error({ err }, "could not rebuild the queue"));
  });

  const server = new Server();
  const deps = { db, queue, dispatcher, effects, config, log };
  server.addService(JobServiceService, createJobService(deps));
  server.addService(TaskServiceService, createTaskService(deps));
  let address: string;
  try {
    address = await listen(server, config.listen);
  } catch (err) {
    await queue.close();
    db.close();
    throw err;
  }
  log.info({ address, db: config.dbPath, redis: config.redisUrl }, "driver listening");
  return {
    address,
    async close() {
      await shutdown(server, 1000);
      await queue.close();
      db.close();
    },
  };
}
