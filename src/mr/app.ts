/** The user-facing API of a MapReduce app, as DESIGN.md gives it. */

export type Emit = (key: string, value: string) => void;

export interface Ctx {
  /** The job's `--param key=value` pairs. */
  params: Record<string, string>;
  /** Adds `n` (default 1) to the user counter `name`. */
  count(name: string, n?: number): void;
}

/** One record: a line without its `\n` or `\r\n`, with the byte offset where it starts. */
export interface MapInput {
  file: string;
  offset: number;
  line: string;
}

export interface App {
  map(input: MapInput, emit: Emit, ctx: Ctx): void;
  reduce(key: string, values: Iterable<string>, emit: Emit, ctx: Ctx): void;
  /** Runs on map-side sorted runs; same shape as reduce, and must emit under the same key. */
  combine?(key: string, values: Iterable<string>, emit: Emit, ctx: Ctx): void;
  /** Returns a partition in [0, r). */
  partition?(key: string, r: number): number;
}
