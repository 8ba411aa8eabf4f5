import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import { toError } from "../errors.js";
import { markOutputSucceeded, removeTemporaryOutput } from "../mr/output.js";
import type { JobRecord } from "../store/rows.js";
import { JobState, TaskState } from "../types.js";
import type { Dispatcher } from "./dispatcher.js";
import { queueJobId, type TaskQueue } from "./queue.js";
import type { QueueWork } from "./scheduler.js";

/**
 * What follows a committed state change, outside SQLite: queue entries added and dropped, the
 * output directory finished or cleaned, watchers told. SQLite already holds the truth, so a
 * failure here is logged, not thrown: recovery rebuilds the queue from the store.
 */
export class JobEffects {
  private readonly changes = new EventEmitter().setMaxListeners(0);

  constructor(
    private readonly queue: TaskQueue,
    private readonly dispatcher: Dispatcher,
    private readonly log: Logger,
  ) {}

  async apply(job: JobRecord, work: QueueWork): Promise<void> {
    if (work.enqueue.length > 0) {
      await this.attempt("enqueue tasks", job.id, () => this.queue.enqueue(work.enqueue));
      this.dispatcher.wake();
    }
    for (const task of work.drop) {
      const holder = task.state === TaskState.RUNNING ? task.attemptId : null;
      await this.attempt("drop a queue entry", job.id, () => this.queue.drop(queueJobId(task), holder));
    }
    if (job.state === JobState.SUCCEEDED) {
      await this.attempt("finish the output", job.id, async () => markOutputSucceeded(job.outputDir));
    } else if (job.state !== JobState.RUNNING) {
      await this.attempt("clean the output", job.id, async () => removeTemporaryOutput(job.outputDir));
    }
    this.jobChanged(job.id);
  }

  /** Completes or fails a lease in the queue; a lease lost meanwhile is only logged. */
  async releaseLease(release: () => Promise<void>): Promise<void> {
    await this.attempt("release a lease", undefined, release);
  }

  jobChanged(jobId: number): void {
    this.changes.emit(String(jobId));
  }

  /** Calls `listener` whenever the job changes; returns the function that stops it. */
  onJobChanged(jobId: number, listener: () => void): () => void {
    this.changes.on(String(jobId), listener);
    return () => this.changes.off(String(jobId), listener);
  }

  private async attempt(what: string, jobId: number | undefined, action: () => Promise<void>): Promise<void> {
    try {
      await action();
    } catch (err) {
      this.log.warn({ jobId, err: toError(err).message }, `could not ${what}; recovery will repair it`);
    }
  }
}
