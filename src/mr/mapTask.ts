import type { Counters, Split } from "../types.js";
import type { App, BlockMapper, Ctx, Emit } from "./app.js";
import { Counter, TaskCounters, checkedEmit, collectGarbage, type Progress } from "./context.js";
import { MapOutputBuffer, type Ranges } from "./mapOutputBuffer.js";
import type { FileRecords } from "./records.js";
import type { S3Options } from "./s3Uri.js";
import { readRange, readRangeBlocks, splitBytes, type ReadOptions } from "./split.js";
import { DEFAULT_TUNABLES, type EngineTunables } from "./tunables.js";

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
  /** The sort buffer, the merge factor and the rest; default DEFAULT_TUNABLES. */
  tunables?: Readonly<EngineTunables>;
  signal?: AbortSignal;
  /** The object store that `s3://` inputs are read from. */
  s3?: S3Options;
  /** Set to the share of the split read. */
  progress?: Progress;
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
export function partitionRange(output: MapOutput, r: number): FileRecords {
  if (output.data) throw new Error("this map output is in memory, not in a file");
  const [start, end] = output.partitions[r]!;
  return { path: output.path, start, end };
}

/**
 * Runs one map task: reads the split's records, calls `map` (or feeds the app's block mapper),
 * and collects what it emits in a MapOutputBuffer, which sorts, combines and spills it and
 * returns R key-sorted partitions in one output.
 */
export async function runMapTask(
  options: MapTaskOptions,
): Promise<{ counters: Counters; output: MapOutput }> {
  const { app, split, reducers } = options;
  const tunables = options.tunables ?? DEFAULT_TUNABLES;
  const counters = new TaskCounters();
  const ctx = counters.ctx(options.params);
  const buffer = new MapOutputBuffer({
    app,
    ctx,
    counters,
    reducers,
    spillDir: options.spillDir,
    tunables,
    signal: options.signal,
  });
  const emit = checkedEmit("map", (key, value) => buffer.collect(key, value));
  const read: InputRead = { records: 0, bytes: 0 };
  const bytes = splitBytes(split);
  options.progress?.phase(0, 1, () => read.bytes / bytes);
  if (app.blockMapper) {
    await mapBlocks(
      app.blockMapper(ctx, { memoryBytes: tunables.sortBufferBytes / 4 }),
      split,
      emit,
      read,
      options,
    );
  } else {
    await mapLines(app, ctx, split, emit, read, options);
  }
  counters.add(Counter.MAP_INPUT_RECORDS, read.records);
  counters.add(Counter.MAP_INPUT_BYTES, read.bytes);
  counters.add(Counter.MAP_OUTPUT_RECORDS, buffer.records);
  const { data, partitions } = await buffer.finish(options.path, options.memoryBytes ?? 0);
  // The buffer's groups and the mapper's tables are garbage now, and most of the heap: give it
  // back before the next task, or V8 grows the heap well past what any one task holds.
  if (buffer.drainedBytes >= tunables.collectAfterSpillBytes) collectGarbage();
  return { counters: counters.values, output: { data, path: options.path, partitions } };
}

/** What a map has read of its split so far. */
interface InputRead {
  records: number;
  bytes: number;
}

/**
 * Feeds the split to a block mapper, range by range, then ends it; the mapper is unreachable
 * once this returns.
 */
async function mapBlocks(
  mapper: BlockMapper,
  split: Split,
  emit: Emit,
  read: InputRead,
  options: ReadOptions,
): Promise<void> {
  for (const range of split) {
    await readRangeBlocks(
      range,
      (block, offset) => {
        read.records += countLines(block);
        read.bytes += block.length;
        mapper.block(block, offset, emit, range.file);
      },
      options,
    );
  }
  mapper.end(emit);
}

/** Calls the app's `map` on each line of the split, range by range. */
async function mapLines(
  app: App,
  ctx: Ctx,
  split: Split,
  emit: Emit,
  read: InputRead,
  options: ReadOptions,
): Promise<void> {
  for (const range of split) {
    await readRange(
      range,
      (offset, line, bytes) => {
        read.records++;
        read.bytes += bytes;
        app.map({ file: range.file, offset, line }, emit, ctx);
      },
      options,
    );
  }
}

/** The lines of a block: its newlines, and one more for a last line that has none. */
function countLines(block: Buffer): number {
  let lines = 0;
  for (let at = block.indexOf(0x0a); at !== -1; at = block.indexOf(0x0a, at + 1)) lines++;
  return block.length > 0 && block[block.length - 1] !== 0x0a ? lines + 1 : lines;
}
