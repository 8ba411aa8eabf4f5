/** `mr driver` and `mr worker`: the two long-running processes. */
import { Option, type Command } from "commander";
import { DEFAULT_SLOTS, driverAddress, resolveDriverConfig, resolveWorkerConfig } from "../config.js";
import { LOG_FORMATS, createLogger, type LogFormat } from "../log.js";
import { loadApps } from "../worker/apps.js";
import { UsageError } from "./errors.js";
import {
  collect,
  onShutdownSignal,
  parseNonNegativeInt,
  parseNumberRange,
  parsePort,
  parsePositiveInt,
  s3EndpointOption,
} from "./options.js";

export function addServeCommands(program: Command, env: NodeJS.ProcessEnv): void {
  program
    .command("driver")
    .description(
      "run the driver: the gRPC server that keeps jobs in SQLite and schedules tasks through Redis",
    )
    .option("--listen <host:port>", "where to serve gRPC (default 127.0.0.1:50051)")
    .option(
      "--http <host:port>",
      "where to serve the web UI, the JSON API, /metrics and /healthz, or off (default 127.0.0.1 and the gRPC port + 1)",
    )
    .option("--db <file>", "the SQLite database (default $MR_HOME/driver.db)")
    .option("--redis <url>", "Redis for the task queue (default $MR_REDIS_URL or redis://127.0.0.1:6379)")
    .option("--queue-prefix <prefix>", "Redis key prefix of the queue (default mr)")
    .option(
      "--worker-timeout <ms>",
      "a worker silent this long is lost; its tasks run again (default 5000; longer than a heartbeat interval)",
      parsePositiveInt("--worker-timeout"),
    )
    .option(
      "--heartbeat-interval <ms>",
      "how often workers heartbeat, as the driver tells them when they register (default 1000)",
      parsePositiveInt("--heartbeat-interval"),
    )
    .addOption(
      valueOption(
        "--no-worker-timeout <ms>",
        "a job whose app no live worker offers fails after this long (default 300000)",
        parsePositiveInt("--no-worker-timeout"),
      ),
    )
    .option(
      "--max-attempts <n>",
      "failed attempts before a task and its job fail (default 4)",
      parsePositiveInt("--max-attempts"),
    )
    .option(
      "--max-lost-attempts <n>",
      "attempts of one task that may be lost with their workers before the task and its job fail (default 20)",
      parsePositiveInt("--max-lost-attempts"),
    )
    .option(
      "--max-failures-per-worker <n>",
      "a job's attempts that may fail on one worker before the job gives it no more tasks; 0 never (default 3)",
      parseNonNegativeInt("--max-failures-per-worker"),
    )
    .option(
      "--exclude-for <ms>",
      "a worker that two jobs excluded gets no task of any job for this long (default 600000)",
      parsePositiveInt("--exclude-for"),
    )
    .option("--no-speculation", "never start backup attempts of straggling tasks (default: start them)")
    .option(
      "--speculation-quantile <q>",
      "the share of a phase's tasks that must have committed before its stragglers get backups (default 0.75)",
      parseNumberRange("--speculation-quantile", 0.01, 1),
    )
    .option(
      "--speculation-multiplier <x>",
      "a task running this many times its phase's median is a straggler (default 1.5)",
      parseNumberRange("--speculation-multiplier", 1, 1000),
    )
    .option(
      "--speculation-min-runtime <ms>",
      "and running at least this long (default 1000)",
      parseNonNegativeInt("--speculation-min-runtime"),
    )
    .option(
      "--lease <ms>",
      "a queue lease not extended this long expires: the stalled-task backstop (default 30000)",
      parsePositiveInt("--lease"),
    )
    .option(
      "--reconcile-interval <ms>",
      "how often the queue is checked against SQLite and repaired (default 5000)",
      parsePositiveInt("--reconcile-interval"),
    )
    .option("--client-token-file <file>", "a file holding the secret clients must send (default none)")
    .option("--worker-token-file <file>", "a file holding the secret workers must send (default none)")
    .option(
      "--input-root <dir>",
      "jobs may read inputs only under this directory (repeatable; default anywhere, loopback only)",
      collect,
    )
    .option(
      "--output-root <dir>",
      "jobs may write outputs only under this directory (repeatable; default anywhere, loopback only)",
      collect,
    )
    .option("--insecure", "listen beyond loopback without secrets or roots, knowingly")
    .option(
      "--takeover",
      "take the database from a driver that still holds it but is known to be gone (it stops if it is not)",
    )
    .option("--tls-cert <file>", "serve TLS with this certificate (PEM; default $MR_TLS_CERT)")
    .option("--tls-key <file>", "the key of --tls-cert (default $MR_TLS_KEY)")
    .option("--tls-ca <file>", "ask every client for a certificate this CA signed (default $MR_TLS_CA)")
    .addOption(s3EndpointOption())
    .addOption(logFormatOption())
    .action(async (options: Record<string, unknown>) => {
      const config = resolveDriverConfig(
        {
          listen: options.listen,
          http: options.http,
          dbPath: options.db,
          redisUrl: options.redis,
          queuePrefix: options.queuePrefix,
          workerTimeoutMs: options.workerTimeout,
          heartbeatMs: options.heartbeatInterval,
          noWorkerTimeoutMs: options.noWorkerTimeout,
          maxAttempts: options.maxAttempts,
          maxLostAttempts: options.maxLostAttempts,
          maxFailuresPerWorker: options.maxFailuresPerWorker,
          excludeForMs: options.excludeFor,
          speculation: options.speculation,
          speculationQuantile: options.speculationQuantile,
          speculationMultiplier: options.speculationMultiplier,
          speculationMinRuntimeMs: options.speculationMinRuntime,
          leaseMs: options.lease,
          reconcileMs: options.reconcileInterval,
          clientTokenFile: options.clientTokenFile,
          workerTokenFile: options.workerTokenFile,
          insecure: options.insecure,
          takeover: options.takeover,
          inputRoots: options.inputRoot,
          outputRoots: options.outputRoot,
          tlsCert: options.tlsCert,
          tlsKey: options.tlsKey,
          tlsCa: options.tlsCa,
          s3Endpoint: options.s3Endpoint,
        },
        env,
      );
      // Loaded here, not at the top: BullMQ and SQLite would slow every other command's start.
      const { startDriver } = await import("../driver/driver.js");
      const driver = await startDriver(config, createLogger("driver", env, options.logFormat as LogFormat));
      if (driver.httpAddress !== undefined) {
        console.log(`mr driver web UI on http://${driver.httpAddress}/ (metrics at /metrics)`);
      }
      console.log(`mr driver listening on ${driver.address}`);
      onShutdownSignal(() => driver.close());
      void driver.lost.then((reason) => {
        console.error(`mr: ${reason}`);
        process.exit(1);
      });
    });

  program
    .command("worker")
    .description("run a worker: it pulls tasks from the driver and serves its map output to reducers")
    .option(
      "--port <n>",
      "serve map output on 127.0.0.1:N (0 picks a free port): the shorthand of --listen on one host",
      parsePort("--port"),
    )
    .option(
      "--listen <host:port>",
      "serve map output on this address, which reducers on other hosts reach (port 0 picks a free one)",
    )
    .option(
      "--advertise <host:port>",
      "the address to register, where reducers must use another than --listen's (default the one bound)",
    )
    .option("--driver <host:port>", "the driver (default $MR_DRIVER or 127.0.0.1:50051)")
    .option(
      "--token-file <file>",
      "a file holding the worker secret, for the driver and other workers (default $MR_TOKEN_FILE)",
    )
    .option("--insecure", "serve map output beyond loopback without a secret, knowingly")
    .option(
      "--tls-cert <file>",
      "this worker's certificate, served and shown to others (default $MR_TLS_CERT)",
    )
    .option("--tls-key <file>", "the key of --tls-cert (default $MR_TLS_KEY)")
    .option(
      "--tls-ca <file>",
      "the CA that signed the driver's and other workers' certificates (default $MR_TLS_CA)",
    )
    .option("--http <host:port>", "serve /metrics and /healthz here (default nowhere)")
    .option("--data-dir <dir>", "where map output is kept (default $MR_HOME/worker-<port>, the port bound)")
    .option("--apps-dir <dir>", "offer every DIR/NAME.mjs or DIR/NAME.js module as app NAME")
    .option(
      "--sort-buffer-mb <n>",
      "MiB of map output buffered before it is sorted and spilled to disk (default 64)",
      parsePositiveInt("--sort-buffer-mb"),
    )
    .option(
      "--slots <n>",
      `tasks run at once, each on a thread of its own with its own sort buffer (default ${DEFAULT_SLOTS}, the cores)`,
      parsePositiveInt("--slots"),
    )
    .option(
      "--task-timeout <ms>",
      "an attempt whose progress does not move for this long fails; the worker goes on (default 600000)",
      parsePositiveInt("--task-timeout"),
    )
    .option(
      "--drain-timeout <ms>",
      "on SIGTERM, how long running tasks get to finish before they are handed back (default 10000)",
      parseNonNegativeInt("--drain-timeout"),
    )
    .addOption(s3EndpointOption())
    .addOption(logFormatOption())
    .action(async (options: Record<string, unknown>) => {
      const config = resolveWorkerConfig(
        {
          listen: workerListen(options.port as number | undefined, options.listen as string | undefined),
          advertise: options.advertise,
          http: options.http,
          driver: driverAddress(options.driver as string | undefined, env),
          dataDir: options.dataDir,
          sortBufferBytes:
            options.sortBufferMb === undefined ? undefined : (options.sortBufferMb as number) * 1024 * 1024,
          appsDir: options.appsDir,
          slots: options.slots,
          drainTimeoutMs: options.drainTimeout,
          taskTimeoutMs: options.taskTimeout,
          tokenFile: options.tokenFile,
          insecure: options.insecure,
          tlsCert: options.tlsCert,
          tlsKey: options.tlsKey,
          tlsCa: options.tlsCa,
          s3Endpoint: options.s3Endpoint,
        },
        env,
      );
      const { MrWorker } = await import("../worker/worker.js");
      // A signal may come before the driver has answered the registration: it stops the worker then too.
      const stopRequested = new AbortController();
      const starting = MrWorker.start(
        config,
        await loadApps(config.appsDir),
        createLogger("worker", env, options.logFormat as LogFormat),
        stopRequested.signal,
      );
      onShutdownSignal(async (signal) => {
        stopRequested.abort();
        await (await starting).stop(signal);
      });
      const worker = await starting;
      if (stopRequested.signal.aborted) return;
      if (worker.httpAddress !== undefined)
        console.log(`mr worker metrics on http://${worker.httpAddress}/metrics`);
      console.log(`mr worker listening on ${worker.address}, driver ${config.driver}`);
    });
}

/** Where a worker listens: `--listen HOST:PORT`, or `--port N` for 127.0.0.1:N; one of them. */
function workerListen(port: number | undefined, listen: string | undefined): string {
  if ((port === undefined) === (listen === undefined)) {
    throw new UsageError("give --port N (on 127.0.0.1) or --listen HOST:PORT, one of them");
  }
  return listen ?? `127.0.0.1:${port}`;
}

/** `--log-format json|pretty`: pretty lines on a terminal, JSON otherwise, by default. */
function logFormatOption(): Option {
  return new Option(
    "--log-format <format>",
    "log lines as JSON or pretty (default pretty on a terminal, else json)",
  ).choices(LOG_FORMATS);
}

/**
 * An option that takes a value, even if its name starts with `no-` (commander would make
 * `--no-worker-timeout` the negation of `--worker-timeout`): its value is `noWorkerTimeout`.
 */
function valueOption(flags: string, description: string, parse: (value: string) => unknown): Option {
  const option = new Option(flags, description).argParser(parse);
  option.negate = false;
  return option;
}
