import { Metadata, status } from "@grpc/grpc-js";
import { MultiBar, Presets, type SingleBar } from "cli-progress";
import { setTimeout as sleep } from "node:timers/promises";
import { UnavailableError, hasCode } from "../errors.js";
import type * as pb from "../gen/mapreduce.js";
import { TERMINAL_JOB_STATES, type JobState } from "../types.js";
import type { DriverClient } from "./client.js";
import { formatDuration, formatMs } from "./format.js";

/** Without --timeout, how long a wait goes on trying a driver that does not answer. */
export const UNREACHABLE_LIMIT_MS = 120_000;

/** What a wait shows as it goes. */
export interface WaitView {
  /** A snapshot of the job, as the driver sends it. */
  update(job: pb.Job): void;
  /** The driver does not answer; the wait gives up at `giveUpAt` (epoch ms) unless it does. */
  unreachable(giveUpAt: number): void;
  /** Puts the screen back as it was: cursor, line wrap. Safe to call more than once. */
  stop(): void;
}

/** A wait that reached its --timeout with the job still running. */
export class WaitTimedOut extends Error {
  override name = "WaitTimedOut";
}

/**
 * Follows a job through WatchJob until it ends, and returns its last snapshot. A driver that
 * stops answering is tried again every half second, and the view told at once, until
 * `deadline` (epoch ms) or, without one, for UNREACHABLE_LIMIT_MS; a restart takes seconds.
 */
export async function followJob(
  client: DriverClient,
  jobId: number,
  view: Pick<WaitView, "update" | "unreachable">,
  deadline?: number,
): Promise<pb.Job> {
  let unreachableSince: number | undefined;
  for (;;) {
    try {
      const last = await streamOnce(client, jobId, deadline, (job) => {
        unreachableSince = undefined;
        view.update(job);
      });
      if (last && TERMINAL_JOB_STATES.includes(last.state as JobState)) return last;
    } catch (err) {
      const timedOut = deadline !== undefined && Date.now() >= deadline;
      if (hasCode(err, status.UNAVAILABLE)) unreachableSince ??= Date.now();
      else if (!timedOut) throw err;
      if (timedOut && unreachableSince === undefined) {
        throw new WaitTimedOut(
          `job ${jobId} is still running after the --timeout (it goes on; mr jobs wait ${jobId} to wait again)`,
        );
      }
      const giveUpAt = deadline ?? unreachableSince! + UNREACHABLE_LIMIT_MS;
      if (Date.now() >= giveUpAt) throw new UnavailableError(`the driver did not answer`, { cause: err });
      view.unreachable(giveUpAt);
    }
    await sleep(500);
  }
}

function streamOnce(
  client: DriverClient,
  jobId: number,
  deadline: number | undefined,
  onUpdate: (job: pb.Job) => void,
): Promise<pb.Job | undefined> {
  return new Promise((resolve, reject) => {
    let last: pb.Job | undefined;
    const stream = client.raw.watchJob({ jobId }, new Metadata(), { deadline: deadline ?? Infinity });
    stream.on("data", (job: pb.Job) => {
      last = job;
      onUpdate(job);
    });
    stream.on("error", reject);
    stream.on("end", () => resolve(last));
  });
}

/**
 * How a wait looks. On a terminal: bars for maps and reduces, moved on by the share their
 * running attempts have done, under a line with the time the job has run, an estimate of the
 * time left, and what it waits for; drawn from the first snapshot, never from made-up totals.
 * Elsewhere: one line per change. Either way, maps that must run again are said to, rather
 * than left to make a bar drop.
 */
export function progressView(out: NodeJS.WriteStream, driver: string): WaitView {
  return out.isTTY ? new BarsView(out, driver) : new LinesView(out, driver);
}

class LinesView implements WaitView {
  private previous = "";
  private mapsDone = 0;
  private unreachableSaid = false;

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly driver: string,
  ) {}

  update(job: pb.Job): void {
    this.unreachableSaid = false;
    if (job.mapsDone < this.mapsDone) this.out.write(`${reRun(this.mapsDone - job.mapsDone)}\n`);
    this.mapsDone = job.mapsDone;
    const waiting = job.waitingFor ? `; waiting for ${job.waitingFor}` : "";
    const line = `job ${job.id} ${job.state}: maps ${job.mapsDone}/${job.mapsTotal}, reduces ${job.reducesDone}/${job.reducesTotal}${waiting}`;
    if (line !== this.previous) this.out.write(`${line}\n`);
    this.previous = line;
  }

  unreachable(giveUpAt: number): void {
    if (this.unreachableSaid) return;
    this.unreachableSaid = true;
    this.previous = "";
    this.out.write(`${unreachableLine(this.driver, giveUpAt)}\n`);
  }

  stop(): void {}
}

class BarsView implements WaitView {
  private bars: MultiBar | undefined;
  private maps: SingleBar | undefined;
  private reduces: SingleBar | undefined;
  private status: SingleBar | undefined;
  private readonly eta = new Estimate();
  private last: pb.Job | undefined;
  private unreachableUntil: number | undefined;
  private waitingFor = "";

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly driver: string,
  ) {}

  update(job: pb.Job): void {
    this.unreachableUntil = undefined;
    if (this.bars === undefined) this.draw();
    if (this.last && job.mapsDone < this.last.mapsDone) {
      this.bars!.log(`${reRun(this.last.mapsDone - job.mapsDone)}\n`);
    }
    if (job.waitingFor !== this.waitingFor && job.waitingFor !== "") {
      this.bars!.log(`waiting for ${job.waitingFor}\n`);
    }
    this.waitingFor = job.waitingFor;
    this.last = job;
    this.maps!.setTotal(Math.max(1, job.mapsTotal));
    this.maps!.update(job.mapsTotal === 0 ? 1 : Math.max(job.mapsDone, job.mapsProgress), {
      done: job.mapsDone,
    });
    this.reduces!.setTotal(job.reducesTotal);
    this.reduces!.update(Math.max(job.reducesDone, job.reducesProgress), { done: job.reducesDone });
    const total = job.mapsTotal + job.reducesTotal;
    this.eta.add(total === 0 ? 1 : (job.mapsProgress + job.reducesProgress) / total);
    this.showStatus();
  }

  unreachable(giveUpAt: number): void {
    if (this.bars === undefined) {
      // Nothing drawn yet: one line, redrawn in place, until the driver answers.
      this.out.write(`\r\x1b[K${unreachableLine(this.driver, giveUpAt)}`);
      this.unreachableUntil = giveUpAt;
      return;
    }
    this.unreachableUntil = giveUpAt;
    this.showStatus();
  }

  stop(): void {
    if (this.bars === undefined) {
      if (this.unreachableUntil !== undefined) this.out.write("\n");
      return;
    }
    this.showStatus();
    this.bars.stop();
    this.bars = undefined;
  }

  private draw(): void {
    if (this.unreachableUntil !== undefined) this.out.write("\r\x1b[K");
    this.bars = new MultiBar(
      {
        stream: this.out,
        format: " {name} [{bar}] {done}/{total} {percentage}%",
        hideCursor: true,
        clearOnComplete: false,
      },
      Presets.shades_classic,
    );
    this.maps = this.bars.create(1, 0, { name: "maps   ", done: 0 });
    this.reduces = this.bars.create(1, 0, { name: "reduces", done: 0 });
    this.status = this.bars.create(1, 0, { line: "" }, { format: " {line}" });
  }

  private showStatus(): void {
    const job = this.last;
    if (job === undefined || this.status === undefined) return;
    const parts = [`ran ${formatDuration(job.submittedAtMs, job.finishedAtMs)}`];
    const left = this.eta.leftMs();
    if (job.finishedAtMs === 0 && left !== undefined) parts.push(`about ${formatMs(left)} left`);
    if (job.waitingFor) parts.push(`waiting for ${job.waitingFor}`);
    if (this.unreachableUntil !== undefined) parts.push(unreachableLine(this.driver, this.unreachableUntil));
    this.status.update(0, { line: parts.join(" · ") });
  }
}

function reRun(maps: number): string {
  return `${maps} map${maps === 1 ? "" : "s"} to run again: their output was lost with a worker`;
}

function unreachableLine(driver: string, giveUpAt: number): string {
  const seconds = Math.max(0, Math.ceil((giveUpAt - Date.now()) / 1000));
  return `cannot reach the driver at ${driver}; trying again, giving up in ${seconds}s`;
}

/**
 * The time left, from how fast the share done grew over the last half minute. No estimate
 * until it has grown for a few seconds; a share that falls (maps to run again) starts over.
 */
class Estimate {
  private samples: { at: number; share: number }[] = [];

  add(share: number, at = Date.now()): void {
    const latest = this.samples.at(-1);
    if (latest !== undefined && share < latest.share) this.samples = [];
    this.samples.push({ at, share });
    while (this.samples.length > 2 && at - this.samples[0]!.at > 30_000) this.samples.shift();
  }

  leftMs(): number | undefined {
    const first = this.samples[0];
    const latest = this.samples.at(-1);
    if (first === undefined || latest === undefined || latest.at - first.at < 3000) return undefined;
    const rate = (latest.share - first.share) / (latest.at - first.at);
    return rate > 0 ? (1 - latest.share) / rate : undefined;
  }
}
