import type { Logger } from "pino";
import type { Db } from "../store/db.js";
import { addEvent, EventType } from "../store/events.js";
import { inTransaction } from "../store/prepared.js";
import { listQueuedTasks } from "../store/tasks.js";
import { queueJobId, type TaskQueue } from "./queue.js";

/**
 * Rebuilds the queue from SQLite, the source of truth: every task of a RUNNING job that should
 * be queued (PENDING, or RUNNING under a lease) and that the queue does not hold is enqueued
 * again under its current generation. A RUNNING task whose entry was lost is handed out anew;
 * the new attempt supersedes the old one. Returns how many entries were restored.
 */
export async function reconcileQueue(db: Db, queue: TaskQueue, reason: string, log: Logger): Promise<number> {
  const tasks = listQueuedTasks(db);
  if (tasks.length === 0) return 0;
  const missing = new Set(await queue.missing(tasks.map(queueJobId)));
  const restore = tasks.filter((task) => missing.has(queueJobId(task)));
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
