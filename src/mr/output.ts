/**
 * The layout of a job's output directory, as Hadoop's FileOutputCommitter (algorithm 1) lays
 * it out, so that an output is complete or absent: each attempt writes under
 * `_temporary/<attempt>/`; committing an attempt renames its part file into
 * `_temporary/committed/`; committing the job, once it has succeeded, renames every committed
 * part into the directory and leaves `_SUCCESS`. A job that fails or is cancelled leaves no part
 * file behind: its `_temporary` goes whole.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const SUCCESS_FILE = "_SUCCESS";
const TEMPORARY_DIR = "_temporary";
/** Under TEMPORARY_DIR: the parts of committed attempts, until the job commits. */
const COMMITTED_DIR = "committed";
const PART_FILE = /^part-r-\d{5}$/;

/** The name of output partition `r`: `part-r-00007`. */
export function partFileName(r: number): string {
  return `part-r-${String(r).padStart(5, "0")}`;
}

/** Where an attempt writes partition `r` before its commit. */
export function temporaryPartPath(outputDir: string, attemptId: string, r: number): string {
  return join(outputDir, TEMPORARY_DIR, attemptId, partFileName(r));
}

/**
 * Why a new job may not write into `dir`, or undefined if it may: it holds a finished job's
 * output, or part files that some other job left.
 */
export function outputConflict(dir: string): string | undefined {
  if (existsSync(join(dir, SUCCESS_FILE))) return "already holds a finished job's output";
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return undefined; // not there yet, or not a directory: the job's first write says which
  }
  const parts = names.filter((name) => PART_FILE.test(name)).sort();
  if (parts.length === 0) return undefined;
  const shown = parts.slice(0, 3).join(", ") + (parts.length > 3 ? `, … (${parts.length} in all)` : "");
  return `holds part files that another job left (${shown})`;
}

/**
 * Commits an attempt's partition `r`: renames its file among the job's committed parts,
 * replacing any earlier copy, and removes the attempt's temporary directory. Throws if the
 * attempt left no file, before anything moves.
 */
export function commitPartFile(outputDir: string, attemptId: string, r: number): void {
  const from = temporaryPartPath(outputDir, attemptId, r);
  if (!existsSync(from)) throw new Error(`attempt ${attemptId} left no output at ${from}`);
  const committed = join(outputDir, TEMPORARY_DIR, COMMITTED_DIR);
  mkdirSync(committed, { recursive: true });
  renameSync(from, join(committed, partFileName(r)));
  rmSync(join(outputDir, TEMPORARY_DIR, attemptId), { recursive: true, force: true });
}

/**
 * Commits a job that succeeded: moves every committed part into the output directory, then
 * leaves `_SUCCESS` and no `_temporary`. Run again after a crash part way, it moves the rest.
 */
export function markOutputSucceeded(outputDir: string): void {
  const committed = join(outputDir, TEMPORARY_DIR, COMMITTED_DIR);
  mkdirSync(outputDir, { recursive: true });
  for (const name of existsSync(committed) ? readdirSync(committed) : []) {
    renameSync(join(committed, name), join(outputDir, name));
  }
  rmSync(join(outputDir, TEMPORARY_DIR), { recursive: true, force: true });
  writeFileSync(join(outputDir, SUCCESS_FILE), "");
}

/** Removes what attempts of a job that did not succeed left: its `_temporary`, committed parts too. */
export function removeTemporaryOutput(outputDir: string): void {
  rmSync(join(outputDir, TEMPORARY_DIR), { recursive: true, force: true });
}
