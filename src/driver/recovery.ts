import type { Logger } from "pino";
import { toError } from "../errors.js";
import { listRunningAttempts } from "../store/attempts.js";
import type { Db } from "../store/db.js";
import { addEvent, EventType } from "../store/events.js";
import { listRunningJobs } from "../store/jobs.js";
import { inTransaction } from "../store/prepared.js";
import { getTask, listQueuedTasks } from "../store/tasks.js";
import { graceAliveWorkers } from "../store/workers.js";
import type { TaskQueue } from "./queue.js";

/**
 * resumeAfterRestart. Gives every ALIVE worker one full timeout, from now, to reach this
 * driver, so that its RUNNING attempts may still report: their lease tokens are in SQLite.
 * Records the restart in the history of each RUNNING job.
 */
export function resumeAfterRestart(db: Db, workerTimeoutMs: number, now: number): void {
  inTransaction(db, () => {
    graceAliveWorkers(db, now);
    const runningByJob = new Map<number, number>();
    for (const attempt of listRunningAttempts(db)) {
      const jobId = getTask(db, attempt.taskId)!.jobId;
      runningByJob.set(jobId, (runningByJob.get(jobId) ?? 0) + 1);
    }
    for (const job of listRunningJobs(db)) {
      const mine = runningByJob.get(job.id) ?? 0;
      addEvent(
        db,
        job.id,
        EventType.DRIVER_RECOVERED,
        `driver started; ${mine} running attempts have ${workerTimeoutMs} ms for their workers to report`,
        now,
      );
    }
  });
}

/** Extends the queue leases of every RUNNING attempt that holds its task, with the tokens kept in SQLite. */
export async function extendRunningLeases(db: Db, queue: TaskQueue, log: Logger): Promise<void> {
  const leases = listRunningAttempts(db)
    .map((attempt) => ({ task: getTask(db, attempt.taskId)!, token: attempt.id }))
    .filter(({ task, token }) => task.attemptId === token); // a backup holds no lease
  try {
    const lost = await queue.extend(leases);
    if (lost.length > 0) log.warn({ queueJobIds: lost }, "leases expired while the driver was away");
  } catch (err) {
    log.warn({ err: toError(err).message }, "could not extend leases after a restart");
  }
}

/**
 * Rebuilds the queue from SQLite, the source of truth: every task of a RUNNING job that should
 * be queued (PENDING, or RUNNING under a lease) and that the queue does not hold is enqueued
 * again under its current generation. A RUNNING task whose entry was lost is handed out anew;
 * the new attempt supersedes the old one. Tasks of jobs whose entries are still being added
 * (`beingEnqueued`) are left alone. Returns how many entries were restored.
 */
export async function reconcileQueue(
  db: Db,
  queue: TaskQueue,
  reason: string,
  log: Logger,
  beingEnqueued: readonly number[] = [],
): Promise<number> {
  // Tasks this driver is adding right now are on their way, not lost.
  const tasks = listQueuedTasks(db, beingEnqueued);
  if (tasks.length === 0) return 0;
  const restore = await queue.missing(tasks);
  if (restore.length === 0) return 0;
  await queue.enqueue(restore);
  const byJob = new Map<number, number>();
  for (const task of restore) byJob.set(task.jobId, (byJob.get(task.jobId) ?? 0) + 1);
  const now = Date.now();
  inTransaction(db, () => {
    for (const [jobId, count] of byJob) {
      addEvent(db, jobId, EventType.DRIVER_RECOVERED, `${reason}: ${count} tasks put back in the queue`, now);
    }
  });
  log.info({ restored: restore.length, jobs: [...byJob.keys()], reason }, "queue rebuilt from the store");
  return restore.length;
}
