import type { Db } from "./db.js";
import { inTransaction } from "./prepared.js";

interface Pending {
  change: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit. State changes asked for in the same turn of the event loop share one
 * transaction, and so one fsync. Each runs in a savepoint of its own inside it (better-sqlite3
 * nests transaction functions that way, and `inTransaction` inside one is such a savepoint),
 * so a change that throws undoes only itself. No caller hears back before the shared
 * transaction has committed: a reply sent on the result is as durable as one sent after a
 * transaction of its own.
 */
export class GroupCommit {
  private batch: Pending[] = [];

  constructor(private readonly db: Db) {}

  /** Runs `change` in the next shared transaction; resolves with its result once committed. */
  run<T>(change: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.batch.push({ change, resolve: resolve as (value: unknown) => void, reject });
      if (this.batch.length === 1) setImmediate(() => this.commit());
    });
  }

  private commit(): void {
    const batch = this.batch;
    this.batch = [];
    const outcomes: ({ ok: true; value: unknown } | { ok: false; err: unknown })[] = [];
    try {
      inTransaction(this.db, () => {
        for (const { change } of batch) {
          try {
            outcomes.push({ ok: true, value: inTransaction(this.db, change) });
          } catch (err) {
            // Some errors (a full disk, say) end the whole transaction, not just the savepoint.
            if (!this.db.inTransaction) throw err;
            outcomes.push({ ok: false, err });
          }
        }
      });
    } catch (err) {
      // The shared transaction itself failed: none of the changes was written.
      for (const { reject } of batch) reject(err);
      return;
    }
    batch.forEach(({ resolve, reject }, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) resolve(outcome.value);
      else reject(outcome.err);
    });
  }
}
