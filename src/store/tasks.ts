import { TaskKind, type TaskState } from "../types.js";
import type { Db } from "./db.js";
import { prepared } from "./prepared.js";
import { TASK_COLUMNS, type TaskRecord } from "./rows.js";

/**
 * Whether the job runs as many attempts as its max_running_tasks lets it (never, with no cap):
 * the holders of its RUNNING tasks and their backups. They are found among every RUNNING task,
 * which the workers' slots bound; the job's row is read for its cap alone, on the path of
 * every claim.
 */
export function atRunningCap(db: Db, jobId: number): boolean {
  return (
    prepared<[number], number>(
      db,
      `SELECT max_running_tasks > 0 AND max_running_tasks <=
         (SELECT count(*) FROM tasks t JOIN attempts a ON a.task_id = t.id
          WHERE t.state = 'RUNNING' AND t.job_id = jobs.id AND a.state = 'RUNNING')
       FROM jobs WHERE id = ?`,
    )
      .pluck()
      .get(jobId) === 1
  );
}

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

/**
 * Tasks of RUNNING jobs that should be in the queue: PENDING, or RUNNING under a lease; but for
 * the jobs in `skipJobIds`.
 */
export function listQueuedTasks(db: Db, skipJobIds: readonly number[] = []): TaskRecord[] {
  return prepared<[string], TaskRecord>(
    db,
    `SELECT ${TASK_COLUMNS} FROM tasks WHERE state IN ('PENDING', 'RUNNING')
     AND job_id IN (SELECT id FROM jobs WHERE state = 'RUNNING')
     AND job_id NOT IN (SELECT value FROM json_each(?)) ORDER BY id`,
  ).all(JSON.stringify(skipJobIds));
}

export interface MapOutputLocation {
  mapIndex: number;
  attemptId: string;
  address: string;
}

/**
 * Where each committed map attempt of a job left its output, for maps of an index from a given
 * one on: read from the job's maps by index, so that a reduce that asks again, holding the
 * first ones, costs what it lacks rather than the whole job.
 */
export const MAP_OUTPUTS_SQL = `SELECT t.idx AS mapIndex, t.attempt_id AS attemptId, w.address
  FROM tasks t JOIN attempts a ON a.id = t.attempt_id JOIN workers w ON w.id = a.worker_id
  WHERE t.job_id = ? AND t.kind = '${TaskKind.MAP}' AND t.idx >= ? AND +t.state = 'SUCCEEDED'
    AND a.state = 'SUCCEEDED' ORDER BY t.idx`;

/** Where each committed map attempt of the job left its output: of maps `fromIndex` and after. */
export function listMapOutputs(db: Db, jobId: number, fromIndex = 0): MapOutputLocation[] {
  return prepared<[number, number], MapOutputLocation>(db, MAP_OUTPUTS_SQL).all(jobId, fromIndex);
}

/**
 * The committed maps of a job whose output is gone but which did not run again, since every
 * unfinished reduce held it then (see shuffle.ts): the task SUCCEEDED, its attempt no longer.
 */
export function listMapsWithLostOutput(db: Db, jobId: number): TaskRecord[] {
  return prepared<[number], TaskRecord>(
    db,
    `SELECT ${TASK_COLUMNS} FROM tasks WHERE job_id = ? AND kind = '${TaskKind.MAP}' AND state = 'SUCCEEDED'
     AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.id = tasks.attempt_id AND a.state = 'SUCCEEDED')
     ORDER BY idx`,
  ).all(jobId);
}

/** The reduces of a job not yet committed, each with the held-map bitmaps of its running attempts. */
export function listUnfinishedReduces(
  db: Db,
  jobId: number,
): { taskId: number; held: (Uint8Array | null)[] }[] {
  const rows = prepared<[number], { taskId: number; attemptId: string | null; held: Uint8Array | null }>(
    db,
    `SELECT t.id AS taskId, a.id AS attemptId, a.held_maps AS held
     FROM tasks t LEFT JOIN attempts a ON a.task_id = t.id AND a.state = 'RUNNING'
     WHERE t.job_id = ? AND t.kind = '${TaskKind.REDUCE}' AND t.state != 'SUCCEEDED'`,
  ).all(jobId);
  const byTask = new Map<number, (Uint8Array | null)[]>();
  for (const { taskId, attemptId, held } of rows) {
    const list = byTask.get(taskId) ?? [];
    if (attemptId !== null) list.push(held);
    byTask.set(taskId, list);
  }
  return [...byTask].map(([taskId, held]) => ({ taskId, held }));
}

/**
 * Reduces released before their job's last map committed (PENDING or RUNNING while maps are
 * not all done): what they hold of the slots is what maps cannot use. Over every running job;
 * with `app`, those of its jobs; with `jobId`, that job's.
 */
export function countEarlyReduces(db: Db, of: { app?: string; jobId?: number } = {}): number {
  return prepared<[{ app: string | null; jobId: number | null }], number>(
    db,
    `SELECT count(*) FROM tasks t JOIN jobs j ON j.id = t.job_id
     WHERE j.state = 'RUNNING' AND j.maps_done < j.maps_total
       AND t.kind = '${TaskKind.REDUCE}' AND t.state IN ('PENDING', 'RUNNING')
       AND (@app IS NULL OR j.app = @app) AND (@jobId IS NULL OR j.id = @jobId)`,
  )
    .pluck()
    .get({ app: of.app ?? null, jobId: of.jobId ?? null })!;
}

/** Whether the job has a task of `kind` in `state`: maps waiting in the queue (PENDING), say. */
export function hasTaskIn(db: Db, jobId: number, kind: TaskKind, state: TaskState): boolean {
  return (
    prepared<[number, TaskKind, TaskState], number>(
      db,
      `SELECT EXISTS (SELECT 1 FROM tasks WHERE job_id = ? AND kind = ? AND state = ?)`,
    )
      .pluck()
      .get(jobId, kind, state) === 1
  );
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

export function getTaskByIndex(db: Db, jobId: number, kind: TaskKind, index: number): TaskRecord | undefined {
  return prepared<[number, string, number], TaskRecord>(
    db,
    `SELECT ${TASK_COLUMNS} FROM tasks WHERE job_id = ? AND kind = ? AND idx = ?`,
  ).get(jobId, kind, index);
}
