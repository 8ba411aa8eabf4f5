import type { Db } from "./db.js";
import { prepared } from "./prepared.js";
import { WORKER_COLUMNS, toWorker, type WorkerRecord } from "./rows.js";

/** registerWorker. Records a new ALIVE worker and returns its id. */
export function registerWorker(db: Db, worker: { address: string; apps: string[]; now: number }): number {
  return Number(
    prepared(
      db,
      `INSERT INTO workers (address, state, apps, registered_at, last_heartbeat_at) VALUES (?, 'ALIVE', ?, ?, ?)`,
    ).run(worker.address, JSON.stringify(worker.apps), worker.now, worker.now).lastInsertRowid,
  );
}

export function getWorker(db: Db, workerId: number): WorkerRecord | undefined {
  const row = prepared<[number], Parameters<typeof toWorker>[0]>(
    db,
    `SELECT ${WORKER_COLUMNS} FROM workers WHERE id = ?`,
  ).get(workerId);
  return row && toWorker(row);
}

export function listWorkers(db: Db): WorkerRecord[] {
  return prepared<[], Parameters<typeof toWorker>[0]>(db, `SELECT ${WORKER_COLUMNS} FROM workers ORDER BY id`)
    .all()
    .map(toWorker);
}

/**
 * touchWorker. Expects: the worker ALIVE. Records a heartbeat. Returns false for a worker that
 * is not ALIVE: it must register again.
 */
export function touchWorker(db: Db, workerId: number, now: number): boolean {
  return (
    prepared(db, `UPDATE workers SET last_heartbeat_at = ? WHERE id = ? AND state = 'ALIVE'`).run(
      now,
      workerId,
    ).changes === 1
  );
}

/** stopWorker. Expects: the worker ALIVE. Marks a worker that shut down cleanly STOPPED. */
export function stopWorker(db: Db, workerId: number): boolean {
  return (
    prepared(db, `UPDATE workers SET state = 'STOPPED' WHERE id = ? AND state = 'ALIVE'`).run(workerId)
      .changes === 1
  );
}
