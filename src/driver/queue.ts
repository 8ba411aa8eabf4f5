/**
 * The queue adapter: the only file that imports BullMQ. Tasks are fetched by hand (a Worker
 * with no processor); the attempt id is the lock token; heartbeats extend the locks. SQLite
 * stays the source of truth: this queue only says which runnable task to hand out next.
 *
 * Each app has its own lane (a BullMQ queue, `tasks-<app>`), so a worker is handed only tasks
 * of the apps it offers.
 */
import { Queue, UnrecoverableError, Worker, type Job } from "bullmq";
import { Redis } from "ioredis";
import { once } from "node:events";
import type { Logger } from "pino";
import { MAX_JOB_PRIORITY } from "../limits.js";
import type { TaskRecord } from "../store/rows.js";
import { TaskKind } from "../types.js";

export interface TaskQueueOptions {
  redisUrl: string;
  /** Key prefix in Redis; lets tests and several drivers share one server. Default "mr". */
  prefix: string;
  /** A lease not extended for this long expires, and the stalled checker requeues it. */
  lockDurationMs: number;
  /** BullMQ's own retry budget; the scheduler decides, and this is kept equal to its limit. */
  maxAttempts: number;
  /** First retry delay; each further retry doubles it. */
  retryBackoffMs: number;
  /** Expired leases a task may have before BullMQ gives up on it. */
  maxStalledCount: number;
}

/** What the queue needs to know of a task. */
export type QueuedTask = Pick<
  TaskRecord,
  "id" | "app" | "jobId" | "jobPriority" | "kind" | "index" | "generation"
>;

export interface QueueEntry {
  queueJobId: string;
  taskId: number;
  generation: number;
  app: string;
  /** Since when the entry has been ready to hand out, in ms: added, put back, or its backoff over. */
  readyAt: number;
}

/** What becomes of a queue entry let go of; `token` is the attempt id that holds it. */
export type Release =
  | { as: "done"; token: string }
  | { as: "retry"; token: string; error: string }
  | { as: "back"; token: string }
  | { as: "gone"; token: string | null; why: string };

interface TaskData {
  taskId: number;
  generation: number;
}

interface Lane {
  queue: Queue<TaskData>;
  fetcher: Worker<TaskData>;
}

/** `j<job>-<m|r><index>-g<generation>`: enqueueing the same generation twice is harmless. */
export function queueJobId(task: Pick<TaskRecord, "jobId" | "kind" | "index" | "generation">): string {
  return `j${task.jobId}-${task.kind === TaskKind.MAP ? "m" : "r"}${task.index}-g${task.generation}`;
}

/** Ranks a task may have in its job before they share the last one. */
const RANKS = 100_000;

/**
 * Where a task stands in its lane, as BullMQ's priority (lower first; ties go in the order they
 * came): its job's priority first, then its rank in its job, its index. So the jobs of one
 * priority share the workers round-robin: each job's first task, then each job's second, and
 * so on, rather than a second job waiting behind all of the first's (Hadoop's fair share, not
 * its FIFO). A job submitted later starts at once, and a job's reduces, ranked from 0, go before
 * the high-ranked maps of jobs still mapping, so that jobs near their end finish.
 */
export function queuePriority(task: Pick<QueuedTask, "jobPriority" | "index">): number {
  return 1 + (MAX_JOB_PRIORITY - task.jobPriority) * RANKS + Math.min(task.index, RANKS - 1);
}

/**
 * A lane found empty is tried last, after the others, for this long, unless this process adds
 * to it meanwhile: a fetch costs a Redis script call per lane it tries, and a worker offers
 * every built-in app while a cluster mostly runs one. Entries that come back by themselves
 * (a retry's backoff, a stalled lease) wait at most this long for their lane to be tried first.
 */
const EMPTY_LANE_LAST_MS = 250;

/**
 * The queue as the rest of the driver uses it: BullmqTaskQueue below, or a fake in tests.
 * SQLite stays the source of truth; the queue only says which runnable task to hand out next.
 */
export interface TaskQueue {
  /** False while Redis is away: callers skip queue work, and recovery repairs it later. */
  isConnected(): boolean;
  /** Waits up to `timeoutMs` for Redis to be reachable; true if it is. */
  reachable(timeoutMs: number): Promise<boolean>;
  /** Adds entries for these tasks under their current generation; an entry already there stays. */
  enqueue(tasks: readonly QueuedTask[]): Promise<void>;
  /** Takes the next runnable task of one of `apps`, locked under `token`; null when none is ready. */
  fetch(token: string, apps: readonly string[], first?: number): Promise<QueueEntry | null>;
  /** Lets go of an entry; see BullmqTaskQueue.release for what each outcome does. */
  release(held: QueuedTask | QueueEntry, outcome: Release): Promise<void>;
  /** Extends leases; returns the queue ids whose lock was already lost. */
  extend(leases: readonly { task: QueuedTask; token: string }[]): Promise<string[]>;
  /** Of these tasks, those whose entries the queue holds in no state at all. */
  missing<T extends QueuedTask>(tasks: readonly T[]): Promise<T[]>;
}

/** Entries checked by one pipeline of `missing`. */
const MISSING_CHUNK = 1000;

export class BullmqTaskQueue implements TaskQueue {
  private readonly lanes = new Map<string, Lane>();
  /** Entries handed out by this process, so a report needs no lookup in Redis. */
  private readonly held = new Map<string, Job<TaskData>>();
  /** When a fetch last found each lane empty. */
  private readonly foundEmpty = new Map<string, number>();
  /**
   * Since when each entry this process added or put back has been ready, for the queue-wait
   * metric; an entry it never touched (the last driver's) is timed from its creation.
   */
  private readonly readySince = new Map<string, number>();

  private constructor(
    private readonly connection: Redis,
    private readonly options: TaskQueueOptions,
    private readonly log: Logger,
  ) {}

  static open(options: TaskQueueOptions, log: Logger): BullmqTaskQueue {
    const connection = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
    connection.on("error", (err) => log.warn({ err: err.message }, "redis connection error"));
    return new BullmqTaskQueue(connection, options, log);
  }

  /** Calls `listener` each time the connection to Redis becomes ready, now included if it is. */
  onReady(listener: () => void): void {
    this.connection.on("ready", listener);
    if (this.isConnected()) listener();
  }

  /** Warns when Redis may evict keys: a lost queue entry would stall a task until recovery. */
  async checkEvictionPolicy(): Promise<void> {
    const reply = (await this.connection.call("CONFIG", "GET", "maxmemory-policy")) as string[];
    const policy = reply[1];
    if (policy !== undefined && policy !== "noeviction") {
      this.log.warn(
        { policy },
        "redis maxmemory-policy should be noeviction, or queued tasks may be evicted",
      );
    }
  }

  async enqueue(tasks: readonly QueuedTask[]): Promise<void> {
    const now = Date.now();
    for (const task of tasks) {
      const id = queueJobId(task);
      if (!this.readySince.has(id)) this.readySince.set(id, now);
    }
    for (const [app, ofApp] of groupByApp(tasks)) {
      this.foundEmpty.delete(app);
      await this.lane(app).queue.addBulk(
        ofApp.map((task) => ({
          name: task.kind,
          data: { taskId: task.id, generation: task.generation },
          opts: {
            jobId: queueJobId(task),
            priority: queuePriority(task),
            attempts: this.options.maxAttempts,
            backoff: { type: "exponential", delay: this.options.retryBackoffMs },
            removeOnComplete: true,
            removeOnFail: true,
          },
        })),
      );
    }
  }

  /**
   * Takes the next runnable task of one of `apps`, locked under `token`, or null when none is
   * ready; an app whose lane is not open has none. Lanes are tried from `first` round, so that
   * no app starves another, those lately found empty last. An entry that stalled too often is
   * failed for good here, and the next one is taken.
   */
  async fetch(token: string, apps: readonly string[], first = 0): Promise<QueueEntry | null> {
    const now = Date.now();
    const rotated = apps.map((_, i) => apps[(first + i) % apps.length]!);
    const lately = (app: string): boolean =>
      now - (this.foundEmpty.get(app) ?? -Infinity) < EMPTY_LANE_LAST_MS;
    for (const app of [...rotated.filter((app) => !lately(app)), ...rotated.filter(lately)]) {
      // Only lanes this process has put tasks in, or checked for a running job's tasks, are
      // open: what workers offer opens none, so the Redis connections stay bounded by the apps
      // jobs use, whatever workers say.
      const fetcher = this.lanes.get(app)?.fetcher;
      if (!fetcher) continue;
      for (;;) {
        const job = (await fetcher.getNextJob(token, { block: false })) as Job<TaskData> | undefined;
        if (!job) break;
        if (job.deferredFailure) {
          await job.moveToFailed(new UnrecoverableError(job.deferredFailure), token, false);
          continue;
        }
        this.held.set(job.id!, job);
        const readyAt = this.readySince.get(job.id!) ?? job.timestamp;
        this.readySince.delete(job.id!);
        return {
          queueJobId: job.id!,
          taskId: job.data.taskId,
          generation: job.data.generation,
          app,
          readyAt,
        };
      }
      this.foundEmpty.set(app, Date.now());
    }
    return null;
  }

  /** Extends leases; returns the queue ids whose lock was already lost. */
  async extend(leases: readonly { task: QueuedTask; token: string }[]): Promise<string[]> {
    const lost: string[] = [];
    for (const [app, ofApp] of groupByApp(leases.map((lease) => ({ ...lease.task, token: lease.token })))) {
      const ids = ofApp.map(queueJobId);
      lost.push(
        ...(await this.lane(app).fetcher.extendJobLocks(
          ids,
          ofApp.map((t) => t.token),
          this.options.lockDurationMs,
        )),
      );
    }
    return lost;
  }

  /**
   * Lets go of a queue entry, the one way to: `held` is the entry of a task (or one just
   * fetched), and `outcome` says what becomes of it.
   * - done: the attempt that holds it was committed; the entry completes.
   * - retry: the attempt failed with attempts left; BullMQ brings the entry back after its
   *   backoff, counting one of its retries.
   * - back: not the task's doing (its attempt was lost, handed back, or never claimed); the
   *   entry goes straight to the head of its lane, with no retry counted.
   * - gone: the entry must never be handed out again (the task ended, failed for good, or
   *   moved on to a newer generation); it is failed for good if held, else removed.
   */
  async release(held: QueuedTask | QueueEntry, outcome: Release): Promise<void> {
    const id = "queueJobId" in held ? held.queueJobId : queueJobId(held);
    const job = this.held.get(id) ?? (await this.lane(held.app).queue.getJob(id));
    this.held.delete(id);
    this.readySince.delete(id);
    if (!job) return;
    switch (outcome.as) {
      case "done":
        await job.moveToCompleted("done", outcome.token, false);
        return;
      case "retry":
        // BullMQ's exponential backoff: the base, doubled for each retry before this one.
        this.readySince.set(id, Date.now() + this.options.retryBackoffMs * 2 ** job.attemptsMade);
        await job.moveToFailed(new Error(outcome.error), outcome.token, false);
        return;
      case "back":
        this.foundEmpty.delete(held.app);
        this.readySince.set(id, Date.now());
        await job.moveToWait(outcome.token);
        return;
      case "gone":
        if (outcome.token !== null && (await job.isActive())) {
          await job
            .moveToFailed(new UnrecoverableError(outcome.why), outcome.token, false)
            .catch(() => job.remove());
          return;
        }
        await job
          .remove()
          .catch((err: unknown) => this.log.debug({ err, queueJobId: id }, "could not remove"));
    }
  }

  /**
   * Of these tasks, those whose entries the queue holds in no state at all: those whose entry
   * hash is gone. One EXISTS each, pipelined, so the check costs O(1) a task; BullMQ's
   * getJobState would search the lane's lists for each, O(n) a task and O(n²) a check.
   */
  async missing<T extends QueuedTask>(tasks: readonly T[]): Promise<T[]> {
    const missing: T[] = [];
    for (let i = 0; i < tasks.length; i += MISSING_CHUNK) {
      const chunk = tasks.slice(i, i + MISSING_CHUNK);
      const pipeline = this.connection.pipeline();
      for (const task of chunk) pipeline.exists(this.lane(task.app).queue.toKey(queueJobId(task)));
      const replies = (await pipeline.exec()) ?? [];
      chunk.forEach((task, k) => {
        const [err, exists] = replies[k] ?? [new Error("no reply"), 0];
        if (err) throw err;
        if (exists === 0) missing.push(task);
      });
    }
    return missing;
  }

  /**
   * Entries in each state, over the lanes this process has open: `waiting` to be handed out,
   * `delayed` (a retry's backoff), `active` (held by an attempt).
   */
  async depth(): Promise<{ waiting: number; delayed: number; active: number }> {
    const depth = { waiting: 0, delayed: 0, active: 0 };
    for (const { queue } of this.lanes.values()) {
      const counts = await queue.getJobCounts("waiting", "prioritized", "delayed", "active");
      depth.waiting += (counts.waiting ?? 0) + (counts.prioritized ?? 0);
      depth.delayed += counts.delayed ?? 0;
      depth.active += counts.active ?? 0;
    }
    return depth;
  }

  isConnected(): boolean {
    return this.connection.status === "ready";
  }

  async reachable(timeoutMs: number): Promise<boolean> {
    if (this.isConnected()) return true;
    try {
      await once(this.connection, "ready", { signal: AbortSignal.timeout(timeoutMs) });
      return true;
    } catch {
      return this.isConnected();
    }
  }

  async close(): Promise<void> {
    for (const { fetcher, queue } of this.lanes.values()) {
      await fetcher.close(true).catch(() => undefined);
      await queue.close().catch(() => undefined);
    }
    this.connection.disconnect();
  }

  /** The lane of `app`, opened on first use, with its stalled checker running. */
  private lane(app: string): Lane {
    let lane = this.lanes.get(app);
    if (lane) return lane;
    const common = { connection: this.connection, prefix: this.options.prefix };
    const name = `tasks-${app}`;
    const queue = new Queue<TaskData>(name, common);
    queue.on("error", (err) => this.log.warn({ app, err: err.message }, "queue error"));
    const fetcher = new Worker<TaskData>(name, null, {
      ...common,
      autorun: false,
      lockDuration: this.options.lockDurationMs,
      stalledInterval: Math.max(500, Math.floor(this.options.lockDurationMs / 2)),
      maxStalledCount: this.options.maxStalledCount,
    });
    fetcher.on("error", (err) => this.log.warn({ app, err: err.message }, "queue worker error"));
    // Not awaited: with Redis down the driver still starts, and the timer starts once it is up.
    fetcher
      .startStalledCheckTimer()
      .catch((err: unknown) => this.log.error({ err, app }, "stalled checker stopped"));
    lane = { queue, fetcher };
    this.lanes.set(app, lane);
    return lane;
  }
}

function groupByApp<T extends { app: string }>(items: readonly T[]): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const group = groups.get(item.app);
    if (group) group.push(item);
    else groups.set(item.app, [item]);
  }
  return groups;
}
