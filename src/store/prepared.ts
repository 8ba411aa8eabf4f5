import type { Statement } from "better-sqlite3";
import type { Db } from "./db.js";

const cache = new WeakMap<Db, Map<string, Statement>>();

/** The statement for `sql` on `db`, prepared on first use and kept for the life of the handle. */
export function prepared<P extends unknown[] | object = unknown[], R = unknown>(
  db: Db,
  sql: string,
): Statement<P, R> {
  let statements = cache.get(db);
  if (statements === undefined) {
    statements = new Map();
    cache.set(db, statements);
  }
  let statement = statements.get(sql);
  if (statement === undefined) {
    statement = db.prepare(sql);
    statements.set(sql, statement);
  }
  return statement as unknown as Statement<P, R>;
}

/** Runs `fn` in one IMMEDIATE transaction: all of it is written, or none. */
export function inTransaction<T>(db: Db, fn: () => T): T {
  return db.transaction(fn).immediate();
}
