import safeRegex from "safe-regex2";
import { UnrecoverableError } from "../../errors.js";
import type { App } from "../app.js";

/**
 * Prints the lines that match `--param pattern=REGEX`. The key is `file:offset`, so the output
 * is in file order within each part, and the value is the line.
 */
const patterns = new Map<string, RegExp>();

/**
 * The regular expression of a grep job, or an error that says what is wrong with it: missing,
 * invalid, or with a repetition inside a repetition (such as `(a+)+`), which JavaScript's
 * backtracking engine can take exponential time over. Patterns that backtrack in other ways
 * are bounded by the worker's --task-timeout.
 */
export function grepPattern(pattern: string | undefined): RegExp {
  if (pattern === undefined || pattern === "") {
    throw new UnrecoverableError("grep needs a pattern (add --param pattern=REGEX)");
  }
  let re = patterns.get(pattern);
  if (re !== undefined) return re;
  try {
    re = new RegExp(pattern, "u");
  } catch (err) {
    throw new UnrecoverableError(`pattern is not a valid regular expression: ${(err as Error).message}`);
  }
  if (!safeRegex(re)) {
    throw new UnrecoverableError(
      `pattern ${JSON.stringify(pattern)} repeats a group that itself repeats, which can take exponential time on a line that almost matches (rewrite it without the nested repetition, e.g. (a+)+ as a+)`,
    );
  }
  patterns.set(pattern, re);
  return re;
}

export const grep: App = {
  map({ file, offset, line }, emit, ctx) {
    if (grepPattern(ctx.params.pattern).test(line)) {
      emit(`${file}:${String(offset).padStart(15, "0")}`, line);
    }
  },
  reduce(key, values, emit) {
    for (const value of values) emit(key, value);
  },
};
