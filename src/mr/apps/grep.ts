import type { App } from "../app.js";

/**
 * Prints the lines that match `--param pattern=REGEX`. The key is `file:offset`, so the output
 * is in file order within each part, and the value is the line.
 */
const patterns = new Map<string, RegExp>();

function compile(pattern: string | undefined): RegExp {
  if (pattern === undefined || pattern === "") {
    throw new Error("grep needs a pattern (pass --param pattern=REGEX)");
  }
  let re = patterns.get(pattern);
  if (re === undefined) {
    re = new RegExp(pattern, "u");
    patterns.set(pattern, re);
  }
  return re;
}

export const grep: App = {
  map({ file, offset, line }, emit, ctx) {
    if (compile(ctx.params.pattern).test(line)) {
      emit(`${file}:${String(offset).padStart(15, "0")}`, line);
    }
  },
  reduce(key, values, emit) {
    for (const value of values) emit(key, value);
  },
};
