import { basename } from "node:path";
import type { App } from "../app.js";

const WORD = /\p{L}+/gu;

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
    for (const match of line.matchAll(WORD)) {
      if (seen.has(match[0])) continue;
      seen.add(match[0]);
      emit(match[0], doc);
    }
  },
  combine(key, values, emit) {
    emit(key, mergeDocs(values).join(","));
  },
  reduce(key, values, emit) {
    const docs = mergeDocs(values);
    emit(key, `${docs.length} ${docs.join(",")}`);
  },
};
