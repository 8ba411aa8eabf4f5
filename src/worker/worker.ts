/**
 * The worker: registers with the driver, then loops (poll, run, report, repeat) while a timer
 * sends heartbeats. It serves its map output to reducers over the ShuffleService.
 */
import { Server, status, type ClientUnaryCall } from "@grpc/grpc-js";
import { rmdirSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import type { WorkerConfig } from "../config.js";
import { FetchFailedError, hasCode, isUnrecoverable, toError } from "../errors.js";
import { ShuffleServiceService, TaskServiceClient, type TaskAssignment } from "../gen/mapreduce.js";
import { CHANNEL_OPTIONS, callUnary, credentials, listen, shutdown } from "../grpc.js";
import type { App } from "../mr/app.js";
import { TaskKind, type Counters } from "../types.js";
import { createShuffleService } from "./shuffleServer.js";
import { TaskRunner } from "./taskRunner.js";

const CALL_TIMEOUT_MS = 10_000;
/** Longer than the driver's long poll, so the driver answers first. */
const POLL_TIMEOUT_MS = 30_000;
const MAX_BACKOFF_MS = 5_000;

interface RunningAttempt {
  task: TaskAssignment;
  controller: AbortController;
}

export class MrWorker {
  private readonly client: TaskServiceClient;
  private readonly runner: TaskRunner;
  private readonly apps: string[];
  private readonly running = new Map<string, RunningAttempt>();
  /** Map attempts the driver accepted: the only output the shuffle service serves. */
  private readonly committed = new Set<string>();
  private workerId = 0;
  private heartbeatMs = 1000;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private loopDone: Promise<unknown> = Promise.resolve();
  private readonly pollCalls = new Set<ClientUnaryCall>();
  /** A registration under way, which every slot that finds itself lost waits for. */
  private registering: Promise<void> | undefined;
  private stopping = false;

  /**
   * Binds the shuffle service, then registers with the driver and starts polling. The data
   * directory defaults to `$MR_HOME/worker-<port>` with the port bound, so that workers started
   * with `--port 0` never share one.
   */
  static async start(
    config: WorkerConfig,
    apps: Readonly<Record<string, App>>,
    log: Logger,
  ): Promise<MrWorker> {
    const server = new Server();
    const address = await listen(server, `${config.host}:${config.port}`);
    const port = address.slice(address.lastIndexOf(":") + 1);
    const dataDir = config.dataDir ?? join(config.home, `worker-${port}`);
    const worker = new MrWorker(config, { server, address, dataDir }, apps, log);
    try {
      await worker.begin();
    } catch (err) {
      await shutdown(server, 0);
      throw err;
    }
    return worker;
  }

  private readonly server: Server;
  /** The address reducers fetch from. */
  readonly address: string;
  /** Where this worker keeps map output. */
  readonly dataDir: string;

  private constructor(
    private readonly config: WorkerConfig,
    bound: { server: Server; address: string; dataDir: string },
    apps: Readonly<Record<string, App>>,
    private readonly log: Logger,
  ) {
    ({ server: this.server, address: this.address, dataDir: this.dataDir } = bound);
    this.client = new TaskServiceClient(config.driver, credentials.createInsecure(), CHANNEL_OPTIONS);
    this.runner = new TaskRunner({ dataDir: this.dataDir, sortBufferBytes: config.sortBufferBytes, apps });
    this.apps = Object.keys(apps);
  }

  private async begin(): Promise<void> {
    // Output of an earlier run belongs to attempts the driver no longer counts on this worker for.
    this.runner.discardAll();
    this.server.addService(
      ShuffleServiceService,
      createShuffleService(
        (attemptId) => (this.committed.has(attemptId) ? this.runner.mapOutputs.get(attemptId) : undefined),
        this.log,
      ),
    );
    await this.register();
    this.heartbeatTimer = setInterval(() => void this.sendHeartbeat(), this.heartbeatMs);
    this.loopDone = Promise.all(Array.from({ length: this.config.slots }, () => this.loop()));
  }

  /**
   * Stops polling, lets the tasks in flight finish and report, then closes. The map output
   * goes too: the driver runs those maps again elsewhere once this worker is silent.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const call of this.pollCalls) call.cancel();
    await this.loopDone;
    clearInterval(this.heartbeatTimer);
    this.runner.close();
    this.client.close();
    await shutdown(this.server, 1000);
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

  private async register(): Promise<void> {
    const reply = await this.retry("register", () =>
      callUnary(
        this.client.registerWorker.bind(this.client),
        { address: this.address, apps: this.apps },
        CALL_TIMEOUT_MS,
      ),
    );
    if (!reply) return;
    this.workerId = reply.workerId;
    this.heartbeatMs = reply.heartbeatMs || this.heartbeatMs;
    this.log.info(
      { workerId: this.workerId, address: this.address, driver: this.config.driver },
      "worker registered",
    );
  }

  /**
   * One slot: polls for a task, runs it, and reports it, asking for the next one in the same
   * call; polls again only when that brings none. A task handed over is run even when stopping.
   */
  private async loop(): Promise<void> {
    let next: TaskAssignment | undefined;
    while (!this.stopping || next) {
      const workerId = this.workerId;
      try {
        if (!next) {
          let pollCall: ClientUnaryCall | undefined;
          try {
            const reply = await callUnary(
              this.client.pollTask.bind(this.client),
              { workerId },
              POLL_TIMEOUT_MS,
              (call) => this.pollCalls.add((pollCall = call)),
            );
            next = reply.task;
          } finally {
            if (pollCall) this.pollCalls.delete(pollCall);
          }
        }
        if (next) {
          const task = next;
          next = undefined;
          next = await this.runAndReport(task);
        }
      } catch (err) {
        if (this.stopping) break;
        await this.recover(err, workerId, "poll");
      }
    }
  }

  /**
   * After a failed call made as `workerId`: if the driver declared this worker lost, its
   * attempts and map output count for nothing now, so drop them all and register again (once,
   * whichever slot finds out first); otherwise back off.
   */
  private async recover(err: unknown, workerId: number, what: string): Promise<void> {
    if (hasCode(err, status.FAILED_PRECONDITION)) {
      if (this.registering) return this.registering;
      if (workerId !== this.workerId) return; // another slot has registered again meanwhile
      this.log.warn({ workerId }, `${what}: ${toError(err).message}`);
      this.abortAll("the driver declared this worker lost");
      this.committed.clear();
      this.runner.discardAll();
      this.registering = this.register().finally(() => (this.registering = undefined));
      return this.registering;
    }
    this.log.warn({ err: toError(err).message }, `${what} failed; retrying`);
    await sleep(1000);
  }

  /** Runs a task and reports how it went; returns the task the driver handed back, if any. */
  private async runAndReport(task: TaskAssignment): Promise<TaskAssignment | undefined> {
    const ids = { jobId: task.jobId, taskId: task.taskId, attemptId: task.attemptId };
    const controller = new AbortController();
    this.running.set(task.attemptId, { task, controller });
    this.log.debug({ ...ids, kind: task.kind, index: task.index }, "task started");
    try {
      let counters: Counters;
      try {
        counters = await this.runner.run(task, controller.signal);
      } catch (err) {
        this.runner.discard(task);
        if (controller.signal.aborted) {
          this.log.info(ids, "attempt aborted");
          return;
        }
        const message = toError(err).message;
        const fetchFailure =
          err instanceof FetchFailedError
            ? { mapIndex: err.mapIndex, mapAttemptId: err.mapAttemptId }
            : undefined;
        const unrecoverable = isUnrecoverable(err);
        this.log.warn({ ...ids, err: message, unrecoverable }, fetchFailure ? "fetch failed" : "task failed");
        const request = {
          workerId: this.workerId,
          attemptId: task.attemptId,
          error: message,
          fetchFailure,
          unrecoverable,
        };
        await this.report("FailTask", task, () =>
          callUnary(this.client.failTask.bind(this.client), request, CALL_TIMEOUT_MS),
        );
        return;
      }
      // Serve the output from the moment the driver may hand it to reducers.
      if (task.kind === TaskKind.MAP) this.committed.add(task.attemptId);
      let next: TaskAssignment | undefined;
      const accepted = await this.report("CompleteTask", task, async () => {
        const request = {
          workerId: this.workerId,
          attemptId: task.attemptId,
          counters,
          next: !this.stopping,
        };
        next = (await callUnary(this.client.completeTask.bind(this.client), request, CALL_TIMEOUT_MS)).task;
      });
      if (!accepted) this.committed.delete(task.attemptId);
      this.log.debug({ ...ids, accepted }, "task reported");
      return next;
    } finally {
      this.running.delete(task.attemptId);
    }
  }

  /**
   * Reports until the driver answers. A refusal means the attempt no longer holds its task:
   * its output is dropped, and false returned.
   */
  private async report(what: string, task: TaskAssignment, send: () => Promise<unknown>): Promise<boolean> {
    try {
      await this.retry(what, send);
      return true;
    } catch (err) {
      if (!hasCode(err, status.FAILED_PRECONDITION) && !hasCode(err, status.NOT_FOUND)) throw err;
      this.log.warn(
        { attemptId: task.attemptId, err: toError(err).message },
        `${what} refused; output discarded`,
      );
      this.runner.discard(task);
      return false;
    }
  }

  /** Retries `send` while the driver is unreachable, with backoff; other errors are thrown. */
  private async retry<T>(what: string, send: () => Promise<T>): Promise<T | undefined> {
    for (let backoffMs = 200; ; backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS)) {
      try {
        return await send();
      } catch (err) {
        if (!hasCode(err, status.UNAVAILABLE) && !hasCode(err, status.DEADLINE_EXCEEDED)) throw err;
        if (this.stopping && what === "register") return undefined;
        this.log.warn({ driver: this.config.driver, backoffMs }, `${what}: driver unreachable; retrying`);
        await sleep(backoffMs);
      }
    }
  }

  private async sendHeartbeat(): Promise<void> {
    const attempts = [...this.running.keys()].map((attemptId) => ({ attemptId, progress: 0 }));
    const outputJobIds = this.runner.mapOutputs.jobIds();
    try {
      const reply = await callUnary(
        this.client.heartbeat.bind(this.client),
        { workerId: this.workerId, attempts, outputJobIds },
        CALL_TIMEOUT_MS,
      );
      if (reply.endedJobIds.length > 0) {
        // Their map output will never be read again: free the memory and the disk.
        for (const attemptId of this.runner.mapOutputs.discardJobs(reply.endedJobIds)) {
          this.committed.delete(attemptId);
        }
        this.log.info({ jobIds: reply.endedJobIds }, "map output of ended jobs discarded");
      }
      for (const attemptId of reply.abortAttemptIds) {
        const attempt = this.running.get(attemptId);
        if (!attempt) continue; // it ended while the heartbeat was on its way
        this.log.warn({ attemptId }, "the driver says this attempt no longer holds its task; aborting it");
        attempt.controller.abort();
      }
    } catch (err) {
      if (hasCode(err, status.FAILED_PRECONDITION)) {
        // Declared lost: what runs here counts for nothing; the poll loop registers again.
        this.abortAll("the driver declared this worker lost");
      } else if (!hasCode(err, status.UNAVAILABLE)) {
        this.log.warn({ err: toError(err).message }, "heartbeat failed");
      }
    }
  }

  private abortAll(reason: string): void {
    for (const { controller } of this.running.values()) controller.abort(new Error(reason));
  }
}
