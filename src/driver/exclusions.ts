/**
 * Excluding bad workers, as Spark's excludeOnFailure and Hadoop's per-tracker limits do: a
 * worker on which a job's attempts have failed `maxFailuresPerWorker` times (failures, not
 * losses: a lost worker is the liveness monitor's business) gets no more of that job's tasks.
 * Never so many that the job cannot finish: a job excludes at most a third of the live workers
 * that offer its app, so one with fewer than three excludes none. An exclusion lasts while the
 * job runs; the job's history says when it began, and `mr workers list` shows it.
 *
 * A worker that JOBS_TO_EXCLUDE_FROM_ALL jobs excluded within `excludeForMs` is a bad host, not
 * a bad fit: it gets no task of any job for `excludeForMs` (Spark's excludeOnFailure.timeout),
 * again never more than a third of the live workers at once.
 */
import type { Db } from "../store/db.js";
import { addEvent, EventType } from "../store/events.js";
import {
  addExclusion,
  countExclusions,
  countFailures,
  countWorkersExcludedFromAll,
  countWorkersOffering,
  excludeFromAll,
  isExcluded,
  listJobsExcludingSince,
} from "../store/exclusions.js";
import type { JobRecord } from "../store/rows.js";
import { getWorker, listAliveWorkers } from "../store/workers.js";

export interface ExclusionPolicy {
  /** Failed attempts of one job on one worker before the job excludes it; 0 never excludes. */
  maxFailuresPerWorker: number;
  /** How long a worker that several jobs excluded gets no task of any job, in ms. */
  excludeForMs: number;
}

/** Jobs that must exclude a worker, within `excludeForMs`, before every job does. */
export const JOBS_TO_EXCLUDE_FROM_ALL = 2;

/**
 * noteFailure. Expects: an attempt of `job` on `workerId` has just FAILED, in this transaction.
 * Excludes the worker from the job if that was one failure too many and the cap allows.
 */
export function noteFailure(
  db: Db,
  job: Pick<JobRecord, "id" | "app">,
  workerId: number,
  policy: ExclusionPolicy,
  now: number,
): void {
  if (policy.maxFailuresPerWorker === 0 || isExcluded(db, job.id, workerId)) return;
  const failures = countFailures(db, job.id, workerId);
  if (failures < policy.maxFailuresPerWorker) return;
  if (countExclusions(db, job.id) + 1 > Math.floor(countWorkersOffering(db, job.app) / 3)) return;
  addExclusion(db, job.id, workerId, now);
  const worker = getWorker(db, workerId);
  const who = `worker ${workerId} (${worker?.address ?? "?"})`;
  addEvent(
    db,
    job.id,
    EventType.WORKER_EXCLUDED,
    `${who} failed ${failures} of this job's attempts; it gets no more of its tasks`,
    now,
  );
  const jobs = listJobsExcludingSince(db, workerId, now - policy.excludeForMs);
  if (jobs.length < JOBS_TO_EXCLUDE_FROM_ALL || (worker?.excludedUntil ?? 0) > now) return;
  const alive = listAliveWorkers(db).length;
  if (countWorkersExcludedFromAll(db, now) + 1 > Math.floor(alive / 3)) return;
  const until = now + policy.excludeForMs;
  excludeFromAll(db, workerId, until);
  addEvent(
    db,
    job.id,
    EventType.WORKER_EXCLUDED,
    `${who} was excluded by jobs ${jobs.join(", ")}; it gets no task of any job until ${new Date(until).toISOString()}`,
    now,
  );
}
