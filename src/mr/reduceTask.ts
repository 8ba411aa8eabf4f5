import { closeSync, openSync, writeSync } from "node:fs";
import type { Counters } from "../types.js";
import type { App } from "./app.js";
import {
  Counter,
  TaskCounters,
  checkedEmit,
  collectGarbage,
  createYielder,
  type Progress,
} from "./context.js";
import { forEachGroup, openMerge } from "./merge.js";
import { SharedFiles, type RecordRange } from "./records.js";
import type { EngineTunables } from "./tunables.js";

export interface ReduceTaskOptions {
  app: App;
  params: Record<string, string>;
  /** Key-sorted records: partition r of every map, in map order. */
  inputs: readonly RecordRange[];
  /** The attempt's own file, under the output's `_temporary`; committing it is the caller's. */
  outputPath: string;
  /** Where inputs merged ahead of the final merge go (when there are more than the merge factor). */
  workDir: string;
  /** The merge factor and read buffer sizes; default DEFAULT_TUNABLES. */
  tunables?: Readonly<EngineTunables>;
  signal?: AbortSignal;
  /** Its second half is set to the share of the merged input read. */
  progress?: Progress;
}

/**
 * A large reduce makes garbage at the rate it writes, and V8 grows its heap lazily, well past
 * what is live: a full collection this often keeps the worker's peak near its live memory.
 */
const COLLECT_EVERY_BYTES = 32 * 1024 * 1024;

/**
 * Runs one reduce task: a streaming k-way merge of the sorted inputs, `reduce` once per key
 * with a lazy iterator of its values, and `key<TAB>value` lines (the key alone for an empty
 * value) written to the attempt's own file.
 */
export async function runReduceTask(options: ReduceTaskOptions): Promise<Counters> {
  const { app, outputPath, signal } = options;
  const counters = new TaskCounters();
  const ctx = counters.ctx(options.params);
  const out = new TextWriter(outputPath);
  let collectAt = COLLECT_EVERY_BYTES;
  const emit = checkedEmit("reduce", (key, value) => {
    out.write(value === "" ? `${key}\n` : `${key}\t${value}\n`);
    counters.add(Counter.REDUCE_OUTPUT_RECORDS);
    if (out.bytes >= collectAt) {
      collectGarbage();
      collectAt = out.bytes + COLLECT_EVERY_BYTES;
    }
  });
  const pause = createYielder();
  const merged = await openMerge(options.inputs, {
    dir: options.workDir,
    files: new SharedFiles(), // one descriptor a fetched file, not one a map output
    tunables: options.tunables,
    pause,
    signal,
    onRewritten: (records, bytes) => counters.spilled(records, bytes),
  });
  options.progress?.phase(0.5, 0.5, () => merged.shareRead());
  let reduced = false;
  try {
    const seen = await forEachGroup(
      merged,
      (key, values) => app.reduce(key, values, emit, ctx),
      () => {
        signal?.throwIfAborted();
        return pause();
      },
    );
    counters.add(Counter.REDUCE_INPUT_GROUPS, seen.groups);
    counters.add(Counter.REDUCE_INPUT_RECORDS, seen.records);
    reduced = true;
  } finally {
    merged.close();
    if (reduced) out.close();
    else out.discard();
  }
  counters.add(Counter.BYTES_WRITTEN, out.bytes);
  return counters.values;
}

/** Buffered, synchronous text output. */
class TextWriter {
  private readonly fd: number;
  private closed = false;
  private chunks: string[] = [];
  private pending = 0;
  bytes = 0;

  constructor(path: string) {
    this.fd = openSync(path, "w");
  }

  write(text: string): void {
    this.chunks.push(text);
    this.pending += text.length;
    if (this.pending >= 1 << 18) this.flush();
  }

  close(): void {
    try {
      this.flush();
    } finally {
      this.discard();
    }
  }

  /** Closes the file without writing what is still buffered: for an output that failed. */
  discard(): void {
    if (this.closed) return;
    this.closed = true;
    this.chunks = [];
    closeSync(this.fd);
  }

  private flush(): void {
    if (this.chunks.length === 0) return;
    const data = Buffer.from(this.chunks.join(""), "utf8");
    this.chunks = [];
    this.pending = 0;
    let done = 0;
    while (done < data.length) done += writeSync(this.fd, data, done, data.length - done);
    this.bytes += data.length;
  }
}
