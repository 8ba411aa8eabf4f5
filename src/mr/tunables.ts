/**
 * The engine's tunables, with their defaults and limits in one place, as Hadoop keeps
 * mapreduce.task.io.sort.mb, io.sort.factor and the shuffle's parallel copies: the map side's
 * buffer, the merges, the reads, and a reduce's fetches. A process resolves them once (`resolveTunables`)
 * and hands the frozen result to every task it runs.
 */

export interface EngineTunables {
  /** Map output buffered per task before it is sorted and spilled, in bytes. Default 64 MiB. */
  sortBufferBytes: number;
  /**
   * With a combiner, a buffered key's values are combined in place once there are this many,
   * so that a frequent key cannot fill the buffer on its own. Default 64.
   */
  combineInBufferAt: number;
  /** A full garbage collection follows a spill of a sort buffer at least this big, in bytes. Default 8 MiB. */
  collectAfterSpillBytes: number;
  /** The most sorted runs one merge reads at once (Hadoop's io.sort.factor). Default 100. */
  mergeFactor: number;
  /** What the readers of one merge hold in all, shared out between them, in bytes. Default 16 MiB. */
  mergeReadBytes: number;
  /**
   * Sorted runs this big in all, or smaller, are read into memory and merged in one pass,
   * whatever their count (Hadoop's in-memory shuffle merge); 0 never. Default: the sort
   * buffer's size, so that a task holds no more at its merge than at its sort.
   */
  mergeMemoryBytes: number;
  /** The most one read of a record file asks for, in bytes. Default 1 MiB. */
  readChunkBytes: number;
  /** Fetch streams a reduce keeps open at once (Hadoop's parallel copies). Default 4. */
  parallelFetches: number;
  /** Map outputs one fetch stream carries at most. Default 100. */
  fetchBatch: number;
  /** Rounds of fetching before a missing map output is reported lost. Default 3. */
  fetchTries: number;
  /** The pause after round n of fetching is n times this, in ms. Default 300. */
  fetchRetryMs: number;
  /**
   * A fetch stream that brings nothing for this long is given up, and its outputs asked for in
   * the next round: a frozen worker (paused, swapping) accepts connections and answers nothing
   * (Hadoop's mapreduce.reduce.shuffle.read.timeout, 180 s). In ms; default 30000.
   */
  fetchIdleMs: number;
}

const MiB = 1024 * 1024;
const SORT_BUFFER_BYTES = 64 * MiB;

export const DEFAULT_TUNABLES: Readonly<EngineTunables> = Object.freeze({
  sortBufferBytes: SORT_BUFFER_BYTES,
  combineInBufferAt: 64,
  collectAfterSpillBytes: 8 * MiB,
  mergeFactor: 100,
  mergeReadBytes: 16 * MiB,
  mergeMemoryBytes: SORT_BUFFER_BYTES,
  readChunkBytes: MiB,
  parallelFetches: 4,
  fetchBatch: 100,
  fetchTries: 3,
  fetchRetryMs: 300,
  fetchIdleMs: 30_000,
});

/** The least each tunable may be. */
const MINIMUMS: Readonly<EngineTunables> = {
  sortBufferBytes: 1,
  combineInBufferAt: 2,
  collectAfterSpillBytes: 0,
  mergeFactor: 2,
  mergeReadBytes: 64 * 1024,
  mergeMemoryBytes: 0,
  readChunkBytes: 4096,
  parallelFetches: 1,
  fetchBatch: 1,
  fetchTries: 1,
  fetchRetryMs: 0,
  fetchIdleMs: 1,
};

/**
 * The defaults with `overrides` applied, checked and frozen. Throws a RangeError that names the
 * tunable for a value that is not an integer at least its minimum.
 */
export function resolveTunables(overrides: Partial<EngineTunables> = {}): Readonly<EngineTunables> {
  const tunables = { ...DEFAULT_TUNABLES };
  for (const [name, value] of Object.entries(overrides) as [keyof EngineTunables, number | undefined][]) {
    if (value === undefined) continue;
    if (!(name in MINIMUMS)) throw new RangeError(`unknown engine tunable ${name}`);
    if (!Number.isSafeInteger(value) || value < MINIMUMS[name]) {
      throw new RangeError(`${name} must be an integer of at least ${MINIMUMS[name]}, got ${value}`);
    }
    tunables[name] = value;
  }
  if (overrides.mergeMemoryBytes === undefined) tunables.mergeMemoryBytes = tunables.sortBufferBytes;
  return Object.freeze(tunables);
}
