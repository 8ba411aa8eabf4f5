/** The reads behind the driver's Prometheus metrics: counts by state, and what finished lately. */
import type { Db } from "./db.js";
import { prepared } from "./prepared.js";

/** Rows of `table` by state: jobs or workers. */
export function countByState(db: Db, table: "jobs" | "workers"): Map<string, number> {
  const rows = prepared<[], { state: string; n: number }>(
    db,
    `SELECT state, count(*) AS n FROM ${table} GROUP BY state`,
  ).all();
  return new Map(rows.map((row) => [row.state, row.n]));
}

export interface FinishedAttempt {
  kind: string;
  state: string;
  startedAt: number;
  finishedAt: number;
}

/** Attempts that ended in [from, to), in ms, with their task's kind. */
export function listAttemptsFinished(db: Db, from: number, to: number): FinishedAttempt[] {
  return prepared<[number, number], FinishedAttempt>(
    db,
    `SELECT t.kind, a.state, a.started_at AS startedAt, a.finished_at AS finishedAt
     FROM attempts a JOIN tasks t ON t.id = a.task_id
     WHERE a.finished_at >= ? AND a.finished_at < ?`,
  ).all(from, to);
}

/** The last row of the counters table: counters saved after it are new. */
export function lastCounterRow(db: Db): number {
  return (
    prepared<[], { last: number | null }>(db, `SELECT max(rowid) AS last FROM counters`).get()!.last ?? 0
  );
}

/**
 * Sums, as floats, of the counters named in `names` that committed attempts saved after row
 * `afterRow`; and the last row read, to pass next time.
 */
export function sumCountersAfter(
  db: Db,
  afterRow: number,
  names: readonly string[],
): { sums: Map<string, number>; lastRow: number } {
  const lastRow = lastCounterRow(db);
  const rows = prepared<unknown[], { name: string; total: number }>(
    db,
    `SELECT name, total(value) AS total FROM counters
     WHERE rowid > ? AND rowid <= ? AND name IN (${names.map(() => "?").join(", ")})
     GROUP BY name`,
  ).all(afterRow, lastRow, ...names);
  return { sums: new Map(rows.map((row) => [row.name, row.total])), lastRow };
}
