/**
 * One driver per database. Two schedulers over one state is split brain, so a driver holds the
 * database's lease for its whole life and renews it every RENEW_MS; a second driver refuses to
 * start while the lease is live, and names the holder. The lease is free when its holder let it
 * go, when it has not been renewed for TTL_MS (a driver killed on another host), or at once when
 * its holder ran on this host and its process is gone (a driver killed here and started again).
 *
 * `takeover` takes a live lease too, for a holder known to be gone: if it is not, it finds out
 * at its next renewal and stops, and the new driver waits that long before it schedules.
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { FailedPreconditionError, toError } from "../errors.js";
import type { Db } from "../store/db.js";
import { getLease, releaseLease, renewLease, takeLease, type LeaseRecord } from "../store/driverLease.js";
import { inTransaction } from "../store/prepared.js";

export class DriverLease {
  static readonly RENEW_MS = 2000;
  static readonly TTL_MS = 10_000;

  private timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly db: Db,
    private readonly holder: string,
    private readonly log: Logger,
  ) {}

  /** Takes the database for this driver, or throws a refusal that names the driver holding it. */
  static async acquire(
    db: Db,
    options: { address: string; dbPath: string; takeover: boolean },
    log: Logger,
  ): Promise<DriverLease> {
    const now = Date.now();
    const mine: LeaseRecord = {
      holder: randomUUID(),
      pid: process.pid,
      host: hostname(),
      address: options.address,
      startedAt: now,
      renewedAt: now,
    };
    const previous = inTransaction(db, () => {
      const held = getLease(db);
      const live = held !== undefined && isLive(held, now);
      if (live && !options.takeover) return held;
      takeLease(db, mine);
      return live ? held : undefined;
    });
    if (previous !== undefined && !options.takeover) {
      throw new FailedPreconditionError(
        `${options.dbPath} is in use by the driver ${describe(previous, now)} (stop that driver first, or give this one another --db; if it is gone for good, start this one with --takeover)`,
      );
    }
    if (previous !== undefined) {
      log.warn({ previous }, "took the database over from a live lease; waiting for its holder to stop");
      await sleep(DriverLease.RENEW_MS + 500);
    }
    return new DriverLease(db, mine.holder, log);
  }

  /** Renews the lease from now on; `onLost` runs once if another driver takes it. */
  start(onLost: (by: LeaseRecord | undefined) => void): void {
    this.timer = setInterval(() => {
      let held: boolean;
      try {
        held = renewLease(this.db, this.holder, Date.now());
      } catch (err) {
        this.log.warn({ err: toError(err).message }, "could not renew the driver lease");
        return;
      }
      if (held) return;
      this.stop();
      onLost(getLease(this.db));
    }, DriverLease.RENEW_MS);
  }

  /** Records where the driver listens, once it is bound, for a refusal to name. */
  setAddress(address: string): void {
    renewLease(this.db, this.holder, Date.now(), address);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Stops renewing and frees the database for the next driver at once. */
  release(): void {
    this.stop();
    releaseLease(this.db, this.holder);
  }
}

/** Whether the lease's holder may still be running. */
function isLive(lease: LeaseRecord, now: number): boolean {
  if (now - lease.renewedAt > DriverLease.TTL_MS) return false;
  if (lease.host !== hostname()) return true;
  if (lease.pid === process.pid) return false; // this process's pid: its holder is long gone
  try {
    process.kill(lease.pid, 0); // a signal of 0 tests that the process exists, and sends nothing
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM"; // it exists, but is not ours to signal
  }
}

function describe(lease: LeaseRecord, now: number): string {
  const ago = Math.max(0, Math.round((now - lease.renewedAt) / 1000));
  return `pid ${lease.pid} on ${lease.host}, listening on ${lease.address}, last heard ${ago} s ago`;
}
