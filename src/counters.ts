import { InvalidArgumentError } from "./errors.js";
import type { Counter } from "./gen/mapreduce.js";
import type { Count, Counters } from "./types.js";

/**
 * Counters are 64-bit integers end to end. A count is a number while it is a safe integer and a
 * bigint past 2^53, so nothing is rounded; on the wire it is an int64 that JavaScript reads as a
 * decimal string. A count that would leave the 64-bit range stops at its edge, as a gauge's
 * needle does, rather than wrapping round or failing the job that counted it.
 */
export const INT64_MAX = 2n ** 63n - 1n;
export const INT64_MIN = -(2n ** 63n);

/** `a + b`, exactly, held within the 64-bit range. */
export function addCount(a: Count, b: Count): Count {
  if (typeof a === "number" && typeof b === "number") {
    const sum = a + b;
    if (Number.isSafeInteger(sum)) return sum;
  }
  const sum = BigInt(a) + BigInt(b);
  return countOf(sum > INT64_MAX ? INT64_MAX : sum < INT64_MIN ? INT64_MIN : sum);
}

/** `n` as a number if it is a safe integer, else as it is. */
export function countOf(n: bigint): Count {
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}

/** Adds every counter of `more` into `into`. */
export function addCounters(into: Counters, more: Readonly<Counters>): void {
  for (const [name, n] of Object.entries(more)) into[name] = addCount(into[name] ?? 0, n);
}

export function toCounterList(counters: Readonly<Counters>): Counter[] {
  return Object.entries(counters).map(([name, value]) => ({ name, value: String(value) }));
}

/** The counters a list names; each name at most once, each value a 64-bit integer. */
export function fromCounterList(list: readonly Counter[]): Counters {
  const counters: Counters = Object.create(null) as Counters;
  for (const { name, value } of list) {
    if (Object.hasOwn(counters, name)) {
      throw new InvalidArgumentError(`counters: ${JSON.stringify(name)} is named twice`);
    }
    let n: bigint;
    try {
      n = BigInt(value);
    } catch {
      n = INT64_MAX + 1n;
    }
    if (n > INT64_MAX || n < INT64_MIN) {
      throw new InvalidArgumentError(`counters: ${JSON.stringify(name)} is not a 64-bit integer`);
    }
    counters[name] = countOf(n);
  }
  return counters;
}
