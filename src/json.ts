/**
 * Jobs, tasks and workers as JSON: one shape for `mr … --json` and the driver's HTTP API
 * (`/api/v1/…`), so that a script written against one reads the other.
 */
import type * as pb from "./gen/mapreduce.js";

export function isoOrNull(ms: number): string | null {
  return ms === 0 ? null : new Date(ms).toISOString();
}

export function jobJson(job: pb.Job) {
  return {
    id: job.id,
    state: job.state,
    app: job.app,
    inputs: job.inputs,
    output: job.outputDir,
    reducers: job.reducers,
    splitSizeBytes: job.splitSizeBytes,
    openCostBytes: job.openCostBytes,
    params: job.params,
    maps: { done: job.mapsDone, progress: job.mapsProgress, total: job.mapsTotal },
    reduces: { done: job.reducesDone, progress: job.reducesProgress, total: job.reducesTotal },
    submittedAt: isoOrNull(job.submittedAtMs),
    finishedAt: isoOrNull(job.finishedAtMs),
    error: job.error || null,
    waitingFor: job.waitingFor || null,
    retries: job.retries,
    priority: job.priority,
    maxRunningTasks: job.maxRunningTasks || null,
    speculation: job.speculation,
    reduceSlowstart: job.reduceSlowstart,
    outputFinished: job.outputFinished,
  };
}
export type JobJson = ReturnType<typeof jobJson>;

/** How long the succeeded attempts of one phase took, in ms: Spark's task-duration quantiles. */
export interface DurationQuantiles {
  tasks: number;
  min: number;
  p25: number;
  median: number;
  p75: number;
  max: number;
}

/**
 * The quantiles of the committed attempts' durations, per phase; null for a phase none of
 * whose tasks has committed yet. A backup that won counts, the holder it beat does not.
 */
export function taskDurations(detail: pb.JobDetail): {
  map: DurationQuantiles | null;
  reduce: DurationQuantiles | null;
} {
  const durations: Record<string, number[]> = { MAP: [], REDUCE: [] };
  for (const task of detail.tasks) {
    for (const attempt of task.attempts) {
      if (attempt.state === "SUCCEEDED" && attempt.finishedAtMs > 0) {
        durations[task.kind]!.push(attempt.finishedAtMs - attempt.startedAtMs);
      }
    }
  }
  return { map: quantiles(durations.MAP!), reduce: quantiles(durations.REDUCE!) };
}

/** Nearest-rank quantiles of `values`; null if there are none. */
export function quantiles(values: number[]): DurationQuantiles | null {
  if (values.length === 0) return null;
  const sorted = values.toSorted((a, b) => a - b);
  const at = (q: number): number => sorted[Math.round(q * (sorted.length - 1))]!;
  return { tasks: sorted.length, min: at(0), p25: at(0.25), median: at(0.5), p75: at(0.75), max: at(1) };
}

export function jobDetailJson(detail: pb.JobDetail) {
  return {
    ...jobJson(detail.job!),
    taskDurationsMs: taskDurations(detail),
    tasks: detail.tasks.map((task) => ({
      id: task.id,
      kind: task.kind,
      index: task.index,
      state: task.state,
      generation: task.generation,
      attempts: task.attempts.map((attempt) => ({
        id: attempt.id,
        worker: attempt.workerId,
        state: attempt.state,
        startedAt: isoOrNull(attempt.startedAtMs),
        finishedAt: isoOrNull(attempt.finishedAtMs),
        progress: attempt.progress,
        speculative: attempt.speculative,
        error: attempt.error || null,
      })),
    })),
    // As protobuf's JSON mapping writes 64-bit integers: decimal strings.
    counters: Object.fromEntries(detail.counters.map(({ name, value }) => [name, value])),
    events: detail.events.map((event) => ({
      at: new Date(event.atMs).toISOString(),
      type: event.type,
      message: event.message,
    })),
  };
}
export type JobDetailJson = ReturnType<typeof jobDetailJson>;

export function workerJson(worker: pb.Worker) {
  return {
    id: worker.id,
    address: worker.address,
    state: worker.state,
    registeredAt: isoOrNull(worker.registeredAtMs),
    lastHeartbeatAt: isoOrNull(worker.lastHeartbeatMs),
    slots: worker.slots,
    runningAttempts: worker.runningAttempts,
    apps: worker.apps,
    excludedByJobs: worker.excludedByJobs,
    excludedUntil: isoOrNull(worker.excludedUntilMs),
  };
}
