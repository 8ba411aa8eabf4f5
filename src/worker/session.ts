/**
 * A worker's membership of the cluster, as a small state machine: it registers, heartbeats,
 * registers again after the driver declared it lost, and deregisters when it stops. The task
 * slots (worker.ts) run tasks under the id this session holds; what a heartbeat reply or a loss
 * means for them reaches them through `SessionHooks`.
 *
 *   STARTING ──register──▶ REGISTERED ──refused: "register again"──▶ LOST ──register──▶ REGISTERED
 *                               │                                      │
 *                               └────────────stop()────▶ DRAINING ◀────┘
 *                                                            │ deregister
 *                                                            ▼
 *                                                         STOPPED
 */
import { status } from "@grpc/grpc-js";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { hasCode, toError } from "../errors.js";
import type { AttemptStatus } from "../gen/mapreduce.js";
import { Roots } from "../roots.js";
import type { DriverCalls } from "./driverCalls.js";

export const SessionState = {
  STARTING: "STARTING",
  REGISTERED: "REGISTERED",
  /** The driver declared this worker lost; it registers again under a new id. */
  LOST: "LOST",
  /** Stopping: no new task is taken; those running finish, or are handed back. */
  DRAINING: "DRAINING",
  STOPPED: "STOPPED",
} as const;
export type SessionState = (typeof SessionState)[keyof typeof SessionState];

/** What the session asks of, and tells, the slots that run tasks. */
export interface SessionHooks {
  /** The attempts running here, for a heartbeat. */
  attempts(): AttemptStatus[];
  /** The jobs this worker holds map output of. */
  outputJobIds(): number[];
  /** The driver says these attempts no longer hold their tasks. */
  abort(attemptIds: readonly string[]): void;
  /** These jobs have ended: their map output will never be read again. */
  jobsEnded(jobIds: readonly number[]): void;
  /** The driver declared this worker lost: what runs here, and its map output, count for nothing now. */
  lost(): void;
  /** The session moved to `state`. */
  changed?(state: SessionState): void;
}

const MAX_BACKOFF_MS = 5_000;

export class WorkerSession {
  private current: SessionState = SessionState.STARTING;
  private id = 0;
  private heartbeatMs = 1000;
  private confinement = Roots.NONE;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** A registration under way, which every caller that finds this worker lost waits for. */
  private registering: Promise<void> | undefined;
  /** Set once the worker gives up on the driver: retries end. */
  private readonly givingUp = new AbortController();

  constructor(
    private readonly driver: DriverCalls,
    private readonly member: { address: string; apps: string[]; slots: number; driver: string },
    private readonly hooks: SessionHooks,
    private readonly log: Logger,
  ) {}

  get state(): SessionState {
    return this.current;
  }

  /** The id the driver knows this worker by; it changes when the worker registers again. */
  get workerId(): number {
    return this.id;
  }

  /** The directories jobs may read and write, as the driver gave them at registration. */
  get roots(): Roots {
    return this.confinement;
  }

  /** True once the worker is stopping: slots take no new task. */
  get draining(): boolean {
    return this.current === SessionState.DRAINING || this.current === SessionState.STOPPED;
  }

  /** Registers, waiting out a driver that is not up yet, then heartbeats. */
  async start(): Promise<void> {
    await this.register();
    if (this.givingUp.signal.aborted) return; // the worker stopped before the driver answered
    this.heartbeatTimer = setInterval(() => void this.sendHeartbeat(), this.heartbeatMs);
  }

  /**
   * After a call made as `workerId` failed: if the driver no longer knows this worker (it was
   * declared lost), what runs here counts for nothing, so it is dropped and the worker
   * registers again, once, whoever finds out first; otherwise a pause before the next try.
   */
  async recover(err: unknown, workerId: number, what: string): Promise<void> {
    if (!hasCode(err, status.FAILED_PRECONDITION)) {
      this.log.warn({ err: toError(err).message }, `${what} failed; retrying`);
      await sleep(1000, undefined, { signal: this.givingUp.signal }).catch(() => undefined);
      return;
    }
    if (this.registering) return this.registering;
    if (workerId !== this.id) return; // registered again meanwhile
    this.log.warn({ workerId }, `${what}: ${toError(err).message}`);
    this.declaredLost();
    if (this.draining) return;
    this.registering = this.registerAgain().finally(() => (this.registering = undefined));
    return this.registering;
  }

  /** Takes no new task from now on; heartbeats go on while running attempts finish. */
  drain(): void {
    if (!this.draining) this.moveTo(SessionState.DRAINING, "stopping");
  }

  /** Ends every retry of a call to the driver: the worker is about to exit. */
  giveUp(): void {
    this.givingUp.abort();
  }

  /**
   * Tells the driver this worker stops, so that it is STOPPED at once and what it still runs
   * goes back to the queue; one try, since a driver that is away will find it silent anyway.
   */
  async deregister(reason: string): Promise<void> {
    clearInterval(this.heartbeatTimer);
    if (this.current !== SessionState.LOST && this.id !== 0) {
      try {
        await this.driver.deregisterWorker({ workerId: this.id, reason });
      } catch (err) {
        this.log.warn(
          { err: toError(err).message },
          "could not deregister; the driver will find this worker silent",
        );
      }
    }
    this.moveTo(SessionState.STOPPED, reason);
  }

  /** Retries `send` while the driver is unreachable, with backoff, until the worker gives up. */
  async retry<T>(what: string, send: () => Promise<T>): Promise<T> {
    for (let backoffMs = 200; ; backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS)) {
      try {
        return await send();
      } catch (err) {
        const unreachable = hasCode(err, status.UNAVAILABLE) || hasCode(err, status.DEADLINE_EXCEEDED);
        if (!unreachable || this.givingUp.signal.aborted) throw err;
        this.log.warn({ driver: this.member.driver, backoffMs }, `${what}: driver unreachable; retrying`);
        // Jittered, so that workers cut off together do not all call the driver at once.
        const waitMs = backoffMs / 2 + Math.random() * (backoffMs / 2);
        await sleep(waitMs, undefined, { signal: this.givingUp.signal }).catch(() => undefined);
      }
    }
  }

  private async register(): Promise<void> {
    let reply;
    try {
      reply = await this.retry("register", () =>
        this.driver.registerWorker({
          address: this.member.address,
          apps: this.member.apps,
          slots: this.member.slots,
        }),
      );
    } catch (err) {
      if (this.givingUp.signal.aborted) return; // stopped before the driver answered
      throw err;
    }
    this.id = reply.workerId;
    this.heartbeatMs = reply.heartbeatMs || this.heartbeatMs;
    this.confinement = Roots.of(reply.inputRoots, reply.outputRoots);
    if (!this.draining) this.moveTo(SessionState.REGISTERED, `driver ${this.member.driver}`);
  }

  /** Registers again after a loss; a refusal is logged, and the next call that finds out tries again. */
  private async registerAgain(): Promise<void> {
    try {
      await this.register();
    } catch (err) {
      this.log.error({ err: toError(err).message }, "could not register again; retrying");
      await sleep(1000, undefined, { signal: this.givingUp.signal }).catch(() => undefined);
    }
  }

  private declaredLost(): void {
    if (this.current === SessionState.LOST) return;
    this.hooks.lost();
    if (!this.draining) this.moveTo(SessionState.LOST, "the driver declared this worker lost");
  }

  private async sendHeartbeat(): Promise<void> {
    if (this.current !== SessionState.REGISTERED && this.current !== SessionState.DRAINING) return;
    const workerId = this.id;
    try {
      const reply = await this.driver.heartbeat({
        workerId,
        attempts: this.hooks.attempts(),
        outputJobIds: this.hooks.outputJobIds(),
      });
      if (reply.endedJobIds.length > 0) this.hooks.jobsEnded(reply.endedJobIds);
      if (reply.abortAttemptIds.length > 0) this.hooks.abort(reply.abortAttemptIds);
    } catch (err) {
      if (hasCode(err, status.FAILED_PRECONDITION)) {
        // Declared lost: drop everything now, and register again at once.
        void this.recover(err, workerId, "heartbeat");
      } else if (!hasCode(err, status.UNAVAILABLE)) {
        this.log.warn({ err: toError(err).message }, "heartbeat failed");
      }
    }
  }

  private moveTo(next: SessionState, why: string): void {
    const from = this.current;
    this.current = next;
    this.hooks.changed?.(next);
    this.log.info({ from, to: next, workerId: this.id, address: this.member.address, why }, `worker ${next}`);
  }
}
