import type { App } from "../app.js";
import { WordCounts } from "./wordCounts.js";
import { forEachWord } from "./words.js";

function sum(key: string, values: Iterable<string>, emit: (key: string, value: string) => void): void {
  let total = 0;
  for (const value of values) total += Number(value);
  emit(key, String(total));
}

export const wordcount: App = {
  /** A word is a maximal run of Unicode letters; case-sensitive. */
  map({ line }, emit) {
    forEachWord(line, (word) => emit(word, "1"));
  },
  /** The same count over bytes, combined in the mapper: each word once per flush, with its count. */
  blockMapper(_ctx, { memoryBytes }) {
    const counts = new WordCounts();
    const flush = (emit: (key: string, value: string) => void): void => {
      counts.forEach((word, count) => emit(word, String(count)));
      counts.clear();
    };
    return {
      block(block, _offset, emit) {
        counts.addWords(block);
        if (counts.bytes >= memoryBytes) flush(emit);
      },
      end: flush,
    };
  },
  reduce: sum,
  combine: sum,
};
