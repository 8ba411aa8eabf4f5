/** Store records as proto messages: the read side of the JobService. */
import { toCounterList } from "../counters.js";
import type * as pb from "../gen/mapreduce.js";
import { listJobAttempts, listRunningAttempts, sumRunningProgress } from "../store/attempts.js";
import { jobCounters } from "../store/counters.js";
import { listExcludingJobs } from "../store/exclusions.js";
import type { Db } from "../store/db.js";
import { listEvents } from "../store/events.js";
import type { JobRecord, WorkerRecord } from "../store/rows.js";
import { listTasks } from "../store/tasks.js";
import { JobState } from "../types.js";
import { offeredApps } from "./unservedJobs.js";

/**
 * A job as the proto has it; a running one with the progress of its running attempts, and what
 * it waits for. `offered`, the apps live workers offer, is looked up once for many jobs.
 */
export function jobMessage(db: Db, job: JobRecord, offered?: ReadonlySet<string>): pb.Job {
  const isRunning = job.state === JobState.RUNNING;
  const running = isRunning ? sumRunningProgress(db, job.id) : { MAP: 0, REDUCE: 0 };
  const unserved = isRunning && !(offered ?? offeredApps(db)).has(job.app);
  return {
    id: job.id,
    app: job.app,
    state: job.state,
    inputs: job.inputs,
    outputDir: job.outputDir,
    reducers: job.reducers,
    splitSizeBytes: job.splitSizeBytes,
    params: job.params,
    mapsTotal: job.mapsTotal,
    mapsDone: job.mapsDone,
    reducesTotal: job.reducers,
    reducesDone: job.reducesDone,
    submittedAtMs: job.submittedAt,
    finishedAtMs: job.finishedAt ?? 0,
    error: job.error ?? "",
    mapsProgress: Math.min(job.mapsTotal, job.mapsDone + running.MAP),
    reducesProgress: Math.min(job.reducers, job.reducesDone + running.REDUCE),
    waitingFor: unserved ? `a live worker that offers app ${job.app}` : "",
    retries: job.retries,
    priority: job.priority,
    maxRunningTasks: job.maxRunningTasks,
    speculation: job.speculation,
  };
}

/** The whole history of a job: tasks with their attempts, events and counters. */
export function jobDetailMessage(db: Db, job: JobRecord): pb.JobDetail {
  const attemptsByTask = new Map<number, pb.Attempt[]>();
  for (const attempt of listJobAttempts(db, job.id)) {
    const list = attemptsByTask.get(attempt.taskId) ?? [];
    list.push({
      id: attempt.id,
      workerId: attempt.workerId,
      state: attempt.state,
      startedAtMs: attempt.startedAt,
      finishedAtMs: attempt.finishedAt ?? 0,
      error: attempt.error ?? "",
      progress: attempt.progress,
      speculative: attempt.speculative === 1,
    });
    attemptsByTask.set(attempt.taskId, list);
  }
  return {
    job: jobMessage(db, job),
    tasks: listTasks(db, job.id).map((task) => ({
      id: task.id,
      kind: task.kind,
      index: task.index,
      state: task.state,
      generation: task.generation,
      attempts: attemptsByTask.get(task.id) ?? [],
    })),
    events: listEvents(db, job.id).map((event) => ({
      atMs: event.at,
      type: event.type,
      message: event.message,
    })),
    counters: toCounterList(jobCounters(db, job.id)),
  };
}

export function workerMessage(db: Db, worker: WorkerRecord): pb.Worker {
  return {
    id: worker.id,
    address: worker.address,
    state: worker.state,
    registeredAtMs: worker.registeredAt,
    lastHeartbeatMs: worker.lastHeartbeatAt,
    runningAttempts: listRunningAttempts(db, worker.id).map((attempt) => attempt.id),
    apps: worker.apps,
    excludedByJobs: listExcludingJobs(db, worker.id),
    excludedUntilMs: worker.excludedUntil > Date.now() ? worker.excludedUntil : 0,
  };
}
