import type { Db } from "./db.js";
import { prepared } from "./prepared.js";
import { WORKER_COLUMNS, toWorker, type WorkerRecord } from "./rows.js";

/** registerWorker. Records a new ALIVE worker and returns its id. */
export function registerWorker(
  db: Db,
  worker: { address: string; apps: string[]; slots: number; now: number },
): number {
  return Number(
    prepared(
      db,
      `INSERT INTO workers (address, state, apps, slots, registered_at, last_heartbeat_at)
       VALUES (?, 'ALIVE', ?, ?, ?, ?)`,
    ).run(worker.address, JSON.stringify(worker.apps), worker.slots, worker.now, worker.now).lastInsertRowid,
  );
}

/** The task slots of the ALIVE workers together; with `app`, of those that offer it. */
export function aliveSlots(db: Db, app?: string): number {
  return (
    prepared<[{ app: string | null }], { slots: number | null }>(
      db,
      `SELECT sum(slots) AS slots FROM workers WHERE state = 'ALIVE'
       AND (@app IS NULL OR EXISTS (SELECT 1 FROM json_each(workers.apps) WHERE value = @app))`,
    ).get({ app: app ?? null })!.slots ?? 0
  );
}

export function getWorker(db: Db, workerId: number): WorkerRecord | undefined {
  const row = prepared<[number], Parameters<typeof toWorker>[0]>(
    db,
    `SELECT ${WORKER_COLUMNS} FROM workers WHERE id = ?`,
  ).get(workerId);
  return row && toWorker(row);
}

/**
 * Workers by id, after `afterId`: every ALIVE one, and of the others those last heard from at
 * `heardSince` or later (0 for all).
 */
export function listWorkers(
  db: Db,
  page: { heardSince: number; afterId: number; limit: number },
): WorkerRecord[] {
  return prepared<[number, number, number], Parameters<typeof toWorker>[0]>(
    db,
    `SELECT ${WORKER_COLUMNS} FROM workers
     WHERE id > ? AND (state = 'ALIVE' OR last_heartbeat_at >= ?) ORDER BY id LIMIT ?`,
  )
    .all(page.afterId, page.heardSince, page.limit)
    .map(toWorker);
}

/** The ALIVE workers (through the state index, however many have come and gone). */
export function listAliveWorkers(db: Db): WorkerRecord[] {
  return prepared<[], Parameters<typeof toWorker>[0]>(
    db,
    `SELECT ${WORKER_COLUMNS} FROM workers WHERE state = 'ALIVE' ORDER BY id`,
  )
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

/** ALIVE workers whose last heartbeat is older than `before`. */
export function listSilentWorkers(db: Db, before: number): WorkerRecord[] {
  return prepared<[number], Parameters<typeof toWorker>[0]>(
    db,
    `SELECT ${WORKER_COLUMNS} FROM workers WHERE state = 'ALIVE' AND last_heartbeat_at < ? ORDER BY id`,
  )
    .all(before)
    .map(toWorker);
}

/**
 * graceAliveWorkers. Counts every ALIVE worker as heard from at `now`: after a driver restart,
 * each gets one full timeout to reach the new driver before it is declared lost.
 */
export function graceAliveWorkers(db: Db, now: number): void {
  prepared(db, `UPDATE workers SET last_heartbeat_at = max(last_heartbeat_at, ?) WHERE state = 'ALIVE'`).run(
    now,
  );
}
