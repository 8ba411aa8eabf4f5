import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Counters, Split } from "../types.js";
import type { App, Ctx } from "./app.js";
import { Counter, TaskCounters, checkedEmit, createYielder } from "./context.js";
import { MergedReader, compareKeys, forEachGroup } from "./merge.js";
import { hashPartition } from "./partition.js";
import { RecordReader, RecordWriter } from "./records.js";
import { readSplit } from "./split.js";

export const DEFAULT_SORT_BUFFER_BYTES = 64 * 1024 * 1024;

export interface MapTaskOptions {
  app: App;
  params: Record<string, string>;
  split: Split;
  /** R, the number of partitions to write. */
  reducers: number;
  /** Where the R partition files go; created if missing. */
  dir: string;
  /** Buffered map output is sorted and spilled past this estimate, in bytes. Default 64 MiB. */
  sortBufferBytes?: number;
  signal?: AbortSignal;
}

interface Pair {
  partition: number;
  key: string;
  value: string;
}

/** A sorted run on disk: one file, with the byte range of each partition in it. */
interface Spill {
  path: string;
  ranges: [start: number, end: number][];
}

/** Rough heap cost of one buffered pair beyond its strings. */
const PAIR_OVERHEAD_BYTES = 64;

/** The file of partition `r` in a map attempt's directory. */
export function partitionFile(dir: string, r: number): string {
  return join(dir, `part-${r}`);
}

/**
 * Runs one map task: reads the split's records, calls `map`, and leaves R key-sorted files,
 * `partitionFile(dir, r)`, in the record format. Output goes to a sort buffer; a full buffer is
 * sorted by (partition, key), combined if the app has a combiner, and spilled as a sorted run.
 * At the end the runs are merged per partition, and combined again.
 */
export async function runMapTask(options: MapTaskOptions): Promise<Counters> {
  const { app, split, reducers, dir } = options;
  const sortBufferBytes = options.sortBufferBytes ?? DEFAULT_SORT_BUFFER_BYTES;
  const counters = new TaskCounters();
  const ctx = counters.ctx(options.params);
  mkdirSync(dir, { recursive: true });

  let buffer: Pair[] = [];
  let bufferBytes = 0;
  const spills: Spill[] = [];
  const spill = (): void => {
    const path = join(dir, `spill-${spills.length}`);
    spills.push({ path, ranges: writeSortedRun(buffer, path, reducers, app, ctx, counters) });
    buffer = [];
    bufferBytes = 0;
  };

  const emit = checkedEmit("map", (key, value) => {
    const partition = app.partition ? app.partition(key, reducers) : hashPartition(key, reducers);
    if (!Number.isInteger(partition) || partition < 0 || partition >= reducers) {
      throw new RangeError(
        `partition(${JSON.stringify(key)}, ${reducers}) returned ${partition} (it must be an integer in [0, R))`,
      );
    }
    buffer.push({ partition, key, value });
    bufferBytes += PAIR_OVERHEAD_BYTES + 2 * (key.length + value.length);
    counters.add(Counter.MAP_OUTPUT_RECORDS);
  });

  await readSplit(
    split,
    (offset, line, bytes) => {
      counters.add(Counter.MAP_INPUT_RECORDS);
      counters.add(Counter.MAP_INPUT_BYTES, bytes);
      app.map({ file: split.file, offset, line }, emit, ctx);
      if (bufferBytes >= sortBufferBytes) spill();
    },
    options.signal,
  );

  if (spills.length === 0) {
    // Everything fitted: sort once and write the partitions straight from memory.
    const pairs = sortPairs(buffer);
    for (let r = 0, at = 0; r < reducers; r++) {
      const writer = new RecordWriter(partitionFile(dir, r));
      at = writePartition(pairs, at, r, writer, app, ctx, counters);
      writer.close();
      counters.add(Counter.MAP_OUTPUT_BYTES, writer.bytes);
    }
    return counters.values;
  }
  if (buffer.length > 0) spill();
  await mergeSpills(spills, options, ctx, counters);
  return counters.values;
}

function sortPairs(pairs: Pair[]): Pair[] {
  return pairs.sort((a, b) => a.partition - b.partition || compareKeys(a.key, b.key));
}

/** Sorts the buffer and writes it as one run; returns each partition's byte range. */
function writeSortedRun(
  buffer: Pair[],
  path: string,
  reducers: number,
  app: App,
  ctx: Ctx,
  counters: TaskCounters,
): Spill["ranges"] {
  const pairs = sortPairs(buffer);
  const writer = new RecordWriter(path);
  const ranges: Spill["ranges"] = [];
  for (let r = 0, at = 0; r < reducers; r++) {
    const start = writer.bytes;
    at = writePartition(pairs, at, r, writer, app, ctx, counters);
    ranges.push([start, writer.bytes]);
  }
  writer.close();
  counters.add(Counter.SPILLED_RECORDS, writer.records);
  return ranges;
}

/**
 * Writes the pairs of partition `r`, which start at `at` in the sorted array, through the
 * combiner if there is one. Returns the index of the first pair of the next partition.
 */
function writePartition(
  pairs: Pair[],
  at: number,
  r: number,
  writer: RecordWriter,
  app: App,
  ctx: Ctx,
  counters: TaskCounters,
): number {
  let end = at;
  while (end < pairs.length && pairs[end]!.partition === r) end++;
  if (!app.combine) {
    for (let i = at; i < end; i++) writer.write(pairs[i]!.key, pairs[i]!.value);
    return end;
  }
  const emit = combineEmit(writer, counters);
  for (let i = at; i < end;) {
    const key = pairs[i]!.key;
    let j = i;
    while (j < end && pairs[j]!.key === key) j++;
    const from = i;
    const values: Iterable<string> = {
      *[Symbol.iterator]() {
        for (let k = from; k < j; k++) yield pairs[k]!.value;
      },
    };
    counters.add(Counter.COMBINE_INPUT_RECORDS, j - i);
    app.combine(key, values, emit(key), ctx);
    i = j;
  }
  return end;
}

/** The combiner's emit: it must keep the group's key, or the run would no longer be sorted. */
function combineEmit(writer: RecordWriter, counters: TaskCounters) {
  return (groupKey: string) =>
    checkedEmit("combine", (key, value) => {
      if (key !== groupKey) {
        throw new Error(
          `combine emitted key ${JSON.stringify(key)} for group ${JSON.stringify(groupKey)} (a combiner must keep its key)`,
        );
      }
      writer.write(key, value);
      counters.add(Counter.COMBINE_OUTPUT_RECORDS);
    });
}

/** Merges the sorted runs partition by partition into the final files, then deletes the runs. */
async function mergeSpills(
  spills: Spill[],
  options: MapTaskOptions,
  ctx: Ctx,
  counters: TaskCounters,
): Promise<void> {
  const { app, dir, reducers } = options;
  const pause = createYielder();
  for (let r = 0; r < reducers; r++) {
    options.signal?.throwIfAborted();
    const sources = spills.map(({ path, ranges }) => new RecordReader(path, ...ranges[r]!));
    const merged = new MergedReader(sources);
    const writer = new RecordWriter(partitionFile(dir, r));
    try {
      if (app.combine) {
        const emit = combineEmit(writer, counters);
        await forEachGroup(
          merged,
          (key, values) => {
            const counted = countValues(values, counters);
            app.combine!(key, counted, emit(key), ctx);
          },
          pause,
        );
      } else {
        while (merged.next()) {
          writer.write(merged.key, merged.value);
          const paused = pause();
          if (paused !== undefined) await paused;
        }
      }
    } finally {
      merged.close();
      writer.close();
    }
    counters.add(Counter.MAP_OUTPUT_BYTES, writer.bytes);
  }
  for (const { path } of spills) rmSync(path, { force: true });
}

function* countValues(values: Iterable<string>, counters: TaskCounters): Iterable<string> {
  for (const value of values) {
    counters.add(Counter.COMBINE_INPUT_RECORDS);
    yield value;
  }
}
