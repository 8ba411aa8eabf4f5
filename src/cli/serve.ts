/** `mr driver` and `mr worker`: the two long-running processes. */
import type { Command } from "commander";
import { driverAddress, resolveDriverConfig, resolveWorkerConfig } from "../config.js";
import { startDriver } from "../driver/driver.js";
import { createLogger } from "../log.js";
import { loadApps } from "../worker/apps.js";
import { MrWorker } from "../worker/worker.js";
import { onShutdownSignal, parseBytes, parsePositiveInt } from "./options.js";

export function addServeCommands(program: Command, env: NodeJS.ProcessEnv): void {
  program
    .command("driver")
    .description(
      "run the driver: the gRPC server that keeps jobs in SQLite and schedules tasks through Redis",
    )
    .option("--listen <host:port>", "where to serve gRPC (default 127.0.0.1:50051)")
    .option("--db <file>", "the SQLite database (default $MR_HOME/driver.db)")
    .option("--redis <url>", "Redis for the task queue (default $MR_REDIS_URL or redis://127.0.0.1:6379)")
    .option("--queue-prefix <prefix>", "Redis key prefix of the queue (default mr)")
    .option(
      "--worker-timeout <ms>",
      "a lease not extended for this long expires (default 5000)",
      parsePositiveInt("--worker-timeout"),
    )
    .option(
      "--max-attempts <n>",
      "failed attempts before a task and its job fail (default 4)",
      parsePositiveInt("--max-attempts"),
    )
    .action(async (options: Record<string, unknown>) => {
      const config = resolveDriverConfig(
        {
          listen: options.listen,
          dbPath: options.db,
          redisUrl: options.redis,
          queuePrefix: options.queuePrefix,
          workerTimeoutMs: options.workerTimeout,
          maxAttempts: options.maxAttempts,
        },
        env,
      );
      const driver = await startDriver(config, createLogger("driver", env));
      console.log(`mr driver listening on ${driver.address}`);
      onShutdownSignal(() => driver.close());
    });

  program
    .command("worker")
    .description("run a worker: it pulls tasks from the driver and serves its map output to reducers")
    .requiredOption("--port <n>", "port of this worker's shuffle service (0 picks a free one)")
    .option("--driver <host:port>", "the driver (default $MR_DRIVER or 127.0.0.1:50051)")
    .option("--data-dir <dir>", "where map output is kept (default $MR_HOME/worker-<port>)")
    .option(
      "--sort-buffer <size>",
      "map output buffered before a spill to disk (default 64MiB)",
      parseBytes("--sort-buffer"),
    )
    .action(async (options: Record<string, unknown>) => {
      const config = resolveWorkerConfig(
        {
          port: options.port,
          driver: driverAddress(options.driver as string | undefined, env),
          dataDir: options.dataDir,
          sortBufferBytes: options.sortBuffer,
          appsDir: options.appsDir,
        },
        env,
      );
      const worker = new MrWorker(config, await loadApps(config.appsDir), createLogger("worker", env));
      onShutdownSignal(() => worker.stop());
      await worker.start();
      console.log(`mr worker listening on ${worker.address}, driver ${config.driver}`);
    });
}
