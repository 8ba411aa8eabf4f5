import { open } from "node:fs/promises";
import { dirname } from "node:path";
import { toError } from "../errors.js";
import type { Db } from "./db.js";
import { inTransaction, prepared } from "./prepared.js";

interface Pending {
  change: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

export interface GroupCommitOptions {
  /**
   * Makes everything written to the WAL so far durable; default `walSync(db)`, an fdatasync of
   * the WAL on libuv's thread pool. Pass `null` to have SQLite sync in the commit itself.
   */
  sync?: (() => Promise<void>) | null;
  /** A sync failed: what the disk holds is no longer what was committed, and the driver must stop. */
  onSyncFailed?: (err: Error) => void;
}

/**
 * Group commit. State changes asked for in the same turn of the event loop share one
 * transaction, and so one sync to disk. Each runs in a savepoint of its own inside it
 * (better-sqlite3 nests transaction functions that way, and `inTransaction` inside one is such a
 * savepoint), so a change that throws undoes only itself.
 *
 * The sync happens off the event loop: the transaction commits with `synchronous = NORMAL` (the
 * WAL is written, not synced), then an fdatasync of the WAL runs on a thread while the driver
 * serves the next calls, and only then do the changes' callers hear back. So no caller hears
 * back before its change is on disk, as with `synchronous = FULL`, but the event loop no longer
 * waits for the disk at each commit (2.8 ms a commit, measured on a busy driver). The WAL's
 * frames carry chained checksums: after a power loss SQLite keeps the frames up to the first one
 * that did not reach the disk, so what a sync covered survives, with everything committed before
 * it. Reads in the meantime may see a change whose sync is still under way; writes made
 * elsewhere (with `inTransaction` on their own) keep the database's level (FULL), and their sync
 * covers the WAL up to them.
 *
 * A sync that fails leaves the WAL as the disk has it, not as committed: the changes waiting
 * on it are refused, every later one too, and `onSyncFailed` is told, so that the driver stops
 * and a new one recovers from what the disk holds (retrying an fsync after a failure may report
 * success for pages the kernel dropped).
 */
export class GroupCommit {
  private batch: Pending[] = [];
  private readonly sync: (() => Promise<void>) | null;
  /** The database's own level, for the other writers: FULL as openDb sets it. */
  private readonly synchronous: number;
  private failed: Error | undefined;

  constructor(
    private readonly db: Db,
    private readonly options: GroupCommitOptions = {},
  ) {
    this.sync = options.sync === undefined ? walSync(db) : options.sync;
    this.synchronous = db.pragma("synchronous", { simple: true }) as number;
  }

  /** Runs `change` in the next shared transaction; resolves with its result once it is on disk. */
  run<T>(change: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.batch.push({ change, resolve: resolve as (value: unknown) => void, reject });
      if (this.batch.length === 1) setImmediate(() => this.commit());
    });
  }

  private commit(): void {
    const batch = this.batch;
    this.batch = [];
    const refuse = (err: unknown): void => batch.forEach(({ reject }) => reject(err));
    if (this.failed) return refuse(this.failed);
    const outcomes: ({ ok: true; value: unknown } | { ok: false; err: unknown })[] = [];
    try {
      this.unsynced(() =>
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
        }),
      );
    } catch (err) {
      // The shared transaction itself failed: none of the changes was written.
      return refuse(err);
    }
    const answer = (): void =>
      batch.forEach(({ resolve, reject }, i) => {
        const outcome = outcomes[i]!;
        if (outcome.ok) resolve(outcome.value);
        else reject(outcome.err);
      });
    if (this.sync === null) return answer();
    this.sync().then(answer, (err: unknown) => {
      const failure = new Error(
        `the database's disk failed to sync its log (${toError(err).message}); restart the driver: it recovers from what the disk holds`,
      );
      if (!this.failed) {
        this.failed = failure;
        this.options.onSyncFailed?.(failure);
      }
      refuse(this.failed);
    });
  }

  /** Runs `write` with SQLite's own sync at commit off, when this group commit syncs instead. */
  private unsynced(write: () => void): void {
    if (this.sync === null) return write();
    prepared(this.db, "PRAGMA synchronous = NORMAL").run();
    try {
      write();
    } finally {
      prepared(this.db, `PRAGMA synchronous = ${this.synchronous}`).run();
    }
  }
}

/**
 * A sync of `db`'s WAL for GroupCommit: an fdatasync of its file on libuv's thread pool (and an
 * fsync of its directory the first time, for a WAL file created since the database was opened).
 * Null for a database without a WAL (in memory, or in another journal mode), which SQLite syncs
 * at each commit itself.
 */
export function walSync(db: Db): (() => Promise<void>) | null {
  if (db.memory || db.pragma("journal_mode", { simple: true }) !== "wal") return null;
  const wal = `${db.name}-wal`;
  let directorySynced = false;
  return coalesced(async () => {
    if (!directorySynced) {
      await syncFile(dirname(wal), "all");
      directorySynced = true;
    }
    await syncFile(wal, "data");
  });
}

/**
 * `sync` made shareable: a call while none runs starts one; calls made while one runs share the
 * next, which starts once it ends, since a sync covers only what was written before it began.
 */
export function coalesced(sync: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  let next: Promise<void> | undefined;
  const start = (): Promise<void> => {
    if (running === undefined) {
      running = sync().finally(() => (running = undefined));
      return running;
    }
    next ??= running
      .catch(() => undefined)
      .then(() => {
        next = undefined;
        return start();
      });
    return next;
  };
  return start;
}

/** fsync (`all`) or fdatasync (`data`) of a file or directory; one that is gone has nothing left to sync. */
async function syncFile(path: string, what: "all" | "data"): Promise<void> {
  let handle;
  try {
    handle = await open(path, "r");
  } catch (err) {
    // The WAL is removed only as the last connection closes, after its frames reached the database file.
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  try {
    await (what === "data" ? handle.datasync() : handle.sync());
  } finally {
    await handle.close();
  }
}
