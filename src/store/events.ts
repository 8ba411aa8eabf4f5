import type { Db } from "./db.js";
import { prepared } from "./prepared.js";
import type { EventRecord } from "./rows.js";

/** The kinds of event in a job's history. */
export const EventType = {
  SUBMITTED: "submitted",
  REDUCES_RELEASED: "reduces-released",
  MAPS_DONE: "maps-done",
  REDUCE_PREEMPTED: "reduce-preempted",
  TASK_RETRIED: "task-retried",
  TASK_FAILED: "task-failed",
  ATTEMPT_SUPERSEDED: "attempt-superseded",
  WORKER_LOST: "worker-lost",
  WORKER_STOPPED: "worker-stopped",
  ATTEMPT_ORPHANED: "attempt-orphaned",
  MAP_RERUN: "map-rerun",
  MAP_OUTPUT_LOST: "map-output-lost",
  FETCH_FAILED: "fetch-failed",
  SUCCEEDED: "succeeded",
  FAILED: "failed",
  CANCELLED: "cancelled",
  DRIVER_RECOVERED: "driver-recovered",
  APP_UNSERVED: "app-unserved",
  WORKER_EXCLUDED: "worker-excluded",
  SPECULATED: "speculated",
  SPECULATION_ENDED: "speculation-ended",
} as const;
export type EventType = (typeof EventType)[keyof typeof EventType];

/** addEvent. Appends one line to a job's history. */
export function addEvent(db: Db, jobId: number, type: EventType, message: string, now: number): void {
  prepared(db, `INSERT INTO events (job_id, at, type, message) VALUES (?, ?, ?, ?)`).run(
    jobId,
    now,
    type,
    message,
  );
}

export function listEvents(db: Db, jobId: number): EventRecord[] {
  return prepared<[number], EventRecord>(
    db,
    `SELECT at, type, message FROM events WHERE job_id = ? ORDER BY id`,
  ).all(jobId);
}
