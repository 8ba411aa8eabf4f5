/**
 * The early shuffle's rules, as plain functions over the store (like scheduler.ts): a running
 * reduce says which map outputs it holds and which it could not fetch, and learns of the ones
 * committed since (Hadoop's task completion events); a map output that is lost runs again only
 * if some reduce still lacks it; and a reduce started early gives its slot back while its job's
 * maps wait for one. Each function runs in one transaction and returns the queue work it implies.
 */
import { FailedPreconditionError, InvalidArgumentError } from "../errors.js";
import { firstNotHeld, holds } from "../heldMaps.js";
import { getAttempt, setHeldMaps } from "../store/attempts.js";
import type { Db } from "../store/db.js";
import { addEvent, EventType } from "../store/events.js";
import { getJob, uncountMapDone } from "../store/jobs.js";
import { moveAttempt, moveTask, type AttemptEvent } from "../store/lifecycle.js";
import { inTransaction } from "../store/prepared.js";
import type { JobRecord, TaskRecord } from "../store/rows.js";
import {
  getTask,
  getTaskByIndex,
  hasTaskIn,
  listMapOutputs,
  listMapsWithLostOutput,
  listUnfinishedReduces,
  type MapOutputLocation,
} from "../store/tasks.js";
import { AttemptState, TaskKind, TaskState } from "../types.js";
import {
  describeTask,
  earlyReduceRoom,
  killRivals,
  reportedAttempt,
  staleAttempt,
  type QueueWork,
} from "./scheduler.js";

/**
 * Whether some reduce of the job not yet committed lacks map `mapIndex`'s output: it has no
 * running attempt, or one of its running attempts has not said it holds the output.
 */
export function someReduceLacks(db: Db, jobId: number, mapIndex: number): boolean {
  return listUnfinishedReduces(db, jobId).some(
    ({ held }) => held.length === 0 || held.some((bitmap) => !holds(bitmap, mapIndex)),
  );
}

/**
 * The committed output of `map` is gone (its worker was lost or stopped, or a reduce could not
 * fetch it): its attempt takes `event` with `why`. If some reduce still lacks the output, the
 * map runs again under a new generation and is returned, to enqueue; otherwise it stays
 * committed, and runs again only if a later reduce attempt asks for it (awaitMapOutputs).
 * Returns undefined when the map is not run again.
 */
export function loseMapOutput(
  db: Db,
  map: TaskRecord,
  event: Extract<AttemptEvent, "loseOutput" | "withdrawOutput">,
  why: string,
  now: number,
): TaskRecord | undefined {
  if (!someReduceLacks(db, map.jobId, map.index)) {
    if (moveAttempt(db, map.attemptId!, event, why, now)) {
      addEvent(
        db,
        map.jobId,
        EventType.MAP_OUTPUT_LOST,
        `${describeTask(map)}: ${why}; every unfinished reduce holds it already, so it does not run again`,
        now,
      );
    }
    return undefined;
  }
  const rerun = runMapAgain(db, map, why, now);
  if (rerun) moveAttempt(db, map.attemptId!, event, why, now);
  return rerun;
}

/**
 * Runs a committed map again under a new generation, its output being gone (`why`): its job
 * counts it done no more, and its history says so. Returns the task as it now is, or undefined
 * if it had already been re-run (another report of the same loss).
 */
function runMapAgain(db: Db, map: TaskRecord, why: string, now: number): TaskRecord | undefined {
  if (!moveTask(db, "rerun", { taskId: map.id, holder: map.attemptId })) return undefined;
  const rerun = getTask(db, map.id)!;
  uncountMapDone(db, map.jobId);
  addEvent(
    db,
    map.jobId,
    EventType.MAP_RERUN,
    `${describeTask(map)}: ${why}; runs again (generation ${rerun.generation})`,
    now,
  );
  return rerun;
}

export interface HeldOutputsReport {
  attemptId: string;
  workerId: number;
  /** Bit m set: the attempt holds map m's output. */
  held: Uint8Array;
  /** Outputs the attempt could not fetch after its retries. */
  unreachable: readonly { mapIndex: number; attemptId: string }[];
}

export interface MapOutputsNews extends QueueWork {
  job: JobRecord;
  /** Committed outputs of maps the attempt does not hold. */
  outputs: MapOutputLocation[];
  /** The attempt holds every map's output: there is nothing to wait for. */
  holdsAll: boolean;
  /** The attempt gave its slot back to the job's maps: it is KILLED and its reduce WAITING. */
  preempted: boolean;
}

/**
 * reportHeldOutputs. Expects: a running reduce attempt of `workerId`. Records which map outputs
 * it holds. Each output it could not fetch is lost (loseMapOutput: it lacks it, so the map runs
 * again, unless another report did so first). Each committed map whose output was lost without
 * running again, since every reduce held it then, runs again if this attempt lacks it. Then, if
 * the job's maps starve (they wait in the queue, and none runs) while reduces started early
 * hold more than their share of the live slots, the attempt is preempted: KILLED, charging nothing, and its reduce WAITING to
 * be released again. Returns the committed outputs the attempt lacks, and the queue work.
 */
export function reportHeldOutputs(db: Db, report: HeldOutputsReport, now: number): MapOutputsNews {
  return inTransaction(db, () => {
    const attempt = reportedAttempt(db, report.attemptId, report.workerId);
    const task = getTask(db, attempt.taskId)!;
    if (task.kind !== TaskKind.REDUCE) {
      throw new FailedPreconditionError(`attempt ${attempt.id} runs a map; only a reduce fetches map output`);
    }
    if (attempt.state !== AttemptState.RUNNING) throw staleAttempt(attempt, task);
    let job = getJob(db, task.jobId)!;
    if (report.held.byteLength > Math.ceil(job.mapsTotal / 8)) {
      throw new InvalidArgumentError(
        `held: ${report.held.byteLength} bytes for a job of ${job.mapsTotal} maps (at most ${Math.ceil(job.mapsTotal / 8)})`,
      );
    }
    setHeldMaps(db, attempt.id, report.held);
    const enqueue: TaskRecord[] = [];
    for (const lost of report.unreachable) {
      const map = getTaskByIndex(db, job.id, TaskKind.MAP, lost.mapIndex);
      if (map?.state !== TaskState.SUCCEEDED || map.attemptId !== lost.attemptId) continue;
      const why = `${describeTask(task)} (attempt ${attempt.id}) could not fetch its output (attempt ${lost.attemptId})`;
      const rerun = loseMapOutput(db, map, "loseOutput", why, now);
      if (rerun) enqueue.push(rerun);
    }
    for (const map of listMapsWithLostOutput(db, job.id)) {
      if (holds(report.held, map.index)) continue;
      const why = `its output was lost, and attempt ${attempt.id} of ${describeTask(task)} lacks it`;
      const rerun = runMapAgain(db, map, why, now);
      if (rerun) enqueue.push(rerun);
    }
    job = getJob(db, job.id)!;
    const holder = task.attemptId === attempt.id;
    if (holder && mustGiveSlotBack(db, job)) {
      moveTask(db, "park", { taskId: task.id, holder: attempt.id });
      moveAttempt(db, attempt.id, "kill", "preempted: its job's maps wait for a slot", now);
      killRivals(db, task, "preempted: its job's maps wait for a slot", now);
      addEvent(
        db,
        job.id,
        EventType.REDUCE_PREEMPTED,
        `${describeTask(task)}: attempt ${attempt.id} gives its slot back to the maps that wait for one; it starts again when released`,
        now,
      );
      return { job, outputs: [], holdsAll: false, preempted: true, enqueue, drop: [task] };
    }
    return { job, ...mapOutputsLacked(db, job, report.held), preempted: false, enqueue, drop: [] };
  });
}

/**
 * What reportHeldOutputs would answer a report of `held` that changes nothing in the store, by
 * reads alone (a reduce's long poll looks again at every change of its job); null when the
 * report must go through reportHeldOutputs: the attempt no longer runs, a map whose output was
 * lost and that it lacks must run again, or the attempt must give its slot back.
 */
export function peekMapOutputs(
  db: Db,
  report: Pick<HeldOutputsReport, "attemptId" | "held">,
): Pick<MapOutputsNews, "outputs" | "holdsAll"> | null {
  const attempt = getAttempt(db, report.attemptId);
  const task = attempt && getTask(db, attempt.taskId);
  if (attempt?.state !== AttemptState.RUNNING || !task) return null;
  const job = getJob(db, task.jobId)!;
  if (listMapsWithLostOutput(db, job.id).some((map) => !holds(report.held, map.index))) return null;
  if (task.attemptId === attempt.id && mustGiveSlotBack(db, job)) return null;
  return mapOutputsLacked(db, job, report.held);
}

/** The committed outputs of `job` that `held` lacks, and whether it holds every map's. */
function mapOutputsLacked(
  db: Db,
  job: JobRecord,
  held: Uint8Array,
): Pick<MapOutputsNews, "outputs" | "holdsAll"> {
  const first = firstNotHeld(held, job.mapsTotal);
  const outputs = listMapOutputs(db, job.id, first).filter(({ mapIndex }) => !holds(held, mapIndex));
  return { outputs, holdsAll: first === job.mapsTotal };
}

/**
 * Whether a reduce of `job` started early must give its slot back: the job's maps starve (some
 * wait in the queue, and none runs), and the reduces started early hold more than their share
 * of the slots (workers were lost since they started; see earlyReduceRoom). While any map runs,
 * the map phase moves, and a reduce keeps what it has fetched: under churn (a worker lost every
 * few seconds), giving slots back at each loss threw away fetched output faster than the maps
 * could make it again (Hadoop, too, preempts reduces only for maps that cannot get a slot).
 */
function mustGiveSlotBack(db: Db, job: JobRecord): boolean {
  if (job.mapsDone >= job.mapsTotal || !hasTaskIn(db, job.id, TaskKind.MAP, TaskState.PENDING)) return false;
  if (hasTaskIn(db, job.id, TaskKind.MAP, TaskState.RUNNING)) return false;
  return earlyReduceRoom(db, job) < 0;
}
