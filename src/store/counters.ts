import { addCount, countOf } from "../counters.js";
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
  for (const [name, value] of Object.entries(counters)) upsert.run(attemptId, jobId, name, value);
}

/**
 * A job's counters, summed over the attempt each succeeded task committed, and no other. From
 * the job's tasks to each committed attempt's counters by key: linear in the job's size.
 * (`+t.state` keeps SQLite on the job's tasks, not on every job's SUCCEEDED ones.)
 */
const COMMITTED_COUNTERS = `FROM tasks t JOIN counters c ON c.attempt_id = t.attempt_id
  WHERE t.job_id = ? AND +t.state = 'SUCCEEDED'`;
export const JOB_COUNTERS_SQL = `SELECT c.name, sum(c.value) AS total ${COMMITTED_COUNTERS}
  GROUP BY c.name ORDER BY c.name`;
const JOB_COUNTER_VALUES_SQL = `SELECT c.name, c.value ${COMMITTED_COUNTERS} ORDER BY c.name`;

/**
 * Every row is a 64-bit integer, and so is each sum: read as bigints, so none is rounded. A sum
 * past the 64-bit range (SQLite refuses it as "integer overflow") is added up here instead and
 * stops at the range's edge, so a job's counters can always be shown.
 */
export function jobCounters(db: Db, jobId: number): Counters {
  let rows: { name: string; total: bigint }[];
  try {
    rows = prepared<[number], { name: string; total: bigint }>(db, JOB_COUNTERS_SQL)
      .safeIntegers(true)
      .all(jobId);
  } catch (err) {
    if (!(err instanceof Error && /integer overflow/.test(err.message))) throw err;
    const counters: Counters = {};
    const values = prepared<[number], { name: string; value: bigint }>(db, JOB_COUNTER_VALUES_SQL);
    for (const { name, value } of values.safeIntegers(true).iterate(jobId)) {
      counters[name] = addCount(counters[name] ?? 0, value);
    }
    return counters;
  }
  return Object.fromEntries(rows.map(({ name, total }) => [name, countOf(total)]));
}
