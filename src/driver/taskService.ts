/** TaskService: what workers call. Each handler decodes, calls the core, then does the queue work. */
import type { UntypedServiceImplementation } from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { DriverConfig } from "../config.js";
import { fromCounterList } from "../counters.js";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, cut, toError } from "../errors.js";
import type * as pb from "../gen/mapreduce.js";
import { unary } from "../grpc.js";
import { commitPartFile } from "../mr/output.js";
import { isS3Uri } from "../mr/s3Uri.js";
import { recordUpload } from "../store/uploads.js";
import { APP_NAME, LIMITS } from "../limits.js";
import { Counter } from "../mr/context.js";
import type { Roots } from "../roots.js";
import type { Db } from "../store/db.js";
import type { GroupCommit } from "../store/groupCommit.js";
import { parseSplit, type JobRecord, type TaskRecord } from "../store/rows.js";
import { getJob } from "../store/jobs.js";
import { getWorker } from "../store/workers.js";
import { getAttempt } from "../store/attempts.js";
import { getTask } from "../store/tasks.js";
import { JobState, TaskKind, WorkerState, type Counters } from "../types.js";
import type { Dispatcher } from "./dispatcher.js";
import type { JobEffects } from "./jobEffects.js";
import type { TaskQueue } from "./queue.js";
import { releaseOrphans, reportFetchFailure, stopWorker } from "./faults.js";
import { completeAttempt, failAttempt, type Assignment } from "./scheduler.js";
import { peekMapOutputs, reportHeldOutputs, type MapOutputsNews } from "./shuffle.js";
import { heartbeat, mustRegisterAgain, registerWorker } from "./workerRegistry.js";

/**
 * How long a reduce's AwaitMapOutputs waits, when nothing about its job changes, before it looks
 * again: a rerun of a map whose output was lost may be its only news (see reportHeldOutputs).
 */
const MAP_OUTPUTS_RECHECK_MS = 1000;

export interface TaskServiceDeps {
  db: Db;
  commits: GroupCommit;
  queue: TaskQueue;
  dispatcher: Dispatcher;
  effects: JobEffects;
  config: DriverConfig;
  roots: Roots;
  log: Logger;
}

export function createTaskService(deps: TaskServiceDeps): UntypedServiceImplementation {
  const { db, commits, queue, dispatcher, effects, config, roots, log } = deps;

  const registerWorkerHandler = (req: pb.RegisterWorkerRequest): pb.RegisterWorkerResponse => {
    if (!/^[\w.-]{1,253}:\d{1,5}$/.test(req.address)) {
      throw new InvalidArgumentError(
        `address must be HOST:PORT, got ${JSON.stringify(req.address.slice(0, 300))}`,
      );
    }
    checkApps(req.apps);
    if (!Number.isInteger(req.slots) || req.slots < 0 || req.slots > LIMITS.slotsPerWorker) {
      throw new InvalidArgumentError(`slots: must be 1 to ${LIMITS.slotsPerWorker}, got ${req.slots}`);
    }
    const workerId = registerWorker(
      db,
      { address: req.address, apps: req.apps, slots: req.slots },
      Date.now(),
    );
    log.info({ workerId, address: req.address }, "worker registered");
    return {
      workerId,
      heartbeatMs: config.heartbeatMs,
      inputRoots: [...roots.input],
      outputRoots: [...roots.output],
    };
  };

  const pollTask = async (
    req: pb.PollTaskRequest,
    call: { cancelled: boolean },
  ): Promise<pb.PollTaskResponse> => {
    const worker = getWorker(db, req.workerId);
    if (worker?.state !== WorkerState.ALIVE) throw mustRegisterAgain(req.workerId);
    const max = tasksWanted(req.maxTasks || 1, worker.slots);
    const assignments = await dispatcher.poll(worker.id, worker.apps, max, () => call.cancelled);
    if (call.cancelled && assignments.length > 0) {
      // The worker gave up on this call: its next heartbeat that does not name the attempts, once
      // workerTimeoutMs has passed, puts the tasks back in the queue (releaseOrphans).
      log.warn(
        { attemptIds: assignments.map((a) => a.attemptId) },
        "poll cancelled after tasks were claimed",
      );
    }
    return { tasks: handOver(assignments) };
  };

  /** The assignments as the worker gets them, their jobs told that they changed. */
  const handOver = (assignments: readonly Assignment[]): pb.TaskAssignment[] => {
    for (const jobId of new Set(assignments.map(({ job }) => job.id))) effects.jobChanged(jobId);
    return assignments.map(assignmentMessage);
  };

  const heartbeatHandler = async (req: pb.HeartbeatRequest): Promise<pb.HeartbeatResponse> => {
    const now = Date.now();
    const outcome = heartbeat(db, { workerId: req.workerId, attempts: req.attempts }, now);
    const reported = new Set(req.attempts.map(({ attemptId }) => attemptId));
    const orphans = releaseOrphans(db, req.workerId, reported, config, config.workerTimeoutMs, now);
    for (const { jobId, task, attemptId } of orphans.reassigned) {
      log.warn(
        { jobId, taskId: task.id, kind: task.kind, index: task.index, attemptId, workerId: req.workerId },
        "reassigning task: its assignment never reached the worker",
      );
    }
    if (orphans.jobs.length > 0) await effects.applyLoss(orphans);
    const leases = outcome.keep.map(({ attemptId, task }) => ({
      task,
      token: attemptId,
    }));
    if (leases.length > 0 && queue.isConnected()) {
      try {
        const lost = await queue.extend(leases);
        if (lost.length > 0)
          log.warn({ workerId: req.workerId, queueJobIds: lost }, "leases already expired");
      } catch (err) {
        log.warn({ err: toError(err).message }, "could not extend leases");
      }
    }
    return { abortAttemptIds: outcome.abort, endedJobIds: endedJobs(req.outputJobIds) };
  };

  /** Of the jobs a worker holds map output of, those that have ended (or are unknown here). */
  const endedJobs = (jobIds: readonly number[]): number[] =>
    jobIds.filter((jobId) => getJob(db, jobId)?.state !== JobState.RUNNING);

  /**
   * Commits the attempts a worker reports, each on its own, and claims the tasks it asks for
   * next, all in one shared transaction (GroupCommit: the changes are asked for in one turn of
   * the event loop, the completions first). The queue entries of those tasks are fetched first.
   */
  const completeTask = async (req: pb.CompleteTaskRequest): Promise<pb.CompleteTaskResponse> => {
    if (req.completions.length > LIMITS.slotsPerWorker) {
      throw new InvalidArgumentError(
        `completions: at most ${LIMITS.slotsPerWorker} in one report, got ${req.completions.length}`,
      );
    }
    const reports = req.completions.map((completion) => ({
      ...completion,
      counters: reportedCounters(completion.counters),
    }));
    const worker = req.nextTasks > 0 ? getWorker(db, req.workerId) : undefined;
    const fetched =
      worker?.state === WorkerState.ALIVE
        ? await dispatcher.fetchSome(worker.apps, tasksWanted(req.nextTasks, worker.slots))
        : [];
    const committed = reports.map(({ attemptId, counters, upload }) =>
      commits.run(() =>
        completeAttempt(
          db,
          {
            attemptId,
            workerId: req.workerId,
            counters,
            commitOutput: (task, job, committing) => commitOutput(task, job, committing, upload),
          },
          Date.now(),
        ),
      ),
    );
    const next = dispatcher.claimAll(fetched, req.workerId);
    const outcomes = await Promise.allSettled(committed);
    const { assignments, passedOver } = await next;
    if (passedOver.length > 0) effects.inBackground(() => dispatcher.putBack(passedOver, req.workerId));
    const refused: string[] = [];
    for (const [i, outcome] of outcomes.entries()) {
      if (outcome.status === "rejected") {
        const err = outcome.reason as unknown;
        if (!(err instanceof FailedPreconditionError) && !(err instanceof NotFoundError)) {
          // Not the worker's doing (the database failed, say): the attempt is not committed, and
          // the worker's next heartbeats, which no longer name it, put its task back.
          log.error({ err, attemptId: reports[i]!.attemptId }, "could not commit a reported attempt");
        }
        refused.push(toError(err).message);
        continue;
      }
      refused.push("");
      const completion = outcome.value;
      if (completion.duplicate) continue;
      const { task, job, leaseToken } = completion;
      log.info(
        { jobId: job.id, taskId: task.id, attemptId: reports[i]!.attemptId, workerId: req.workerId },
        "task succeeded",
      );
      // The commit is durable: reply now, and bring the queue up to date behind the reply.
      effects.finishOutput(job);
      effects.inBackground(async () => {
        if (leaseToken !== null) {
          await effects.releaseLease(() => queue.release(task, { as: "done", token: leaseToken }));
        }
        await effects.applyQueueWork(completion, job.id);
      });
      effects.jobChanged(job.id);
    }
    return { tasks: handOver(assignments), refused };
  };

  /**
   * Commits a reduce's output, inside the transaction that commits its attempt: moves its file
   * into place, or records its upload to object storage, for the job's commit to complete.
   */
  const commitOutput = (
    task: TaskRecord,
    job: JobRecord,
    attemptId: string,
    upload: pb.OutputUpload | undefined,
  ): void => {
    try {
      if (isS3Uri(job.outputDir)) {
        if (!upload?.uploadId || upload.etags.length === 0) {
          throw new Error(`attempt ${attemptId} reported no upload of its part to ${job.outputDir}`);
        }
        const { uploadId, etags } = upload;
        recordUpload(db, { jobId: job.id, partition: task.index, attemptId, uploadId, etags });
        return;
      }
      roots.checkOutput(job.outputDir);
      commitPartFile(job.outputDir, attemptId, task.index);
    } catch (err) {
      throw new FailedPreconditionError(`${toError(err).message} (report the attempt as failed)`, {
        cause: err,
      });
    }
  };

  const failTask = async (reported: pb.FailTaskRequest): Promise<pb.FailTaskResponse> => {
    // An error is stored with the attempt and shown in its job's history: kept to a readable size.
    const req = { ...reported, error: cut(reported.error || "unknown error", LIMITS.errorBytes) };
    if (req.fetchFailure) return fetchFailed(req, req.fetchFailure);
    const failure = await commits.run(() =>
      failAttempt(
        db,
        {
          attemptId: req.attemptId,
          workerId: req.workerId,
          error: req.error,
          unrecoverable: req.unrecoverable,
        },
        config,
        Date.now(),
      ),
    );
    if (failure.duplicate) return {};
    const { task, job } = failure;
    log.warn(
      {
        jobId: job.id,
        taskId: task.id,
        attemptId: req.attemptId,
        workerId: req.workerId,
        retry: failure.retry,
      },
      `task attempt failed: ${req.error}`,
    );
    const token = failure.leaseToken;
    if (token !== null) {
      await effects.releaseLease(() =>
        queue.release(
          task,
          failure.retry ? { as: "retry", token, error: req.error } : { as: "gone", token, why: req.error },
        ),
      );
    }
    await effects.apply(job, failure);
    return {};
  };

  /** A reduce could not fetch a map's output: the map runs again; the reduce waits, its budget intact. */
  const fetchFailed = async (
    req: pb.FailTaskRequest,
    failure: pb.FetchFailure,
  ): Promise<pb.FailTaskResponse> => {
    const outcome = await commits.run(() =>
      reportFetchFailure(
        db,
        {
          attemptId: req.attemptId,
          workerId: req.workerId,
          error: req.error,
          mapIndex: failure.mapIndex,
          mapAttemptId: failure.mapAttemptId,
        },
        config,
        Date.now(),
      ),
    );
    const { job, task } = outcome;
    log.warn(
      {
        jobId: job.id,
        taskId: task.id,
        attemptId: req.attemptId,
        workerId: req.workerId,
        mapIndex: failure.mapIndex,
      },
      `reassigning reduce: it could not fetch map output (${req.error})`,
    );
    await effects.apply(job, outcome);
    return {};
  };

  /**
   * A running reduce's long poll (shuffle.ts): records what it holds and could not fetch, and
   * answers with the committed map outputs it lacks, waiting up to the poll wait for one to
   * commit. A reduce preempted to give its slot back to the maps is told its attempt is over.
   */
  const awaitMapOutputs = async (
    req: pb.AwaitMapOutputsRequest,
    call: { cancelled: boolean },
  ): Promise<pb.AwaitMapOutputsResponse> => {
    if (req.unreachable.length > LIMITS.maps) {
      throw new InvalidArgumentError(
        `unreachable: at most ${LIMITS.maps} map outputs, got ${req.unreachable.length}`,
      );
    }
    const report = {
      attemptId: req.attemptId,
      workerId: req.workerId,
      held: req.held,
      unreachable: req.unreachable.map(({ mapIndex, attemptId }) => ({ mapIndex, attemptId })),
    };
    const reported = async (): Promise<MapOutputsNews> => {
      const news = await commits.run(() => reportHeldOutputs(db, report, Date.now()));
      if (news.enqueue.length > 0 || news.drop.length > 0) await effects.apply(news.job, news);
      return news;
    };
    const deadline = Date.now() + config.pollWaitMs;
    // Any change of the job wakes the poll: a map commits, or the attempt ends.
    const jobId = taskOfAttempt(req.attemptId)?.jobId;
    let changes = 0;
    let wake = (): void => {};
    const stopListening =
      jobId === undefined
        ? () => {}
        : effects.onJobChanged(jobId, () => {
            changes++;
            wake();
          });
    try {
      for (let first = true; ; first = false) {
        const seen = changes;
        // The report is stored once; looking again after a change of the job is a read, unless
        // the look finds something to change.
        const news = (!first && peekMapOutputs(db, report)) || (await reported());
        if ("preempted" in news && news.preempted) {
          throw new FailedPreconditionError(
            `attempt ${req.attemptId} was preempted: its job's maps wait for a slot (discard it; the reduce starts again later)`,
          );
        }
        const left = deadline - Date.now();
        if (news.outputs.length > 0 || news.holdsAll || left <= 0 || call.cancelled) {
          return { mapOutputs: news.outputs };
        }
        report.unreachable = [];
        if (changes === seen) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, Math.min(left, MAP_OUTPUTS_RECHECK_MS));
            wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          wake = () => {};
        }
      }
    } finally {
      stopListening();
    }
  };

  const taskOfAttempt = (attemptId: string): TaskRecord | undefined => {
    const attempt = getAttempt(db, attemptId);
    return attempt && getTask(db, attempt.taskId);
  };

  /** A worker that stops: STOPPED now, its attempts handed back, its map output's maps re-run. */
  const deregisterWorker = async (req: pb.DeregisterWorkerRequest): Promise<pb.DeregisterWorkerResponse> => {
    const reason = req.reason || "stopping";
    const loss = await commits.run(() => stopWorker(db, req.workerId, reason, Date.now()));
    if (loss === null) return {}; // already lost or stopped
    log.info({ workerId: req.workerId, reason }, "worker stopped");
    for (const { jobId, task, attemptId } of loss.reassigned) {
      log.info(
        { jobId, taskId: task.id, kind: task.kind, index: task.index, attemptId, workerId: req.workerId },
        "reassigning task: its worker stopped and handed it back",
      );
    }
    await effects.applyLoss(loss);
    return {};
  };

  return {
    registerWorker: unary(log, "RegisterWorker", registerWorkerHandler),
    deregisterWorker: unary(log, "DeregisterWorker", deregisterWorker),
    pollTask: unary(log, "PollTask", pollTask),
    heartbeat: unary(log, "Heartbeat", heartbeatHandler),
    completeTask: unary(log, "CompleteTask", completeTask),
    failTask: unary(log, "FailTask", failTask),
    awaitMapOutputs: unary(log, "AwaitMapOutputs", awaitMapOutputs),
  };
}

/** How many tasks a worker of `slots` slots that asks for `asked` gets at most: never more than it has slots. */
function tasksWanted(asked: number, slots: number): number {
  return Math.min(asked, Math.max(slots, 1));
}

/** The apps a worker offers name queue lanes: a documented pattern, and not too many. */
function checkApps(apps: readonly string[]): void {
  if (apps.length > LIMITS.appsPerWorker) {
    throw new InvalidArgumentError(
      `apps: a worker may offer at most ${LIMITS.appsPerWorker} apps, got ${apps.length}`,
    );
  }
  const bad = apps.find((app) => !APP_NAME.test(app));
  if (bad !== undefined) {
    throw new InvalidArgumentError(
      `apps: ${JSON.stringify(bad.slice(0, 80))} is not an app name (a letter, then up to 63 letters, digits, _ or -)`,
    );
  }
}

/** The counters an attempt reports: as many and as long as an app may make (see TaskCounters). */
function reportedCounters(list: readonly pb.Counter[]): Counters {
  if (list.length > Object.keys(Counter).length + LIMITS.userCounters) {
    throw new InvalidArgumentError(`counters: too many counters (${list.length})`);
  }
  if (list.some(({ name }) => Buffer.byteLength(name) > LIMITS.counterNameBytes)) {
    throw new InvalidArgumentError(`counters: a name may have at most ${LIMITS.counterNameBytes} bytes`);
  }
  return fromCounterList(list);
}

function assignmentMessage({ attemptId, task, job, mapOutputs }: Assignment): pb.TaskAssignment {
  return {
    attemptId,
    jobId: job.id,
    taskId: task.id,
    kind: task.kind,
    index: task.index,
    app: job.app,
    params: job.params,
    reducers: job.reducers,
    split: task.split === null ? [] : parseSplit(task.split),
    mapOutputs,
    mapsTotal: task.kind === TaskKind.REDUCE ? job.mapsTotal : 0,
    outputDir: job.outputDir,
    shuffleKey: job.shuffleKey,
  };
}
