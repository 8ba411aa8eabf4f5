import { RecordReader } from "./records.js";

/** Keys are compared in JavaScript string order (UTF-16 code units), everywhere. */
export function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * A streaming k-way merge of sorted record readers, on a binary heap. Equal keys come out in
 * the order of their sources, so a merge is stable and deterministic.
 */
export class MergedReader {
  key = "";
  value = "";
  private readonly heap: RecordReader[] = [];
  private readonly order = new Map<RecordReader, number>();

  constructor(sources: readonly RecordReader[]) {
    sources.forEach((source, i) => {
      this.order.set(source, i);
      if (source.next()) this.push(source);
    });
  }

  next(): boolean {
    const top = this.heap[0];
    if (top === undefined) return false;
    this.key = top.key;
    this.value = top.value;
    if (top.next()) {
      this.siftDown(0);
    } else {
      const last = this.heap.pop()!;
      if (this.heap.length > 0) {
        this.heap[0] = last;
        this.siftDown(0);
      }
    }
    return true;
  }

  /** The key the next call to `next` will give, or undefined at the end. */
  peekKey(): string | undefined {
    return this.heap[0]?.key;
  }

  close(): void {
    for (const source of this.order.keys()) source.close();
  }

  private less(a: RecordReader, b: RecordReader): boolean {
    const byKey = compareKeys(a.key, b.key);
    return byKey < 0 || (byKey === 0 && this.order.get(a)! < this.order.get(b)!);
  }

  private push(source: RecordReader): void {
    const heap = this.heap;
    heap.push(source);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  private siftDown(i: number): void {
    const heap = this.heap;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let least = i;
      if (left < heap.length && this.less(heap[left]!, heap[least]!)) least = left;
      if (right < heap.length && this.less(heap[right]!, heap[least]!)) least = right;
      if (least === i) return;
      [heap[i], heap[least]] = [heap[least]!, heap[i]!];
      i = least;
    }
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
    const key = records.key;
    const first = records.value;
    let firstUnread = true;
    count++;
    const values: Iterable<string> = {
      *[Symbol.iterator]() {
        if (firstUnread) {
          firstUnread = false;
          yield first;
        }
        while (records.peekKey() === key) {
          records.next();
          count++;
          yield records.value;
        }
      },
    };
    onGroup(key, values);
    firstUnread = false;
    while (records.peekKey() === key) {
      records.next();
      count++;
    }
    groups++;
    const paused = pause?.();
    if (paused !== undefined) await paused;
  }
  return { groups, records: count };
}
