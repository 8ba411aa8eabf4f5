/**
 * The scheduler core: every job, task and attempt state change, as plain functions over the
 * store. Each runs in one SQLite transaction and returns what the caller must then do to the
 * queue. Nothing here touches gRPC or BullMQ, so it can be tested without a network.
 */
import { DEFAULT_REDUCE_SLOWSTART } from "../config.js";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../errors.js";
import { DEFAULT_OPEN_COST_BYTES, splitInputs } from "../mr/split.js";
import { getAttempt, insertAttempt, listRunningRivals } from "../store/attempts.js";
import { saveCounters } from "../store/counters.js";
import type { Db } from "../store/db.js";
import { addEvent, EventType } from "../store/events.js";
import { countTaskDone, createJob, findJobOwningOutput, getJob } from "../store/jobs.js";
import { killJobAttempts, moveAttempt, moveJob, moveJobTasks, moveTask } from "../store/lifecycle.js";
import { inTransaction } from "../store/prepared.js";
import type { AttemptRecord, JobRecord, TaskRecord } from "../store/rows.js";
import { aliveSlots } from "../store/workers.js";
import {
  countEarlyReduces,
  getTask,
  hasTaskIn,
  listMapOutputs,
  listTasksInState,
  type MapOutputLocation,
} from "../store/tasks.js";
import { AttemptState, JobState, TaskKind, TaskState, type Counters } from "../types.js";
import { noteFailure, type ExclusionPolicy } from "./exclusions.js";

export interface SubmitRequest {
  app: string;
  inputs: { path: string; size: number }[];
  outputDir: string;
  reducers: number;
  splitSizeBytes: number;
  /** Counted for each file packed into a split; default DEFAULT_OPEN_COST_BYTES. */
  openCostBytes?: number;
  params: Record<string, string>;
  /** The output directory may hold a finished job's output, which goes (see prepareOutputDir). */
  overwrite?: boolean;
  /** 0 (the default) to 10: a higher one has its tasks handed out first. */
  priority?: number;
  /** At most this many of its tasks run at once; 0 (the default) for no cap. */
  maxRunningTasks?: number;
  /** False: no task of the job gets a backup attempt (see speculation.ts). Default true. */
  speculation?: boolean;
  /** The share of the maps, 0 to 1, that must commit before the reduces start; default 0.05. */
  reduceSlowstart?: number;
}

/**
 * The share of the slots that reduces started before their job's last map may hold: the rest
 * are the maps' (Hadoop's reduce ramp-up limit).
 */
export const EARLY_REDUCE_SHARE = 0.5;

/**
 * How many more of `job`'s reduces may start before its last map commits (negative: that many
 * too many run already). Reduces started early hold at most `share` (EARLY_REDUCE_SHARE at
 * most) of the live slots, of the slots of the workers that offer the job's app, and of the
 * job's --max-running-tasks, so that maps always have slots to run on.
 */
export function earlyReduceRoom(db: Db, job: JobRecord, share = EARLY_REDUCE_SHARE): number {
  const of = (slots: number): number => Math.floor(slots * share);
  let room = Math.min(
    of(aliveSlots(db)) - countEarlyReduces(db),
    of(aliveSlots(db, job.app)) - countEarlyReduces(db, { app: job.app }),
  );
  if (job.maxRunningTasks > 0)
    room = Math.min(room, of(job.maxRunningTasks) - countEarlyReduces(db, { jobId: job.id }));
  return room;
}

/** What a state change asks of the queue once its transaction has committed. */
export interface QueueWork {
  /** Tasks to put in the queue. */
  enqueue: TaskRecord[];
  /** Tasks whose queue entries must go for good; `attemptId`, if set, holds the entry's lock. */
  drop: TaskRecord[];
  /** Entries held by an attempt that was lost or handed back, to go straight back under its token. */
  requeue?: { task: TaskRecord; token: string }[];
}

export function describeTask(task: Pick<TaskRecord, "kind" | "index">): string {
  return `${task.kind === TaskKind.MAP ? "map" : "reduce"} ${task.index}`;
}

/**
 * submitJob. Refuses an output directory that a RUNNING or SUCCEEDED job owns. Creates the
 * job, its tasks and its `submitted` event in one transaction; the runnable tasks come back to
 * be enqueued.
 */
export function submitJob(db: Db, request: SubmitRequest, now: number): { job: JobRecord } & QueueWork {
  return inTransaction(db, () => {
    refuseOwnedOutput(db, request.outputDir, request.overwrite ?? false);
    const openCostBytes = request.openCostBytes ?? DEFAULT_OPEN_COST_BYTES;
    const splits = splitInputs(request.inputs, {
      splitSizeBytes: request.splitSizeBytes,
      openCostBytes,
      parallelism: aliveSlots(db), // none yet: one slot, the fewest maps
    });
    const jobId = createJob(db, {
      ...request,
      reduceSlowstart: request.reduceSlowstart ?? DEFAULT_REDUCE_SLOWSTART,
      openCostBytes,
      inputs: request.inputs.map(({ path }) => path),
      splits,
      now,
    });
    addEvent(
      db,
      jobId,
      EventType.SUBMITTED,
      `${request.app}: ${splits.length} maps over ${request.inputs.length} inputs, ${request.reducers} reduces`,
      now,
    );
    const maps = listTasksInState(db, jobId, TaskState.PENDING);
    const enqueue = [...maps, ...releaseReduces(db, getJob(db, jobId)!, now)];
    return { job: getJob(db, jobId)!, enqueue, drop: [] };
  });
}

/**
 * Throws if a RUNNING job writes to `outputDir`, or a SUCCEEDED one wrote it and it is not to
 * be overwritten, naming the job.
 */
export function refuseOwnedOutput(db: Db, outputDir: string, overwrite: boolean): void {
  const owner = findJobOwningOutput(db, outputDir);
  if (owner && (owner.state === JobState.RUNNING || !overwrite)) {
    const remedy = owner.state === JobState.RUNNING ? "" : ", or give --overwrite to replace its output";
    throw new InvalidArgumentError(
      `output directory ${outputDir} belongs to job ${owner.id}, which is ${owner.state} (choose another --output${remedy})`,
    );
  }
}

export interface Assignment {
  attemptId: string;
  task: TaskRecord;
  job: JobRecord;
  /** For a reduce: the map outputs committed so far. */
  mapOutputs: MapOutputLocation[];
}

/**
 * releaseReduces. Expects: the job RUNNING. Once every map has committed, releases every reduce
 * still WAITING. Before that, once the job's slowstart share of its maps has committed, releases
 * its first WAITING reduces as far as earlyReduceRoom allows, with a share that grows with the
 * maps done while maps wait in the queue; the rest wait for a later commit (Hadoop's slowstart
 * and reduce ramp-up). Returns the tasks to enqueue.
 */
export function releaseReduces(db: Db, job: JobRecord, now: number): TaskRecord[] {
  if (job.mapsDone >= job.mapsTotal) return moveJobTasks(db, job.id, "release");
  if (job.mapsDone < Math.ceil(job.reduceSlowstart * job.mapsTotal)) return [];
  // Every reduce released already: no need to count slots, on the path of each map commit.
  if (!hasTaskIn(db, job.id, TaskKind.REDUCE, TaskState.WAITING)) return [];
  // While maps wait for slots, reduces ramp up with the share of the maps done (Hadoop's
  // ramp-up); once every map runs, they may take the slots that maps free, up to the share.
  const done = job.mapsDone / job.mapsTotal;
  const waiting = hasTaskIn(db, job.id, TaskKind.MAP, TaskState.PENDING);
  const share = waiting ? Math.min(EARLY_REDUCE_SHARE, done) : EARLY_REDUCE_SHARE;
  const room = earlyReduceRoom(db, job, share);
  if (room <= 0) return [];
  const released = moveJobTasks(db, job.id, "release", room);
  if (released.length > 0) {
    addEvent(
      db,
      job.id,
      EventType.REDUCES_RELEASED,
      `${job.mapsDone} of ${job.mapsTotal} maps succeeded (slowstart ${job.reduceSlowstart}): ` +
        `${released.map((task) => describeTask(task)).join(", ")} start fetching their output`,
      now,
    );
  }
  return released;
}

/**
 * claimTask. Gives the task the queue handed out to a new attempt of `workerId`. An attempt
 * that held the task before (its lease expired while the driver thought it alive) becomes
 * SUPERSEDED, and counts as a lost attempt. Returns null when the queue entry is stale: the
 * task ended, or runs under a newer generation. A reduce gets the map outputs committed so
 * far; it asks for the rest as they commit (shuffle.ts).
 */
export function claimTask(
  db: Db,
  claim: { taskId: number; generation: number; attemptId: string; workerId: number },
  now: number,
): Assignment | null {
  return inTransaction(db, () => {
    const task = getTask(db, claim.taskId);
    if (!task || task.generation !== claim.generation) return null;
    const job = getJob(db, task.jobId)!;
    // A RUNNING task handed out again: its holder's lease expired while the driver counted on it.
    const previous = task.state === TaskState.RUNNING ? task.attemptId : null;
    const claimed = moveTask(db, previous === null ? "claim" : "takeOver", {
      taskId: task.id,
      holder: previous,
      generation: claim.generation,
      newHolder: claim.attemptId,
    });
    if (!claimed) return null;
    insertAttempt(db, {
      id: claim.attemptId,
      taskId: task.id,
      generation: task.generation,
      workerId: claim.workerId,
      now,
    });
    if (previous !== null) {
      moveAttempt(db, previous, "supersede", "its lease expired", now);
      addEvent(
        db,
        job.id,
        EventType.ATTEMPT_SUPERSEDED,
        `${describeTask(task)}: attempt ${previous} lost its lease; attempt ${claim.attemptId} on worker ${claim.workerId} takes over`,
        now,
      );
    }
    const mapOutputs = task.kind === TaskKind.REDUCE ? listMapOutputs(db, job.id) : [];
    return { attemptId: claim.attemptId, task: getTask(db, task.id)!, job, mapOutputs };
  });
}

/** The attempt named in a worker's report, which must be that worker's own. */
export function reportedAttempt(db: Db, attemptId: string, workerId: number): AttemptRecord {
  const attempt = getAttempt(db, attemptId);
  if (!attempt) throw new NotFoundError(`unknown attempt ${attemptId}`);
  if (attempt.workerId !== workerId) {
    throw new FailedPreconditionError(
      `attempt ${attemptId} belongs to worker ${attempt.workerId}, not ${workerId}`,
    );
  }
  return attempt;
}

export function staleAttempt(attempt: AttemptRecord, task: TaskRecord): FailedPreconditionError {
  return new FailedPreconditionError(
    `attempt ${attempt.id} no longer holds ${describeTask(task)} (the attempt is ${attempt.state}; discard its output)`,
  );
}

export interface Completion extends QueueWork {
  job: JobRecord;
  task: TaskRecord;
  /** The job succeeded with this completion. */
  jobSucceeded: boolean;
  /** A retried report of an attempt already committed: nothing changed. */
  duplicate: boolean;
  /**
   * The attempt whose lock holds the task's queue entry, which completes: the committed holder,
   * or the holder a backup beat. Null when there is none: the entry of a task that waited in
   * the queue is in `drop`.
   */
  leaseToken: string | null;
}

/**
 * completeAttempt. Commits an attempt that still holds its task, or a backup of a task not yet
 * committed (speculative execution: the first to report wins): the attempt and the task
 * SUCCEEDED, its counters recorded, the job's count advanced, and every other attempt of the
 * task still running KILLED. A map may release reduces (releaseReduces); the last reduce makes
 * the job SUCCEEDED. Any other attempt is refused with FAILED_PRECONDITION. A retried report of the
 * committed attempt changes nothing. `commitOutput` runs inside the transaction once the
 * attempt is known to commit, so only the committed attempt's output is ever moved into place;
 * if it throws, nothing is committed.
 */
export function completeAttempt(
  db: Db,
  report: {
    attemptId: string;
    workerId: number;
    counters: Counters;
    /** A reduce's: moves its output into place (a map's output stays on its worker). */
    commitOutput?: (task: TaskRecord, job: JobRecord, attemptId: string) => void;
  },
  now: number,
): Completion {
  return inTransaction(db, () => {
    const attempt = reportedAttempt(db, report.attemptId, report.workerId);
    const task = getTask(db, attempt.taskId)!;
    const done = { enqueue: [], drop: [], task, jobSucceeded: false, leaseToken: null };
    if (attempt.state === AttemptState.SUCCEEDED && task.attemptId === attempt.id) {
      return { ...done, job: getJob(db, task.jobId)!, duplicate: true };
    }
    if (attempt.state !== AttemptState.RUNNING) throw staleAttempt(attempt, task);
    const holds = task.attemptId === attempt.id;
    const committed = holds
      ? moveTask(db, "commit", { taskId: task.id, holder: attempt.id })
      : attempt.speculative === 1 &&
        moveTask(db, "commitBackup", {
          taskId: task.id,
          holder: task.attemptId,
          generation: attempt.generation,
          newHolder: attempt.id,
        });
    if (!committed) throw staleAttempt(attempt, task);
    if (task.kind === TaskKind.REDUCE) report.commitOutput?.(task, getJob(db, task.jobId)!, attempt.id);
    moveAttempt(db, attempt.id, "succeed", null, now);
    saveCounters(db, task.jobId, attempt.id, report.counters);
    noteWinner(db, task, attempt, now);
    const job = countTaskDone(db, task.jobId, task.kind);
    if (!job)
      throw new FailedPreconditionError(`job ${task.jobId} is no longer running (discard the output)`);
    // A backup that beat a holder still running completes the holder's entry; one that beat a
    // task waiting in the queue (its holder was lost or failed) drops the entry.
    const beaten = holds || task.state === TaskState.RUNNING ? task.attemptId : null;
    const drop = beaten === null ? [task] : [];
    let enqueue: TaskRecord[] = [];
    let jobSucceeded = false;
    if (task.kind === TaskKind.MAP) {
      enqueue = releaseReduces(db, job, now);
      if (job.mapsDone === job.mapsTotal) {
        const released = enqueue.length > 0 ? `; ${enqueue.length} reduces released` : "";
        addEvent(db, job.id, EventType.MAPS_DONE, `all ${job.mapsTotal} maps succeeded${released}`, now);
      }
    } else if (task.kind === TaskKind.REDUCE && job.reducesDone === job.reducers) {
      moveJob(db, job.id, "succeed", null, now);
      addEvent(db, job.id, EventType.SUCCEEDED, `all ${job.reducers} reduces succeeded`, now);
      jobSucceeded = true;
    }
    return {
      ...done,
      // Releasing reduces changes tasks, not the job: only its end needs it read again.
      job: jobSucceeded ? getJob(db, job.id)! : job,
      enqueue,
      drop,
      jobSucceeded,
      duplicate: false,
      leaseToken: beaten,
    };
  });
}

/**
 * After `winner` committed `task`: the attempts of the task still running beside it (its
 * backups, or the holder a backup beat) are KILLED, and the job's history says which won.
 */
function noteWinner(db: Db, task: TaskRecord, winner: AttemptRecord, now: number): void {
  const who = `${winner.speculative ? "backup attempt" : "attempt"} ${winner.id} on worker ${winner.workerId}`;
  for (const rival of killRivals(db, task, `${who} committed ${describeTask(task)} first`, now)) {
    addEvent(
      db,
      task.jobId,
      EventType.SPECULATION_ENDED,
      `${describeTask(task)}: ${who} committed first; ${rival.speculative ? "backup attempt" : "attempt"} ${rival.id} on worker ${rival.workerId} is KILLED`,
      now,
    );
  }
  if (winner.speculative && task.state !== TaskState.RUNNING) {
    addEvent(
      db,
      task.jobId,
      EventType.SPECULATION_ENDED,
      `${describeTask(task)}: ${who} committed, while the task waited in the queue to run again`,
      now,
    );
  }
}

/** Kills, with `reason`, the attempts of a task running beside its holder (see listRunningRivals); returns them. */
export function killRivals(db: Db, task: TaskRecord, reason: string, now: number): AttemptRecord[] {
  const rivals = listRunningRivals(db, task.id);
  for (const rival of rivals) moveAttempt(db, rival.id, "kill", reason, now);
  return rivals;
}

export interface RetryPolicy extends ExclusionPolicy {
  /** Failed attempts a task may have before it, and its job, fail. Default 4. */
  maxAttempts: number;
}

export interface Failure extends QueueWork {
  job: JobRecord;
  task: TaskRecord;
  /** The task goes back to the queue (after its backoff). */
  retry: boolean;
  duplicate: boolean;
  /** The attempt whose lock holds the task's queue entry; null for a backup, which holds none. */
  leaseToken: string | null;
}

/**
 * failAttempt. Records a failed attempt that still holds its task. Below `maxAttempts` failures
 * the task goes back to PENDING for a retry; at the limit, or at once for an `unrecoverable`
 * failure, the task and its job are FAILED with the attempt's error, and the job's other tasks
 * end. A backup's failure (speculative execution) is recorded, charging the task nothing: its
 * holder goes on. A retried report changes nothing.
 */
export function failAttempt(
  db: Db,
  report: { attemptId: string; workerId: number; error: string; unrecoverable?: boolean },
  policy: RetryPolicy,
  now: number,
): Failure {
  return inTransaction(db, () => {
    const attempt = reportedAttempt(db, report.attemptId, report.workerId);
    const task = getTask(db, attempt.taskId)!;
    const unchanged = { task, retry: false, enqueue: [], drop: [], leaseToken: null };
    if (attempt.state === AttemptState.FAILED) {
      return { ...unchanged, job: getJob(db, task.jobId)!, duplicate: true };
    }
    if (attempt.state === AttemptState.RUNNING && attempt.speculative && task.attemptId !== attempt.id) {
      moveAttempt(db, attempt.id, "fail", report.error, now);
      addEvent(
        db,
        task.jobId,
        EventType.SPECULATION_ENDED,
        `${describeTask(task)}: backup attempt ${attempt.id} failed on worker ${attempt.workerId}, charging the task nothing: ${report.error}`,
        now,
      );
      noteFailure(db, getJob(db, task.jobId)!, attempt.workerId, policy, now);
      return { ...unchanged, job: getJob(db, task.jobId)!, duplicate: false };
    }
    const retry = !report.unrecoverable && task.failedAttempts + 1 < policy.maxAttempts;
    if (
      attempt.state !== AttemptState.RUNNING ||
      !moveTask(db, retry ? "retry" : "fail", { taskId: task.id, holder: attempt.id })
    ) {
      throw staleAttempt(attempt, task);
    }
    moveAttempt(db, attempt.id, "fail", report.error, now);
    const tries = `${task.failedAttempts + 1} of ${policy.maxAttempts}`;
    let drop: TaskRecord[] = [];
    if (retry) {
      addEvent(
        db,
        task.jobId,
        EventType.TASK_RETRIED,
        `${describeTask(task)} failed (attempt ${tries}): ${report.error}`,
        now,
      );
      noteFailure(db, getJob(db, task.jobId)!, attempt.workerId, policy, now);
    } else {
      const reason = report.unrecoverable
        ? `${describeTask(task)} failed with an unrecoverable error, not retried: ${report.error}`
        : `${describeTask(task)} failed ${policy.maxAttempts} times; last error: ${report.error}`;
      addEvent(db, task.jobId, EventType.TASK_FAILED, reason, now);
      drop = endJob(db, task.jobId, "fail", reason, now);
    }
    return {
      job: getJob(db, task.jobId)!,
      task: getTask(db, task.id)!,
      retry,
      duplicate: false,
      enqueue: [],
      drop,
      leaseToken: attempt.id,
    };
  });
}

/**
 * Ends a RUNNING job (`fail` or `cancel`) and every open task and attempt of it. Returns the
 * tasks to drop from the queue.
 */
export function endJob(
  db: Db,
  jobId: number,
  event: "fail" | "cancel",
  reason: string,
  now: number,
): TaskRecord[] {
  moveJob(db, jobId, event, reason, now);
  killJobAttempts(db, jobId, reason, now);
  addEvent(db, jobId, event === "fail" ? EventType.FAILED : EventType.CANCELLED, reason, now);
  return moveJobTasks(db, jobId, event === "fail" ? "abort" : "cancel");
}

/**
 * cancelJob. Expects: the job RUNNING. Makes it CANCELLED, with its open tasks; its running
 * attempts are KILLED and told so on their next heartbeat.
 */
export function cancelJob(db: Db, jobId: number, now: number): { job: JobRecord } & QueueWork {
  return inTransaction(db, () => {
    const job = getJob(db, jobId);
    if (!job) throw new NotFoundError(`no job ${jobId} (see mr jobs list)`);
    if (job.state !== JobState.RUNNING) {
      throw new FailedPreconditionError(
        `job ${jobId} is already ${job.state} (only a RUNNING job can be cancelled)`,
      );
    }
    const drop = endJob(db, jobId, "cancel", "cancelled by the user", now);
    return { job: getJob(db, jobId)!, enqueue: [], drop };
  });
}
