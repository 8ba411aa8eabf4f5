import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { App, Ctx } from "./app.js";
import { Counter, checkedEmit, collectGarbage, createYielder, type TaskCounters } from "./context.js";
import { compareKeys, forEachGroup, openMerge } from "./merge.js";
import { hashPartition } from "./partition.js";
import { RecordWriter } from "./records.js";
import type { EngineTunables } from "./tunables.js";

/** Byte ranges [start, end) in a run or an output, one a partition. */
export type Ranges = [start: number, end: number][];

/** The values buffered under one key, in the order they were emitted. */
interface Group {
  partition: number;
  key: string;
  values: string[];
  /** Estimated heap bytes of `values`. */
  valueBytes: number;
}

/** A sorted run on disk: one file, with the byte range of each partition in it. */
interface Spill {
  path: string;
  ranges: Ranges;
}

/**
 * Heap cost of a buffered key beyond two bytes a character (its Map entry, group object, values
 * array and string header), and of a value beyond its own characters: measured on V8 with
 * lines of text as keys, where the plain sum of string lengths fell short by a third.
 */
const GROUP_OVERHEAD_BYTES = 260;
const VALUE_OVERHEAD_BYTES = 16;

export interface MapOutputBufferOptions {
  app: App;
  ctx: Ctx;
  counters: TaskCounters;
  /** R, the number of partitions. */
  reducers: number;
  /** Where spills go; created at the first spill, removed once they are merged. */
  spillDir: string;
  tunables: Readonly<EngineTunables>;
  signal?: AbortSignal;
}

/**
 * The map side's output buffer, after Hadoop's MapOutputBuffer. `collect` takes each pair the
 * map emits and groups it by key, so that only distinct keys are sorted (for words, a small
 * share of the records); sorting groups by (partition, key) and writing each group's values in
 * order gives the same run as sorting the pairs stably. A full buffer is sorted, combined and
 * spilled as a sorted run. `finish` writes the task's output: straight from memory when nothing
 * spilled, else a merge of the runs partition by partition, combined again.
 *
 * The combiner runs in one place, `combine`, and is counted one way wherever it runs (in the
 * buffer, on a spill, on the final merge): each value handed to it is a COMBINE_INPUT_RECORD,
 * each value it emits a COMBINE_OUTPUT_RECORD.
 */
export class MapOutputBuffer {
  private groups = new Map<string, Group>();
  /** Estimated heap bytes held. */
  private bytes = 0;
  private readonly spills: Spill[] = [];
  /** Pairs collected: MAP_OUTPUT_RECORDS. */
  records = 0;
  /** The most the buffer held when it was drained (for a spill, or at the end), in estimated bytes. */
  drainedBytes = 0;

  constructor(private readonly options: MapOutputBufferOptions) {}

  /** Buffers one pair the map emitted; combines its key's values, or spills, when due. */
  collect(key: string, value: string): void {
    let group = this.groups.get(key);
    if (group === undefined) {
      group = { partition: this.partitionOf(key), key, values: [], valueBytes: 0 };
      this.groups.set(key, group);
      this.bytes += GROUP_OVERHEAD_BYTES + 2 * key.length;
    }
    group.values.push(value);
    const bytes = VALUE_OVERHEAD_BYTES + 2 * value.length;
    group.valueBytes += bytes;
    this.bytes += bytes;
    this.records++;
    if (this.options.app.combine && group.values.length >= this.options.tunables.combineInBufferAt) {
      this.combineInPlace(group);
    }
    if (this.bytes >= this.options.tunables.sortBufferBytes) this.spill();
  }

  /**
   * Writes the output to `path`, or keeps it in memory when nothing spilled and it comes to at
   * most `memoryBytes`. Returns the bytes if kept, and each partition's range.
   */
  async finish(path: string, memoryBytes: number): Promise<{ data: Buffer | undefined; partitions: Ranges }> {
    const writer = new RecordWriter(path, { memoryBytes: this.spills.length === 0 ? memoryBytes : 0 });
    let partitions: Ranges;
    try {
      if (this.spills.length === 0) {
        partitions = this.writeRun(this.drain(), writer);
      } else {
        if (this.groups.size > 0) this.spill();
        partitions = await this.mergeSpills(writer);
      }
    } catch (err) {
      writer.discard();
      throw err;
    }
    const data = writer.close();
    this.options.counters.add(Counter.MAP_OUTPUT_BYTES, writer.bytes);
    return { data, partitions };
  }

  private partitionOf(key: string): number {
    const { app, reducers } = this.options;
    const partition = app.partition ? app.partition(key, reducers) : hashPartition(key, reducers);
    if (!Number.isInteger(partition) || partition < 0 || partition >= reducers) {
      throw new RangeError(
        `partition(${JSON.stringify(key)}, ${reducers}) returned ${partition} (it must be an integer in [0, R))`,
      );
    }
    return partition;
  }

  /** Replaces a group's values with what the combiner makes of them. */
  private combineInPlace(group: Group): void {
    const combined: string[] = [];
    this.combine(group.key, group.values, (value) => combined.push(value));
    let bytes = 0;
    for (const value of combined) bytes += VALUE_OVERHEAD_BYTES + 2 * value.length;
    this.bytes += bytes - group.valueBytes;
    group.values = combined;
    group.valueBytes = bytes;
  }

  /**
   * The one path through the combiner: `values` of `key` in, each value it emits to `write`.
   * It must keep the key, or the run would no longer be sorted.
   */
  private combine(key: string, values: string[] | Iterable<string>, write: (value: string) => void): void {
    const { app, ctx, counters } = this.options;
    const emit = checkedEmit("combine", (emitted, value) => {
      if (emitted !== key) {
        throw new Error(
          `combine emitted key ${JSON.stringify(emitted)} for group ${JSON.stringify(key)} (a combiner must keep its key)`,
        );
      }
      counters.add(Counter.COMBINE_OUTPUT_RECORDS);
      write(value);
    });
    app.combine!(key, countedValues(values, counters), emit, ctx);
  }

  /** Empties the buffer, returning its groups sorted by (partition, key). */
  private drain(): Group[] {
    const groups = [...this.groups.values()];
    this.groups = new Map();
    this.drainedBytes = Math.max(this.drainedBytes, this.bytes);
    this.bytes = 0;
    return groups.sort((a, b) => a.partition - b.partition || compareKeys(a.key, b.key));
  }

  private spill(): void {
    const { spillDir, tunables, counters } = this.options;
    if (this.spills.length === 0) mkdirSync(spillDir, { recursive: true });
    const path = join(spillDir, `spill-${this.spills.length}`);
    const writer = new RecordWriter(path);
    let ranges: Ranges;
    try {
      ranges = this.writeRun(this.drain(), writer);
    } catch (err) {
      writer.discard();
      throw err;
    }
    writer.close();
    counters.spilled(writer.records, writer.bytes);
    this.spills.push({ path, ranges });
    // The drained buffer is most of the heap: give it back now, unless it is too small to matter.
    if (tunables.sortBufferBytes >= tunables.collectAfterSpillBytes) collectGarbage();
  }

  /** Writes sorted groups as one run of R partitions, through the combiner if there is one. */
  private writeRun(groups: Group[], writer: RecordWriter): Ranges {
    const ranges: Ranges = [];
    let at = 0;
    for (let r = 0; r < this.options.reducers; r++) {
      const start = writer.bytes;
      for (; at < groups.length && groups[at]!.partition === r; at++) {
        const { key, values } = groups[at]!;
        if (this.options.app.combine) this.combine(key, values, (value) => writer.write(key, value));
        else for (const value of values) writer.write(key, value);
      }
      ranges.push([start, writer.bytes]);
    }
    return ranges;
  }

  /** Merges the spills partition by partition into the output, then deletes them. */
  private async mergeSpills(writer: RecordWriter): Promise<Ranges> {
    const { app, reducers, spillDir, signal, tunables, counters } = this.options;
    const pause = createYielder();
    const ranges: Ranges = [];
    for (let r = 0; r < reducers; r++) {
      signal?.throwIfAborted();
      const start = writer.bytes;
      const runs = this.spills.map(({ path, ranges }) => ({
        path,
        start: ranges[r]![0],
        end: ranges[r]![1],
      }));
      const merged = await openMerge(runs, {
        dir: spillDir,
        tunables,
        pause,
        signal,
        onRewritten: (records, bytes) => counters.spilled(records, bytes),
      });
      try {
        if (app.combine) {
          const combineGroup = (key: string, values: Iterable<string>): void =>
            this.combine(key, values, (value) => writer.write(key, value));
          await forEachGroup(merged, combineGroup, pause);
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
    rmSync(spillDir, { recursive: true, force: true }); // the runs, and the merges ahead
    return ranges;
  }
}

/** `values` as handed to the combiner, each counted once as a COMBINE_INPUT_RECORD. */
function countedValues(values: string[] | Iterable<string>, counters: TaskCounters): Iterable<string> {
  if (Array.isArray(values)) {
    counters.add(Counter.COMBINE_INPUT_RECORDS, values.length);
    return values;
  }
  return (function* () {
    for (const value of values) {
      counters.add(Counter.COMBINE_INPUT_RECORDS);
      yield value;
    }
  })();
}
