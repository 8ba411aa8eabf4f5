/**
 * Shared vocabulary of mr; docs/ARCHITECTURE.md has the full glossary.
 *
 * - job: one submitted MapReduce computation: an app, its inputs, an output directory and R.
 * - task: one unit of a job: M map tasks (one per split) and R reduce tasks (one per partition).
 * - attempt: one execution of a task by one worker; at most one attempt per task is committed.
 *   Its id is also the BullMQ lock token of the task's queue entry.
 * - holder: the attempt a task names in `attempt_id`: the one running it, the committed one,
 *   or the one that failed it.
 * - generation: bumped each time a committed task must run again (its map output was lost);
 *   the queue entry of a task is named after its task and generation, so enqueueing twice is harmless.
 * - split: the input of one map: a byte range of one file, or small files packed together up to
 *   the split size; records are lines, cut as Hadoop's line reader does.
 * - partition: a reduce bucket, `hash(key) mod R` unless the app says otherwise.
 * - map output: one file (or buffer) per map attempt with its R key-sorted partitions back to
 *   back, kept by the worker that ran it and served to reducers until the job ends.
 * - lease: the BullMQ lock on a running task, held under the attempt id; heartbeats extend it.
 *
 * States are written in the same words in SQLite, in the proto and on the screen. Which event
 * moves what from which state to which is the table in src/store/lifecycle.ts, the one place
 * that changes a state.
 */

export const JobState = {
  RUNNING: "RUNNING",
  SUCCEEDED: "SUCCEEDED",
  FAILED: "FAILED",
  CANCELLED: "CANCELLED",
} as const;
export type JobState = (typeof JobState)[keyof typeof JobState];

export const TaskKind = { MAP: "MAP", REDUCE: "REDUCE" } as const;
export type TaskKind = (typeof TaskKind)[keyof typeof TaskKind];

export const TaskState = {
  /** A reduce whose maps have not all succeeded yet. */
  WAITING: "WAITING",
  /** Runnable: it is, or should be, in the queue. */
  PENDING: "PENDING",
  RUNNING: "RUNNING",
  SUCCEEDED: "SUCCEEDED",
  FAILED: "FAILED",
  CANCELLED: "CANCELLED",
} as const;
export type TaskState = (typeof TaskState)[keyof typeof TaskState];

export const AttemptState = {
  RUNNING: "RUNNING",
  SUCCEEDED: "SUCCEEDED",
  /** The app threw or the worker reported an error: counts against maxAttempts. */
  FAILED: "FAILED",
  /**
   * Its worker stopped heartbeating, or the assignment never reached it (counts against
   * maxLostAttempts); or, from SUCCEEDED, the map output it committed was lost.
   */
  LOST: "LOST",
  /** Another attempt took its task: its lease expired (a loss), or its reduce was parked. */
  SUPERSEDED: "SUPERSEDED",
  /**
   * mr stopped it, charging nothing: its job was cancelled or failed, its fetch failed, or its
   * worker stopped and handed it back; or, from SUCCEEDED, its map output left with that worker.
   */
  KILLED: "KILLED",
} as const;
export type AttemptState = (typeof AttemptState)[keyof typeof AttemptState];

export const WorkerState = {
  ALIVE: "ALIVE",
  /** Silent for the worker timeout; if it comes back, it registers again under a new id. */
  LOST: "LOST",
  /** It deregistered as it stopped. */
  STOPPED: "STOPPED",
} as const;
export type WorkerState = (typeof WorkerState)[keyof typeof WorkerState];

export const TERMINAL_JOB_STATES: readonly JobState[] = [
  JobState.SUCCEEDED,
  JobState.FAILED,
  JobState.CANCELLED,
];

/** A byte range of one input file. `end` is exclusive; lines that start at or before it belong here. */
export interface FileRange {
  file: string;
  start: number;
  end: number;
}

/**
 * The input of one map: a range of one file, or the ranges of several small files packed
 * together (as Hadoop's CombineFileInputFormat does), read in order.
 */
export type Split = readonly FileRange[];

/** A counter's value: a 64-bit integer, a number while it is a safe one (see src/counters.ts). */
export type Count = number | bigint;

/** Counters by name, as Hadoop keeps them. */
export type Counters = Record<string, Count>;
