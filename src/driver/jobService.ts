/** JobService: what the `mr` client calls. */
import type { ServerWritableStream, UntypedServiceImplementation } from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { DriverConfig } from "../config.js";
import type { Roots } from "../roots.js";
import { NotFoundError, UnavailableError } from "../errors.js";
import type * as pb from "../gen/mapreduce.js";
import { toStatus, unary } from "../grpc.js";
import { BUILTIN_APPS } from "../mr/apps/index.js";
import { prepareOutputDir, removeTemporaryOutput } from "../mr/output.js";
import { isS3Uri } from "../mr/s3Uri.js";
import { emptyS3Output } from "../mr/s3Output.js";
import type { Db } from "../store/db.js";
import { getJob } from "../store/jobs.js";
import type { JobEffects } from "./jobEffects.js";
import type { JobWatches, Watch } from "./jobWatch.js";
import type { TaskQueue } from "./queue.js";
import { cancelJob, refuseOwnedOutput, submitJob } from "./scheduler.js";
import { validateSubmit } from "./submitCheck.js";
import { offeredApps } from "./unservedJobs.js";
import { jobDetailMessage, jobMessage, listJobsPage, listWorkersPage } from "./views.js";

export interface JobServiceDeps {
  db: Db;
  watches: JobWatches;
  queue: TaskQueue;
  effects: JobEffects;
  config: DriverConfig;
  roots: Roots;
  log: Logger;
}

/** How long a submit waits for Redis before it is refused as UNAVAILABLE, in ms. */
const REDIS_WAIT_MS = 2000;

export function createJobService(deps: JobServiceDeps): UntypedServiceImplementation {
  const { db, watches, queue, effects, config, roots, log } = deps;

  const submit = async (req: pb.SubmitJobRequest): Promise<pb.Job> => {
    const request = await validateSubmit(req, config, roots, availableApps(db), (dir, overwrite) =>
      refuseOwnedOutput(db, dir, overwrite),
    );
    // A driver that has just started may not have reached Redis yet: a moment's wait, not a refusal.
    if (!(await queue.reachable(REDIS_WAIT_MS))) {
      throw new UnavailableError(
        `the driver cannot reach Redis at ${config.redisUrl} (start Redis, then submit again)`,
      );
    }
    if (!isS3Uri(request.outputDir)) prepareOutputDir(request.outputDir, req.overwrite);
    else if (req.overwrite) await emptyS3Output(request.outputDir, { endpoint: config.s3Endpoint });
    let submitted;
    try {
      submitted = submitJob(db, request, Date.now());
    } catch (err) {
      // No _temporary left for the next submit to trip on (an output in a store has none).
      if (!isS3Uri(request.outputDir)) removeTemporaryOutput(request.outputDir);
      throw err;
    }
    const { job, ...work } = submitted;
    log.info({ jobId: job.id, app: job.app, maps: job.mapsTotal, reduces: job.reducers }, "job submitted");
    await effects.apply(job, work);
    return jobMessage(db, job);
  };

  const get = (req: pb.GetJobRequest): pb.JobDetail => jobDetailMessage(db, mustGetJob(db, req.jobId));

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
    let watch: Watch;
    try {
      watch = watches.follow(call.request.jobId, peerHost(call.getPeer()), {
        write: (job) => call.write(job),
        end: () => call.end(),
      });
    } catch (err) {
      call.emit(
        "error",
        toStatus(err, (bug) => log.error({ err: bug }, "internal error in WatchJob")),
      );
      return;
    }
    call.on("drain", watch.drained);
    call.on("cancelled", watch.close);
  };

  return {
    submitJob: unary(log, "SubmitJob", submit),
    getJob: unary(log, "GetJob", get),
    listJobs: unary(log, "ListJobs", (req: pb.ListJobsRequest) => listJobsPage(db, req)),
    cancelJob: unary(log, "CancelJob", cancel),
    watchJob: watch,
    listWorkers: unary(log, "ListWorkers", (req: pb.ListWorkersRequest) => listWorkersPage(db, req)),
  };
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
