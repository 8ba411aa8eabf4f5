import type { AttemptState } from "../types.js";
import type { Db } from "./db.js";
import { prepared } from "./prepared.js";
import { ATTEMPT_COLUMNS, type AttemptRecord } from "./rows.js";

/** insertAttempt. Records a new RUNNING attempt; its id is the lease token. */
export function insertAttempt(
  db: Db,
  attempt: { id: string; taskId: number; generation: number; workerId: number; now: number },
): void {
  prepared(
    db,
    `INSERT INTO attempts (id, task_id, generation, worker_id, state, started_at) VALUES (?, ?, ?, ?, 'RUNNING', ?)`,
  ).run(attempt.id, attempt.taskId, attempt.generation, attempt.workerId, attempt.now);
}

export function getAttempt(db: Db, attemptId: string): AttemptRecord | undefined {
  return prepared<[string], AttemptRecord>(db, `SELECT ${ATTEMPT_COLUMNS} FROM attempts WHERE id = ?`).get(
    attemptId,
  );
}

/** Every attempt of the job's tasks, oldest first. */
export function listJobAttempts(db: Db, jobId: number): AttemptRecord[] {
  return prepared<[number], AttemptRecord>(
    db,
    `SELECT ${ATTEMPT_COLUMNS} FROM attempts WHERE task_id IN (SELECT id FROM tasks WHERE job_id = ?)
     ORDER BY started_at, id`,
  ).all(jobId);
}

/**
 * finishAttempt. Expects: the attempt RUNNING. Moves it to `state` with its end time and error.
 * Returns false if it had already ended.
 */
export function finishAttempt(
  db: Db,
  attemptId: string,
  state: Exclude<AttemptState, "RUNNING">,
  error: string | null,
  now: number,
): boolean {
  return (
    prepared(
      db,
      `UPDATE attempts SET state = ?, error = ?, finished_at = ?,
       progress = CASE WHEN ? = 'SUCCEEDED' THEN 1 ELSE progress END
       WHERE id = ? AND state = 'RUNNING'`,
    ).run(state, error, now, state, attemptId).changes === 1
  );
}

/** Records progress (0..1) reported by a heartbeat of a RUNNING attempt. */
export function setAttemptProgress(db: Db, attemptId: string, progress: number): void {
  prepared(db, `UPDATE attempts SET progress = ? WHERE id = ? AND state = 'RUNNING'`).run(
    progress,
    attemptId,
  );
}

/**
 * killJobAttempts. Moves every RUNNING attempt of the job's tasks to KILLED, for a job that
 * was cancelled or failed; their next heartbeat tells their workers to stop.
 */
export function killJobAttempts(db: Db, jobId: number, reason: string, now: number): void {
  prepared(
    db,
    `UPDATE attempts SET state = 'KILLED', error = ?, finished_at = ?
     WHERE state = 'RUNNING' AND task_id IN (SELECT id FROM tasks WHERE job_id = ?)`,
  ).run(reason, now, jobId);
}

export function listRunningAttempts(db: Db, workerId?: number): AttemptRecord[] {
  return prepared<[number | null, number | null], AttemptRecord>(
    db,
    `SELECT ${ATTEMPT_COLUMNS} FROM attempts WHERE state = 'RUNNING' AND (? IS NULL OR worker_id = ?) ORDER BY started_at`,
  ).all(workerId ?? null, workerId ?? null);
}

/**
 * loseCommittedOutput. Expects: the attempt SUCCEEDED, its task now running again because the
 * output it committed is gone. Marks it LOST with the reason, so that at most one attempt of a
 * task stands committed. Returns false if it was not SUCCEEDED.
 */
export function loseCommittedOutput(db: Db, attemptId: string, reason: string): boolean {
  return (
    prepared(db, `UPDATE attempts SET state = 'LOST', error = ? WHERE id = ? AND state = 'SUCCEEDED'`).run(
      reason,
      attemptId,
    ).changes === 1
  );
}
