/**
 * The worker: a session (session.ts: registration, heartbeats, loss, deregistration) and N task
 * slots that each loop take a task, run it, report it, sharing their calls to the driver
 * (taskFeed.ts). It serves its committed map output to reducers over
 * the ShuffleService until it exits. On stop it drains: no new task is taken, running tasks
 * get `drainTimeoutMs` to finish and report, and the rest are handed back to the driver.
 */
import { Server, status } from "@grpc/grpc-js";
import { rmdirSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { TokenCheck, isLoopback, readTokenFile } from "../auth.js";
import type { WorkerConfig } from "../config.js";
import { toCounterList } from "../counters.js";
import { readTls, serverCredentials, type Tls } from "../tls.js";
import { FetchFailedError, InvalidArgumentError, hasCode, isUnrecoverable, toError } from "../errors.js";
import { LIMITS } from "../limits.js";
import { ShuffleServiceService, type TaskAssignment } from "../gen/mapreduce.js";
import type * as pb from "../gen/mapreduce.js";
import { addService, listen, shutdown } from "../grpc.js";
import { Health } from "../health.js";
import { sendHealth, sendText, startHttpServer, type HttpServer } from "../http.js";
import type { App } from "../mr/app.js";
import { Progress } from "../mr/context.js";
import { TaskKind, type Counters } from "../types.js";
import { grpcDriverCalls, type DriverCalls } from "./driverCalls.js";
import { SessionState, WorkerSession } from "./session.js";
import { WorkerMetrics, type WorkerOutcome } from "./metrics.js";
import { createShuffleService } from "./shuffleServer.js";
import { TaskFeed } from "./taskFeed.js";
import { TaskRunner, type AttemptResult } from "./taskRunner.js";

interface RunningAttempt {
  task: TaskAssignment;
  controller: AbortController;
  progress: Progress;
}

export class MrWorker {
  private readonly driver: DriverCalls;
  private readonly runner: TaskRunner;
  private readonly session: WorkerSession;
  private readonly feed: TaskFeed;
  private readonly running = new Map<string, RunningAttempt>();
  /** Map attempts the driver accepted: the only output the shuffle service serves. */
  private readonly committed = new Set<string>();
  private slotsDone: Promise<unknown> = Promise.resolve();
  /** Aborted on stop: cancels the long polls in flight. */
  private readonly stopPolling = new AbortController();
  private stopped: Promise<void> | undefined;

  /**
   * Binds the shuffle service, then registers with the driver and starts the slots. The data
   * directory defaults to `$MR_HOME/worker-<port>` with the port bound, so that workers started
   * with `--port 0` never share one. `stopRequested` may fire at any time, before the driver
   * has answered too: the worker then stops as it would once running, leaving no data directory
   * of its own behind, and comes back stopped.
   */
  static async start(
    config: WorkerConfig,
    apps: Readonly<Record<string, App>>,
    log: Logger,
    stopRequested?: AbortSignal,
  ): Promise<MrWorker> {
    const token =
      config.tokenFile === undefined ? undefined : readTokenFile(config.tokenFile, "--token-file");
    const host = config.listen.slice(0, config.listen.lastIndexOf(":"));
    if (token === undefined && !isLoopback(host) && !config.insecure) {
      throw new InvalidArgumentError(
        `serving map output on ${host} lets anyone who reaches it read it (give --token-file, or --insecure if that is intended)`,
      );
    }
    if (config.advertise === undefined && (host === "0.0.0.0" || host === "::" || host === "[::]")) {
      throw new InvalidArgumentError(
        `--listen ${config.listen} binds every address, and reducers need one they can reach (give --advertise HOST:PORT)`,
      );
    }
    if (
      config.http !== undefined &&
      !isLoopback(config.http.slice(0, config.http.lastIndexOf(":"))) &&
      !config.insecure
    ) {
      throw new InvalidArgumentError(
        `--http ${config.http}: /metrics needs no secret (serve it on 127.0.0.1, or give --insecure if that is intended)`,
      );
    }
    const tls = readTls({ cert: config.tlsCert, key: config.tlsKey, ca: config.tlsCa });
    const server = new Server({ "grpc.max_receive_message_length": LIMITS.shuffleMessageBytes });
    const bound = await listen(server, config.listen, serverCredentials(tls));
    const port = bound.slice(bound.lastIndexOf(":") + 1);
    const address = config.advertise ?? bound;
    const dataDir = config.dataDir ?? join(config.home, `worker-${port}`);
    const worker = new MrWorker(config, { server, address, dataDir, token, tls }, apps, log);
    const stop = (): void => void worker.stop("stopped before it registered");
    stopRequested?.addEventListener("abort", stop, { once: true });
    try {
      if (config.http !== undefined) await worker.serveHttp(config.http);
      await worker.begin();
    } catch (err) {
      await worker.http?.close();
      await shutdown(server, 0);
      throw err;
    } finally {
      stopRequested?.removeEventListener("abort", stop);
    }
    if (worker.stopped !== undefined) await worker.stopped;
    return worker;
  }

  private readonly server: Server;
  /** SERVING while registered with the driver. */
  private readonly health = new Health(["mr.v1.ShuffleService"]);
  /** The worker secret: sent to the driver and to other workers, asked of reducers. */
  private readonly token: string | undefined;
  /** The address reducers fetch from. */
  readonly address: string;
  /** Where this worker keeps map output. */
  readonly dataDir: string;
  private readonly metrics: WorkerMetrics;

  /** Where /metrics is served; undefined without `--http`. */
  get httpAddress(): string | undefined {
    return this.http?.address;
  }

  /** /metrics and /healthz, with `--http`. */
  private http: HttpServer | undefined;

  private constructor(
    private readonly config: WorkerConfig,
    bound: {
      server: Server;
      address: string;
      dataDir: string;
      token: string | undefined;
      tls: Tls | undefined;
    },
    apps: Readonly<Record<string, App>>,
    private readonly log: Logger,
  ) {
    ({ server: this.server, address: this.address, dataDir: this.dataDir } = bound);
    this.token = bound.token;
    this.metrics = new WorkerMetrics({ total: config.slots, busy: () => this.running.size });
    this.driver = grpcDriverCalls(config.driver, bound.token, bound.tls);
    this.runner = new TaskRunner({
      dataDir: this.dataDir,
      tunables: config.tunables,
      apps,
      token: bound.token,
      tls: bound.tls,
      roots: () => this.session.roots,
      appsDir: config.appsDir,
      taskTimeoutMs: config.taskTimeoutMs,
      threads: config.slots,
      s3: { endpoint: config.s3Endpoint },
      awaitMapOutputs: (request, signal) => this.awaitMapOutputs(request, signal),
    });
    const member = {
      address: this.address,
      apps: Object.keys(apps),
      slots: config.slots,
      driver: config.driver,
    };
    this.session = new WorkerSession(
      this.driver,
      member,
      {
        attempts: () =>
          [...this.running].map(([attemptId, { progress }]) => ({ attemptId, progress: progress.value })),
        outputJobIds: () => this.runner.mapOutputs.jobIds(),
        abort: (attemptIds) => this.abort(attemptIds),
        jobsEnded: (jobIds) => this.dropOutput(jobIds),
        lost: () => {
          this.abortAll("the driver declared this worker lost");
          this.committed.clear();
          this.runner.discardAll();
        },
        changed: (state) => this.health.set(state === SessionState.REGISTERED),
      },
      log,
    );
    this.feed = new TaskFeed({
      poll: (max) => this.poll(max),
      complete: (completions, next) =>
        this.session.retry("CompleteTask", () =>
          this.driver.completeTask({ workerId: this.session.workerId, completions, nextTasks: next }),
        ),
    });
  }

  private async serveHttp(listen: string): Promise<void> {
    const { registry } = this.metrics;
    this.http = await startHttpServer(
      listen,
      [
        [
          /^\/metrics$/,
          async (_req, res) => sendText(res, 200, registry.contentType, await registry.metrics()),
        ],
        [/^\/healthz$/, (_req, res) => sendHealth(res, this.health)],
      ],
      this.log,
    );
  }

  private async begin(): Promise<void> {
    // Output of an earlier run belongs to attempts the driver no longer counts on this worker for.
    this.runner.discardAll();
    const shuffle = createShuffleService(
      (attemptId) => (this.committed.has(attemptId) ? this.runner.mapOutputs.get(attemptId) : undefined),
      this.log,
    );
    const tokens = new TokenCheck(this.token === undefined ? {} : { worker: this.token }, this.log);
    addService(this.server, ShuffleServiceService, tokens.guard(ShuffleServiceService, shuffle, "worker"));
    this.health.addTo(this.server);
    await this.session.start();
    if (this.stopped !== undefined) return; // stopped while it registered: no slot starts
    this.slotsDone = Promise.all(Array.from({ length: this.config.slots }, () => this.runSlot()));
  }

  /**
   * Drains, then exits the cluster: takes no new task, gives the running ones `drainTimeoutMs`
   * to finish and report, aborts the rest, and deregisters, so that the driver marks this
   * worker STOPPED at once and hands what it did not finish to others. Map output stays served
   * until the shuffle server closes, last.
   */
  stop(reason = "stopped"): Promise<void> {
    this.stopped ??= this.drainAndClose(reason);
    return this.stopped;
  }

  private async drainAndClose(reason: string): Promise<void> {
    this.session.drain();
    this.feed.drain();
    this.stopPolling.abort();
    // With nothing to finish, nothing is worth waiting on the driver for (a registration, say).
    if (this.running.size === 0) this.session.giveUp();
    const deadline = setTimeout(() => {
      this.log.warn(
        { running: [...this.running.keys()] },
        "drain timeout: handing the running attempts back",
      );
      this.abortAll("the worker is stopping");
      this.session.giveUp();
    }, this.config.drainTimeoutMs);
    await this.slotsDone;
    clearTimeout(deadline);
    this.session.giveUp();
    await this.session.deregister(reason);
    this.runner.close();
    this.driver.close();
    await shutdown(this.server, 1000);
    await this.http?.close();
    this.runner.discardAll();
    if (this.config.dataDir === undefined) {
      // The default directory is this run's own (its port is the bound one); an empty one goes.
      try {
        rmdirSync(this.dataDir);
      } catch {
        // not empty, or already gone: leave it
      }
    }
  }

  /** One slot: takes a task, runs it and reports it, until the worker drains. */
  private async runSlot(): Promise<void> {
    for (let task = await this.feed.take(); task !== undefined; task = await this.feed.take()) {
      const workerId = this.session.workerId;
      try {
        await this.runAndReport(task);
      } catch (err) {
        if (this.session.draining) continue;
        await this.session.recover(err, workerId, "report");
      }
    }
  }

  /** A long poll for up to `max` tasks; none when it failed, once the session has dealt with that. */
  private async poll(max: number): Promise<TaskAssignment[]> {
    const workerId = this.session.workerId;
    try {
      return (await this.driver.pollTask({ workerId, maxTasks: max }, this.stopPolling.signal)).tasks;
    } catch (err) {
      if (!this.session.draining) await this.session.recover(err, workerId, "poll");
      return [];
    }
  }

  /** Runs a task and reports how it went. */
  private async runAndReport(task: TaskAssignment): Promise<void> {
    const ids = { jobId: task.jobId, taskId: task.taskId, attemptId: task.attemptId };
    const controller = new AbortController();
    const progress = new Progress();
    const startedAt = Date.now();
    const ended = (outcome: WorkerOutcome, counters?: Counters): void =>
      this.metrics.ended(task.kind, outcome, Date.now() - startedAt, counters);
    this.running.set(task.attemptId, { task, controller, progress });
    this.log.debug({ ...ids, kind: task.kind, index: task.index }, "task started");
    try {
      let result: AttemptResult;
      try {
        result = await this.runner.run(task, controller.signal, progress);
      } catch (err) {
        await this.discard(task);
        if (controller.signal.aborted) {
          this.log.info(ids, "attempt aborted");
          ended("aborted");
          return;
        }
        ended("failed");
        await this.reportFailure(task, err);
        return;
      }
      // Serve the output from the moment the driver may hand it to reducers.
      if (task.kind === TaskKind.MAP) this.committed.add(task.attemptId);
      const completion = {
        attemptId: task.attemptId,
        counters: toCounterList(result.counters),
        upload: result.upload && { uploadId: result.upload.uploadId, etags: result.upload.etags },
      };
      const accepted = await this.report("CompleteTask", task, () => this.feed.complete(completion));
      if (accepted) this.runner.committed(task);
      else this.committed.delete(task.attemptId);
      ended(accepted ? "succeeded" : "refused", result.counters);
      this.log.debug({ ...ids, accepted }, "task reported");
    } finally {
      this.running.delete(task.attemptId);
    }
  }

  private async reportFailure(task: TaskAssignment, err: unknown): Promise<void> {
    const message = toError(err).message;
    const fetchFailure =
      err instanceof FetchFailedError
        ? { mapIndex: err.mapIndex, mapAttemptId: err.mapAttemptId }
        : undefined;
    const unrecoverable = isUnrecoverable(err);
    this.log.warn(
      { jobId: task.jobId, taskId: task.taskId, attemptId: task.attemptId, err: message, unrecoverable },
      fetchFailure ? "fetch failed" : "task failed",
    );
    const request = {
      workerId: this.session.workerId,
      attemptId: task.attemptId,
      error: message,
      fetchFailure,
      unrecoverable,
    };
    await this.report("FailTask", task, async () => {
      await this.session.retry("FailTask", () => this.driver.failTask(request));
      return "";
    });
  }

  /**
   * Reports an attempt by `send`, which resolves with the driver's refusal (empty when the
   * report is taken) or rejects. A refusal means the attempt no longer holds its task: its
   * output is dropped, and false returned.
   */
  private async report(what: string, task: TaskAssignment, send: () => Promise<string>): Promise<boolean> {
    let refusal: string;
    try {
      refusal = await send();
    } catch (err) {
      if (!hasCode(err, status.FAILED_PRECONDITION) && !hasCode(err, status.NOT_FOUND)) throw err;
      refusal = toError(err).message;
    }
    if (refusal === "") return true;
    this.log.warn({ attemptId: task.attemptId, err: refusal }, `${what} refused; output discarded`);
    await this.discard(task);
    return false;
  }

  /**
   * Deletes what an attempt left, never throwing: a clean-up that fails (the output directory is
   * now a file, say) is logged, and the attempt's own failure is still reported.
   */
  private async discard(task: TaskAssignment): Promise<void> {
    try {
      await this.runner.discard(task);
    } catch (err) {
      this.log.warn(
        { attemptId: task.attemptId, err: toError(err).message },
        "could not clean up after an attempt",
      );
    }
  }

  /**
   * A reduce's long poll for the map outputs it lacks, retried while the driver is away. An
   * attempt the driver says no longer holds its task (preempted, or ended) is aborted.
   */
  private async awaitMapOutputs(
    request: Omit<pb.AwaitMapOutputsRequest, "workerId">,
    signal: AbortSignal,
  ): Promise<pb.MapOutput[]> {
    try {
      const send = (): Promise<pb.AwaitMapOutputsResponse> =>
        this.driver.awaitMapOutputs({ ...request, workerId: this.session.workerId }, signal);
      return (await this.session.retry("AwaitMapOutputs", send)).mapOutputs;
    } catch (err) {
      if (hasCode(err, status.FAILED_PRECONDITION) || hasCode(err, status.NOT_FOUND)) {
        this.log.info(
          { attemptId: request.attemptId, err: toError(err).message },
          "attempt ended by the driver",
        );
        this.running.get(request.attemptId)?.controller.abort();
      }
      throw err;
    }
  }

  private abort(attemptIds: readonly string[]): void {
    for (const attemptId of attemptIds) {
      const attempt = this.running.get(attemptId);
      if (!attempt) continue; // it ended while the heartbeat was on its way
      this.log.warn({ attemptId }, "the driver says this attempt no longer holds its task; aborting it");
      attempt.controller.abort();
    }
  }

  /** Drops the map output of ended jobs: it will never be read again. */
  private dropOutput(jobIds: readonly number[]): void {
    for (const attemptId of this.runner.mapOutputs.discardJobs(jobIds)) this.committed.delete(attemptId);
    this.log.info({ jobIds }, "map output of ended jobs discarded");
  }

  private abortAll(reason: string): void {
    for (const { controller } of this.running.values()) controller.abort(new Error(reason));
  }
}
