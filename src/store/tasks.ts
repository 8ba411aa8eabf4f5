import { TaskKind, TaskState } from "../types.js";
import type { Db } from "./db.js";
import { prepared } from "./prepared.js";
import { TASK_COLUMNS, type TaskRecord } from "./rows.js";

export function getTask(db: Db, taskId: number): TaskRecord | undefined {
  return prepared<[number], TaskRecord>(db, `SELECT ${TASK_COLUMNS} FROM tasks WHERE id = ?`).get(taskId);
}

export function listTasks(db: Db, jobId: number): TaskRecord[] {
  return prepared<[number], TaskRecord>(
    db,
    `SELECT ${TASK_COLUMNS} FROM tasks WHERE job_id = ? ORDER BY kind, idx`,
  ).all(jobId);
}

export function listTasksInState(db: Db, jobId: number, state: TaskState): TaskRecord[] {
  return prepared<[number, string], TaskRecord>(
    db,
    `SELECT ${TASK_COLUMNS} FROM tasks WHERE job_id = ? AND state = ? ORDER BY id`,
  ).all(jobId, state);
}

/** Tasks of RUNNING jobs that should be in the queue: PENDING, or RUNNING under a lease. */
export function listQueuedTasks(db: Db): TaskRecord[] {
  return prepared<[], TaskRecord>(
    db,
    `SELECT ${TASK_COLUMNS} FROM tasks WHERE state IN ('PENDING', 'RUNNING')
     AND job_id IN (SELECT id FROM jobs WHERE state = 'RUNNING') ORDER BY id`,
  ).all();
}

/**
 * claimTask. Expects: the task PENDING, or RUNNING under an attempt whose lease has expired
 * (the queue handed the task out again), at `generation`. Makes `attemptId` the task's holder.
 * Returns the attempt it took the task from, if any, or false when the task is not claimable
 * (finished, cancelled, or re-run under a newer generation): the queue entry is stale.
 */
export function claimTask(
  db: Db,
  taskId: number,
  generation: number,
  attemptId: string,
): { previousAttemptId: string | null } | false {
  const task = getTask(db, taskId);
  if (!task || task.generation !== generation) return false;
  if (task.state !== TaskState.PENDING && task.state !== TaskState.RUNNING) return false;
  const changed = prepared(
    db,
    `UPDATE tasks SET state = 'RUNNING', attempt_id = ?
     WHERE id = ? AND generation = ? AND state = ? AND attempt_id IS ?`,
  ).run(attemptId, taskId, generation, task.state, task.attemptId).changes;
  if (changed !== 1) return false;
  return { previousAttemptId: task.state === TaskState.RUNNING ? task.attemptId : null };
}

/**
 * commitTask. Expects: the task RUNNING and held by `attemptId`. Marks it SUCCEEDED with that
 * attempt as its committed one. Returns false if the attempt no longer holds the task.
 */
export function commitTask(db: Db, taskId: number, attemptId: string): boolean {
  return (
    prepared(
      db,
      `UPDATE tasks SET state = 'SUCCEEDED' WHERE id = ? AND state = 'RUNNING' AND attempt_id = ?`,
    ).run(taskId, attemptId).changes === 1
  );
}

/** Why an attempt stopped holding its task without committing it: each kind has its own budget. */
export type AttemptLoss = "failed" | "lost";

/**
 * releaseTask. Expects: the task RUNNING and held by `attemptId`, which failed (the app threw)
 * or was lost (its worker died). Counts that against the task's budget for the kind, and moves
 * the task to PENDING (to run again) or FAILED (out of budget; it keeps the attempt's id).
 * Returns false if the attempt no longer holds the task.
 */
export function releaseTask(
  db: Db,
  taskId: number,
  attemptId: string,
  loss: AttemptLoss,
  next: typeof TaskState.PENDING | typeof TaskState.FAILED,
): boolean {
  const budget = loss === "failed" ? "failed_attempts" : "lost_attempts";
  return (
    prepared(
      db,
      `UPDATE tasks SET state = ?, ${budget} = ${budget} + 1,
       attempt_id = CASE WHEN ? = 'FAILED' THEN attempt_id END
       WHERE id = ? AND state = 'RUNNING' AND attempt_id = ?`,
    ).run(next, next, taskId, attemptId).changes === 1
  );
}

/**
 * releaseReduces. Expects: every map of the job SUCCEEDED. Moves its WAITING reduces to
 * PENDING and returns them, to be enqueued.
 */
export function releaseReduces(db: Db, jobId: number): TaskRecord[] {
  prepared(
    db,
    `UPDATE tasks SET state = 'PENDING' WHERE job_id = ? AND kind = 'REDUCE' AND state = 'WAITING'`,
  ).run(jobId);
  return prepared<[number], TaskRecord>(
    db,
    `SELECT ${TASK_COLUMNS} FROM tasks WHERE job_id = ? AND kind = 'REDUCE' AND state = 'PENDING' ORDER BY idx`,
  ).all(jobId);
}

/**
 * endOpenTasks. Moves every task of the job that has not finished to `state` (CANCELLED, or
 * FAILED with the job). Returns the tasks as they were, so their queue entries can be dropped.
 */
export function endOpenTasks(
  db: Db,
  jobId: number,
  state: typeof TaskState.CANCELLED | typeof TaskState.FAILED,
): TaskRecord[] {
  const open = prepared<[number], TaskRecord>(
    db,
    `SELECT ${TASK_COLUMNS} FROM tasks WHERE job_id = ? AND state IN ('WAITING', 'PENDING', 'RUNNING')`,
  ).all(jobId);
  prepared(
    db,
    `UPDATE tasks SET state = ? WHERE job_id = ? AND state IN ('WAITING', 'PENDING', 'RUNNING')`,
  ).run(state, jobId);
  return open;
}

export interface MapOutputLocation {
  mapIndex: number;
  attemptId: string;
  address: string;
}

/** Where each committed map attempt of the job left its output. */
export function listMapOutputs(db: Db, jobId: number): MapOutputLocation[] {
  return prepared<[number], MapOutputLocation>(
    db,
    `SELECT t.idx AS mapIndex, t.attempt_id AS attemptId, w.address
     FROM tasks t JOIN attempts a ON a.id = t.attempt_id JOIN workers w ON w.id = a.worker_id
     WHERE t.job_id = ? AND t.kind = '${TaskKind.MAP}' AND t.state = 'SUCCEEDED' ORDER BY t.idx`,
  ).all(jobId);
}

/** countLostLease. Counts one expired lease (a superseded attempt) against the task's lost budget. */
export function countLostLease(db: Db, taskId: number): void {
  prepared(db, `UPDATE tasks SET lost_attempts = lost_attempts + 1 WHERE id = ?`).run(taskId);
}

/**
 * rerunMap. Expects: the map SUCCEEDED with `attemptId` committed, and that attempt's output
 * lost. Makes it PENDING under the next generation. Returns the task as it now is, or
 * undefined if it had already been re-run (another report of the same loss).
 */
export function rerunMap(db: Db, taskId: number, attemptId: string): TaskRecord | undefined {
  const changed = prepared(
    db,
    `UPDATE tasks SET state = 'PENDING', generation = generation + 1, attempt_id = NULL
     WHERE id = ? AND kind = 'MAP' AND state = 'SUCCEEDED' AND attempt_id = ?`,
  ).run(taskId, attemptId).changes;
  return changed === 1 ? getTask(db, taskId) : undefined;
}

/** The SUCCEEDED maps of RUNNING jobs whose committed output lives on `workerId`. */
export function listMapsCommittedOn(db: Db, workerId: number): TaskRecord[] {
  return prepared<[number], TaskRecord>(
    db,
    `SELECT ${TASK_COLUMNS} FROM tasks WHERE kind = 'MAP' AND state = 'SUCCEEDED'
     AND attempt_id IN (SELECT id FROM attempts WHERE worker_id = ?)
     AND job_id IN (SELECT id FROM jobs WHERE state = 'RUNNING') ORDER BY id`,
  ).all(workerId);
}

/**
 * parkReduce. Moves a reduce back to WAITING, from PENDING or from RUNNING under `attemptId`,
 * because a map it needs runs again. Returns false if the reduce was in neither state.
 */
export function parkReduce(db: Db, taskId: number, attemptId: string | null): boolean {
  return (
    prepared(
      db,
      `UPDATE tasks SET state = 'WAITING', attempt_id = NULL
       WHERE id = ? AND kind = 'REDUCE' AND state IN ('PENDING', 'RUNNING') AND attempt_id IS ?`,
    ).run(taskId, attemptId).changes === 1
  );
}

export function getTaskByIndex(db: Db, jobId: number, kind: TaskKind, index: number): TaskRecord | undefined {
  return prepared<[number, string, number], TaskRecord>(
    db,
    `SELECT ${TASK_COLUMNS} FROM tasks WHERE job_id = ? AND kind = ? AND idx = ?`,
  ).get(jobId, kind, index);
}
