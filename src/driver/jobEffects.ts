import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import { InvalidArgumentError, toError } from "../errors.js";
import { markOutputSucceeded, removeTemporaryOutput } from "../mr/output.js";
import { isS3Uri, type S3Options } from "../mr/s3Uri.js";
import { abortS3Output, commitS3Output } from "../mr/s3Output.js";
import { Roots } from "../roots.js";
import type { Db } from "../store/db.js";
import { listJobsWithOutputToFinish, markOutputFinished } from "../store/jobs.js";
import { forgetUploads, listUploads, markUploadCompleted } from "../store/uploads.js";
import { inTransaction } from "../store/prepared.js";
import type { JobRecord } from "../store/rows.js";
import { JobState } from "../types.js";
import type { Dispatcher } from "./dispatcher.js";
import type { TaskQueue } from "./queue.js";
import type { WorkerLoss } from "./faults.js";
import type { QueueWork } from "./scheduler.js";

/** Tasks added to the queue in one call. */
const ENQUEUE_CHUNK = 100;
/** Queue entries dropped at once. */
const DROP_CHUNK = 100;

/**
 * What follows a committed state change, outside SQLite: queue entries added and dropped, the
 * output directory finished or cleaned, watchers told. SQLite already holds the truth, so a
 * failure here is logged, not thrown: recovery rebuilds the queue from the store.
 */
export class JobEffects {
  private readonly changes = new EventEmitter().setMaxListeners(0);
  private readonly pending = new Set<Promise<void>>();
  /** Jobs whose tasks are being added to the queue right now, with how many adds are under way. */
  private readonly enqueuing = new Map<number, number>();
  /** Jobs whose output in object storage is being committed or aborted now. */
  private readonly finishing = new Set<number>();
  /** Jobs whose output could not be finished, with the last error. */
  private readonly outputErrors = new Map<number, string>();

  constructor(
    private readonly db: Db,
    private readonly queue: TaskQueue,
    private readonly dispatcher: Pick<Dispatcher, "wake">,
    private readonly log: Logger,
    /** The output roots: an output directory changed to lead outside them is left alone. */
    private readonly roots = Roots.NONE,
    /** The object store of s3:// outputs. */
    private readonly s3: S3Options = {},
  ) {}

  /** Carries out a state change's queue work (drops first: a task dropped may be enqueued anew), then the output's. */
  async apply(job: JobRecord, work: QueueWork): Promise<void> {
    await this.applyQueueWork(work, job.id);
    this.finishOutput(job);
    this.jobChanged(job.id);
  }

  async applyQueueWork(work: QueueWork, jobId?: number): Promise<void> {
    // A job that ends drops every entry it has (up to LIMITS.maps): many at once, not one by one.
    for (let i = 0; i < work.drop.length; i += DROP_CHUNK) {
      await Promise.all(
        work.drop
          .slice(i, i + DROP_CHUNK)
          .map((task) =>
            this.attempt("drop a queue entry", jobId, () =>
              this.queue.release(task, { as: "gone", token: task.attemptId, why: "task ended" }),
            ),
          ),
      );
    }
    for (const { task, token } of work.requeue ?? []) {
      await this.attempt("requeue a task", task.jobId, () => this.queue.release(task, { as: "back", token }));
    }
    if ((work.requeue?.length ?? 0) > 0) this.dispatcher.wake();
    // In chunks, each handed out as soon as it is in, so that a big job's first tasks start
    // while the rest are still being added. After a chunk that fails, recovery adds the rest.
    const jobIds = [...new Set(work.enqueue.map((task) => task.jobId))];
    for (const id of jobIds) this.enqueuing.set(id, (this.enqueuing.get(id) ?? 0) + 1);
    try {
      for (let i = 0; i < work.enqueue.length; i += ENQUEUE_CHUNK) {
        const chunk = work.enqueue.slice(i, i + ENQUEUE_CHUNK);
        if (!(await this.attempt("enqueue tasks", jobId, () => this.queue.enqueue(chunk)))) break;
        this.dispatcher.wake();
      }
    } finally {
      for (const id of jobIds) {
        const left = this.enqueuing.get(id)! - 1;
        if (left === 0) this.enqueuing.delete(id);
        else this.enqueuing.set(id, left);
      }
    }
  }

  /** The jobs whose tasks this driver is adding to the queue now: their entries are on the way, not lost. */
  enqueuingJobs(): number[] {
    return [...this.enqueuing.keys()];
  }

  /** After attempts were lost: their queue work, then each job they touched finished or told. */
  async applyLoss(loss: WorkerLoss): Promise<void> {
    await this.applyQueueWork(loss);
    for (const job of loss.jobs) {
      this.finishOutput(job);
      this.jobChanged(job.id);
    }
  }

  /**
   * A job that ended leaves `_SUCCESS`, or at least no `_temporary`; then the job is marked so.
   * A driver that stops before that finishes the output when it starts again. An output
   * directory that now leads outside the output roots is not touched. An output in object
   * storage is committed or aborted by requests (s3Output.ts), behind this call; one that fails
   * (the store is down) is tried again by `retryOutputs`.
   */
  finishOutput(job: JobRecord): void {
    if (job.state === JobState.RUNNING || this.finishing.has(job.id)) return;
    if (isS3Uri(job.outputDir)) {
      this.finishing.add(job.id);
      this.inBackground(async () => {
        try {
          await this.finishS3Output(job);
          this.outputErrors.delete(job.id);
          inTransaction(this.db, () => {
            forgetUploads(this.db, job.id);
            markOutputFinished(this.db, job.id);
          });
          this.log.info(
            { jobId: job.id, output: job.outputDir },
            `output ${job.state === JobState.SUCCEEDED ? "committed" : "aborted"}`,
          );
        } catch (err) {
          this.outputErrors.set(job.id, toError(err).message);
          this.log.error(
            { jobId: job.id, err: toError(err).message },
            "could not finish the output; will try again",
          );
        } finally {
          this.finishing.delete(job.id);
          this.jobChanged(job.id);
        }
      });
      return;
    }
    try {
      try {
        this.roots.checkOutput(job.outputDir);
        if (job.state === JobState.SUCCEEDED) markOutputSucceeded(job.outputDir);
        else removeTemporaryOutput(job.outputDir);
      } catch (err) {
        if (!(err instanceof InvalidArgumentError)) throw err;
        this.log.error({ jobId: job.id, err: err.message }, "left the output directory as it is");
      }
      inTransaction(this.db, () => markOutputFinished(this.db, job.id));
      this.outputErrors.delete(job.id);
    } catch (err) {
      this.outputErrors.set(job.id, toError(err).message);
      this.log.error({ jobId: job.id, err: toError(err).message }, "could not finish the output directory");
    }
  }

  private async finishS3Output(job: JobRecord): Promise<void> {
    const uploads = listUploads(this.db, job.id);
    if (job.state !== JobState.SUCCEEDED) {
      if (!(await abortS3Output(job.outputDir, uploads, this.s3))) this.cannotList(job);
      return;
    }
    await commitS3Output(
      job.outputDir,
      job.reducers,
      uploads.filter((upload) => upload.committed),
      uploads.filter((upload) => !upload.committed),
      this.s3,
      {
        completed: (partition) =>
          inTransaction(this.db, () => markUploadCompleted(this.db, job.id, partition)),
        cannotList: () => this.cannotList(job),
      },
    );
  }

  private cannotList(job: JobRecord): void {
    this.log.warn(
      { jobId: job.id, output: job.outputDir },
      "the object store cannot list multipart uploads: an upload of an attempt killed part way may be left (give the bucket a lifecycle rule that aborts incomplete multipart uploads)",
    );
  }

  /** Finishes again the outputs of ended jobs that are not finished, after a failure or a restart. */
  retryOutputs(): void {
    for (const job of listJobsWithOutputToFinish(this.db)) {
      if (isS3Uri(job.outputDir) || !this.outputErrors.has(job.id)) this.finishOutput(job);
    }
  }

  /**
   * Whether a watcher of an ended job has seen all there is to see: its output finished, or its
   * last try failed (the watcher gets the job as it is, outputFinished false).
   */
  outputSettled(job: JobRecord): boolean {
    return job.outputFinished || (this.outputErrors.has(job.id) && !this.finishing.has(job.id));
  }

  /**
   * Runs queue work after the reply that it must not delay. SQLite already holds the state, so
   * a failure here is logged, and reconciliation repairs it; `drain` waits for what is in flight.
   */
  inBackground(work: () => Promise<void>): void {
    const running = work().catch((err: unknown) =>
      this.log.warn({ err: toError(err).message }, "queue work failed"),
    );
    this.pending.add(running);
    void running.finally(() => this.pending.delete(running));
  }

  async drain(): Promise<void> {
    await Promise.allSettled([...this.pending]);
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

  /** Runs a queue action; a failure is logged, and false returned. */
  private async attempt(
    what: string,
    jobId: number | undefined,
    action: () => Promise<void>,
  ): Promise<boolean> {
    // With Redis away a queue call would wait for it; the reconciliation on reconnect does the work.
    if (!this.queue.isConnected()) {
      this.log.warn({ jobId }, `could not ${what}: redis is unreachable; recovery will repair it`);
      return false;
    }
    try {
      await action();
      return true;
    } catch (err) {
      this.log.warn({ jobId, err: toError(err).message }, `could not ${what}; recovery will repair it`);
      return false;
    }
  }
}
