import { createReadStream } from "node:fs";
import type { Split } from "../types.js";
import { createYielder } from "./context.js";

const NEWLINE = 0x0a;
const CR = 0x0d;

/** Default split size: 64 MiB, as in Hadoop. */
export const DEFAULT_SPLIT_SIZE_BYTES = 64 * 1024 * 1024;

/**
 * Cuts files into byte ranges of at most `splitSizeBytes`. An empty file gives no split. The
 * ranges ignore line boundaries; `readSplit` finds them, so cutting needs only the sizes.
 */
export function splitInputs(
  files: readonly { path: string; size: number }[],
  splitSizeBytes: number,
): Split[] {
  const splits: Split[] = [];
  for (const { path, size } of files) {
    for (let start = 0; start < size; start += splitSizeBytes) {
      splits.push({ file: path, start, end: Math.min(start + splitSizeBytes, size) });
    }
  }
  return splits;
}

/**
 * Yields the records of one split, as Hadoop's line reader does: a split that does not start
 * at 0 begins after the first newline at or after its start, and a split reads every line that
 * starts at or before its end, so it ends at the first newline at or after its end. Every line
 * of a file is thus read by exactly one split, whatever the split size. `onLine` gets the line
 * without `\n` or `\r\n`, its byte offset, and the bytes it took in the file.
 */
export async function readSplit(
  split: Split,
  onLine: (offset: number, line: string, bytes: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  // Chunks of 1 MiB, or less for a small split: a map of a few bytes must not allocate a MiB.
  const highWaterMark = Math.min(1 << 20, Math.max(1 << 16, split.end - split.start + 1));
  const stream = createReadStream(split.file, { start: split.start, highWaterMark });
  let pending: Buffer | null = null; // the bytes of a line that crosses a chunk edge
  let chunkOffset = split.start; // file offset of the current chunk
  let lineStart = split.start; // file offset of the current line
  let skipping = split.start !== 0; // discarding the tail of a line that the previous split owns
  const pause = createYielder(); // a slow map must not starve the worker's heartbeats
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      signal?.throwIfAborted();
      let from = 0;
      let at = chunk.indexOf(NEWLINE);
      while (at !== -1) {
        if (skipping) {
          skipping = false;
        } else {
          const bytes =
            pending === null ? chunk.subarray(from, at) : Buffer.concat([pending, chunk.subarray(from, at)]);
          onLine(lineStart, decodeLine(bytes), bytes.length + 1);
          const paused = pause();
          if (paused !== undefined) {
            await paused;
            signal?.throwIfAborted();
          }
        }
        pending = null;
        from = at + 1;
        lineStart = chunkOffset + from;
        if (lineStart > split.end) return;
        at = chunk.indexOf(NEWLINE, from);
      }
      if (!skipping && from < chunk.length) {
        const rest = chunk.subarray(from);
        pending = pending === null ? Buffer.from(rest) : Buffer.concat([pending, rest]);
      }
      chunkOffset += chunk.length;
    }
    // The last line of a file without a final newline.
    if (pending !== null) {
      onLine(lineStart, decodeLine(pending), pending.length);
    }
  } finally {
    stream.destroy();
  }
}

function decodeLine(bytes: Buffer): string {
  const end = bytes.length > 0 && bytes[bytes.length - 1] === CR ? bytes.length - 1 : bytes.length;
  return bytes.toString("utf8", 0, end);
}
