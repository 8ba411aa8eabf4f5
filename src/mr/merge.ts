import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { RecordReader, RecordWriter, rangeBytes, type RecordRange, type SharedFiles } from "./records.js";
import { DEFAULT_TUNABLES, type EngineTunables } from "./tunables.js";

/** Keys are compared in JavaScript string order (UTF-16 code units), everywhere. */
export function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * A streaming k-way merge of sorted record readers, on a tournament tree of losers (Knuth's
 * replacement selection): each record costs log2(k) comparisons, half a binary heap's. Equal
 * keys come out in the order of their sources, so a merge is stable and deterministic.
 */
export class MergedReader {
  key = "";
  value = "";
  /** tree[0] is the winner, tree[n] for 0 < n < k the loser of node n's match; leaves are k + i. */
  private readonly tree: Int32Array;
  /** 1 for a source that has no record left: it loses every match. */
  private readonly spent: Uint8Array;

  /** `onClose` runs once the sources are closed. */
  constructor(
    private readonly sources: readonly RecordReader[],
    private readonly onClose?: () => void,
  ) {
    this.spent = new Uint8Array(sources.length);
    sources.forEach((source, i) => (this.spent[i] = source.next() ? 0 : 1));
    this.tree = new Int32Array(Math.max(1, sources.length));
    this.tree[0] = sources.length === 0 ? -1 : this.play(1);
  }

  next(): boolean {
    const top = this.tree[0]!;
    if (top === -1 || this.spent[top] === 1) return false;
    const source = this.sources[top]!;
    this.key = source.key;
    this.value = source.value;
    if (!source.next()) this.spent[top] = 1;
    // The winner's next record plays its way back up against the losers on its path.
    let winner = top;
    for (let node = (top + this.sources.length) >> 1; node > 0; node >>= 1) {
      const loser = this.tree[node]!;
      if (this.less(loser, winner)) {
        this.tree[node] = winner;
        winner = loser;
      }
    }
    this.tree[0] = winner;
    return true;
  }

  /** The key the next call to `next` will give, or undefined at the end. */
  peekKey(): string | undefined {
    const top = this.tree[0]!;
    return top === -1 || this.spent[top] === 1 ? undefined : this.sources[top]!.key;
  }

  /** The share of the sources' bytes read so far, 0 to 1. */
  shareRead(): number {
    let read = 0;
    let total = 0;
    for (const source of this.sources) {
      read += source.bytesRead;
      total += source.bytesTotal;
    }
    return total === 0 ? 1 : read / total;
  }

  close(): void {
    for (const source of this.sources) source.close();
    this.onClose?.();
  }

  /** Plays the matches under `node`, keeping each loser there; returns the winner. */
  private play(node: number): number {
    const k = this.sources.length;
    if (node >= k) return node - k;
    const a = this.play(2 * node);
    const b = this.play(2 * node + 1);
    const [winner, loser] = this.less(a, b) ? [a, b] : [b, a];
    this.tree[node] = loser;
    return winner;
  }

  /** Whether source a's record goes before source b's: by key, then by source. */
  private less(a: number, b: number): boolean {
    if (this.spent[a] === 1) return false;
    if (this.spent[b] === 1) return true;
    const keyA = this.sources[a]!.key;
    const keyB = this.sources[b]!.key;
    return keyA < keyB || (keyA === keyB && a < b);
  }
}

/** Anything that yields sorted records the way RecordReader does. */
export interface SortedRecords {
  key: string;
  value: string;
  next(): boolean;
  peekKey(): string | undefined;
}

/**
 * Calls `onGroup(key, values)` once per distinct key of a sorted stream. `values` is a lazy,
 * single-pass iterator over the stream: a key's values are never held in memory together.
 * Values the callback leaves unread are skipped. `pause` is awaited between groups, so a long
 * merge lets timers run. Returns how many groups and records went by.
 */
export async function forEachGroup(
  records: SortedRecords,
  onGroup: (key: string, values: Iterable<string>) => void,
  pause?: () => Promise<void> | undefined,
): Promise<{ groups: number; records: number }> {
  let groups = 0;
  let count = 0;
  while (records.next()) {
    const values = new GroupValues(records);
    onGroup(values.key, values);
    count += values.skipRest();
    groups++;
    const paused = pause?.();
    if (paused !== undefined) await paused;
  }
  return { groups, records: count };
}

/**
 * The values of the group `records` has just reached, read as they are iterated: a plain
 * iterator rather than a generator, which costs a reduce of small groups a third of its time.
 */
class GroupValues implements IterableIterator<string> {
  readonly key: string;
  private readonly first: string;
  private firstUnread = true;
  /** Records of the group read so far. */
  private read = 1;

  constructor(private readonly records: SortedRecords) {
    this.key = records.key;
    this.first = records.value;
  }

  [Symbol.iterator](): IterableIterator<string> {
    return this;
  }

  next(): IteratorResult<string> {
    if (this.firstUnread) {
      this.firstUnread = false;
      return { value: this.first, done: false };
    }
    if (this.records.peekKey() !== this.key) return { value: undefined, done: true };
    this.records.next();
    this.read++;
    return { value: this.records.value, done: false };
  }

  /** Skips the values left unread; returns how many records the group had. */
  skipRest(): number {
    this.firstUnread = false;
    while (this.records.peekKey() === this.key) {
      this.records.next();
      this.read++;
    }
    return this.read;
  }
}

const MIN_CHUNK_BYTES = 64 << 10;

export interface MergeOptions {
  /** Where runs merged ahead of the final merge go; created if needed, and they are deleted. */
  dir: string;
  /** Descriptors shared by readers of the same file. */
  files?: SharedFiles;
  /** The merge factor and read buffer sizes; default DEFAULT_TUNABLES. */
  tunables?: Readonly<EngineTunables>;
  /** Awaited now and then during the merges ahead, so that timers and I/O run. */
  pause?: () => Promise<void> | undefined;
  signal?: AbortSignal;
  /** Told of the records and bytes each merge ahead writes (Hadoop counts them as spilled). */
  onRewritten?: (records: number, bytes: number) => void;
}

/**
 * A merge of sorted runs. Runs that fit in `mergeMemoryBytes` together are read whole into
 * memory and merged in one pass, however many there are, as Hadoop's in-memory merge of
 * shuffled map outputs: a reduce over a thousand small map outputs rewrites nothing. Otherwise
 * it never reads more than `factor` runs at once: past that, runs are first merged into files,
 * as Hadoop's multi-pass merge does, so a reduce over 20,000 maps holds about 16 MiB of read
 * buffers and `factor` descriptors, not 20,000 of each. Only runs next to each other are
 * merged, which keeps the merge stable (equal keys in the order of `runs`), and only as many as
 * bring the count down to `factor`.
 */
export async function openMerge(runs: readonly RecordRange[], options: MergeOptions): Promise<MergedReader> {
  const tunables = options.tunables ?? DEFAULT_TUNABLES;
  if (runs.reduce((sum, run) => sum + rangeBytes(run), 0) <= tunables.mergeMemoryBytes) {
    return new MergedReader(runs.map((run) => RecordReader.of(run, options.files, rangeBytes(run))));
  }
  const factor = tunables.mergeFactor;
  const pending = [...runs];
  const written = new Set<string>(); // the runs merged ahead, until the final merge is closed
  const remove = (paths: Iterable<string>): void => {
    for (const path of [...paths]) {
      rmSync(path, { force: true });
      written.delete(path);
    }
  };
  try {
    for (let at = 0, made = 0; pending.length > factor; at++) {
      if (at + 1 >= pending.length) at = 0; // a further pass
      const size = Math.min(factor, pending.length - factor + 1, pending.length - at);
      if (made === 0) mkdirSync(options.dir, { recursive: true });
      const path = join(options.dir, `merge-${made++}`);
      written.add(path);
      const group = pending.slice(at, at + size);
      await mergeToFile(group, path, options);
      // The runs merged ahead before and merged again now.
      remove(group.flatMap((run) => ("path" in run && written.has(run.path) ? [run.path] : [])));
      pending.splice(at, size, { path });
    }
  } catch (err) {
    remove(written);
    throw err;
  }
  return new MergedReader(readersOf(pending, options.files, tunables), () => remove(written));
}

/** Readers of `runs`, each with its share of the merge's read buffers. */
function readersOf(
  runs: readonly RecordRange[],
  files: SharedFiles | undefined,
  tunables: Readonly<EngineTunables>,
): RecordReader[] {
  const chunkBytes = Math.max(
    MIN_CHUNK_BYTES,
    Math.min(tunables.readChunkBytes, Math.floor(tunables.mergeReadBytes / Math.max(1, runs.length))),
  );
  return runs.map((run) => RecordReader.of(run, files, chunkBytes));
}

async function mergeToFile(runs: readonly RecordRange[], path: string, options: MergeOptions): Promise<void> {
  const merged = new MergedReader(readersOf(runs, options.files, options.tunables ?? DEFAULT_TUNABLES));
  const writer = new RecordWriter(path);
  try {
    while (merged.next()) {
      writer.write(merged.key, merged.value);
      const paused = options.pause?.();
      if (paused !== undefined) {
        await paused;
        options.signal?.throwIfAborted();
      }
    }
  } catch (err) {
    writer.discard();
    throw err;
  } finally {
    merged.close();
  }
  writer.close();
  options.onRewritten?.(writer.records, writer.bytes);
}
