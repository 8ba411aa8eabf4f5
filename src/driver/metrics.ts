/**
 * The driver's Prometheus metrics, at `/metrics` on its HTTP port. Names follow Prometheus's
 * rules: the `mr_` prefix, base units (seconds, bytes), `_total` for counters, and no job or
 * attempt ids as labels. Counts of what ended are read from SQLite at each scrape, after what
 * the last scrape read, so the scheduler's code carries no metric calls; the queue wait is
 * observed by the dispatcher as it claims.
 */
import { performance } from "node:perf_hooks";
import { Counter as PromCounter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Db } from "../store/db.js";
import { countByState, lastCounterRow, listAttemptsFinished, sumCountersAfter } from "../store/metrics.js";
import { AttemptState, JobState, WorkerState } from "../types.js";
import type { BullmqTaskQueue } from "./queue.js";

/**
 * An attempt is counted once its end is this old, in ms: a transaction takes its `now` a
 * moment before it commits, so a younger end may yet appear behind the read.
 */
const SETTLE_MS = 1000;

/** Task durations, in seconds: from a 50 ms map to an hour's reduce. */
const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600];
/** Queue waits, in seconds. */
const WAIT_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** The engine's byte counters of committed attempts, and the metric each adds to. */
const BYTE_COUNTERS = {
  MAP_INPUT_BYTES: ["mr_read_bytes_total", "Input bytes read by committed map attempts"],
  SHUFFLE_BYTES: ["mr_shuffled_bytes_total", "Map output bytes fetched by committed reduce attempts"],
  SPILLED_BYTES: [
    "mr_spilled_bytes_total",
    "Bytes committed attempts wrote to disk to read again (spills, merges ahead)",
  ],
  BYTES_WRITTEN: ["mr_written_bytes_total", "Output bytes written by committed reduce attempts"],
} as const;

export class DriverMetrics {
  readonly registry = new Registry();
  private readonly attempts: PromCounter<"kind" | "outcome">;
  private readonly durations: Histogram<"kind">;
  private readonly queueWait: Histogram<"kind">;
  private readonly bytes = new Map<string, PromCounter>();
  /** Attempts that ended before this, in ms, are counted. */
  private countedUntil: number;
  private counterRow: number;

  constructor(
    private readonly db: Db,
    queue: Pick<BullmqTaskQueue, "depth" | "isConnected">,
  ) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.countedUntil = Date.now();
    this.counterRow = lastCounterRow(db);
    this.attempts = new PromCounter({
      name: "mr_task_attempts_total",
      help: "Task attempts that ended, by kind (map, reduce) and outcome (succeeded, failed, lost, superseded, killed)",
      labelNames: ["kind", "outcome"],
      registers,
    });
    this.durations = new Histogram({
      name: "mr_task_duration_seconds",
      help: "How long succeeded task attempts ran, from claim to commit",
      labelNames: ["kind"],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.queueWait = new Histogram({
      name: "mr_task_queue_wait_seconds",
      help: "Schedule to start: how long a runnable task waited in the queue before an attempt claimed it",
      labelNames: ["kind"],
      buckets: WAIT_BUCKETS,
      registers,
    });
    for (const [counter, [name, help]] of Object.entries(BYTE_COUNTERS)) {
      this.bytes.set(counter, new PromCounter({ name, help, registers }));
    }
    // Every label value from the start, so that a rate over a scrape that saw the first one is right.
    for (const kind of ["map", "reduce"]) {
      for (const outcome of Object.values(AttemptState)) {
        if (outcome !== AttemptState.RUNNING) this.attempts.labels(kind, outcome.toLowerCase()).inc(0);
      }
    }
    let busySeconds = 0;
    new PromCounter({
      name: "mr_driver_event_loop_busy_seconds_total",
      help: "Time the driver's event loop spent running code or blocked in a call, rather than waiting for work: its rate near 1 means the driver is what limits the cluster",
      registers,
      collect() {
        const busy = performance.eventLoopUtilization().active / 1000;
        this.inc(busy - busySeconds);
        busySeconds = busy;
      },
    });
    new Gauge({
      name: "mr_jobs",
      help: "Jobs by state",
      labelNames: ["state"],
      registers,
      collect() {
        const counts = countByState(db, "jobs");
        for (const state of Object.values(JobState))
          this.set({ state: state.toLowerCase() }, counts.get(state) ?? 0);
      },
    });
    new Gauge({
      name: "mr_workers",
      help: "Workers by state: alive, lost, stopped",
      labelNames: ["state"],
      registers,
      collect() {
        const counts = countByState(db, "workers");
        for (const state of Object.values(WorkerState))
          this.set({ state: state.toLowerCase() }, counts.get(state) ?? 0);
      },
    });
    new Gauge({
      name: "mr_queue_tasks",
      help: "Task entries in the Redis queue: waiting to be handed out, delayed (a retry's backoff), active (held by an attempt)",
      labelNames: ["state"],
      registers,
      async collect() {
        if (!queue.isConnected()) return; // no sample beats a wrong one
        const depth = await queue.depth();
        for (const [state, n] of Object.entries(depth)) this.set({ state }, n);
      },
    });
  }

  /** A queue entry of a task of `kind` was claimed, `waitedMs` after it was ready. */
  claimed(kind: string, waitedMs: number): void {
    this.queueWait.observe({ kind: kind.toLowerCase() }, Math.max(0, waitedMs) / 1000);
  }

  /** The metrics in Prometheus's text format. */
  async text(): Promise<string> {
    this.catchUp(Date.now());
    return this.registry.metrics();
  }

  /** Counts the attempts that ended, and the counters saved, since the last call. */
  private catchUp(now: number): void {
    const until = now - SETTLE_MS;
    if (until > this.countedUntil) {
      for (const attempt of listAttemptsFinished(this.db, this.countedUntil, until)) {
        const kind = attempt.kind.toLowerCase();
        this.attempts.inc({ kind, outcome: attempt.state.toLowerCase() });
        if (attempt.state === AttemptState.SUCCEEDED) {
          this.durations.observe({ kind }, (attempt.finishedAt - attempt.startedAt) / 1000);
        }
      }
      this.countedUntil = until;
    }
    const { sums, lastRow } = sumCountersAfter(this.db, this.counterRow, Object.keys(BYTE_COUNTERS));
    for (const [name, total] of sums) this.bytes.get(name)!.inc(total);
    this.counterRow = lastRow;
  }
}
