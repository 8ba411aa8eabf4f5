/**
 * The layout of a job's output directory, as Hadoop's FileOutputCommitter lays it out: each
 * attempt writes under `_temporary/<attempt>/`; committing an attempt renames its part file
 * into place; a finished job leaves `_SUCCESS`.
 */
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const SUCCESS_FILE = "_SUCCESS";
const TEMPORARY_DIR = "_temporary";

/** The name of output partition `r`: `part-r-00007`. */
export function partFileName(r: number): string {
  return `part-r-${String(r).padStart(5, "0")}`;
}

/** Where an attempt writes partition `r` before its commit. */
export function temporaryPartPath(outputDir: string, attemptId: string, r: number): string {
  return join(outputDir, TEMPORARY_DIR, attemptId, partFileName(r));
}

/** True when `dir` holds the output of a finished job. */
export function holdsFinishedJob(dir: string): boolean {
  return existsSync(join(dir, SUCCESS_FILE));
}

/**
 * Commits an attempt's partition `r`: renames its file into the output directory, replacing
 * any earlier copy, and removes the attempt's temporary directory. Throws if the attempt left
 * no file, before anything moves.
 */
export function commitPartFile(outputDir: string, attemptId: string, r: number): void {
  const from = temporaryPartPath(outputDir, attemptId, r);
  if (!existsSync(from)) throw new Error(`attempt ${attemptId} left no output at ${from}`);
  mkdirSync(outputDir, { recursive: true });
  renameSync(from, join(outputDir, partFileName(r)));
  rmSync(join(outputDir, TEMPORARY_DIR, attemptId), { recursive: true, force: true });
}

/** Marks a job's output complete: `_SUCCESS`, and no `_temporary` left behind. */
export function markOutputSucceeded(outputDir: string): void {
  rmSync(join(outputDir, TEMPORARY_DIR), { recursive: true, force: true });
  writeFileSync(join(outputDir, SUCCESS_FILE), "");
}

/** Removes what attempts of an ended job left in `_temporary`. */
export function removeTemporaryOutput(outputDir: string): void {
  rmSync(join(outputDir, TEMPORARY_DIR), { recursive: true, force: true });
}
