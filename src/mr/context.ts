import v8 from "node:v8";
import vm from "node:vm";
import { LIMITS } from "../limits.js";
import { addCount } from "../counters.js";
import type { Count, Counters } from "../types.js";
import type { Ctx, Emit } from "./app.js";

/** Names of the built-in counters, Hadoop style. */
export const Counter = {
  MAP_INPUT_RECORDS: "MAP_INPUT_RECORDS",
  MAP_INPUT_BYTES: "MAP_INPUT_BYTES",
  MAP_OUTPUT_RECORDS: "MAP_OUTPUT_RECORDS",
  MAP_OUTPUT_BYTES: "MAP_OUTPUT_BYTES",
  COMBINE_INPUT_RECORDS: "COMBINE_INPUT_RECORDS",
  COMBINE_OUTPUT_RECORDS: "COMBINE_OUTPUT_RECORDS",
  SPILLED_RECORDS: "SPILLED_RECORDS",
  SPILLED_BYTES: "SPILLED_BYTES",
  SHUFFLE_BYTES: "SHUFFLE_BYTES",
  REDUCE_INPUT_GROUPS: "REDUCE_INPUT_GROUPS",
  REDUCE_INPUT_RECORDS: "REDUCE_INPUT_RECORDS",
  REDUCE_OUTPUT_RECORDS: "REDUCE_OUTPUT_RECORDS",
  BYTES_WRITTEN: "BYTES_WRITTEN",
} as const;

/** User counters live beside the built-in ones under this prefix. */
export const USER_COUNTER_PREFIX = "app.";

export class TaskCounters {
  readonly values: Counters = {};
  private userCounters = 0;

  add(name: string, n: Count = 1): void {
    this.values[name] = addCount(this.values[name] ?? 0, n);
  }

  /** Records and bytes written to disk to be read again: a spill, or a merge ahead of the last. */
  spilled(records: number, bytes: number): void {
    this.add(Counter.SPILLED_RECORDS, records);
    this.add(Counter.SPILLED_BYTES, bytes);
  }

  ctx(params: Record<string, string>): Ctx {
    return {
      params,
      count: (name, n = 1) => {
        if (typeof n !== "bigint" && !Number.isSafeInteger(n)) {
          throw new TypeError(
            `ctx.count(${JSON.stringify(name.slice(0, 40))}, n): n must be an integer (a bigint past 2^53)`,
          );
        }
        const counter = USER_COUNTER_PREFIX + name;
        if (this.values[counter] === undefined) {
          if (Buffer.byteLength(counter) > LIMITS.counterNameBytes) {
            throw new TypeError(
              `ctx.count(name): a counter's name may have at most ${LIMITS.counterNameBytes - USER_COUNTER_PREFIX.length} bytes`,
            );
          }
          if (++this.userCounters > LIMITS.userCounters) {
            throw new TypeError(
              `ctx.count(${JSON.stringify(name.slice(0, 40))}): an attempt may count at most ${LIMITS.userCounters} counters (count kinds, not items)`,
            );
          }
        }
        this.add(counter, n);
      },
    };
  }
}

/**
 * How far one attempt has got, from 0 to 1, as its heartbeats report it. A task names a measure
 * for each of its phases; the value is read only when a heartbeat asks, so a task pays nothing
 * as it goes. A map's is the share of its split read; a reduce's is half the share of map
 * outputs fetched, then half the share of its merged input read.
 */
export class Progress {
  private from = 0;
  private span = 0;
  private measure: () => number = () => 0;

  /** From now on, progress runs from `from` to `from + span` as `measure()` runs from 0 to 1. */
  phase(from: number, span: number, measure: () => number): void {
    this.from = from;
    this.span = span;
    this.measure = measure;
  }

  get value(): number {
    const share = this.measure();
    return Number.isFinite(share) ? this.from + this.span * Math.min(1, Math.max(0, share)) : this.from;
  }
}

/** Wraps an emit so that bad keys and values fail with a message that names the app's mistake. */
export function checkedEmit(where: string, emit: Emit): Emit {
  return (key, value) => {
    if (typeof key !== "string" || typeof value !== "string") {
      throw new TypeError(
        `${where} emitted a ${typeof key} key and a ${typeof value} value (keys and values must be strings)`,
      );
    }
    emit(key, value);
  };
}

/**
 * How long synchronous work runs between turns of the event loop. A turn costs microseconds;
 * a reducer fetching this worker's output waits up to this long for it.
 */
const YIELD_EVERY_MS = 10;

/**
 * Lets timers and I/O run (heartbeats, shuffle requests) during long synchronous work.
 * Call it often; it waits only when a slice of time has passed.
 */
export function createYielder(): () => Promise<void> | undefined {
  let last = performance.now();
  return () => {
    const now = performance.now();
    if (now - last < YIELD_EVERY_MS) return undefined;
    last = now;
    return new Promise<void>((resolve) => setImmediate(resolve));
  };
}

/**
 * A full garbage collection, where the runtime allows one (V8's gc, exposed at run time). The
 * map side calls it after a spill: the buffer it just dropped is most of the heap, and without
 * it V8 lets the heap grow well past the sort buffer before it looks.
 */
export const collectGarbage: () => void = (() => {
  try {
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as unknown;
    if (typeof gc === "function") return gc as () => void;
  } catch {
    // not V8, or flags are locked: leave collection to the runtime
  }
  return () => undefined;
})();
