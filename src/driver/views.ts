/** Store records as proto messages: the read side of the JobService. */
import { toCounterList } from "../counters.js";
import { InvalidArgumentError } from "../errors.js";
import { Job } from "../gen/mapreduce.js";
import type * as pb from "../gen/mapreduce.js";
import { LIMITS } from "../limits.js";
import { listJobAttempts, listRunningAttempts, sumRunningProgress } from "../store/attempts.js";
import { jobCounters } from "../store/counters.js";
import { listExcludingJobs } from "../store/exclusions.js";
import type { Db } from "../store/db.js";
import { listEvents } from "../store/events.js";
import { listJobs } from "../store/jobs.js";
import type { JobRecord, WorkerRecord } from "../store/rows.js";
import { listTasks } from "../store/tasks.js";
import { listWorkers } from "../store/workers.js";
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
    openCostBytes: job.openCostBytes,
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
    reduceSlowstart: job.reduceSlowstart,
    outputFinished: job.state !== JobState.RUNNING && job.outputFinished,
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
    slots: worker.slots,
  };
}

const DEFAULT_PAGE = 50;
const DEFAULT_WORKER_PAGE = 100;
/** Workers that left are listed for this long after they were last heard from, unless `all`. */
const RECENT_WORKER_MS = 10 * 60_000;
const MAX_PAGE = 1000;

/**
 * A page of jobs, newest first, of one state and app if given; what ListJobs and the HTTP API
 * answer. Throws InvalidArgumentError for an unknown state or a token this driver never gave.
 */
export function listJobsPage(
  db: Db,
  req: Pick<pb.ListJobsRequest, "state" | "app" | "limit" | "pageToken">,
): pb.ListJobsResponse {
  const state = req.state.toUpperCase();
  if (state !== "" && !Object.hasOwn(JobState, state)) {
    throw new InvalidArgumentError(
      `state: unknown state ${JSON.stringify(req.state)} (use one of ${Object.keys(JobState).join(", ").toLowerCase()})`,
    );
  }
  const limit = Math.min(req.limit > 0 ? req.limit : DEFAULT_PAGE, MAX_PAGE);
  const beforeId = req.pageToken === "" ? undefined : Number(req.pageToken);
  if (beforeId !== undefined && !Number.isSafeInteger(beforeId)) {
    throw new InvalidArgumentError("page_token: not a token this driver gave out");
  }
  const jobs = listJobs(db, {
    state: (state || undefined) as JobState | undefined,
    app: req.app || undefined,
    limit: limit + 1,
    beforeId,
  });
  // A page ends early rather than grow past listReplyBytes: jobs with long input lists and
  // params would otherwise make a reply bigger than a client takes.
  const page: pb.Job[] = [];
  let bytes = 0;
  const offered = offeredApps(db);
  for (const job of jobs.slice(0, limit)) {
    const message = jobMessage(db, job, offered);
    bytes += Job.encode(message).finish().length;
    if (page.length > 0 && bytes > LIMITS.listReplyBytes) break;
    page.push(message);
  }
  const more = jobs.length > page.length;
  return { jobs: page, nextPageToken: more ? String(page.at(-1)!.id) : "" };
}

/** A page of workers by id: those heard from in the last 10 minutes, or `all`. */
export function listWorkersPage(
  db: Db,
  req: Pick<pb.ListWorkersRequest, "all" | "limit" | "pageToken">,
): pb.ListWorkersResponse {
  const limit = Math.min(req.limit > 0 ? req.limit : DEFAULT_WORKER_PAGE, MAX_PAGE);
  const afterId = req.pageToken === "" ? 0 : Number(req.pageToken);
  if (!Number.isSafeInteger(afterId) || afterId < 0) {
    throw new InvalidArgumentError("page_token: not a token this driver gave out");
  }
  const heardSince = req.all ? 0 : Date.now() - RECENT_WORKER_MS;
  const page = listWorkers(db, { heardSince, afterId, limit: limit + 1 });
  const shown = page.slice(0, limit);
  return {
    workers: shown.map((worker) => workerMessage(db, worker)),
    nextPageToken: page.length > limit ? String(shown.at(-1)!.id) : "",
  };
}
