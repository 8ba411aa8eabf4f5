import { status } from "@grpc/grpc-js";
import { MultiBar, Presets } from "cli-progress";
import { setTimeout as sleep } from "node:timers/promises";
import { hasCode } from "../errors.js";
import type * as pb from "../gen/mapreduce.js";
import { TERMINAL_JOB_STATES, type JobState } from "../types.js";
import type { DriverClient } from "./client.js";

/**
 * Follows a job through WatchJob until it ends, and returns its last snapshot. A driver that
 * restarts meanwhile is waited for: the stream is opened again once it answers.
 */
export async function followJob(
  client: DriverClient,
  jobId: number,
  onUpdate: (job: pb.Job) => void,
): Promise<pb.Job> {
  let unreachableSince: number | undefined;
  for (;;) {
    try {
      const last = await streamOnce(client, jobId, (job) => {
        unreachableSince = undefined;
        onUpdate(job);
      });
      if (last && TERMINAL_JOB_STATES.includes(last.state as JobState)) return last;
    } catch (err) {
      if (!hasCode(err, status.UNAVAILABLE)) throw err;
      unreachableSince ??= Date.now();
      // Give up only if the driver stays away for long; a restart takes seconds.
      if (Date.now() - unreachableSince > 120_000) throw err;
    }
    await sleep(500);
  }
}

function streamOnce(
  client: DriverClient,
  jobId: number,
  onUpdate: (job: pb.Job) => void,
): Promise<pb.Job | undefined> {
  return new Promise((resolve, reject) => {
    let last: pb.Job | undefined;
    const stream = client.raw.watchJob({ jobId });
    stream.on("data", (job: pb.Job) => {
      last = job;
      onUpdate(job);
    });
    stream.on("error", reject);
    stream.on("end", () => resolve(last));
  });
}

/**
 * Two bars on a terminal: maps and reduces done, each moved on by the share its running
 * attempts have done; one line per change otherwise.
 */
export function progressReporter(out: NodeJS.WriteStream): { update(job: pb.Job): void; stop(): void } {
  if (!out.isTTY) {
    let previous = "";
    return {
      update(job) {
        const waiting = job.waitingFor ? `; waiting for ${job.waitingFor}` : "";
        const line = `job ${job.id} ${job.state}: maps ${job.mapsDone}/${job.mapsTotal}, reduces ${job.reducesDone}/${job.reducesTotal}${waiting}`;
        if (line !== previous) out.write(`${line}\n`);
        previous = line;
      },
      stop() {},
    };
  }
  const bars = new MultiBar(
    {
      stream: out,
      format: " {name} [{bar}] {done}/{total} {percentage}%",
      hideCursor: true,
      clearOnComplete: false,
    },
    Presets.shades_classic,
  );
  const maps = bars.create(1, 0, { name: "maps   ", done: 0 });
  const reduces = bars.create(1, 0, { name: "reduces", done: 0 });
  let waitingFor = "";
  return {
    update(job) {
      if (job.waitingFor !== waitingFor && job.waitingFor !== "") bars.log(`waiting for ${job.waitingFor}\n`);
      waitingFor = job.waitingFor;
      maps.setTotal(Math.max(1, job.mapsTotal));
      maps.update(job.mapsTotal === 0 ? 1 : Math.max(job.mapsDone, job.mapsProgress), { done: job.mapsDone });
      reduces.setTotal(job.reducesTotal);
      reduces.update(Math.max(job.reducesDone, job.reducesProgress), { done: job.reducesDone });
    },
    stop() {
      bars.stop();
    },
  };
}
