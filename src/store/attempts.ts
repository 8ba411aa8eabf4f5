import type { TaskKind } from "../types.js";
import type { Db } from "./db.js";
import { prepared } from "./prepared.js";
import { ATTEMPT_COLUMNS, type AttemptRecord } from "./rows.js";

/**
 * insertAttempt. Records a new RUNNING attempt: the task's new holder, whose id is the lease
 * token, or a `speculative` backup beside the holder, which holds no lease.
 */
export function insertAttempt(
  db: Db,
  attempt: {
    id: string;
    taskId: number;
    generation: number;
    workerId: number;
    now: number;
    speculative?: boolean;
  },
): void {
  prepared(
    db,
    `INSERT INTO attempts (id, task_id, generation, worker_id, state, started_at, speculative)
     VALUES (?, ?, ?, ?, 'RUNNING', ?, ?)`,
  ).run(
    attempt.id,
    attempt.taskId,
    attempt.generation,
    attempt.workerId,
    attempt.now,
    attempt.speculative ? 1 : 0,
  );
}

/**
 * The RUNNING attempts of a task that do not hold it: its backups (speculative execution), or,
 * once a backup has committed, the holder it beat.
 */
export function listRunningRivals(db: Db, taskId: number): AttemptRecord[] {
  return prepared<[number], AttemptRecord>(
    db,
    `SELECT ${ATTEMPT_COLUMNS} FROM attempts
     WHERE task_id = ? AND state = 'RUNNING' AND id IS NOT (SELECT attempt_id FROM tasks WHERE id = task_id)`,
  ).all(taskId);
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

/** Records progress (0..1) reported at `now` by a heartbeat of a RUNNING attempt. */
export function setAttemptProgress(db: Db, attemptId: string, progress: number, now: number): void {
  prepared(db, `UPDATE attempts SET progress = ?, progress_at = ? WHERE id = ? AND state = 'RUNNING'`).run(
    progress,
    now,
    attemptId,
  );
}

export function listRunningAttempts(db: Db, workerId?: number): AttemptRecord[] {
  return prepared<[number | null, number | null], AttemptRecord>(
    db,
    `SELECT ${ATTEMPT_COLUMNS} FROM attempts WHERE state = 'RUNNING' AND (? IS NULL OR worker_id = ?) ORDER BY started_at`,
  ).all(workerId ?? null, workerId ?? null);
}

/** Per kind, the summed progress of the attempts that hold the job's RUNNING tasks. */
export function sumRunningProgress(db: Db, jobId: number): Record<TaskKind, number> {
  const rows = prepared<[number], { kind: TaskKind; progress: number }>(
    db,
    `SELECT t.kind AS kind, sum(a.progress) AS progress FROM tasks t JOIN attempts a ON a.id = t.attempt_id
     WHERE t.job_id = ? AND t.state = 'RUNNING' GROUP BY t.kind`,
  ).all(jobId);
  const sums: Record<TaskKind, number> = { MAP: 0, REDUCE: 0 };
  for (const { kind, progress } of rows) sums[kind] = progress;
  return sums;
}

/**
 * setHeldMaps. Records which map outputs a running reduce attempt holds: bit m of byte m / 8 is
 * set for map m. Changes nothing for an attempt that is no longer RUNNING.
 */
export function setHeldMaps(db: Db, attemptId: string, held: Uint8Array): void {
  prepared(db, `UPDATE attempts SET held_maps = ? WHERE id = ? AND state = 'RUNNING'`).run(
    Buffer.from(held.buffer, held.byteOffset, held.byteLength),
    attemptId,
  );
}
