import type { Counters } from "../types.js";
import type { Db } from "./db.js";
import { prepared } from "./prepared.js";

/**
 * saveCounters. Expects: the attempt is being committed in the same transaction. Records its
 * counters; a retried commit of the same attempt replaces them rather than adding twice.
 */
export function saveCounters(db: Db, jobId: number, attemptId: string, counters: Counters): void {
  const upsert = prepared(
    db,
    `INSERT INTO counters (attempt_id, job_id, name, value) VALUES (?, ?, ?, ?)
     ON CONFLICT (attempt_id, name) DO UPDATE SET value = excluded.value`,
  );
  for (const [name, value] of Object.entries(counters)) upsert.run(attemptId, jobId, name, Math.trunc(value));
}

/**
 * A job's counters, summed over the attempt each succeeded task committed, and no other. From
 * the job's tasks to each committed attempt's counters by key: linear in the job's size.
 * (`+t.state` keeps SQLite on the job's tasks, not on every job's SUCCEEDED ones.)
 */
export const JOB_COUNTERS_SQL = `SELECT c.name, sum(c.value) AS total FROM tasks t
  JOIN counters c ON c.attempt_id = t.attempt_id
  WHERE t.job_id = ? AND +t.state = 'SUCCEEDED' GROUP BY c.name ORDER BY c.name`;

export function jobCounters(db: Db, jobId: number): Counters {
  const rows = prepared<[number], { name: string; total: number }>(db, JOB_COUNTERS_SQL).all(jobId);
  return Object.fromEntries(rows.map(({ name, total }) => [name, total]));
}
