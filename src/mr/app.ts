/** The user-facing API of a MapReduce app; the README's Apps section says how to write one. */

export type Emit = (key: string, value: string) => void;

export interface Ctx {
  /** The job's `--param key=value` pairs. */
  params: Record<string, string>;
  /**
   * Adds `n` (default 1), an integer, to the user counter `name`. Counters are 64-bit: pass a
   * bigint for a step past 2^53.
   */
  count(name: string, n?: number | bigint): void;
}

/** One record: a line without its `\n` or `\r\n`, with the byte offset where it starts. */
export interface MapInput {
  file: string;
  offset: number;
  line: string;
}

/**
 * One map task's mapper over raw bytes, as an app's `blockMapper` makes it: Hadoop's Mapper with
 * its own `run` loop. It may hold state across blocks, to combine within the mapper.
 */
export interface BlockMapper {
  /**
   * Maps a block of whole lines of the split, in UTF-8, each ended by `\n` but for a file's
   * last line when it has none; `offset` is the offset in `file` of its first byte. A split of
   * small files packed together gives each file's blocks in turn. The block is valid only
   * during the call.
   */
  block(block: Buffer, offset: number, emit: Emit, file: string): void;
  /** The split has ended: emit whatever is held. */
  end(emit: Emit): void;
}

export interface App {
  /** Maps one record. The definition of the app's map, even where `blockMapper` is faster. */
  map(input: MapInput, emit: Emit, ctx: Ctx): void;
  /**
   * Optional: a mapper for one task that reads the split as bytes rather than line by line.
   * When an app has one, map tasks use it instead of `map`, and it must emit what `map` would
   * have, up to combining. It may hold about `memoryBytes`, and should emit and forget what it
   * holds past that.
   */
  blockMapper?(ctx: Ctx, limits: { memoryBytes: number }): BlockMapper;
  reduce(key: string, values: Iterable<string>, emit: Emit, ctx: Ctx): void;
  /** Runs on map-side sorted runs; same shape as reduce, and must emit under the same key. */
  combine?(key: string, values: Iterable<string>, emit: Emit, ctx: Ctx): void;
  /** Returns a partition in [0, r). */
  partition?(key: string, r: number): number;
}
