import type { App } from "../app.js";
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
  reduce: sum,
  combine: sum,
};
