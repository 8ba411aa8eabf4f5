/** JobService: what the `mr` client calls. */
import type { ServerWritableStream, UntypedServiceImplementation } from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { DriverConfig } from "../config.js";
import type { Roots } from "../roots.js";
import { InvalidArgumentError, NotFoundError, UnavailableError, toStatus } from "../errors.js";
import type * as pb from "../gen/mapreduce.js";
import { unary } from "../grpc.js";
import { BUILTIN_APPS } from "../mr/apps/index.js";
import type { Db } from "../store/db.js";
import { getJob, listJobs } from "../store/jobs.js";
import { listWorkers } from "../store/workers.js";
import { JobState, TERMINAL_JOB_STATES, WorkerState } from "../types.js";
import type { JobEffects } from "./jobEffects.js";
import type { TaskQueue } from "./queue.js";
import { cancelJob, submitJob } from "./scheduler.js";
import { validateSubmit } from "./submitCheck.js";
import { jobDetailMessage, jobMessage, workerMessage } from "./views.js";

export interface JobServiceDeps {
  db: Db;
  queue: TaskQueue;
  effects: JobEffects;
  config: DriverConfig;
  roots: Roots;
  log: Logger;
}

const DEFAULT_PAGE = 50;
const MAX_PAGE = 1000;

/** The least time between two snapshots of a watched job, in ms. */
const WATCH_INTERVAL_MS = 100;

export function createJobService(deps: JobServiceDeps): UntypedServiceImplementation {
  const { db, queue, effects, config, roots, log } = deps;

  const submit = async (req: pb.SubmitJobRequest): Promise<pb.Job> => {
    const request = validateSubmit(req, config, roots, availableApps(db));
    if (!queue.isConnected()) {
      throw new UnavailableError(
        `the driver cannot reach Redis at ${config.redisUrl} (start Redis, then submit again)`,
      );
    }
    const { job, ...work } = submitJob(db, request, Date.now());
    log.info({ jobId: job.id, app: job.app, maps: job.mapsTotal, reduces: job.reducers }, "job submitted");
    await effects.apply(job, work);
    return jobMessage(db, job);
  };

  const get = (req: pb.GetJobRequest): pb.JobDetail => jobDetailMessage(db, mustGetJob(db, req.jobId));

  const list = (req: pb.ListJobsRequest): pb.ListJobsResponse => {
    const state = req.state.toUpperCase();
    if (state !== "" && !Object.hasOwn(JobState, state)) {
      throw new InvalidArgumentError(
        `state: unknown state ${JSON.stringify(req.state)} (use one of ${Object.keys(JobState).join(", ").toLowerCase()})`,
      );
    }
    const limit = Math.min(req.limit > 0 ? req.limit : DEFAULT_PAGE, MAX_PAGE);
    const beforeId = req.pageToken === "" ? undefined : Number(req.pageToken);
    if (beforeId !== undefined && !Number.isInteger(beforeId)) {
      throw new InvalidArgumentError("page_token: not a token this driver gave out");
    }
    const jobs = listJobs(db, {
      state: (state || undefined) as JobState | undefined,
      limit: limit + 1,
      beforeId,
    });
    const page = jobs.slice(0, limit);
    return {
      jobs: page.map((job) => jobMessage(db, job)),
      nextPageToken: jobs.length > limit ? String(page.at(-1)!.id) : "",
    };
  };

  const cancel = async (req: pb.CancelJobRequest): Promise<pb.Job> => {
    const { job, ...work } = cancelJob(db, req.jobId, Date.now());
    log.info({ jobId: job.id }, "job cancelled");
    await effects.apply(job, work);
    return jobMessage(db, job);
  };

  const watch = (call: ServerWritableStream<pb.WatchJobRequest, pb.Job>): void => {
    let job;
    try {
      job = mustGetJob(db, call.request.jobId);
    } catch (err) {
      call.emit(
        "error",
        toStatus(err, (bug) => log.error({ err: bug }, "internal error in WatchJob")),
      );
      return;
    }
    const jobId = job.id;
    let pending: NodeJS.Timeout | undefined;
    let sentAt = 0;
    const send = (): void => {
      clearTimeout(pending);
      pending = undefined;
      sentAt = Date.now();
      const now = getJob(db, jobId)!;
      call.write(jobMessage(db, now));
      if (TERMINAL_JOB_STATES.includes(now.state)) stop();
    };
    // A busy job changes hundreds of times a second: snapshots go out at most every
    // WATCH_INTERVAL_MS, each with the latest state; the job's end goes out at once.
    const changed = (): void => {
      const wait = sentAt + WATCH_INTERVAL_MS - Date.now();
      if (wait <= 0 || TERMINAL_JOB_STATES.includes(getJob(db, jobId)!.state)) send();
      else pending ??= setTimeout(send, wait);
    };
    const unsubscribe = effects.onJobChanged(jobId, changed);
    // A change that no handler here saw (a retry's backoff, a lease expiring) still shows within a second.
    const timer = setInterval(send, 1000);
    const stop = (): void => {
      unsubscribe();
      clearInterval(timer);
      clearTimeout(pending);
      call.end();
    };
    call.on("cancelled", () => {
      unsubscribe();
      clearInterval(timer);
      clearTimeout(pending);
    });
    send();
  };

  const workers = (): pb.ListWorkersResponse => ({
    workers: listWorkers(db).map((worker) => workerMessage(db, worker)),
  });

  return {
    submitJob: unary(log, "SubmitJob", submit),
    getJob: unary(log, "GetJob", get),
    listJobs: unary(log, "ListJobs", list),
    cancelJob: unary(log, "CancelJob", cancel),
    watchJob: watch,
    listWorkers: unary(log, "ListWorkers", workers),
  };
}

function mustGetJob(db: Db, jobId: number) {
  const job = getJob(db, jobId);
  if (!job) throw new NotFoundError(`no job ${jobId} (see mr jobs list)`);
  return job;
}

/** The built-in apps, then those that ALIVE workers offer from their apps directories. */
function availableApps(db: Db): string[] {
  const offered = listWorkers(db)
    .filter((worker) => worker.state === WorkerState.ALIVE)
    .flatMap((worker) => worker.apps);
  return [...new Set([...Object.keys(BUILTIN_APPS), ...offered])];
}
