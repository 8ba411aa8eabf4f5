import type { Db } from "./db.js";
import { prepared } from "./prepared.js";

/** Attempts of the job's tasks that failed on the worker (failures, not losses). */
export function countFailures(db: Db, jobId: number, workerId: number): number {
  return prepared<[number, number], number>(
    db,
    `SELECT count(*) FROM attempts a JOIN tasks t ON t.id = a.task_id
     WHERE a.worker_id = ? AND a.state = 'FAILED' AND t.job_id = ?`,
  )
    .pluck()
    .get(workerId, jobId)!;
}

/** ALIVE workers that offer `app`. */
export function countWorkersOffering(db: Db, app: string): number {
  return prepared<[string], number>(
    db,
    `SELECT count(*) FROM workers WHERE state = 'ALIVE' AND EXISTS (SELECT 1 FROM json_each(apps) WHERE value = ?)`,
  )
    .pluck()
    .get(app)!;
}

export function isExcluded(db: Db, jobId: number, workerId: number): boolean {
  return (
    prepared<[number, number], number>(db, `SELECT 1 FROM exclusions WHERE job_id = ? AND worker_id = ?`)
      .pluck()
      .get(jobId, workerId) !== undefined
  );
}

export function countExclusions(db: Db, jobId: number): number {
  return prepared<[number], number>(db, `SELECT count(*) FROM exclusions WHERE job_id = ?`)
    .pluck()
    .get(jobId)!;
}

/** addExclusion. The job hands the worker none of its tasks from now on. */
export function addExclusion(db: Db, jobId: number, workerId: number, now: number): void {
  prepared(db, `INSERT OR IGNORE INTO exclusions (job_id, worker_id, at) VALUES (?, ?, ?)`).run(
    jobId,
    workerId,
    now,
  );
}

/** The jobs that excluded the worker at `since` or later, by id. */
export function listJobsExcludingSince(db: Db, workerId: number, since: number): number[] {
  return prepared<[number, number], number>(
    db,
    `SELECT job_id FROM exclusions WHERE worker_id = ? AND at >= ? ORDER BY job_id`,
  )
    .pluck()
    .all(workerId, since);
}

/** ALIVE workers excluded from every job at `now`. */
export function countWorkersExcludedFromAll(db: Db, now: number): number {
  return prepared<[number], number>(
    db,
    `SELECT count(*) FROM workers WHERE state = 'ALIVE' AND excluded_until > ?`,
  )
    .pluck()
    .get(now)!;
}

/** excludeFromAll. The worker gets no task of any job until `until`. */
export function excludeFromAll(db: Db, workerId: number, until: number): void {
  prepared(db, `UPDATE workers SET excluded_until = max(excluded_until, ?) WHERE id = ?`).run(
    until,
    workerId,
  );
}

/** The RUNNING jobs that exclude the worker, by id. */
export function listExcludingJobs(db: Db, workerId: number): number[] {
  return prepared<[number], number>(
    db,
    `SELECT e.job_id FROM exclusions e JOIN jobs j ON j.id = e.job_id
     WHERE e.worker_id = ? AND j.state = 'RUNNING' ORDER BY e.job_id`,
  )
    .pluck()
    .all(workerId);
}
