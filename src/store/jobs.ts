import { randomBytes } from "node:crypto";
import { JobState, TaskKind, TaskState, type Split } from "../types.js";
import type { Db } from "./db.js";
import { prepared } from "./prepared.js";
import { JOB_COLUMNS, splitJson, toJob, type JobRecord } from "./rows.js";

export interface NewJob {
  app: string;
  inputs: string[];
  outputDir: string;
  reducers: number;
  splitSizeBytes: number;
  openCostBytes: number;
  params: Record<string, string>;
  splits: Split[];
  now: number;
  /** 0 (the default) to 10. */
  priority?: number;
  /** 0 (the default) for no cap. */
  maxRunningTasks?: number;
  /** False: no task of the job ever gets a backup attempt. Default true. */
  speculation?: boolean;
  /** The share of the maps that must commit before the reduces are released; default 1. */
  reduceSlowstart?: number;
}

/**
 * createJob. Expects: a validated request. Inserts the job (RUNNING, with a random shuffle key),
 * one PENDING map task per split and R reduce tasks, WAITING for the maps (a job with no map
 * releases them at once).
 * Returns the job's id. Run it inside the transaction that also records the submit event.
 */
export function createJob(db: Db, job: NewJob): number {
  const { lastInsertRowid } = prepared(
    db,
    `INSERT INTO jobs (app, state, inputs, output_dir, reducers, split_size_bytes, open_cost_bytes, params,
                       maps_total, submitted_at, shuffle_key, priority, max_running_tasks, speculation, reduce_slowstart)
     VALUES (?, 'RUNNING', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  ).run(
    job.app,
    JSON.stringify(job.inputs),
    job.outputDir,
    job.reducers,
    job.splitSizeBytes,
    job.openCostBytes,
    JSON.stringify(job.params),
    job.splits.length,
    job.now,
    randomBytes(16).toString("hex"),
    job.priority ?? 0,
    job.maxRunningTasks ?? 0,
    job.speculation === false ? 0 : 1,
    job.reduceSlowstart ?? 1,
  );
  const jobId = Number(lastInsertRowid);
  const insertTask = prepared(
    db,
    `INSERT INTO tasks (job_id, kind, idx, state, split) VALUES (?, ?, ?, ?, ?)`,
  );
  job.splits.forEach((split, m) =>
    insertTask.run(jobId, TaskKind.MAP, m, TaskState.PENDING, splitJson(split)),
  );
  for (let r = 0; r < job.reducers; r++) insertTask.run(jobId, TaskKind.REDUCE, r, TaskState.WAITING, null);
  return jobId;
}

export function getJob(db: Db, jobId: number): JobRecord | undefined {
  const row = prepared<[number], Parameters<typeof toJob>[0]>(
    db,
    `SELECT ${JOB_COLUMNS} FROM jobs WHERE id = ?`,
  ).get(jobId);
  return row && toJob(row);
}

/** Newest first, from `beforeId` (exclusive) down; `state` and `app` undefined for every one. */
export function listJobs(
  db: Db,
  options: { state?: JobState; app?: string; limit: number; beforeId?: number },
): JobRecord[] {
  const rows = prepared<[Record<string, string | number | null>], Parameters<typeof toJob>[0]>(
    db,
    `SELECT ${JOB_COLUMNS} FROM jobs
     WHERE (@state IS NULL OR state = @state) AND (@app IS NULL OR app = @app) AND id < @beforeId
     ORDER BY id DESC LIMIT @limit`,
  ).all({
    state: options.state ?? null,
    app: options.app ?? null,
    beforeId: options.beforeId ?? Number.MAX_SAFE_INTEGER,
    limit: options.limit,
  });
  return rows.map(toJob);
}

export function listRunningJobs(db: Db): JobRecord[] {
  return prepared<[], Parameters<typeof toJob>[0]>(
    db,
    `SELECT ${JOB_COLUMNS} FROM jobs WHERE state = 'RUNNING'`,
  )
    .all()
    .map(toJob);
}

/** The newest job writing to, or done writing to, `outputDir`: RUNNING or SUCCEEDED. */
export function findJobOwningOutput(db: Db, outputDir: string): JobRecord | undefined {
  const row = prepared<[string], Parameters<typeof toJob>[0]>(
    db,
    `SELECT ${JOB_COLUMNS} FROM jobs WHERE output_dir = ? AND state IN ('RUNNING', 'SUCCEEDED') ORDER BY id DESC LIMIT 1`,
  ).get(outputDir);
  return row && toJob(row);
}

/**
 * countTaskDone. Expects: the job RUNNING. Adds one to its maps_done or reduces_done.
 * Returns the job as it now is, or undefined if it was not RUNNING.
 */
export function countTaskDone(db: Db, jobId: number, kind: TaskKind): JobRecord | undefined {
  const column = kind === TaskKind.MAP ? "maps_done" : "reduces_done";
  const changed = prepared(
    db,
    `UPDATE jobs SET ${column} = ${column} + 1 WHERE id = ? AND state = 'RUNNING'`,
  ).run(jobId).changes;
  return changed === 1 ? getJob(db, jobId) : undefined;
}

/** markOutputFinished. Expects: the job ended, and its output directory was finished. */
export function markOutputFinished(db: Db, jobId: number): void {
  prepared(db, `UPDATE jobs SET output_finished = 1 WHERE id = ? AND state != 'RUNNING'`).run(jobId);
}

/** Ended jobs whose output directory has yet to be finished. */
export function listJobsWithOutputToFinish(db: Db): JobRecord[] {
  return prepared<[], Parameters<typeof toJob>[0]>(
    db,
    `SELECT ${JOB_COLUMNS} FROM jobs WHERE output_finished = 0 ORDER BY id`,
  )
    .all()
    .map(toJob);
}

/** uncountMapDone. Expects: the job RUNNING. Takes back one map, whose output was lost. */
export function uncountMapDone(db: Db, jobId: number): void {
  prepared(
    db,
    `UPDATE jobs SET maps_done = maps_done - 1 WHERE id = ? AND state = 'RUNNING' AND maps_done > 0`,
  ).run(jobId);
}
