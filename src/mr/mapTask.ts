import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Counters, Split } from "../types.js";
import type { App, Ctx } from "./app.js";
import { Counter, TaskCounters, checkedEmit, collectGarbage, createYielder } from "./context.js";
import { compareKeys, forEachGroup, openMerge } from "./merge.js";
import { hashPartition } from "./partition.js";
import { RecordWriter, type RecordRange } from "./records.js";
import { readSplit, readSplitBlocks } from "./split.js";

export const DEFAULT_SORT_BUFFER_BYTES = 64 * 1024 * 1024;

export interface MapTaskOptions {
  app: App;
  params: Record<string, string>;
  split: Split;
  /** R, the number of partitions to write. */
  reducers: number;
  /** The output file, if the output is not kept in memory. */
  path: string;
  /** Where spills go; created at the first spill. */
  spillDir: string;
  /** An output of at most this many bytes, written without a spill, stays in memory. Default 0. */
  memoryBytes?: number;
  /** Buffered map output is sorted and spilled past this estimate, in bytes. Default 64 MiB. */
  sortBufferBytes?: number;
  signal?: AbortSignal;
}

/** The values buffered under one key, in the order they were emitted. */
interface Group {
  partition: number;
  key: string;
  values: string[];
  /** Estimated heap bytes of `values`. */
  valueBytes: number;
}

/**
 * The map-side sort buffer. Pairs are grouped by key as they come, so that only distinct keys
 * are sorted when the buffer is spilled: for a skewed key distribution (words), that is a small
 * fraction of the records. Sorting groups by (partition, key) and writing each group's values
 * in order gives the same run as sorting the pairs stably.
 */
class SortBuffer {
  private groups = new Map<string, Group>();
  /** Estimated heap bytes held. */
  bytes = 0;

  /** Buffers a pair; returns its group. */
  add(key: string, value: string, partitionOf: (key: string) => number): Group {
    let group = this.groups.get(key);
    if (group === undefined) {
      group = { partition: partitionOf(key), key, values: [], valueBytes: 0 };
      this.groups.set(key, group);
      this.bytes += GROUP_OVERHEAD_BYTES + 2 * key.length;
    }
    group.values.push(value);
    const bytes = VALUE_OVERHEAD_BYTES + 2 * value.length;
    group.valueBytes += bytes;
    this.bytes += bytes;
    return group;
  }

  /** Replaces a group's values, as combining them in place does. */
  replaceValues(group: Group, values: string[]): void {
    let bytes = 0;
    for (const value of values) bytes += VALUE_OVERHEAD_BYTES + 2 * value.length;
    this.bytes += bytes - group.valueBytes;
    group.values = values;
    group.valueBytes = bytes;
  }

  get empty(): boolean {
    return this.groups.size === 0;
  }

  /** Empties the buffer, returning its groups sorted by (partition, key). */
  drain(): Group[] {
    const groups = [...this.groups.values()];
    this.groups = new Map();
    this.bytes = 0;
    return groups.sort((a, b) => a.partition - b.partition || compareKeys(a.key, b.key));
  }
}

/**
 * Heap cost of a buffered key beyond two bytes a character (its Map entry, group object, values
 * array and string header), and of a value beyond its own characters: measured on V8 with
 * lines of text as keys, where the plain sum of string lengths fell short by a third.
 */
const GROUP_OVERHEAD_BYTES = 260;
const VALUE_OVERHEAD_BYTES = 16;
/**
 * With a combiner, a key's buffered values are combined in place once there are this many: a
 * combiner may run any number of times, and this keeps a frequent key's values from filling
 * the buffer. It runs again on each spill and merge, as Hadoop's does.
 */
const COMBINE_IN_BUFFER_AT = 64;

/** A full garbage collection after each spill pays only for a buffer this large or larger. */
const COLLECT_AFTER_SPILL_BYTES = 8 * 1024 * 1024;

/** Byte ranges [start, end) in a run or an output, one a partition. */
type Ranges = [start: number, end: number][];

/** A sorted run on disk: one file, with the byte range of each partition in it. */
interface Spill {
  path: string;
  ranges: Ranges;
}

/**
 * A map attempt's output, as Hadoop's file.out and its index: the R key-sorted partitions back
 * to back in the record format, and where each one is.
 */
export interface MapOutput {
  /** The bytes, when they stayed in memory; else undefined, and they are in `path`. */
  data: Buffer | undefined;
  path: string;
  partitions: Ranges;
}

/** The records of partition `r` of an output on disk, for a reader. */
export function partitionRange(output: MapOutput, r: number): RecordRange {
  if (output.data) throw new Error("this map output is in memory, not in a file");
  const [start, end] = output.partitions[r]!;
  return { path: output.path, start, end };
}

/**
 * Runs one map task: reads the split's records, calls `map`, and returns R key-sorted
 * partitions in one output. Output goes to a sort buffer; a full buffer is sorted by (partition,
 * key), combined if the app has a combiner, and spilled as a sorted run. At the end the runs
 * are merged per partition, and combined again.
 */
export async function runMapTask(
  options: MapTaskOptions,
): Promise<{ counters: Counters; output: MapOutput }> {
  const { app, split, reducers } = options;
  const sortBufferBytes = options.sortBufferBytes ?? DEFAULT_SORT_BUFFER_BYTES;
  const counters = new TaskCounters();
  const ctx = counters.ctx(options.params);

  const buffer = new SortBuffer();
  const spills: Spill[] = [];
  const spill = (): void => {
    if (spills.length === 0) mkdirSync(options.spillDir, { recursive: true });
    const path = join(options.spillDir, `spill-${spills.length}`);
    spills.push({ path, ranges: writeSortedRun(buffer.drain(), path, reducers, app, ctx, counters) });
    // The drained buffer is most of the heap: give it back now, unless it is too small to matter.
    if (sortBufferBytes >= COLLECT_AFTER_SPILL_BYTES) collectGarbage();
  };
  const partitionOf = (key: string): number => {
    const partition = app.partition ? app.partition(key, reducers) : hashPartition(key, reducers);
    if (!Number.isInteger(partition) || partition < 0 || partition >= reducers) {
      throw new RangeError(
        `partition(${JSON.stringify(key)}, ${reducers}) returned ${partition} (it must be an integer in [0, R))`,
      );
    }
    return partition;
  };
  const combineInBuffer = (group: Group): void => {
    const combined: string[] = [];
    counters.add(Counter.COMBINE_INPUT_RECORDS, group.values.length);
    app.combine!(group.key, group.values, collectCombined(group.key, combined), ctx);
    counters.add(Counter.COMBINE_OUTPUT_RECORDS, combined.length);
    buffer.replaceValues(group, combined);
  };
  let outputRecords = 0;
  const emit = checkedEmit("map", (key, value) => {
    const group = buffer.add(key, value, partitionOf);
    if (app.combine && group.values.length >= COMBINE_IN_BUFFER_AT) combineInBuffer(group);
    outputRecords++;
    if (buffer.bytes >= sortBufferBytes) spill();
  });

  let inputRecords = 0;
  let inputBytes = 0;
  if (app.blockMapper) {
    const mapper = app.blockMapper(ctx, { memoryBytes: sortBufferBytes / 4 });
    await readSplitBlocks(
      split,
      (block, offset) => {
        inputRecords += countLines(block);
        inputBytes += block.length;
        mapper.block(block, offset, emit);
      },
      options.signal,
    );
    mapper.end(emit);
  } else {
    await readSplit(
      split,
      (offset, line, bytes) => {
        inputRecords++;
        inputBytes += bytes;
        app.map({ file: split.file, offset, line }, emit, ctx);
      },
      options.signal,
    );
  }
  counters.add(Counter.MAP_INPUT_RECORDS, inputRecords);
  counters.add(Counter.MAP_INPUT_BYTES, inputBytes);
  counters.add(Counter.MAP_OUTPUT_RECORDS, outputRecords);

  const writer = new RecordWriter(options.path, {
    memoryBytes: spills.length === 0 ? options.memoryBytes : 0,
  });
  let partitions: Ranges;
  try {
    if (spills.length === 0) {
      // Everything fitted: sort once and write the partitions straight from memory.
      partitions = writeRun(buffer.drain(), writer, reducers, app, ctx, counters);
    } else {
      if (!buffer.empty) spill();
      partitions = await mergeSpills(spills, writer, options, ctx, counters);
    }
  } catch (err) {
    writer.close();
    throw err;
  }
  const data = writer.close();
  counters.add(Counter.MAP_OUTPUT_BYTES, writer.bytes);
  return { counters: counters.values, output: { data, path: options.path, partitions } };
}

/** The lines of a block: its newlines, and one more for a last line that has none. */
function countLines(block: Buffer): number {
  let lines = 0;
  for (let at = block.indexOf(0x0a); at !== -1; at = block.indexOf(0x0a, at + 1)) lines++;
  return block.length > 0 && block[block.length - 1] !== 0x0a ? lines + 1 : lines;
}

/** Writes sorted groups as one run of R partitions; returns each partition's byte range. */
function writeRun(
  groups: Group[],
  writer: RecordWriter,
  reducers: number,
  app: App,
  ctx: Ctx,
  counters: TaskCounters,
): Ranges {
  const ranges: Ranges = [];
  for (let r = 0, at = 0; r < reducers; r++) {
    const start = writer.bytes;
    at = writePartition(groups, at, r, writer, app, ctx, counters);
    ranges.push([start, writer.bytes]);
  }
  return ranges;
}

/** Spills sorted groups to a file; returns each partition's byte range in it. */
function writeSortedRun(
  groups: Group[],
  path: string,
  reducers: number,
  app: App,
  ctx: Ctx,
  counters: TaskCounters,
): Ranges {
  const writer = new RecordWriter(path);
  const ranges = writeRun(groups, writer, reducers, app, ctx, counters);
  writer.close();
  counters.add(Counter.SPILLED_RECORDS, writer.records);
  return ranges;
}

/**
 * Writes the groups of partition `r`, which start at `at` in the sorted array, through the
 * combiner if there is one. Returns the index of the first group of the next partition.
 */
function writePartition(
  groups: Group[],
  at: number,
  r: number,
  writer: RecordWriter,
  app: App,
  ctx: Ctx,
  counters: TaskCounters,
): number {
  let end = at;
  while (end < groups.length && groups[end]!.partition === r) end++;
  const emit = app.combine ? combineEmit(writer, counters) : undefined;
  for (let i = at; i < end; i++) {
    const { key, values } = groups[i]!;
    if (app.combine) {
      counters.add(Counter.COMBINE_INPUT_RECORDS, values.length);
      app.combine(key, values, emit!(key), ctx);
    } else {
      for (const value of values) writer.write(key, value);
    }
  }
  return end;
}

function combinerChangedKey(key: string, groupKey: string): Error {
  return new Error(
    `combine emitted key ${JSON.stringify(key)} for group ${JSON.stringify(groupKey)} (a combiner must keep its key)`,
  );
}

/** A combiner's emit into an array, for combining in the buffer. */
function collectCombined(groupKey: string, into: string[]) {
  return checkedEmit("combine", (key, value) => {
    if (key !== groupKey) throw combinerChangedKey(key, groupKey);
    into.push(value);
  });
}

/** The combiner's emit: it must keep the group's key, or the run would no longer be sorted. */
function combineEmit(writer: RecordWriter, counters: TaskCounters) {
  return (groupKey: string) =>
    checkedEmit("combine", (key, value) => {
      if (key !== groupKey) throw combinerChangedKey(key, groupKey);
      writer.write(key, value);
      counters.add(Counter.COMBINE_OUTPUT_RECORDS);
    });
}

/**
 * Merges the sorted runs partition by partition into the output, then deletes them and their
 * directory.
 */
async function mergeSpills(
  spills: Spill[],
  writer: RecordWriter,
  options: MapTaskOptions,
  ctx: Ctx,
  counters: TaskCounters,
): Promise<Ranges> {
  const { app, reducers } = options;
  const pause = createYielder();
  const ranges: Ranges = [];
  for (let r = 0; r < reducers; r++) {
    options.signal?.throwIfAborted();
    const start = writer.bytes;
    const runs = spills.map(({ path, ranges }) => ({ path, start: ranges[r]![0], end: ranges[r]![1] }));
    const merged = await openMerge(runs, {
      dir: options.spillDir,
      pause,
      signal: options.signal,
      onRewritten: (records) => counters.add(Counter.SPILLED_RECORDS, records),
    });
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
    }
    ranges.push([start, writer.bytes]);
  }
  rmSync(options.spillDir, { recursive: true, force: true }); // the runs, and the merges ahead
  return ranges;
}

function* countValues(values: Iterable<string>, counters: TaskCounters): Iterable<string> {
  for (const value of values) {
    counters.add(Counter.COMBINE_INPUT_RECORDS);
    yield value;
  }
}
