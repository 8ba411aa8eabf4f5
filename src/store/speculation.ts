/** The reads behind speculative execution (src/driver/speculation.ts): who straggles, and what is typical. */
import type { TaskKind } from "../types.js";
import type { Db } from "./db.js";
import { prepared } from "./prepared.js";

/** How long each committed attempt of the job's tasks of `kind` ran, in ms, shortest first. */
export function committedDurations(db: Db, jobId: number, kind: TaskKind): number[] {
  return prepared<[number, string], number>(
    db,
    `SELECT a.finished_at - a.started_at FROM tasks t JOIN attempts a ON a.id = t.attempt_id
     WHERE t.job_id = ? AND t.kind = ? AND t.state = 'SUCCEEDED' ORDER BY 1`,
  )
    .pluck()
    .all(jobId, kind);
}

/** A RUNNING task's holder, and how far it had got when last heard from. */
export interface RunningHolder {
  taskId: number;
  holder: string;
  holderWorkerId: number;
  startedAt: number;
  /** Its progress (0..1) as last reported, and when; progressAt is null before any report. */
  progress: number;
  progressAt: number | null;
  /** Backups the task has had in its current generation. */
  backups: number;
}

/**
 * The job's RUNNING tasks of `kind` whose holder started before `startedBefore` and that no
 * backup runs beside, longest-running first.
 */
export function listRunningHolders(
  db: Db,
  jobId: number,
  kind: TaskKind,
  startedBefore: number,
): RunningHolder[] {
  return prepared<[number, string, number], RunningHolder>(
    db,
    `SELECT t.id AS taskId, t.attempt_id AS holder, a.worker_id AS holderWorkerId, a.started_at AS startedAt,
       a.progress, a.progress_at AS progressAt,
       (SELECT count(*) FROM attempts b WHERE b.task_id = t.id AND b.generation = t.generation
          AND b.speculative = 1) AS backups
     FROM tasks t JOIN attempts a ON a.id = t.attempt_id
     WHERE t.job_id = ? AND t.kind = ? AND t.state = 'RUNNING' AND a.state = 'RUNNING' AND a.started_at < ?
       AND NOT EXISTS (SELECT 1 FROM attempts b WHERE b.task_id = t.id AND b.state = 'RUNNING' AND b.id != t.attempt_id)
     ORDER BY a.started_at`,
  ).all(jobId, kind, startedBefore);
}
