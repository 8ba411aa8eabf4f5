import type { Db } from "./db.js";
import { prepared } from "./prepared.js";

/** The driver that holds a database: who, where, and when it last renewed its hold. */
export interface LeaseRecord {
  holder: string;
  pid: number;
  host: string;
  address: string;
  startedAt: number;
  renewedAt: number;
}

const COLUMNS = `holder, pid, host, address, started_at AS startedAt, renewed_at AS renewedAt`;

export function getLease(db: Db): LeaseRecord | undefined {
  return prepared<[], LeaseRecord>(db, `SELECT ${COLUMNS} FROM driver_lease WHERE id = 1`).get();
}

/**
 * takeLease. Expects: the caller decided, in the same transaction, that the database is free
 * for it (see DriverLease). Makes `lease` the holder, whoever held it before.
 */
export function takeLease(db: Db, lease: LeaseRecord): void {
  prepared(
    db,
    `INSERT OR REPLACE INTO driver_lease (id, holder, pid, host, address, started_at, renewed_at)
     VALUES (1, :holder, :pid, :host, :address, :startedAt, :renewedAt)`,
  ).run(lease);
}

/** renewLease. Returns false if `holder` no longer holds the database: another driver took it. */
export function renewLease(db: Db, holder: string, now: number, address?: string): boolean {
  return (
    prepared(
      db,
      `UPDATE driver_lease SET renewed_at = ?, address = coalesce(?, address) WHERE id = 1 AND holder = ?`,
    ).run(now, address ?? null, holder).changes === 1
  );
}

/** releaseLease. Lets the next driver start at once; a no-op for a holder that lost the lease. */
export function releaseLease(db: Db, holder: string): void {
  prepared(db, `DELETE FROM driver_lease WHERE id = 1 AND holder = ?`).run(holder);
}
