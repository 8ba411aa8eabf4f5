import { closeSync, openSync, readSync } from "node:fs";
import type { FileRange, Split } from "../types.js";
import { createYielder } from "./context.js";
import { isS3Uri, type S3Options } from "./s3Uri.js";

const NEWLINE = 0x0a;
const CR = 0x0d;

/** Default split size: 64 MiB, as in Hadoop. */
export const DEFAULT_SPLIT_SIZE_BYTES = 64 * 1024 * 1024;

/** A split may run this much past the split size rather than leave a small tail, as Hadoop's SPLIT_SLOP. */
const SPLIT_SLOP = 1.1;

/**
 * What opening a file costs a map, counted in bytes when small files are packed into splits,
 * as Spark's `spark.sql.files.openCostInBytes`: 16 KiB. A file's open, first read and close
 * take 10 µs from the page cache (measured) and a few hundred from a cold SSD: at a map's
 * 50 MB/s, 0.5 to 16 KiB of reading. (Spark's 4 MiB is for HDFS and object stores; here a map's
 * own fixed cost, its sort of every distinct key, is what makes small maps slow, so small files
 * are packed up to the split size.) 0 packs files by their bytes alone.
 */
export const DEFAULT_OPEN_COST_BYTES = 16 * 1024;

export interface SplitOptions {
  /** The largest split, in bytes of input. */
  splitSizeBytes: number;
  /** Bytes counted for each file a split opens; default DEFAULT_OPEN_COST_BYTES. */
  openCostBytes?: number;
  /**
   * The task slots that will run the maps; default 1. Packed splits come in whole waves of
   * this many, as even as the files allow, so that no slot idles while another runs a last map
   * alone: a few small files on many slots still make a map each.
   */
  parallelism?: number;
}

/**
 * Cuts files into splits, as Spark packs file partitions: each file into ranges of the split
 * size (the last one up to 10% longer, as Hadoop's split slop), then the ranges, in input order,
 * into splits, each range counting its bytes and the open cost. The target cost of a split is
 * the input's cost shared evenly by as many splits as whole waves of `parallelism` need (Spark
 * shares it by cores too), but never under one open cost; split k ends where the running cost
 * passes k targets, at the middle of a range, so that splits come out as even as the files
 * allow. No split costs more than the split size and its slop: a range that big stays alone, and
 * small files go together. An empty file gives nothing. The ranges ignore line boundaries;
 * `readRange` finds them, so cutting needs only the sizes.
 */
export function splitInputs(
  files: readonly { path: string; size: number }[],
  options: SplitOptions,
): Split[] {
  const { splitSizeBytes } = options;
  const openCost = options.openCostBytes ?? DEFAULT_OPEN_COST_BYTES;
  const limit = splitSizeBytes * SPLIT_SLOP;
  const ranges: FileRange[] = [];
  for (const { path, size } of files) {
    let start = 0;
    for (; size - start > limit; start += splitSizeBytes) {
      ranges.push({ file: path, start, end: start + splitSizeBytes });
    }
    if (size > start) ranges.push({ file: path, start, end: size });
  }
  if (ranges.length === 0) return [];
  const totalCost = ranges.reduce((sum, { start, end }) => sum + end - start + openCost, 0);
  const slots = Math.max(1, options.parallelism ?? 1);
  const waves = Math.ceil(totalCost / (slots * limit));
  const target = Math.max(openCost, Math.ceil(totalCost / (waves * slots)));
  const splits: Split[] = [];
  let current: FileRange[] = [];
  let cost = 0; // of the current split
  let packed = 0; // cost of every range so far
  for (const range of ranges) {
    const bytes = range.end - range.start;
    const rangeCost = bytes + openCost;
    const full = cost + rangeCost > limit;
    const past = packed + rangeCost / 2 > (splits.length + 1) * target;
    if (current.length > 0 && (full || past)) {
      splits.push(current);
      current = [];
      cost = 0;
    }
    current.push(range);
    cost += rangeCost;
    packed += rangeCost;
  }
  if (current.length > 0) splits.push(current);
  return splits;
}

/** The bytes of input a split covers. */
export function splitBytes(split: Split): number {
  return split.reduce((sum, { start, end }) => sum + end - start, 0);
}

/**
 * Reads one range of a split as blocks of whole lines, as Hadoop's line reader divides a file: a
 * range that does not start at 0 begins after the first newline at or after its start, and a
 * range reads every line that starts at or before its end, so it ends at the first newline at or
 * after its end. Every line of a file is thus read by exactly one range, whatever the split size.
 *
 * `onBlock` gets raw bytes holding whole lines, each ended by `\n` but for a file's last line
 * when it has none, and the file offset of the block's first byte. A block is a view of a
 * buffer that the next read reuses: it is valid only until `onBlock` returns (or its promise
 * settles).
 *
 * A file is read blocking, as the spill files are (records.ts): a read from the page cache costs
 * a few microseconds, where a promise read costs two thread-pool round trips, about 100 µs of
 * CPU for a small split's open, read and close; and a map does not overlap its reads anyway.
 * An `s3://` object is read with ranged GETs, one ahead of the reading. So that heartbeats and
 * shuffle requests still run, it yields between blocks now and then.
 */
export async function readRangeBlocks(
  range: FileRange,
  onBlock: (block: Buffer, offset: number) => void | Promise<void>,
  options: ReadOptions = {},
): Promise<void> {
  const { signal } = options;
  // Reads of 1 MiB, or less for a small range: a map of a few bytes must not allocate a MiB.
  let buffer: Buffer = Buffer.allocUnsafe(Math.min(1 << 20, Math.max(1 << 16, range.end - range.start + 1)));
  let bufferOffset = range.start; // file offset of buffer[0]
  let filled = 0; // bytes of buffer read and not yet handed out: the start of an unfinished line
  let skipping = range.start !== 0; // discarding the tail of a line that the previous range owns
  const pause = createYielder();
  const source = await openRange(range, options);
  try {
    for (;;) {
      signal?.throwIfAborted();
      if (filled === buffer.length) buffer = grown(buffer); // one line longer than the buffer
      const read = source.read(buffer, filled, buffer.length - filled, bufferOffset + filled);
      const bytesRead = typeof read === "number" ? read : await read;
      const eof = bytesRead === 0;
      filled += bytesRead;
      let from = 0;
      if (skipping) {
        const newline = buffer.subarray(0, filled).indexOf(NEWLINE);
        if (newline === -1) {
          if (eof) return;
          bufferOffset += filled;
          filled = 0;
          continue;
        }
        from = newline + 1;
        skipping = false;
      }
      // The lines this range owns start at or before its end: stop after the one that does last.
      const lastStart = range.end - bufferOffset;
      let to = eof ? filled : buffer.lastIndexOf(NEWLINE, filled - 1) + 1;
      let done = eof;
      if (from > lastStart) {
        to = from;
        done = true;
      } else if (to > lastStart) {
        const newline = buffer.subarray(0, filled).indexOf(NEWLINE, lastStart);
        if (newline !== -1) {
          to = newline + 1;
          done = true;
        }
      }
      if (to > from) await onBlock(buffer.subarray(from, to), bufferOffset + from);
      if (done) return;
      const paused = pause();
      if (paused !== undefined) await paused;
      const rest = Math.max(from, to);
      buffer.copy(buffer, 0, rest, filled);
      bufferOffset += rest;
      filled -= rest;
    }
  } finally {
    source.close();
  }
}

export interface ReadOptions {
  signal?: AbortSignal;
  /** The object store that `s3://` ranges are read from. */
  s3?: S3Options;
}

/** Where a range's bytes come from: a file, read blocking, or an object in a store. */
interface RangeSource {
  read(buffer: Buffer, offset: number, length: number, position: number): number | Promise<number>;
  close(): void;
}

async function openRange(range: FileRange, options: ReadOptions): Promise<RangeSource> {
  if (isS3Uri(range.file)) {
    // Loaded here, not with this module: a task thread that reads only files never loads the SDK.
    const { S3RangeReader } = await import("./s3.js");
    return new S3RangeReader(range.file, range.end, options.s3 ?? {}, options.signal);
  }
  const fd = openSync(range.file, "r");
  return {
    read: (buffer, offset, length, position) => readSync(fd, buffer, offset, length, position),
    close: () => closeSync(fd),
  };
}

function grown(buffer: Buffer): Buffer {
  const bigger = Buffer.allocUnsafe(buffer.length * 2);
  buffer.copy(bigger);
  return bigger;
}

/**
 * Yields the records of one range, by `readRangeBlocks`'s rule of which range owns a line.
 * `onLine` gets the line without `\n` or `\r\n`, its byte offset, and the bytes it took in the
 * file.
 */
export async function readRange(
  range: FileRange,
  onLine: (offset: number, line: string, bytes: number) => void,
  options: ReadOptions = {},
): Promise<void> {
  const { signal } = options;
  const pause = createYielder(); // a slow map must not starve the worker's heartbeats
  await readRangeBlocks(
    range,
    async (block, offset) => {
      for (let start = 0; start < block.length;) {
        const newline = block.indexOf(NEWLINE, start);
        const end = newline === -1 ? block.length : newline;
        const next = newline === -1 ? block.length : newline + 1;
        onLine(offset + start, decodeLine(block, start, end), next - start);
        start = next;
        const paused = pause();
        if (paused !== undefined) {
          await paused;
          signal?.throwIfAborted();
        }
      }
    },
    options,
  );
}

function decodeLine(block: Buffer, start: number, end: number): string {
  if (end > start && block[end - 1] === CR) end--;
  return block.toString("utf8", start, end);
}
