/**
 * A worker's Prometheus metrics, at `/metrics` with `mr worker --http HOST:PORT`: the attempts
 * it ran and how they ended, how long they took, its slots, and the bytes of its attempts the
 * driver accepted. Names carry `mr_worker_`, so that sums over every target never count an
 * attempt twice with the driver's own `mr_` metrics.
 */
import { Counter as PromCounter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { Counter } from "../mr/context.js";
import type { Counters } from "../types.js";

/** Task durations, in seconds, as the driver's. */
const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600];

/** How an attempt ended on this worker. */
export type WorkerOutcome = "succeeded" | "refused" | "failed" | "aborted";

const BYTE_COUNTERS: Record<string, [string, string]> = {
  [Counter.MAP_INPUT_BYTES]: ["mr_worker_read_bytes_total", "Input bytes read by accepted map attempts"],
  [Counter.SHUFFLE_BYTES]: [
    "mr_worker_shuffled_bytes_total",
    "Map output bytes fetched by accepted reduce attempts",
  ],
  [Counter.SPILLED_BYTES]: [
    "mr_worker_spilled_bytes_total",
    "Bytes accepted attempts spilled to disk to read again",
  ],
  [Counter.BYTES_WRITTEN]: [
    "mr_worker_written_bytes_total",
    "Output bytes written by accepted reduce attempts",
  ],
};

export class WorkerMetrics {
  readonly registry = new Registry();
  private readonly attempts: PromCounter<"kind" | "outcome">;
  private readonly durations: Histogram<"kind">;
  private readonly bytes = new Map<string, PromCounter>();

  /** `slots`: how many the worker has, and how many run an attempt now. */
  constructor(slots: { total: number; busy: () => number }) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.attempts = new PromCounter({
      name: "mr_worker_task_attempts_total",
      help: "Attempts this worker ran, by kind and how they ended: succeeded (the driver accepted it), refused (the driver had moved on), failed, aborted",
      labelNames: ["kind", "outcome"],
      registers,
    });
    this.durations = new Histogram({
      name: "mr_worker_task_duration_seconds",
      help: "How long this worker's succeeded attempts ran",
      labelNames: ["kind"],
      buckets: DURATION_BUCKETS,
      registers,
    });
    for (const [name, help] of Object.values(BYTE_COUNTERS)) {
      this.bytes.set(name, new PromCounter({ name, help, registers }));
    }
    new Gauge({
      name: "mr_worker_slots",
      help: "This worker's task slots: busy running an attempt, or idle",
      labelNames: ["state"],
      registers,
      collect() {
        const busy = slots.busy();
        this.set({ state: "busy" }, busy);
        this.set({ state: "idle" }, Math.max(0, slots.total - busy));
      },
    });
  }

  /** An attempt of a task of `kind` ended after `ms`; an accepted one brings its counters. */
  ended(kind: string, outcome: WorkerOutcome, ms: number, counters?: Counters): void {
    const label = kind.toLowerCase();
    this.attempts.inc({ kind: label, outcome });
    if (outcome !== "succeeded") return;
    this.durations.observe({ kind: label }, ms / 1000);
    for (const [name, value] of Object.entries(counters ?? {})) {
      const metric = BYTE_COUNTERS[name];
      if (metric) this.bytes.get(metric[0])!.inc(Number(value));
    }
  }
}
