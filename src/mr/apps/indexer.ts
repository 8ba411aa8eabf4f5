import { basename } from "node:path";
import type { App } from "../app.js";
import { forEachWord } from "./words.js";

/**
 * The value of a word is `N doc1,doc2,…`: the sorted distinct basenames of the files that
 * contain it. Values in flight are comma-separated document lists, so the combiner and the
 * reducer can both merge them.
 */
function mergeDocs(values: Iterable<string>): string[] {
  const docs = new Set<string>();
  for (const value of values) for (const doc of value.split(",")) docs.add(doc);
  return [...docs].sort();
}

export const indexer: App = {
  map({ file, line }, emit) {
    const doc = basename(file);
    const seen = new Set<string>();
    forEachWord(line, (word) => {
      if (seen.has(word)) return;
      seen.add(word);
      emit(word, doc);
    });
  },
  combine(key, values, emit) {
    emit(key, mergeDocs(values).join(","));
  },
  reduce(key, values, emit) {
    const docs = mergeDocs(values);
    emit(key, `${docs.length} ${docs.join(",")}`);
  },
};
