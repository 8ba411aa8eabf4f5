/**
 * The fault rules of the scheduler core, as plain functions over the store: a worker that
 * stopped heartbeating or said it stops, an assignment that never reached its worker, and a
 * reduce that could not fetch a map's output. Like scheduler.ts,
 * each runs in one transaction and returns the queue work it implies.
 */
import { FailedPreconditionError } from "../errors.js";
import { listRunningAttempts } from "../store/attempts.js";
import type { Db } from "../store/db.js";
import { addEvent, EventType } from "../store/events.js";
import { getJob } from "../store/jobs.js";
import { moveAttempt, moveTask, moveWorker } from "../store/lifecycle.js";
import { inTransaction } from "../store/prepared.js";
import type { AttemptRecord, JobRecord, TaskRecord } from "../store/rows.js";
import { getTask, getTaskByIndex, listMapsCommittedOn } from "../store/tasks.js";
import { getWorker, touchWorker } from "../store/workers.js";
import { AttemptState, TaskKind, TaskState } from "../types.js";
import {
  describeTask,
  endJob,
  killRivals,
  releaseReduces,
  reportedAttempt,
  staleAttempt,
  type QueueWork,
} from "./scheduler.js";
import { loseMapOutput } from "./shuffle.js";

export interface LostBudget {
  /** Attempts of one task that may be lost with their worker before the task fails. Default 20. */
  maxLostAttempts: number;
}

export interface Reassignment {
  jobId: number;
  task: TaskRecord;
  attemptId: string;
}

export interface WorkerLoss extends Required<QueueWork> {
  /** RUNNING attempts that went back to the queue. */
  reassigned: Reassignment[];
  /** Jobs whose state changed, as they now are. */
  jobs: JobRecord[];
}

/** The reason a task lost too often fails, and its job with it. */
export function lostTooOften(task: TaskRecord, losses: number): string {
  return `${describeTask(task)}: worker lost ${losses} times while running this task; the app may be killing its worker`;
}

/**
 * markWorkerLost. Expects: the worker ALIVE. Marks it LOST and each of its RUNNING attempts
 * LOST. Each task goes straight back to the queue, unless it has now been lost
 * `maxLostAttempts` times: then it and its job fail. A lost attempt does not count against
 * maxAttempts. Maps of running jobs whose committed output was on the worker run again under a
 * new generation. Returns null if the worker was not ALIVE.
 */
export function markWorkerLost(
  db: Db,
  workerId: number,
  budget: LostBudget,
  reason: string,
  now: number,
): WorkerLoss | null {
  return inTransaction(db, () => {
    const worker = getWorker(db, workerId);
    if (!worker || !moveWorker(db, workerId, "lose")) return null;
    const loss = emptyLoss();
    const who = `worker ${workerId} (${worker.address})`;
    for (const attempt of listRunningAttempts(db, workerId)) {
      loseAttempt(db, attempt, `${who} lost: ${reason}`, budget, now, loss, {
        type: EventType.WORKER_LOST,
        text: `attempt ${attempt.id} lost with ${who}`,
      });
    }
    rerunMapsCommittedOn(db, workerId, "loseOutput", `its output was on ${who}, now lost`, now, loss);
    loss.jobs = touchedJobs(db, loss);
    return loss;
  });
}

/**
 * stopWorker. Expects: the worker ALIVE, and saying it stops. Marks it STOPPED at once (no
 * worker timeout to wait for). Each attempt it still runs is KILLED, charging nothing, and its
 * task goes straight back to the queue; maps of running jobs whose committed output it held
 * run again under a new generation, their attempts KILLED. Returns null if it was not ALIVE
 * (already lost or stopped: a repeated call changes nothing).
 */
export function stopWorker(db: Db, workerId: number, reason: string, now: number): WorkerLoss | null {
  return inTransaction(db, () => {
    const worker = getWorker(db, workerId);
    if (!worker || !touchWorker(db, workerId, now) || !moveWorker(db, workerId, "stop")) return null;
    const loss = emptyLoss();
    const who = `worker ${workerId} (${worker.address})`;
    for (const attempt of listRunningAttempts(db, workerId)) {
      const task = getTask(db, attempt.taskId)!;
      moveAttempt(db, attempt.id, "kill", `${who} stopped (${reason}); handed back`, now);
      if (!moveTask(db, "handBack", { taskId: task.id, holder: attempt.id })) {
        if (attempt.speculative) noteBackupEnded(db, task, attempt, `${who} stopped`, now);
        continue;
      }
      loss.requeue.push({ task, token: attempt.id });
      loss.reassigned.push({ jobId: task.jobId, task, attemptId: attempt.id });
      addEvent(
        db,
        task.jobId,
        EventType.WORKER_STOPPED,
        `${describeTask(task)}: ${who} stopped and handed back attempt ${attempt.id}; back in the queue`,
        now,
      );
    }
    rerunMapsCommittedOn(
      db,
      workerId,
      "withdrawOutput",
      `its output was on ${who}, which stopped`,
      now,
      loss,
    );
    loss.jobs = touchedJobs(db, loss);
    return loss;
  });
}

function emptyLoss(): WorkerLoss {
  return { enqueue: [], drop: [], requeue: [], reassigned: [], jobs: [] };
}

/**
 * Each map of a running job whose committed output was on the worker loses it (its attempt
 * takes `event` with `why`), and runs again if some reduce still lacks it (loseMapOutput). Adds
 * the maps that run again to `loss.enqueue`.
 */
function rerunMapsCommittedOn(
  db: Db,
  workerId: number,
  event: "loseOutput" | "withdrawOutput",
  why: string,
  now: number,
  loss: WorkerLoss,
): void {
  for (const map of listMapsCommittedOn(db, workerId)) {
    const rerun = loseMapOutput(db, map, event, why, now);
    if (rerun) loss.enqueue.push(rerun);
  }
}

/** The jobs, as they now are, of the tasks a loss re-ran, reassigned or dropped. */
function touchedJobs(db: Db, loss: WorkerLoss): JobRecord[] {
  const jobIds = new Set([
    ...loss.enqueue.map((task) => task.jobId),
    ...loss.reassigned.map(({ jobId }) => jobId),
    ...loss.drop.map((task) => task.jobId),
  ]);
  return [...jobIds].map((jobId) => getJob(db, jobId)!);
}

/**
 * Ends a RUNNING attempt that is gone (LOST, with `reason`) and puts its task straight back in
 * the queue; or, when the task has now been lost `maxLostAttempts` times, fails it and its job.
 * Adds what the queue must do to `loss`.
 */
function loseAttempt(
  db: Db,
  attempt: AttemptRecord,
  reason: string,
  budget: LostBudget,
  now: number,
  loss: WorkerLoss,
  event: { type: EventType; text: string },
): void {
  const task = getTask(db, attempt.taskId)!;
  if (!moveAttempt(db, attempt.id, "lose", reason, now)) return;
  if (task.attemptId !== attempt.id) {
    if (attempt.speculative) noteBackupEnded(db, task, attempt, reason, now);
    return;
  }
  if (task.state !== TaskState.RUNNING) return;
  const losses = task.lostAttempts + 1;
  const holder = { taskId: task.id, holder: attempt.id };
  if (losses >= budget.maxLostAttempts) {
    moveTask(db, "failLost", holder);
    const why = lostTooOften(task, losses);
    addEvent(db, task.jobId, EventType.TASK_FAILED, why, now);
    loss.drop.push(task, ...endJob(db, task.jobId, "fail", why, now));
    return;
  }
  moveTask(db, "requeue", holder);
  loss.requeue.push({ task, token: attempt.id });
  loss.reassigned.push({ jobId: task.jobId, task, attemptId: attempt.id });
  addEvent(
    db,
    task.jobId,
    event.type,
    `${describeTask(task)}: ${event.text}; back in the queue (${losses} of ${budget.maxLostAttempts} losses)`,
    now,
  );
}

/** A backup attempt (speculative execution) ended without committing: noted, the task untouched. */
function noteBackupEnded(db: Db, task: TaskRecord, backup: AttemptRecord, why: string, now: number): void {
  addEvent(
    db,
    task.jobId,
    EventType.SPECULATION_ENDED,
    `${describeTask(task)}: backup attempt ${backup.id} on worker ${backup.workerId} ended (${why}), charging the task nothing`,
    now,
  );
}

/**
 * releaseOrphans. Expects: a heartbeat of the ALIVE worker `workerId`, naming every attempt it
 * runs. A RUNNING attempt of this worker that it does not name, and that was claimed more than
 * `graceMs` ago, never reached it (the reply that carried it was lost, or the worker gave up
 * on the call): it is LOST, and its task goes back to the queue now rather than when its lease
 * expires.
 */
export function releaseOrphans(
  db: Db,
  workerId: number,
  reported: ReadonlySet<string>,
  budget: LostBudget,
  graceMs: number,
  now: number,
): WorkerLoss {
  return inTransaction(db, () => {
    const loss = emptyLoss();
    for (const attempt of listRunningAttempts(db, workerId)) {
      if (reported.has(attempt.id) || attempt.startedAt > now - graceMs) continue;
      const reason = `worker ${workerId} is not running it (its assignment never arrived)`;
      loseAttempt(db, attempt, reason, budget, now, loss, {
        type: EventType.ATTEMPT_ORPHANED,
        text: `attempt ${attempt.id} never reached worker ${workerId}`,
      });
    }
    loss.jobs = touchedJobs(db, loss);
    return loss;
  });
}

export interface FetchFailureReport {
  attemptId: string;
  workerId: number;
  error: string;
  mapIndex: number;
  mapAttemptId: string;
}

/**
 * reportFetchFailure. Expects: a reduce attempt that holds its task and could not fetch the
 * output of map `mapIndex`'s committed attempt `mapAttemptId`. The attempt is KILLED, charged to
 * the reduce's losses, and the reduce WAITS again (a backup of it is KILLED too); the map runs
 * again under a new generation, unless another report already made it do so. A reduce that has
 * now used up its losses fails, and its job with it, naming the map it could not fetch. A
 * backup's fetch failure ends only the backup, charging nothing: its holder finds out for
 * itself whether the output is gone. Returns the queue work.
 */
export function reportFetchFailure(
  db: Db,
  report: FetchFailureReport,
  budget: LostBudget,
  now: number,
): { job: JobRecord; task: TaskRecord } & QueueWork {
  return inTransaction(db, () => {
    const attempt = reportedAttempt(db, report.attemptId, report.workerId);
    const task = getTask(db, attempt.taskId)!;
    if (task.kind !== TaskKind.REDUCE) {
      throw new FailedPreconditionError(`attempt ${attempt.id} runs a map; only a reduce fetches map output`);
    }
    const failure = `fetch failed: map ${report.mapIndex} (attempt ${report.mapAttemptId}): ${report.error}`;
    if (attempt.state === AttemptState.RUNNING && attempt.speculative && task.attemptId !== attempt.id) {
      moveAttempt(db, attempt.id, "kill", failure, now);
      noteBackupEnded(db, task, attempt, failure, now);
      return { job: getJob(db, task.jobId)!, task, enqueue: [], drop: [] };
    }
    const holder = { taskId: task.id, holder: attempt.id };
    const losses = task.lostAttempts + 1;
    if (
      attempt.state !== AttemptState.RUNNING ||
      task.attemptId !== attempt.id ||
      task.state !== TaskState.RUNNING
    )
      throw staleAttempt(attempt, task);
    if (losses >= budget.maxLostAttempts) {
      moveTask(db, "failLost", holder);
      moveAttempt(db, attempt.id, "fail", `fetch failed: ${report.error}`, now);
      const why = `${describeTask(task)}: could not fetch map output ${losses} times; the last: map ${report.mapIndex} (attempt ${report.mapAttemptId}): ${report.error}`;
      addEvent(db, task.jobId, EventType.TASK_FAILED, why, now);
      const drop = [task, ...endJob(db, task.jobId, "fail", why, now)];
      return { job: getJob(db, task.jobId)!, task: getTask(db, task.id)!, enqueue: [], drop };
    }
    moveTask(db, "fetchFailed", holder);
    moveAttempt(db, attempt.id, "kill", `fetch failed: ${report.error}`, now);
    killRivals(db, task, `its reduce waits for map ${report.mapIndex} to run again`, now);
    const map = getTaskByIndex(db, task.jobId, TaskKind.MAP, report.mapIndex);
    const rerun =
      map?.state === TaskState.SUCCEEDED && map.attemptId === report.mapAttemptId
        ? loseMapOutput(db, map, "loseOutput", `a reduce could not fetch its output: ${report.error}`, now)
        : undefined;
    const enqueue: TaskRecord[] = rerun ? [rerun] : [];
    const job = getJob(db, task.jobId)!;
    addEvent(
      db,
      job.id,
      EventType.FETCH_FAILED,
      `${describeTask(task)} could not fetch map ${report.mapIndex} (attempt ${report.mapAttemptId}): ${report.error}; ` +
        (rerun
          ? `map ${report.mapIndex} runs again (generation ${rerun.generation})`
          : "that map already runs again"),
      now,
    );
    // The map may have been re-run and committed already: then the reduce can go at once.
    enqueue.push(...releaseReduces(db, job, now));
    return { job, task: getTask(db, task.id)!, enqueue, drop: [task] };
  });
}
