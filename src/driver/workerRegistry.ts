/**
 * Worker membership and heartbeats, as plain functions over the store: which attempts a
 * worker may keep running, and which it must abort.
 */
import { FailedPreconditionError } from "../errors.js";
import { getAttempt, setAttemptProgress } from "../store/attempts.js";
import type { Db } from "../store/db.js";
import { inTransaction } from "../store/prepared.js";
import type { TaskRecord } from "../store/rows.js";
import { getTask } from "../store/tasks.js";
import { registerWorker as insertWorker, touchWorker } from "../store/workers.js";
import { AttemptState, TaskState } from "../types.js";

/** A worker that does not say how many tasks it runs at once runs one. */
export function registerWorker(
  db: Db,
  worker: { address: string; apps: string[]; slots?: number },
  now: number,
): number {
  return inTransaction(db, () => insertWorker(db, { ...worker, slots: worker.slots || 1, now }));
}

export function mustRegisterAgain(workerId: number): FailedPreconditionError {
  return new FailedPreconditionError(
    `worker ${workerId} is not registered with this driver (register again)`,
  );
}

export interface HeartbeatOutcome {
  /** Attempts that hold their tasks: their leases are to be extended. */
  keep: { attemptId: string; task: TaskRecord }[];
  /** Attempts the worker must stop: they were superseded, killed, or are unknown. */
  abort: string[];
}

/**
 * heartbeat. Expects: the worker ALIVE; otherwise it must register again. Records the beat and
 * the progress of each of its attempts still RUNNING, and sorts them: those that hold their
 * task keep their lease; a backup (speculative execution) runs on without one; any other
 * attempt is to be aborted.
 */
export function heartbeat(
  db: Db,
  beat: { workerId: number; attempts: { attemptId: string; progress: number }[] },
  now: number,
): HeartbeatOutcome {
  return inTransaction(db, () => {
    if (!touchWorker(db, beat.workerId, now)) throw mustRegisterAgain(beat.workerId);
    const outcome: HeartbeatOutcome = { keep: [], abort: [] };
    for (const { attemptId, progress } of beat.attempts) {
      const attempt = getAttempt(db, attemptId);
      const task = attempt && getTask(db, attempt.taskId);
      if (attempt?.state !== AttemptState.RUNNING || attempt.workerId !== beat.workerId || !task) {
        outcome.abort.push(attemptId);
        continue;
      }
      setAttemptProgress(db, attemptId, Math.min(1, Math.max(0, progress)), now);
      if (task.state === TaskState.RUNNING && task.attemptId === attemptId)
        outcome.keep.push({ attemptId, task });
    }
    return outcome;
  });
}
