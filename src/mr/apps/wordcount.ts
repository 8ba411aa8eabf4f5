import type { App } from "../app.js";

/** A word is a maximal run of Unicode letters; case-sensitive. */
const WORD = /\p{L}+/gu;

function sum(key: string, values: Iterable<string>, emit: (key: string, value: string) => void): void {
  let total = 0;
  for (const value of values) total += Number(value);
  emit(key, String(total));
}

export const wordcount: App = {
  map({ line }, emit) {
    for (const match of line.matchAll(WORD)) emit(match[0], "1");
  },
  reduce: sum,
  combine: sum,
};
