/**
 * Speculative execution (backup tasks), as the MapReduce paper, Hadoop and Spark have it: one
 * slow host must not hold a whole job back. When most of a phase's tasks have committed
 * (`speculationQuantile`, Spark's 0.75), a task whose holder has run at least
 * `speculationMinRuntimeMs` and will take longer than `speculationMultiplier` (1.5) times the
 * median of the phase's committed attempts is a straggler: it has run that long already
 * (Spark's rule), or its rate of progress, as its heartbeats last reported it, says it will
 * (Hadoop's LATE estimate, which finds a slow task before it has run long). An idle worker other
 * than the holder's gets a backup attempt of it, once the queue has nothing for that worker;
 * the straggler with the longest estimated time left goes first.
 *
 * A backup holds no queue lease (the holder keeps the task's entry). The first of the two to
 * report success commits (scheduler.ts `completeAttempt`: `commit`, or `commitBackup` for the
 * backup); the other is KILLED with the reason, so a task commits once and its counters count
 * once. A backup's failure or loss charges the task nothing: the holder goes on. A task has one
 * backup at a time, and at most MAX_BACKUPS_PER_TASK in a generation; a job submitted with
 * `--no-speculation` (its app must not run twice at once) has none.
 */
import type { Logger } from "pino";
import { insertAttempt, listRunningRivals } from "../store/attempts.js";
import type { Db } from "../store/db.js";
import { addEvent, EventType } from "../store/events.js";
import { isExcluded } from "../store/exclusions.js";
import type { GroupCommit } from "../store/groupCommit.js";
import { getJob, listRunningJobs } from "../store/jobs.js";
import { inTransaction } from "../store/prepared.js";
import type { JobRecord } from "../store/rows.js";
import { committedDurations, listRunningHolders, type RunningHolder } from "../store/speculation.js";
import { atRunningCap, getTask, listMapOutputs } from "../store/tasks.js";
import { getWorker } from "../store/workers.js";
import { JobState, TaskKind, TaskState } from "../types.js";
import { describeTask, type Assignment } from "./scheduler.js";

export interface SpeculationPolicy {
  /** Off: no task of any job gets a backup. Default on. */
  speculation: boolean;
  /** The share of a phase's tasks that must have committed before any of it is speculated. */
  speculationQuantile: number;
  /** A holder that has run this many times the phase's median is a straggler. */
  speculationMultiplier: number;
  /** ...having run at least this long, in ms: short tasks are not worth a second attempt. */
  speculationMinRuntimeMs: number;
}

/** Backups one task may have in a generation: a backup that failed or was lost may be tried once more. */
export const MAX_BACKUPS_PER_TASK = 2;

/** How often running jobs are looked over for stragglers, in ms. */
const CHECK_EVERY_MS = 250;

/** A task that deserves a backup, and why. */
export interface Straggling {
  jobId: number;
  app: string;
  taskId: number;
  holder: string;
  holderWorkerId: number;
  /** When the holder started; how long it will take in all, as estimated; the phase's median, in ms. */
  startedAt: number;
  estimatedMs: number;
  medianMs: number;
  /** Committed attempts the median was taken over. */
  committed: number;
}

/** The phases of a job that can be speculated now: the one running, once enough of it has committed. */
function phaseToWatch(job: JobRecord, quantile: number): { kind: TaskKind; total: number } | undefined {
  const [kind, total, done] =
    job.mapsDone < job.mapsTotal
      ? [TaskKind.MAP, job.mapsTotal, job.mapsDone]
      : [TaskKind.REDUCE, job.reducers, job.reducesDone];
  // Spark's rule: max(floor(quantile × tasks), 1) committed; a phase of one task never qualifies.
  return done < total && done >= Math.max(1, Math.floor(quantile * total)) ? { kind, total } : undefined;
}

/**
 * findStragglers. The tasks of RUNNING jobs that deserve a backup now, those with the longest
 * estimated time left first.
 */
export function findStragglers(db: Db, policy: SpeculationPolicy, now: number): Straggling[] {
  const found: Straggling[] = [];
  if (!policy.speculation) return found;
  for (const job of listRunningJobs(db)) {
    if (!job.speculation) continue;
    const phase = phaseToWatch(job, policy.speculationQuantile);
    if (phase === undefined) continue;
    const durations = committedDurations(db, job.id, phase.kind);
    if (durations.length === 0) continue; // maps re-run for lost output: nothing typical to go by
    const medianMs = durations[Math.floor((durations.length - 1) / 2)]!;
    const minRuntimeMs = policy.speculationMinRuntimeMs;
    for (const holder of listRunningHolders(db, job.id, phase.kind, now - minRuntimeMs)) {
      const estimatedMs = estimatedDuration(holder, now, minRuntimeMs);
      if (holder.backups >= MAX_BACKUPS_PER_TASK || estimatedMs <= policy.speculationMultiplier * medianMs) {
        continue;
      }
      found.push({
        jobId: job.id,
        app: job.app,
        taskId: holder.taskId,
        holder: holder.holder,
        holderWorkerId: holder.holderWorkerId,
        startedAt: holder.startedAt,
        estimatedMs,
        medianMs,
        committed: durations.length,
      });
    }
  }
  const left = (s: Straggling): number => s.estimatedMs - (now - s.startedAt);
  return found.sort((a, b) => left(b) - left(a));
}

/**
 * How long a running holder will take in all: the time it has run, or, if longer, what the
 * rate of its last reported progress makes it. A report from its first moments (under a quarter
 * of the minimum runtime) says more of start-up costs than of its rate, and is not trusted.
 */
function estimatedDuration(holder: RunningHolder, now: number, minRuntimeMs: number): number {
  const ranMs = now - holder.startedAt;
  const reportedAfterMs = holder.progressAt === null ? 0 : holder.progressAt - holder.startedAt;
  if (holder.progress <= 0 || reportedAfterMs < minRuntimeMs / 4) return ranMs;
  return Math.max(ranMs, reportedAfterMs / holder.progress);
}

/**
 * startBackup. Expects: `straggling` found by findStragglers. Starts a backup attempt of its
 * task on `workerId`, if it is still a straggler with no backup, the worker is not the holder's
 * and the job neither excludes it nor runs all it may (backups count towards
 * --max-running-tasks). Records a `speculated` event. Returns the assignment, or undefined.
 */
export function startBackup(
  db: Db,
  straggling: Straggling,
  backup: { attemptId: string; workerId: number },
  now: number,
): Assignment | undefined {
  return inTransaction(db, () => {
    const task = getTask(db, straggling.taskId);
    const job = getJob(db, straggling.jobId);
    if (task?.state !== TaskState.RUNNING || task.attemptId !== straggling.holder) return undefined;
    if (job?.state !== JobState.RUNNING || !job.speculation) return undefined;
    if (straggling.holderWorkerId === backup.workerId) return undefined;
    if (listRunningRivals(db, task.id).length > 0) return undefined;
    if ((getWorker(db, backup.workerId)?.excludedUntil ?? 0) > now) return undefined;
    if (isExcluded(db, job.id, backup.workerId) || atRunningCap(db, job.id)) return undefined;
    insertAttempt(db, {
      id: backup.attemptId,
      taskId: task.id,
      generation: task.generation,
      workerId: backup.workerId,
      now,
      speculative: true,
    });
    const s = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
    addEvent(
      db,
      job.id,
      EventType.SPECULATED,
      `${describeTask(task)}: attempt ${task.attemptId} on worker ${straggling.holderWorkerId} has run ${s(now - straggling.startedAt)} ` +
        `and will take ${s(straggling.estimatedMs)} at its rate, against a median of ${s(straggling.medianMs)} over ${straggling.committed} committed; ` +
        `backup attempt ${backup.attemptId} starts on worker ${backup.workerId}`,
      now,
    );
    const mapOutputs = task.kind === TaskKind.REDUCE ? listMapOutputs(db, job.id) : [];
    return { attemptId: backup.attemptId, task, job, mapOutputs };
  });
}

/**
 * Looks running jobs over for stragglers every CHECK_EVERY_MS, and hands a backup of one to an
 * idle worker that asks (the dispatcher asks once the queue has nothing for it).
 */
export class Speculator {
  private stragglers: Straggling[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Db,
    private readonly commits: GroupCommit,
    private readonly policy: SpeculationPolicy,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (!this.policy.speculation) return;
    this.timer = setInterval(() => this.check(), CHECK_EVERY_MS);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One look over the running jobs; idle polls, which look again every 250 ms, find what it found. */
  check(now = Date.now()): void {
    try {
      this.stragglers = findStragglers(this.db, this.policy, now);
    } catch (err) {
      this.log.error({ err }, "could not look for straggling tasks");
    }
  }

  /**
   * A backup attempt, under `attemptId`, of a straggler of one of `apps` that `workerId` may
   * run; undefined when there is none.
   */
  async claim(workerId: number, apps: readonly string[], attemptId: string): Promise<Assignment | undefined> {
    while (true) {
      const i = this.stragglers.findIndex(
        (straggling) => apps.includes(straggling.app) && straggling.holderWorkerId !== workerId,
      );
      if (i < 0) return undefined;
      const [straggling] = this.stragglers.splice(i, 1);
      const backup = await this.commits.run(() =>
        startBackup(this.db, straggling!, { attemptId, workerId }, Date.now()),
      );
      if (backup !== undefined) {
        this.log.info(
          { jobId: backup.job.id, taskId: backup.task.id, attemptId, workerId, holder: straggling!.holder },
          "backup attempt started",
        );
        return backup;
      }
    }
  }
}
