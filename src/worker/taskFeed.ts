/**
 * Where a worker's slots take their tasks and hand in what they finished. The slots share their
 * calls to the driver, so that a busy worker makes fewer calls than it runs tasks:
 * - the reports handed in during one turn of the event loop go in one CompleteTask, which asks
 *   for as many tasks as the slots it frees and the idle slots want; the driver commits the
 *   reports and claims those tasks in one transaction. A report never waits for a call on its
 *   way (holding reports until the last call is back, as Nagle's algorithm does, made jobs of
 *   tiny tasks slower on 4 slots, and no faster on 16: measured);
 * - slots left without a task share a long poll for as many tasks as they are.
 * A task that comes while no slot waits is kept for the next slot that asks.
 */
import type { Completion, TaskAssignment } from "../gen/mapreduce.js";

export interface FeedCalls {
  /** A long poll for up to `max` tasks; none when none came, or the poll failed and was dealt with. */
  poll(max: number): Promise<TaskAssignment[]>;
  /**
   * Reports completed attempts and asks for up to `next` tasks; `refused` has one entry per
   * completion, empty when committed, else why the driver refused it.
   */
  complete(completions: Completion[], next: number): Promise<{ tasks: TaskAssignment[]; refused: string[] }>;
}

interface Report {
  completion: Completion;
  resolve: (refusal: string) => void;
  reject: (err: unknown) => void;
}

export class TaskFeed {
  /** Tasks handed over that no slot has taken yet. */
  private readonly ready: TaskAssignment[] = [];
  /** Slots waiting for a task, first come first served. */
  private readonly waiting: ((task: TaskAssignment | undefined) => void)[] = [];
  private reports: Report[] = [];
  /** Tasks asked for by calls on their way. */
  private asked = 0;
  /** Slots whose reports are on their way: each takes a task once its report is answered. */
  private reporting = 0;
  private pollScheduled = false;
  private draining = false;

  constructor(private readonly calls: FeedCalls) {}

  /**
   * The next task for a slot: one kept, or one the driver hands over. Undefined once the feed
   * drains and no call on its way may bring one.
   */
  take(): Promise<TaskAssignment | undefined> {
    const task = this.ready.shift();
    if (task !== undefined) return Promise.resolve(task);
    if (this.draining && this.asked === 0) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.schedulePoll();
    });
  }

  /**
   * Reports a completed attempt, in a CompleteTask sent at the end of this turn of the event
   * loop; resolves with the driver's refusal (empty when committed). The slot that reports is
   * counted as wanting a task: the reply's tasks are kept for it to take.
   */
  complete(completion: Completion): Promise<string> {
    return new Promise((resolve, reject) => {
      this.reports.push({ completion, resolve, reject });
      if (this.reports.length === 1) void this.sendReports();
    });
  }

  /** Asks for no task from now on; slots that wait get none once the calls on their way are back. */
  drain(): void {
    this.draining = true;
    this.releaseWaiting();
  }

  /** Sends the reports handed in during this turn of the event loop, together, once it is over. */
  private async sendReports(): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    const batch = this.reports;
    this.reports = [];
    const next = this.wanted(batch.length);
    this.asked += next;
    this.reporting += batch.length;
    try {
      const { tasks, refused } = await this.calls.complete(
        batch.map(({ completion }) => completion),
        next,
      );
      this.hand(tasks);
      batch.forEach(({ resolve }, i) => resolve(refused[i] ?? ""));
    } catch (err) {
      for (const { reject } of batch) reject(err);
    } finally {
      this.asked -= next;
      this.reporting -= batch.length;
      this.releaseWaiting();
      this.schedulePoll();
    }
  }

  /**
   * Polls, once this turn of the event loop is over (so that the slots that come to wait in it
   * share one poll), for the waiting slots that no call on its way asks a task for.
   */
  private schedulePoll(): void {
    if (this.pollScheduled) return;
    this.pollScheduled = true;
    setImmediate(() => {
      this.pollScheduled = false;
      const max = this.wanted(0);
      if (max === 0) return;
      this.asked += max;
      void this.calls.poll(max).then((tasks) => {
        this.asked -= max;
        this.hand(tasks);
        this.releaseWaiting();
        this.schedulePoll();
      });
    });
  }

  /**
   * How many more tasks to ask for: one for each of `reporters` slots about to report, each slot
   * whose report is on its way, and each waiting slot, less those asked for and those kept.
   */
  private wanted(reporters: number): number {
    if (this.draining) return 0;
    const takers = reporters + this.reporting + this.waiting.length;
    return Math.max(0, takers - this.asked - this.ready.length);
  }

  private hand(tasks: readonly TaskAssignment[]): void {
    for (const task of tasks) {
      const slot = this.waiting.shift();
      if (slot === undefined) this.ready.push(task);
      else slot(task);
    }
  }

  /** Draining, and with no call on its way: the waiting slots get no task. */
  private releaseWaiting(): void {
    if (!this.draining || this.asked > 0) return;
    for (const slot of this.waiting.splice(0)) slot(undefined);
  }
}
