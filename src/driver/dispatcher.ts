import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { Db } from "../store/db.js";
import { claimTask, type Assignment } from "./scheduler.js";
import type { TaskQueue } from "./queue.js";

/** How long an idle poll sleeps between looks at the queue when nothing wakes it, in ms. */
const IDLE_RECHECK_MS = 250;

/** A fresh attempt id; it is also the BullMQ lock token, so it must be unguessable and unique. */
export function newAttemptId(): string {
  return `a${randomBytes(8).toString("hex")}`;
}

/**
 * Hands queued tasks to polling workers. A poll with nothing to take waits, up to `pollWaitMs`,
 * for `wake()` (work was enqueued) or a short recheck (a retry's backoff or an expired lease
 * may make work runnable without anyone here enqueueing it).
 */
export class Dispatcher {
  private readonly sleepers = new Set<() => void>();
  /** Which app lane a poll tries first; turns so that no app starves another. */
  private turn = 0;

  constructor(
    private readonly db: Db,
    private readonly queue: TaskQueue,
    private readonly pollWaitMs: number,
    private readonly log: Logger,
  ) {}

  wake(): void {
    for (const wake of [...this.sleepers]) wake();
  }

  /**
   * The next task of one of `apps` (those `workerId` offers), claimed under a new attempt, or
   * null when none came in time.
   */
  async poll(
    workerId: number,
    apps: readonly string[],
    cancelled: () => boolean,
  ): Promise<Assignment | null> {
    const deadline = Date.now() + this.pollWaitMs;
    while (!cancelled() && Date.now() < deadline) {
      const assignment = await this.tryClaim(workerId, apps);
      if (assignment !== undefined) return assignment;
      await this.sleep(Math.min(IDLE_RECHECK_MS, deadline - Date.now()));
    }
    return null;
  }

  /** An assignment; or undefined when the queue had nothing runnable (or could not be read). */
  private async tryClaim(workerId: number, apps: readonly string[]): Promise<Assignment | undefined> {
    for (;;) {
      if (!this.queue.isConnected()) return undefined;
      const attemptId = newAttemptId();
      let entry;
      try {
        entry = await this.queue.fetch(attemptId, apps, this.turn++);
      } catch (err) {
        this.log.warn({ err }, "could not fetch from the queue");
        return undefined;
      }
      if (entry === null) return undefined;
      const assignment = claimTask(
        this.db,
        { taskId: entry.taskId, generation: entry.generation, attemptId, workerId },
        Date.now(),
      );
      if (assignment) {
        const { task, job } = assignment;
        this.log.info(
          { jobId: job.id, taskId: task.id, kind: task.kind, index: task.index, attemptId, workerId },
          "task assigned",
        );
        return assignment;
      }
      // The task ended or runs under a newer generation: this entry is stale.
      await this.queue.discard(entry, attemptId);
    }
  }

  private sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }
}
