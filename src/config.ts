/**
 * One typed, validated configuration per process: defaults < environment < flags, resolved
 * once into a frozen object and passed down. Nothing reads process.env after this.
 */
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { z } from "zod";
import { InvalidArgumentError } from "./errors.js";
import { DEFAULT_SPLIT_SIZE_BYTES } from "./mr/split.js";
import { DEFAULT_TUNABLES, resolveTunables, type EngineTunables } from "./mr/tunables.js";

export const DEFAULT_DRIVER_ADDRESS = "127.0.0.1:50051";
export const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";
/** As Hadoop's mapreduce.task.timeout: ten minutes without progress. */
export const DEFAULT_TASK_TIMEOUT_MS = 600_000;
/** The most task slots a worker or a local job may have. */
export const MAX_SLOTS = 64;
/**
 * The share of a job's maps that must commit before its reduces start fetching their output:
 * Hadoop's mapreduce.job.reduce.slowstart.completedmaps.
 */
export const DEFAULT_REDUCE_SLOWSTART = 0.05;

/** Task slots by default, for a worker as for `mr run --local`: one per core this process may use. */
export const DEFAULT_SLOTS = Math.min(availableParallelism(), MAX_SLOTS);

const address = z.string().regex(/^[\w.-]+:\d{1,5}$/, "must be HOST:PORT, such as 127.0.0.1:50051");
const positiveInt = z.coerce.number().int().positive();
/** An S3-compatible store's endpoint; unset, AWS S3 itself. */
const s3Endpoint = z
  .string()
  .regex(/^https?:\/\/[^/\s]+/, "must be an http:// or https:// URL, such as http://127.0.0.1:9000")
  .optional();

const driverSchema = z.object({
  /** Where the gRPC server listens. Default 127.0.0.1:50051. */
  listen: address.default(DEFAULT_DRIVER_ADDRESS),
  /** The SQLite file. Default $MR_HOME/driver.db. */
  dbPath: z.string().min(1),
  /** Default redis://127.0.0.1:6379, or $MR_REDIS_URL. */
  redisUrl: z
    .string()
    .regex(/^rediss?:\/\//, "must be a redis:// URL")
    .default(DEFAULT_REDIS_URL),
  /** Redis key prefix of the queue. Default "mr". */
  queuePrefix: z
    .string()
    .regex(/^[\w-]+$/)
    .default("mr"),
  /** How often workers heartbeat, in ms. Default 1000. */
  heartbeatMs: positiveInt.default(1000),
  /** A worker silent for this long is LOST, and its tasks run again, in ms. Default 5000. */
  workerTimeoutMs: positiveInt.default(5000),
  /**
   * A queue lease not extended for this long expires, and BullMQ's stalled checker hands the
   * task out again: the backstop for a driver that lost track. Long enough to outlast a
   * driver restart. In ms; default 30000.
   */
  leaseMs: positiveInt.default(30_000),
  /** How often the queue is checked against SQLite and repaired, in ms. Default 5000. */
  reconcileMs: positiveInt.default(5000),
  /** Failed attempts a task may have before the job fails. Default 4. */
  maxAttempts: positiveInt.default(4),
  /**
   * Failed attempts of one job on one worker before the job hands it no more tasks (see
   * src/driver/exclusions.ts); 0 never excludes. Default 3.
   */
  maxFailuresPerWorker: z.coerce.number().int().min(0).default(3),
  /**
   * How long a worker that several jobs excluded gets no task of any job, in ms. Default
   * 600000 (Spark's excludeOnFailure.timeout is an hour; a cluster of a few workers needs them sooner).
   */
  excludeForMs: positiveInt.default(600_000),
  /** First retry delay after a failed attempt, doubled each time, in ms. Default 1000. */
  retryBackoffMs: positiveInt.default(1000),
  /**
   * Attempts of one task that may be lost with their workers (or their leases) before the task
   * and its job fail: an app that kills its worker must not kill them all. Default 20.
   */
  maxLostAttempts: positiveInt.default(20),
  /**
   * A RUNNING job whose app no live worker offers fails after this long, naming the app, in ms.
   * Default 300000.
   */
  noWorkerTimeoutMs: positiveInt.default(300_000),
  /**
   * Speculative execution (src/driver/speculation.ts): a task running well past its phase's
   * median gets a backup attempt on another worker. Default on; a job can opt out.
   */
  speculation: z.boolean().default(true),
  /** The share of a phase's tasks committed before any of it is speculated. Default 0.75, Spark's. */
  speculationQuantile: z.coerce.number().gt(0).max(1).default(0.75),
  /** A task running this many times its phase's median is a straggler. Default 1.5, Spark's. */
  speculationMultiplier: z.coerce.number().min(1).default(1.5),
  /** ...and running at least this long, in ms. Default 1000. */
  speculationMinRuntimeMs: z.coerce.number().int().min(0).default(1000),
  /** How long PollTask waits for a task before answering "none yet", in ms. Default 5000. */
  pollWaitMs: positiveInt.default(5000),
  /** Split size when a submit names none, in bytes. Default 64 MiB. */
  defaultSplitSizeBytes: positiveInt.default(DEFAULT_SPLIT_SIZE_BYTES),
  /** A file holding the secret of the client role (`mr submit`, `mr jobs …`). Default none. */
  clientTokenFile: z.string().min(1).optional(),
  /** A file holding the secret of the worker role. Default none. */
  workerTokenFile: z.string().min(1).optional(),
  /** Take the database from a driver that still holds its lease, known to be gone. */
  takeover: z.boolean().default(false),
  /** Listen beyond loopback without secrets or roots, knowingly. Default false. */
  insecure: z.boolean().default(false),
  /**
   * Where the web UI, the JSON API and /metrics are served, HOST:PORT, or "off". Default
   * 127.0.0.1 and the gRPC port + 1 (a free port when gRPC's is 0).
   */
  http: z.union([z.literal("off"), address]).optional(),
  /** Directories under which job inputs may be, after symbolic links; none: anywhere. */
  inputRoots: z.array(z.string().min(1)).default([]),
  /** Directories under which job outputs may be written, after symbolic links; none: anywhere. */
  outputRoots: z.array(z.string().min(1)).default([]),
  /** PEM files of TLS: this driver's certificate and key, and the CA its clients' must come from. */
  tlsCert: z.string().min(1).optional(),
  tlsKey: z.string().min(1).optional(),
  tlsCa: z.string().min(1).optional(),
  /** The object store of s3:// inputs and outputs, when not AWS S3. Default $MR_S3_ENDPOINT. */
  s3Endpoint,
});
export type DriverConfig = Readonly<
  Omit<z.infer<typeof driverSchema>, "http"> & {
    /** Where HTTP is served; null: not at all. */
    http: string | null;
  }
>;

const workerSchema = z.object({
  /** Where the worker's shuffle service listens, HOST:PORT; port 0 picks a free one. */
  listen: address,
  /**
   * The address registered with the driver, which reducers on other hosts fetch from, when it
   * is not the one bound (NAT, a wildcard bind). Default: the address bound.
   */
  advertise: address.optional(),
  /** The driver's address. Default 127.0.0.1:50051, or $MR_DRIVER. */
  driver: address.default(DEFAULT_DRIVER_ADDRESS),
  /** Where map output is kept. Default $MR_HOME/worker-<port>, with the port bound. */
  dataDir: z.string().min(1).optional(),
  /** $MR_HOME, under which the default data directory goes. */
  home: z.string().min(1),
  /** A directory of app modules to offer beside the built-in apps. Default none. */
  appsDir: z.string().min(1).optional(),
  /** Map output buffered before a sort and spill, in bytes, per slot. Default 64 MiB. */
  sortBufferBytes: positiveInt.default(DEFAULT_TUNABLES.sortBufferBytes),
  /** A file holding the secret of the worker role, for the driver and other workers. Default none. */
  tokenFile: z.string().min(1).optional(),
  /** Serve map output beyond loopback without a secret, knowingly. Default false. */
  insecure: z.boolean().default(false),
  /** PEM files of TLS: this worker's certificate and key, and the CA the others' come from. */
  tlsCert: z.string().min(1).optional(),
  tlsKey: z.string().min(1).optional(),
  tlsCa: z.string().min(1).optional(),
  /** Where /metrics is served, HOST:PORT; default nowhere. */
  http: address.optional(),
  /** Tasks the worker runs at once, each on a thread of its own, as Hadoop's task slots. Default: the cores. */
  slots: z.coerce.number().int().min(1).max(MAX_SLOTS).default(DEFAULT_SLOTS),
  /**
   * On stop (SIGTERM), how long running tasks get to finish and report before they are handed
   * back to the driver, in ms. Default 10000.
   */
  drainTimeoutMs: z.coerce.number().int().min(0).default(10_000),
  /**
   * An attempt whose progress has not moved for this long fails (its app may be stuck), and the
   * worker goes on, as Hadoop's mapreduce.task.timeout. In ms; default 600000.
   */
  taskTimeoutMs: positiveInt.default(DEFAULT_TASK_TIMEOUT_MS),
  /** The object store of s3:// inputs and outputs, when not AWS S3. Default $MR_S3_ENDPOINT. */
  s3Endpoint,
});
export type WorkerConfig = Readonly<
  z.infer<typeof workerSchema> & {
    /** The engine's tunables, with this worker's sort buffer. */
    tunables: Readonly<EngineTunables>;
  }
>;

type Env = Readonly<Record<string, string | undefined>>;

/** `$MR_HOME`, default `./.mr`, as an absolute path. */
export function mrHome(env: Env): string {
  return resolve(env.MR_HOME ?? ".mr");
}

/** The driver address a client or worker uses: the flag, then $MR_DRIVER, then the default. */
export function driverAddress(flag: string | undefined, env: Env): string {
  return parse(address, flag ?? env.MR_DRIVER ?? DEFAULT_DRIVER_ADDRESS, "--driver");
}

export function resolveDriverConfig(
  flags: Partial<Record<keyof DriverConfig, unknown>>,
  env: Env,
): DriverConfig {
  const merged = {
    redisUrl: env.MR_REDIS_URL,
    tlsCert: env.MR_TLS_CERT,
    tlsKey: env.MR_TLS_KEY,
    tlsCa: env.MR_TLS_CA,
    s3Endpoint: env.MR_S3_ENDPOINT,
    dbPath: join(mrHome(env), "driver.db"),
    ...definedOnly(flags),
  };
  const config = parse(driverSchema, merged, "driver options");
  if (config.workerTimeoutMs <= config.heartbeatMs) {
    throw new InvalidArgumentError(
      `workerTimeoutMs: ${config.workerTimeoutMs} ms is no longer than a heartbeat interval of ${config.heartbeatMs} ms: every worker would be lost between two heartbeats (give a --worker-timeout of at least twice the --heartbeat-interval)`,
    );
  }
  return Object.freeze({
    ...config,
    http: config.http === "off" ? null : (config.http ?? nextTo(config.listen)),
  });
}

/** 127.0.0.1 and the port after `listen`'s (before, for the last port), or a free port when `listen`'s is 0. */
function nextTo(listen: string): string {
  const port = Number(listen.slice(listen.lastIndexOf(":") + 1));
  return `127.0.0.1:${port === 0 ? 0 : port < 65535 ? port + 1 : port - 1}`;
}

export function resolveWorkerConfig(
  flags: Partial<Record<keyof WorkerConfig, unknown>>,
  env: Env,
): WorkerConfig {
  const merged = {
    driver: env.MR_DRIVER,
    home: mrHome(env),
    tokenFile: env.MR_TOKEN_FILE,
    tlsCert: env.MR_TLS_CERT,
    tlsKey: env.MR_TLS_KEY,
    tlsCa: env.MR_TLS_CA,
    s3Endpoint: env.MR_S3_ENDPOINT,
    ...definedOnly(flags),
  };
  const config = parse(workerSchema, merged, "worker options");
  return Object.freeze({
    ...config,
    tunables: resolveTunables({ sortBufferBytes: config.sortBufferBytes }),
    dataDir: config.dataDir === undefined ? undefined : resolve(config.dataDir),
    appsDir: config.appsDir === undefined ? undefined : resolve(config.appsDir),
  });
}

function definedOnly<T extends object>(flags: T): Partial<T> {
  return Object.fromEntries(Object.entries(flags).filter(([, value]) => value !== undefined)) as Partial<T>;
}

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const field = issue.path.join(".") || what;
  throw new InvalidArgumentError(`${field}: ${issue.message}`);
}
