/**
 * Jobs whose app no live worker offers: they cannot progress. Each is noted in its history once
 * it has waited a while, and failed, naming the app, once it has waited `noWorkerTimeoutMs`.
 * A worker that offers the app in time lets the job go on, and that is noted too.
 */
import type { Logger } from "pino";
import type { Db } from "../store/db.js";
import { addEvent, EventType } from "../store/events.js";
import { getJob, listRunningJobs } from "../store/jobs.js";
import { inTransaction } from "../store/prepared.js";
import { listAliveWorkers } from "../store/workers.js";
import { JobState } from "../types.js";
import type { JobEffects } from "./jobEffects.js";
import { endJob } from "./scheduler.js";

/** A job is noted as waiting for its app after this long, or half its timeout if that is shorter. */
const NOTE_AFTER_MS = 10_000;

/** The apps some ALIVE worker offers. */
export function offeredApps(db: Db): Set<string> {
  return new Set(listAliveWorkers(db).flatMap((worker) => worker.apps));
}

/** How often jobs are checked, in ms. */
const CHECK_EVERY_MS = 1000;

export class UnservedJobs {
  /** Since when each RUNNING job has had no live worker for its app, and whether that was noted. */
  private readonly since = new Map<number, { at: number; noted: boolean }>();
  private timer: NodeJS.Timeout | undefined;
  private checking = false;

  constructor(
    private readonly db: Db,
    private readonly effects: JobEffects,
    private readonly noWorkerTimeoutMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.check(), CHECK_EVERY_MS);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One check of every RUNNING job; one that finds a check under way does nothing. */
  async check(now = Date.now()): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      await this.checkJobs(now);
    } catch (err) {
      this.log.error({ err }, "could not check for jobs no worker serves");
    } finally {
      this.checking = false;
    }
  }

  private async checkJobs(now: number): Promise<void> {
    const offered = offeredApps(this.db);
    const running = listRunningJobs(this.db);
    const runningIds = new Set(running.map((job) => job.id));
    for (const jobId of this.since.keys()) if (!runningIds.has(jobId)) this.since.delete(jobId);
    for (const job of running) {
      const waiting = this.since.get(job.id);
      if (offered.has(job.app)) {
        if (waiting?.noted) {
          this.note(job.id, `a live worker offers app ${job.app} again; the job goes on`, now);
        }
        this.since.delete(job.id);
        continue;
      }
      if (!waiting) {
        this.since.set(job.id, { at: now, noted: false });
        continue;
      }
      const waitedMs = now - waiting.at;
      if (waitedMs >= this.noWorkerTimeoutMs) {
        await this.fail(job.id, job.app, waitedMs, now);
        this.since.delete(job.id);
      } else if (!waiting.noted && waitedMs >= Math.min(NOTE_AFTER_MS, this.noWorkerTimeoutMs / 2)) {
        waiting.noted = true;
        this.note(
          job.id,
          `no live worker offers app ${job.app}; the job waits, and fails if none does within ${Math.round(this.noWorkerTimeoutMs / 1000)} s (start a worker whose --apps-dir has ${job.app}.mjs)`,
          now,
        );
      }
    }
  }

  private note(jobId: number, message: string, now: number): void {
    inTransaction(this.db, () => addEvent(this.db, jobId, EventType.APP_UNSERVED, message, now));
    this.effects.jobChanged(jobId);
  }

  private async fail(jobId: number, app: string, waitedMs: number, now: number): Promise<void> {
    const why = `no live worker offered app ${app} for ${Math.round(waitedMs / 1000)} s (start a worker whose --apps-dir has ${app}.mjs, or raise the driver's --no-worker-timeout)`;
    const outcome = inTransaction(this.db, () => {
      if (getJob(this.db, jobId)?.state !== JobState.RUNNING) return undefined;
      const drop = endJob(this.db, jobId, "fail", why, now);
      return { job: getJob(this.db, jobId)!, enqueue: [], drop };
    });
    if (!outcome) return;
    this.log.warn({ jobId, app }, why);
    await this.effects.apply(outcome.job, outcome);
  }
}
