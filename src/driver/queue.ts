/**
 * The queue adapter: the only file that imports BullMQ. Tasks are fetched by hand (a Worker
 * with no processor); the attempt id is the lock token; heartbeats extend the locks. SQLite
 * stays the source of truth: this queue only says which runnable task to hand out next.
 */
import { Queue, UnrecoverableError, Worker, type Job } from "bullmq";
import { Redis } from "ioredis";
import type { Logger } from "pino";
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

export interface QueueEntry {
  /** `j<job>-<m|r><index>-g<generation>`: enqueueing the same generation twice is harmless. */
  queueJobId: string;
  taskId: number;
  generation: number;
}

interface TaskData {
  taskId: number;
  generation: number;
}

const QUEUE_NAME = "tasks";

export function queueJobId(task: Pick<TaskRecord, "jobId" | "kind" | "index" | "generation">): string {
  return `j${task.jobId}-${task.kind === TaskKind.MAP ? "m" : "r"}${task.index}-g${task.generation}`;
}

export class TaskQueue {
  /** Entries handed out by this process, so a report needs no lookup in Redis. */
  private readonly held = new Map<string, Job<TaskData>>();

  private constructor(
    private readonly connection: Redis,
    private readonly queue: Queue<TaskData>,
    private readonly fetcher: Worker<TaskData>,
    private readonly options: TaskQueueOptions,
    private readonly log: Logger,
  ) {}

  static open(options: TaskQueueOptions, log: Logger): TaskQueue {
    const connection = new Redis(options.redisUrl, { maxRetriesPerRequest: null, lazyConnect: false });
    connection.on("error", (err) => log.warn({ err: err.message }, "redis connection error"));
    const common = { connection, prefix: options.prefix };
    const queue = new Queue<TaskData>(QUEUE_NAME, common);
    queue.on("error", (err) => log.warn({ err: err.message }, "queue error"));
    const fetcher = new Worker<TaskData>(QUEUE_NAME, null, {
      ...common,
      autorun: false,
      lockDuration: options.lockDurationMs,
      stalledInterval: Math.max(500, Math.floor(options.lockDurationMs / 2)),
      maxStalledCount: options.maxStalledCount,
    });
    fetcher.on("error", (err) => log.warn({ err: err.message }, "queue worker error"));
    // Not awaited: with Redis down the driver still starts, and the timer starts once it is up.
    fetcher.startStalledCheckTimer().catch((err: unknown) => log.error({ err }, "stalled checker stopped"));
    return new TaskQueue(connection, queue, fetcher, options, log);
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

  async enqueue(tasks: readonly TaskRecord[]): Promise<void> {
    if (tasks.length === 0) return;
    await this.queue.addBulk(
      tasks.map((task) => ({
        name: task.kind,
        data: { taskId: task.id, generation: task.generation },
        opts: {
          jobId: queueJobId(task),
          attempts: this.options.maxAttempts,
          backoff: { type: "exponential", delay: this.options.retryBackoffMs },
          removeOnComplete: true,
          removeOnFail: true,
        },
      })),
    );
  }

  /**
   * Takes the next runnable task, locked under `token`, or null when none is ready. An entry
   * that stalled too often is failed for good here, and the next one is taken.
   */
  async fetch(token: string): Promise<QueueEntry | null> {
    for (;;) {
      const job = (await this.fetcher.getNextJob(token, { block: false })) as Job<TaskData> | undefined;
      if (!job) return null;
      if (job.deferredFailure) {
        await job.moveToFailed(new UnrecoverableError(job.deferredFailure), token, false);
        continue;
      }
      this.held.set(job.id!, job);
      return { queueJobId: job.id!, taskId: job.data.taskId, generation: job.data.generation };
    }
  }

  /** Extends leases; returns the queue ids whose lock was already lost. */
  async extend(leases: readonly { queueJobId: string; token: string }[]): Promise<string[]> {
    if (leases.length === 0) return [];
    return this.fetcher.extendJobLocks(
      leases.map((lease) => lease.queueJobId),
      leases.map((lease) => lease.token),
      this.options.lockDurationMs,
    );
  }

  async complete(queueJobId: string, token: string): Promise<void> {
    const job = await this.release(queueJobId);
    await job?.moveToCompleted("done", token, false);
  }

  /** Fails the attempt's lease. With `retry`, BullMQ brings the task back after its backoff. */
  async fail(queueJobId: string, token: string, error: string, retry: boolean): Promise<void> {
    const job = await this.release(queueJobId);
    await job?.moveToFailed(retry ? new Error(error) : new UnrecoverableError(error), token, false);
  }

  /** Puts an entry held under `token` (a lost attempt) straight back in the queue, with no retry counted. */
  async requeue(queueJobId: string, token: string): Promise<void> {
    const job = await this.release(queueJobId);
    await job?.moveToWait(token);
  }

  /** Removes an entry for good, whether it waits or is held under `token`. */
  async drop(queueJobId: string, token: string | null): Promise<void> {
    const job = await this.release(queueJobId);
    if (!job) return;
    if (token !== null && (await job.isActive())) {
      await job.moveToFailed(new UnrecoverableError("task ended"), token, false).catch(() => job.remove());
      return;
    }
    await job
      .remove()
      .catch((err: unknown) => this.log.debug({ err, queueJobId }, "could not remove queue entry"));
  }

  private async release(queueJobId: string): Promise<Job<TaskData> | undefined> {
    const job = this.held.get(queueJobId);
    this.held.delete(queueJobId);
    return job ?? (await this.queue.getJob(queueJobId));
  }

  /** Of these ids, those the queue holds in no state at all. */
  async missing(queueJobIds: readonly string[]): Promise<string[]> {
    const states = await Promise.all(queueJobIds.map((id) => this.queue.getJobState(id)));
    return queueJobIds.filter((_, i) => states[i] === "unknown");
  }

  isConnected(): boolean {
    return this.connection.status === "ready";
  }

  async close(): Promise<void> {
    await this.fetcher.close(true).catch(() => undefined);
    await this.queue.close().catch(() => undefined);
    this.connection.disconnect();
  }
}
