/**
 * The state machines of jobs, tasks, attempts and workers, in one place: each allowed
 * transition is a row of a table (from, event, to, the budget it charges), and the store
 * carries out an event with one guarded UPDATE built from its row. A row that is not in a
 * table cannot happen: the guard refuses it, and the caller hears so (false, or no rows).
 * `test/lifecycle.test.ts` walks every table against every state. docs/ARCHITECTURE.md draws
 * them.
 */
import { AttemptState, JobState, TaskKind, TaskState, WorkerState } from "../types.js";
import type { Db } from "./db.js";
import { prepared } from "./prepared.js";
import { TASK_COLUMNS, type TaskRecord } from "./rows.js";

/** The two budgets of a task: failures (the app threw) and losses (its worker went away). */
export type Budget = "failed" | "lost";

export interface TaskTransition {
  from: readonly TaskState[];
  to: TaskState;
  /** The budget the event uses up one of. */
  charge?: Budget;
  /** Only tasks of this kind take the event. */
  kind?: TaskKind;
  /**
   * What becomes of `attempt_id`, the holder: a new attempt takes it, it stays (the committed
   * attempt, or the one that failed the task), or it is cleared (the task is free again).
   */
  holder: "new" | "keep" | "clear";
  /** The task runs again under a new generation, so its queue entry gets a new name. */
  nextGeneration?: true;
  /** What the event means. */
  why: string;
}

const OPEN: readonly TaskState[] = [TaskState.WAITING, TaskState.PENDING, TaskState.RUNNING];

/** Events of one task, guarded by the attempt that holds it (and, for a claim, its generation). */
export const TASK_TRANSITIONS = {
  claim: {
    from: [TaskState.PENDING],
    to: TaskState.RUNNING,
    holder: "new",
    why: "the queue handed the task to a new attempt",
  },
  takeOver: {
    from: [TaskState.RUNNING],
    to: TaskState.RUNNING,
    holder: "new",
    charge: "lost",
    why: "the holder's lease expired and the queue handed the task out again; the holder is SUPERSEDED",
  },
  commit: {
    from: [TaskState.RUNNING],
    to: TaskState.SUCCEEDED,
    holder: "keep",
    why: "the holder reported success; it stays as the committed attempt",
  },
  commitBackup: {
    from: [TaskState.PENDING, TaskState.RUNNING],
    to: TaskState.SUCCEEDED,
    holder: "new",
    why: "a backup attempt (speculative execution) reported success first; it becomes the committed holder, and the holder it beat, if any, is KILLED",
  },
  retry: {
    from: [TaskState.RUNNING],
    to: TaskState.PENDING,
    holder: "clear",
    charge: "failed",
    why: "the holder failed with attempts left; the task waits out its backoff in the queue",
  },
  fail: {
    from: [TaskState.RUNNING],
    to: TaskState.FAILED,
    holder: "keep",
    charge: "failed",
    why: "the holder failed its last attempt, or unrecoverably; it stays, to name the error",
  },
  requeue: {
    from: [TaskState.RUNNING],
    to: TaskState.PENDING,
    holder: "clear",
    charge: "lost",
    why: "the holder was lost with its worker, or never reached it; the task goes straight back to the queue",
  },
  failLost: {
    from: [TaskState.RUNNING],
    to: TaskState.FAILED,
    holder: "keep",
    charge: "lost",
    why: "the holder was lost and the task has used up its losses",
  },
  handBack: {
    from: [TaskState.RUNNING],
    to: TaskState.PENDING,
    holder: "clear",
    why: "the holder's worker is stopping and gave the task back; no budget is charged",
  },
  park: {
    from: [TaskState.RUNNING],
    to: TaskState.WAITING,
    kind: TaskKind.REDUCE,
    holder: "clear",
    why: "its job's maps wait for slots that reduces started early hold: the reduce gives its slot back (preempted) and waits to be released again",
  },
  fetchFailed: {
    from: [TaskState.RUNNING],
    to: TaskState.WAITING,
    kind: TaskKind.REDUCE,
    holder: "clear",
    charge: "lost",
    why: "the holder could not fetch a map's output; the reduce waits for that map to run again, charged to its losses so that no fetch loop is endless",
  },
  rerun: {
    from: [TaskState.SUCCEEDED],
    to: TaskState.PENDING,
    kind: TaskKind.MAP,
    holder: "clear",
    nextGeneration: true,
    why: "the committed map output is lost; the map runs again under a new generation",
  },
} as const satisfies Record<string, TaskTransition>;
export type TaskEvent = keyof typeof TASK_TRANSITIONS;

/** Events of every task of one job at once: no holder is checked. */
export const JOB_TASK_TRANSITIONS = {
  release: {
    from: [TaskState.WAITING],
    to: TaskState.PENDING,
    kind: TaskKind.REDUCE,
    holder: "keep",
    why: "enough of the maps have succeeded (the job's reduce slowstart), within the share of the slots reduces may hold while maps wait; or every map has",
  },
  cancel: {
    from: OPEN,
    to: TaskState.CANCELLED,
    holder: "keep",
    why: "the job was cancelled",
  },
  abort: {
    from: OPEN,
    to: TaskState.FAILED,
    holder: "keep",
    why: "the job failed because of another task",
  },
} as const satisfies Record<string, TaskTransition>;
export type JobTaskEvent = keyof typeof JOB_TASK_TRANSITIONS;

export interface AttemptTransition {
  from: AttemptState;
  to: AttemptState;
  why: string;
}

export const ATTEMPT_TRANSITIONS = {
  succeed: { from: AttemptState.RUNNING, to: AttemptState.SUCCEEDED, why: "it was committed" },
  fail: {
    from: AttemptState.RUNNING,
    to: AttemptState.FAILED,
    why: "the app threw, or the worker could not run it: charged to the task's failures, unless it was a backup",
  },
  lose: {
    from: AttemptState.RUNNING,
    to: AttemptState.LOST,
    why: "its worker was lost, or the assignment never reached it: charged to the task's losses, unless it was a backup",
  },
  supersede: {
    from: AttemptState.RUNNING,
    to: AttemptState.SUPERSEDED,
    why: "another attempt took its task: its lease expired (charged to losses)",
  },
  kill: {
    from: AttemptState.RUNNING,
    to: AttemptState.KILLED,
    why: "mr stopped it: its job ended, its worker stopped, its fetch failed (charged to the task's losses), another attempt of its task committed first, or it was an early reduce preempted for the maps",
  },
  loseOutput: {
    from: AttemptState.SUCCEEDED,
    to: AttemptState.LOST,
    why: "its committed map output is gone (its worker was lost, or a reduce could not fetch it)",
  },
  withdrawOutput: {
    from: AttemptState.SUCCEEDED,
    to: AttemptState.KILLED,
    why: "its committed map output went with its worker, which stopped while the job ran",
  },
} as const satisfies Record<string, AttemptTransition>;
export type AttemptEvent = keyof typeof ATTEMPT_TRANSITIONS;

export const JOB_TRANSITIONS = {
  succeed: { from: JobState.RUNNING, to: JobState.SUCCEEDED, why: "its last reduce was committed" },
  fail: {
    from: JobState.RUNNING,
    to: JobState.FAILED,
    why: "a task used up its failures or losses, or failed unrecoverably",
  },
  cancel: { from: JobState.RUNNING, to: JobState.CANCELLED, why: "mr jobs cancel" },
} as const;
export type JobEvent = keyof typeof JOB_TRANSITIONS;

export const WORKER_TRANSITIONS = {
  lose: { from: WorkerState.ALIVE, to: WorkerState.LOST, why: "no heartbeat for the worker timeout" },
  stop: { from: WorkerState.ALIVE, to: WorkerState.STOPPED, why: "it said it is stopping" },
} as const;
export type WorkerEvent = keyof typeof WORKER_TRANSITIONS;

const quoted = (states: readonly string[]): string => states.map((state) => `'${state}'`).join(", ");

/** `SET …` and extra `WHERE …` of a task transition, the same for one task or a whole job. */
function taskUpdate(t: TaskTransition): { set: string; where: string } {
  const set = [`state = '${t.to}'`];
  if (t.charge) set.push(`${t.charge}_attempts = ${t.charge}_attempts + 1`);
  if (t.holder === "new") set.push("attempt_id = @newHolder");
  if (t.holder === "clear") set.push("attempt_id = NULL");
  if (t.nextGeneration) set.push("generation = generation + 1");
  const where = [`state IN (${quoted(t.from)})`];
  if (t.kind) where.push(`kind = '${t.kind}'`);
  return { set: set.join(", "), where: where.join(" AND ") };
}

/**
 * moveTask. Expects: the task in a `from` state of the event, of its kind, held by `holder`
 * (null: held by none) and, if given, at `generation`. Makes the event's change; for a "new"
 * holder, `newHolder` takes the task. Returns false, changing nothing, if the task was not so.
 */
export function moveTask(
  db: Db,
  event: TaskEvent,
  expect: { taskId: number; holder: string | null; generation?: number; newHolder?: string },
): boolean {
  const { set, where } = taskUpdate(TASK_TRANSITIONS[event]);
  const generation = expect.generation === undefined ? "" : " AND generation = @generation";
  const moved =
    prepared(
      db,
      `UPDATE tasks SET ${set} WHERE id = @taskId AND attempt_id IS @holder${generation} AND ${where}`,
    ).run({
      taskId: expect.taskId,
      holder: expect.holder,
      ...(expect.generation === undefined ? {} : { generation: expect.generation }),
      ...(TASK_TRANSITIONS[event].holder === "new" ? { newHolder: expect.newHolder } : {}),
    }).changes === 1;
  if (moved && runsAgain(event)) {
    prepared(
      db,
      `UPDATE jobs SET retries = retries + 1 WHERE id = (SELECT job_id FROM tasks WHERE id = ?)`,
    ).run(expect.taskId);
  }
  return moved;
}

/** A task event that means the task runs again: an attempt charged as failed or lost, or a re-run map. */
function runsAgain(event: TaskEvent): boolean {
  const transition: TaskTransition = TASK_TRANSITIONS[event];
  return transition.charge !== undefined || event === "rerun";
}

/**
 * moveJobTasks. Makes the event's change to every task of the job in a `from` state of it, or
 * to the first `limit` of them by (kind, index). Returns those tasks as they now are, in
 * (kind, index) order: the queue entries to add, or to drop (a task that was RUNNING still
 * names its holder, the entry's lock token).
 */
export function moveJobTasks(db: Db, jobId: number, event: JobTaskEvent, limit = -1): TaskRecord[] {
  const { set, where } = taskUpdate(JOB_TASK_TRANSITIONS[event]);
  return prepared<[number, number], TaskRecord>(
    db,
    `UPDATE tasks SET ${set} WHERE id IN
       (SELECT id FROM tasks WHERE job_id = ? AND ${where} ORDER BY kind, idx LIMIT ?)
     RETURNING ${TASK_COLUMNS}`,
  )
    .all(jobId, limit)
    .sort((a, b) => a.kind.localeCompare(b.kind) || a.index - b.index);
}

/**
 * moveAttempt. Expects: the attempt in the event's `from` state. Moves it to `to` with `error`;
 * an attempt that was RUNNING gets its end time, and a committed one progress 1. Returns false
 * if it was not in the `from` state.
 */
export function moveAttempt(
  db: Db,
  attemptId: string,
  event: AttemptEvent,
  error: string | null,
  now: number,
): boolean {
  const { from, to } = ATTEMPT_TRANSITIONS[event];
  const progress = to === AttemptState.SUCCEEDED ? ", progress = 1" : "";
  return (
    prepared(
      db,
      `UPDATE attempts SET state = '${to}', error = ?, finished_at = coalesce(finished_at, ?)${progress}
       WHERE id = ? AND state = '${from}'`,
    ).run(error, now, attemptId).changes === 1
  );
}

/**
 * killJobAttempts. Ends every RUNNING attempt of the job's tasks as KILLED (the `kill` event),
 * for a job that was cancelled or failed; their next heartbeat tells their workers to stop.
 */
export function killJobAttempts(db: Db, jobId: number, reason: string, now: number): void {
  const { from, to } = ATTEMPT_TRANSITIONS.kill;
  prepared(
    db,
    `UPDATE attempts SET state = '${to}', error = ?, finished_at = ?
     WHERE state = '${from}' AND task_id IN (SELECT id FROM tasks WHERE job_id = ?)`,
  ).run(reason, now, jobId);
}

/**
 * moveJob. Expects: the job RUNNING. Moves it to the event's state with its reason, its output
 * yet to finish (markOutputFinished). Returns false if it was no longer RUNNING.
 */
export function moveJob(db: Db, jobId: number, event: JobEvent, error: string | null, now: number): boolean {
  const { from, to } = JOB_TRANSITIONS[event];
  return (
    prepared(
      db,
      `UPDATE jobs SET state = '${to}', error = ?, finished_at = ?, output_finished = 0
       WHERE id = ? AND state = '${from}'`,
    ).run(error, now, jobId).changes === 1
  );
}

/**
 * moveWorker. Expects: the worker in the event's `from` state (ALIVE). Moves it to `to`.
 * Returns false if it was not ALIVE.
 */
export function moveWorker(db: Db, workerId: number, event: WorkerEvent): boolean {
  const { from, to } = WORKER_TRANSITIONS[event];
  return (
    prepared(db, `UPDATE workers SET state = '${to}' WHERE id = ? AND state = '${from}'`).run(workerId)
      .changes === 1
  );
}
