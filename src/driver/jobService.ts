/** JobService: what the `mr` client calls. */
import type { ServerWritableStream, UntypedServiceImplementation } from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { DriverConfig } from "../config.js";
import type { Roots } from "../roots.js";
import {
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
  UnavailableError,
  toStatus,
} from "../errors.js";
import { Job } from "../gen/mapreduce.js";
import type * as pb from "../gen/mapreduce.js";
import { LIMITS } from "../limits.js";
import { unary } from "../grpc.js";
import { BUILTIN_APPS } from "../mr/apps/index.js";
import { prepareOutputDir, removeTemporaryOutput } from "../mr/output.js";
import type { Db } from "../store/db.js";
import { getJob, listJobs } from "../store/jobs.js";
import { listWorkers } from "../store/workers.js";
import { JobState, TERMINAL_JOB_STATES } from "../types.js";
import type { JobEffects } from "./jobEffects.js";
import type { TaskQueue } from "./queue.js";
import { cancelJob, refuseOwnedOutput, submitJob } from "./scheduler.js";
import { validateSubmit } from "./submitCheck.js";
import { offeredApps } from "./unservedJobs.js";
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
const DEFAULT_WORKER_PAGE = 100;
/** Workers that left are listed for this long after they were last heard from, unless `all`. */
const RECENT_WORKER_MS = 10 * 60_000;
const MAX_PAGE = 1000;

/** How long a submit waits for Redis before it is refused as UNAVAILABLE, in ms. */
const REDIS_WAIT_MS = 2000;

/** The least time between two snapshots of a watched job, in ms. */
const WATCH_INTERVAL_MS = 100;

export function createJobService(deps: JobServiceDeps): UntypedServiceImplementation {
  const { db, queue, effects, config, roots, log } = deps;
  const watches = new OpenWatches();

  const submit = async (req: pb.SubmitJobRequest): Promise<pb.Job> => {
    const request = validateSubmit(req, config, roots, availableApps(db), (dir, overwrite) =>
      refuseOwnedOutput(db, dir, overwrite),
    );
    // A driver that has just started may not have reached Redis yet: a moment's wait, not a refusal.
    if (!(await queue.reachable(REDIS_WAIT_MS))) {
      throw new UnavailableError(
        `the driver cannot reach Redis at ${config.redisUrl} (start Redis, then submit again)`,
      );
    }
    prepareOutputDir(request.outputDir, req.overwrite);
    let submitted;
    try {
      submitted = submitJob(db, request, Date.now());
    } catch (err) {
      removeTemporaryOutput(request.outputDir); // no _temporary left for the next submit to trip on
      throw err;
    }
    const { job, ...work } = submitted;
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
  };

  const cancel = async (req: pb.CancelJobRequest): Promise<pb.Job> => {
    const { job, ...work } = cancelJob(db, req.jobId, Date.now());
    log.info({ jobId: job.id }, "job cancelled");
    // Cancelled in SQLite: the output goes now, and the queue lets go of the job's entries
    // behind the reply (a job may have LIMITS.maps of them).
    effects.finishOutput(job);
    effects.jobChanged(job.id);
    effects.inBackground(() => effects.applyQueueWork(work, job.id));
    return jobMessage(db, job);
  };

  const watch = (call: ServerWritableStream<pb.WatchJobRequest, pb.Job>): void => {
    let job;
    let release: () => void;
    try {
      job = mustGetJob(db, call.request.jobId);
      release = watches.open(peerHost(call.getPeer()));
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
    /** Set while the client has not read what was sent: snapshots wait, rather than pile up. */
    let unread = false;
    let closed = false;
    const send = (): void => {
      if (closed) return;
      clearTimeout(pending);
      pending = undefined;
      const now = getJob(db, jobId)!;
      const ended = TERMINAL_JOB_STATES.includes(now.state);
      if (unread && !ended) return;
      sentAt = Date.now();
      unread = !call.write(jobMessage(db, now));
      if (ended) stop();
    };
    call.on("drain", () => {
      unread = false;
      send();
    });
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
    const cleanUp = (): void => {
      closed = true;
      unsubscribe();
      clearInterval(timer);
      clearTimeout(pending);
      release();
    };
    const stop = (): void => {
      cleanUp();
      call.end();
    };
    call.on("cancelled", cleanUp);
    send();
  };

  const workers = (req: pb.ListWorkersRequest): pb.ListWorkersResponse => {
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
  };

  return {
    submitJob: unary(log, "SubmitJob", submit),
    getJob: unary(log, "GetJob", get),
    listJobs: unary(log, "ListJobs", list),
    cancelJob: unary(log, "CancelJob", cancel),
    watchJob: watch,
    listWorkers: unary(log, "ListWorkers", workers),
  };
}

/**
 * The WatchJob streams open, by client host: each holds timers and a listener, so one client
 * may hold only so many, and all clients together only so many more.
 */
class OpenWatches {
  private readonly byHost = new Map<string, number>();
  private total = 0;

  /** Counts a stream from `host`, or refuses it; returns what to call, once, when it ends. */
  open(host: string): () => void {
    const held = this.byHost.get(host) ?? 0;
    if (held >= LIMITS.watchesPerClient || this.total >= LIMITS.watches) {
      throw new ResourceExhaustedError(
        held >= LIMITS.watchesPerClient
          ? `${host} already watches ${held} jobs, as many as one client may (end some mr jobs wait, then try again)`
          : `the driver already serves ${this.total} watches, as many as it may (try again later)`,
      );
    }
    this.byHost.set(host, held + 1);
    this.total++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      const left = (this.byHost.get(host) ?? 1) - 1;
      if (left === 0) this.byHost.delete(host);
      else this.byHost.set(host, left);
    };
  }
}

/** The host of a gRPC peer, such as `ipv4:127.0.0.1:50312` or `[::1]:50312`. */
function peerHost(peer: string): string {
  const address = peer.replace(/^ipv[46]:/, "");
  return address.slice(0, Math.max(0, address.lastIndexOf(":"))) || address;
}

function mustGetJob(db: Db, jobId: number) {
  const job = getJob(db, jobId);
  if (!job) throw new NotFoundError(`no job ${jobId} (see mr jobs list)`);
  return job;
}

/** The built-in apps, then those that ALIVE workers offer from their apps directories. */
function availableApps(db: Db): string[] {
  return [...new Set([...Object.keys(BUILTIN_APPS), ...offeredApps(db)])];
}
