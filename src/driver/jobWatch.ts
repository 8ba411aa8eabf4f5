/**
 * Following a job as it runs: the one machinery behind WatchJob (`mr jobs wait`) and the web
 * UI's live updates. A follower gets a snapshot at once, then one after each change, at most
 * every WATCH_INTERVAL_MS and never faster than it reads, and the job's end at once.
 */
import { NotFoundError, ResourceExhaustedError } from "../errors.js";
import type * as pb from "../gen/mapreduce.js";
import { LIMITS } from "../limits.js";
import type { Db } from "../store/db.js";
import { getJob } from "../store/jobs.js";
import { TERMINAL_JOB_STATES } from "../types.js";
import type { JobEffects } from "./jobEffects.js";
import { jobMessage } from "./views.js";

/** The least time between two snapshots of a watched job, in ms. */
const WATCH_INTERVAL_MS = 100;
/** A change that no handler saw (a retry's backoff, a lease expiring) still shows within this long. */
const REFRESH_MS = 1000;

/** Where a follower's snapshots go. */
export interface WatchSink {
  /** Sends a snapshot; false if the client has yet to read it (then call `drained` when it has). */
  write(job: pb.Job): boolean;
  /** The job has ended and its last snapshot was written. */
  end(): void;
}

export interface Watch {
  /** The client has read what was written: the latest snapshot goes out if one waits. */
  drained(): void;
  /** The client went away: stop, without `end`. Calling it twice is harmless. */
  close(): void;
}

export class JobWatches {
  private readonly byHost = new Map<string, number>();
  private total = 0;

  constructor(
    private readonly db: Db,
    private readonly effects: Pick<JobEffects, "onJobChanged" | "outputSettled">,
  ) {}

  /**
   * Follows job `jobId` for a client at `host`. Throws NotFoundError for an unknown job, and
   * ResourceExhaustedError past the watches one client, or all of them, may hold open.
   */
  follow(jobId: number, host: string, sink: WatchSink): Watch {
    if (!getJob(this.db, jobId)) throw new NotFoundError(`no job ${jobId} (see mr jobs list)`);
    const release = this.admit(host);
    const { db } = this;
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
      const ended = TERMINAL_JOB_STATES.includes(now.state) && this.effects.outputSettled(now);
      if (unread && !ended) return;
      sentAt = Date.now();
      unread = !sink.write(jobMessage(db, now));
      if (ended) {
        close();
        sink.end();
      }
    };
    // A busy job changes hundreds of times a second: each snapshot carries the latest state.
    const changed = (): void => {
      const wait = sentAt + WATCH_INTERVAL_MS - Date.now();
      const job = getJob(db, jobId)!;
      if (wait <= 0 || (TERMINAL_JOB_STATES.includes(job.state) && this.effects.outputSettled(job))) send();
      else pending ??= setTimeout(send, wait);
    };
    const unsubscribe = this.effects.onJobChanged(jobId, changed);
    const timer = setInterval(send, REFRESH_MS);
    const close = (): void => {
      if (closed) return;
      closed = true;
      unsubscribe();
      clearInterval(timer);
      clearTimeout(pending);
      release();
    };
    send();
    return {
      drained: () => {
        unread = false;
        send();
      },
      close,
    };
  }

  /**
   * Counts a watch from `host`, or refuses it: each holds timers and a listener, so one client
   * may hold only so many, and all clients together only so many more. Returns what to call,
   * once, when it ends.
   */
  private admit(host: string): () => void {
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
    return () => {
      this.total--;
      const left = (this.byHost.get(host) ?? 1) - 1;
      if (left === 0) this.byHost.delete(host);
      else this.byHost.set(host, left);
    };
  }
}
