import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { Db } from "../store/db.js";
import { isExcluded } from "../store/exclusions.js";
import type { GroupCommit } from "../store/groupCommit.js";
import { atRunningCap, getTask } from "../store/tasks.js";
import { getWorker } from "../store/workers.js";
import { claimTask, type Assignment } from "./scheduler.js";
import type { QueueEntry, TaskQueue } from "./queue.js";
import type { DriverMetrics } from "./metrics.js";
import type { Speculator } from "./speculation.js";

/** A queue entry fetched under a fresh attempt id (its lock token), not yet claimed. */
export interface Fetched {
  entry: QueueEntry;
  attemptId: string;
}

/** Entries of jobs that pass a worker over that one poll holds before it gives up. */
const MAX_PASSED_OVER = 32;

/** How long an idle poll sleeps between looks at the queue when nothing wakes it, in ms. */
const IDLE_RECHECK_MS = 250;

/** A fresh attempt id; it is also the BullMQ lock token, so it must be unguessable and unique. */
export function newAttemptId(): string {
  return `a${randomBytes(8).toString("hex")}`;
}

/**
 * Hands queued tasks to polling workers, and, when the queue has nothing for one, a backup of a
 * straggling task (speculation.ts). A poll with nothing to take waits, up to `pollWaitMs`, for
 * `wake()` (work was enqueued, or stragglers found) or a short recheck (a retry's backoff or an
 * expired lease may make work runnable without anyone here enqueueing it).
 */
export class Dispatcher {
  private readonly sleepers = new Set<() => void>();
  /** Which app lane a poll tries first; turns so that no app starves another. */
  private turn = 0;

  constructor(
    private readonly commits: GroupCommit,
    private readonly db: Db,
    private readonly queue: TaskQueue,
    private readonly pollWaitMs: number,
    private readonly log: Logger,
    private readonly speculator?: Pick<Speculator, "claim">,
    private readonly metrics?: Pick<DriverMetrics, "claimed">,
  ) {}

  wake(): void {
    for (const wake of [...this.sleepers]) wake();
  }

  /**
   * Up to `max` tasks of `apps` (those `workerId` offers), each claimed under a new attempt, as
   * soon as one is ready; none when none came in time.
   */
  async poll(
    workerId: number,
    apps: readonly string[],
    max: number,
    cancelled: () => boolean,
  ): Promise<Assignment[]> {
    const deadline = Date.now() + this.pollWaitMs;
    while (!cancelled() && Date.now() < deadline) {
      const assignments = await this.claimNow(workerId, apps, max);
      if (assignments.length > 0) return assignments;
      await this.sleep(Math.min(IDLE_RECHECK_MS, deadline - Date.now()));
    }
    return [];
  }

  /**
   * Up to `max` queued tasks of `apps`, claimed for `workerId` without waiting; or, when none is
   * queued, a backup of a straggler; none when there is neither (or the queue could not be read).
   */
  async claimNow(workerId: number, apps: readonly string[], max: number): Promise<Assignment[]> {
    if ((getWorker(this.db, workerId)?.excludedUntil ?? 0) > Date.now()) return []; // see exclusions.ts
    const queued = await this.claimQueued(workerId, apps, max);
    if (queued.length > 0) return queued;
    const backup = await this.speculator?.claim(workerId, apps, newAttemptId());
    return backup === undefined ? [] : [backup];
  }

  /** Up to `max` queued tasks of `apps`, claimed for `workerId`; none when none is runnable. */
  private async claimQueued(workerId: number, apps: readonly string[], max: number): Promise<Assignment[]> {
    // Entries of jobs that pass this worker over (they exclude it, or run all they may) are held
    // while more are fetched, so that the same ones do not come straight back; they go back to
    // their places at the end.
    const passedOver: Fetched[] = [];
    const assignments: Assignment[] = [];
    try {
      while (assignments.length < max && passedOver.length <= MAX_PASSED_OVER) {
        const wanted = max - assignments.length;
        const fetched = await this.fetchSome(apps, wanted);
        const claimed = await this.claimAll(fetched, workerId);
        assignments.push(...claimed.assignments);
        passedOver.push(...claimed.passedOver);
        if (fetched.length < wanted) break; // the queue ran dry: asking again finds nothing
      }
      return assignments;
    } finally {
      await this.putBack(passedOver, workerId);
    }
  }

  /**
   * Claims fetched entries for `workerId` in one shared transaction (see GroupCommit), after any
   * change asked for in the same turn of the event loop, and settles each: the assignments, and
   * the entries whose job passes the worker over now (for the caller to settle).
   */
  async claimAll(
    fetched: readonly Fetched[],
    workerId: number,
  ): Promise<{ assignments: Assignment[]; passedOver: Fetched[] }> {
    const outcomes = await Promise.all(
      fetched.map((one) =>
        this.commits
          .run(() => this.claim(one, workerId))
          .catch((err: unknown) => {
            this.log.warn({ err }, "could not claim a task");
            return "rolled back" as const;
          }),
      ),
    );
    const assignments: Assignment[] = [];
    const passedOver: Fetched[] = [];
    for (const [i, outcome] of outcomes.entries()) {
      if (outcome === "passed over") passedOver.push(fetched[i]!);
      else if (await this.settle(fetched[i]!, workerId, outcome)) assignments.push(outcome as Assignment);
    }
    return { assignments, passedOver };
  }

  /**
   * Puts entries whose job passed `workerId` over back at the heads of their lanes, the last
   * first, so that they keep their order.
   */
  async putBack(passedOver: readonly Fetched[], workerId: number): Promise<void> {
    for (const fetched of [...passedOver].reverse()) await this.settle(fetched, workerId, "passed over");
  }

  /**
   * Up to `max` queue entries of `apps`, each fetched under a fresh attempt id; fewer when the
   * queue runs dry. The fetches go to Redis together, one round trip for all.
   */
  async fetchSome(apps: readonly string[], max: number): Promise<Fetched[]> {
    const fetched = await Promise.all(Array.from({ length: max }, () => this.fetch(apps)));
    return fetched.filter((one) => one !== undefined);
  }

  /** The next queue entry of one of `apps`, fetched under a fresh attempt id; undefined if none. */
  private async fetch(apps: readonly string[]): Promise<Fetched | undefined> {
    if (!this.queue.isConnected()) return undefined;
    const attemptId = newAttemptId();
    try {
      const entry = await this.queue.fetch(attemptId, apps, this.turn++);
      return entry === null ? undefined : { entry, attemptId };
    } catch (err) {
      this.log.warn({ err }, "could not fetch from the queue");
      return undefined;
    }
  }

  /**
   * Claims a fetched entry's task for `workerId`, in the caller's transaction; null when the
   * entry is stale, "passed over" when its job gives this worker no task now. Pass the outcome
   * to `settle` once the transaction has committed.
   */
  private claim({ entry, attemptId }: Fetched, workerId: number): Assignment | null | "passed over" {
    if (this.passOver(entry, workerId)) return "passed over";
    const claim = { taskId: entry.taskId, generation: entry.generation, attemptId, workerId };
    return claimTask(this.db, claim, Date.now());
  }

  /**
   * Whether the entry's job may not hand this worker a task now: every job excludes the worker
   * for a while, or this job does (see exclusions.ts), or it runs as many tasks as its
   * --max-running-tasks lets it.
   */
  private passOver(entry: QueueEntry, workerId: number): boolean {
    if ((getWorker(this.db, workerId)?.excludedUntil ?? 0) > Date.now()) return true;
    const task = getTask(this.db, entry.taskId);
    if (task === undefined) return false; // stale: the claim says so
    return isExcluded(this.db, task.jobId, workerId) || atRunningCap(this.db, task.jobId);
  }

  /**
   * After the claim's transaction: logs an assignment and returns true; or, for a stale entry
   * (its task ended or runs under a newer generation), removes it and returns false. With
   * "rolled back" (the transaction failed) or "passed over" (its job gives this worker no task
   * now), the entry goes back to its place in its lane.
   */
  async settle(
    fetched: Fetched,
    workerId: number,
    outcome: Assignment | null | "rolled back" | "passed over",
  ): Promise<boolean> {
    const { entry, attemptId } = fetched;
    if (outcome === "rolled back" || outcome === "passed over") {
      await this.queue.release(entry, { as: "back", token: attemptId });
      return false;
    }
    if (outcome === null) {
      await this.queue.release(entry, { as: "gone", token: attemptId, why: "stale entry" });
      return false;
    }
    const { task, job } = outcome;
    this.metrics?.claimed(task.kind, Date.now() - entry.readyAt);
    this.log.info(
      {
        jobId: job.id,
        taskId: task.id,
        kind: task.kind,
        index: task.index,
        attemptId,
        workerId,
      },
      "task assigned",
    );
    return true;
  }

  private sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }
}
