/**
 * The layout of a job's output directory, as Hadoop's FileOutputCommitter (algorithm 1) lays
 * it out, so that an output is complete or absent: each attempt writes under
 * `_temporary/<attempt>/`; committing an attempt renames its part file into
 * `_temporary/committed/`; committing the job, once it has succeeded, renames every committed
 * part into the directory and leaves `_SUCCESS`. A job that fails or is cancelled leaves no part
 * file behind: its `_temporary` goes whole. `_temporary` is made when the job is submitted, and
 * never by an attempt: one that starts late, after its job has ended (a backup, a zombie),
 * finds it gone and fails, rather than leave a stray `_temporary` in a finished output.
 */
import {
  accessSync,
  constants,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  statfsSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { InvalidArgumentError } from "../errors.js";

export const SUCCESS_FILE = "_SUCCESS";
const TEMPORARY_DIR = "_temporary";
/** Under TEMPORARY_DIR: the parts of committed attempts, until the job commits. */
const COMMITTED_DIR = "committed";

/** The name of output partition `r`: `part-r-00007`. */
export function partFileName(r: number): string {
  return `part-r-${String(r).padStart(5, "0")}`;
}

/** Where an attempt writes partition `r` before its commit. */
export function temporaryPartPath(outputDir: string, attemptId: string, r: number): string {
  return join(outputDir, TEMPORARY_DIR, attemptId, partFileName(r));
}

/**
 * Filesystems that hold no files of their own, by statfs magic number: a job writing there
 * would hang or fail on every worker (Node's recursive mkdir loops forever under /proc).
 */
const PSEUDO_FILESYSTEMS = new Map<number, string>([
  [0x9fa0, "proc"],
  [0x62656572, "sysfs"],
  [0x1cd1, "devpts"],
  [0x27e0eb, "cgroup"],
  [0x63677270, "cgroup2"],
  [0x64626720, "debugfs"],
  [0x74726163, "tracefs"],
  [0x73636673, "securityfs"],
  [0xcafe4a11, "bpf"],
  [0x6165676c, "pstore"],
  [0x62656570, "configfs"],
]);

/**
 * Refuses an output directory a job could not use, or that holds files it would mix with or
 * destroy, as Hadoop's FileAlreadyExistsException does. `dir` is a real path (see
 * Roots.checkOutput). Its nearest existing directory must be writable, on a filesystem that
 * holds files; if it exists, it must be empty, unless `overwrite` lets prepareOutputDir empty it.
 * Looks, and changes nothing.
 */
export function checkOutputDir(dir: string, overwrite: boolean): void {
  let at = dir;
  while (!exists(at)) at = dirname(at);
  if (!statSync(at).isDirectory()) {
    throw new InvalidArgumentError(`output ${dir}: ${at} is not a directory (choose another --output)`);
  }
  const kind = PSEUDO_FILESYSTEMS.get(statfsSync(at).type);
  if (kind !== undefined) {
    throw new InvalidArgumentError(
      `output ${dir}: ${at} is on ${kind}, which holds no files (choose a directory on a real filesystem)`,
    );
  }
  try {
    accessSync(at, constants.W_OK | constants.X_OK);
  } catch {
    throw new InvalidArgumentError(
      `output ${dir}: ${at} is not writable (choose another --output, or make it writable by the workers' user)`,
    );
  }
  if (at !== dir || overwrite) return;
  const names = readdirSync(dir).sort();
  if (names.length === 0) return;
  const held = names.includes(SUCCESS_FILE)
    ? "a finished job's output"
    : names.slice(0, 3).join(", ") + (names.length > 3 ? `, … (${names.length} in all)` : "");
  throw new InvalidArgumentError(
    `output directory ${dir} is not empty: it holds ${held} (choose another --output, or give --overwrite to empty it first)`,
  );
}

/**
 * Makes the output directory ready for a job that passed checkOutputDir: emptied with
 * `overwrite`, created one level at a time, never with a recursive mkdir, and given the
 * `_temporary` its attempts write under.
 */
export function prepareOutputDir(dir: string, overwrite: boolean): void {
  try {
    if (overwrite && exists(dir)) {
      for (const name of readdirSync(dir)) rmSync(join(dir, name), { recursive: true, force: true });
    }
    const missing: string[] = [];
    for (let at = dir; !exists(at); at = dirname(at)) missing.unshift(at);
    for (const path of missing) mkdirOne(path);
    mkdirOne(join(dir, TEMPORARY_DIR));
  } catch (err) {
    throw new InvalidArgumentError(
      `output ${dir}: could not ${overwrite ? "empty or create" : "create"} it: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/**
 * Makes the directory an attempt's part file goes in, under the job's `_temporary`, which must
 * exist: it is gone once the job has ended, or if the output directory was removed while the
 * job ran, and the attempt fails with that cause.
 */
export function makeTemporaryPartDirs(partPath: string): void {
  const attemptDir = dirname(partPath);
  const temporary = dirname(attemptDir);
  if (!exists(dirname(temporary))) {
    throw new Error(`output directory ${dirname(temporary)} is gone (was it removed while the job ran?)`);
  }
  if (!exists(temporary)) {
    throw new Error(
      `${temporary} is gone: the job has ended, or its output directory was changed while it ran`,
    );
  }
  if (!statSync(temporary).isDirectory())
    throw new Error(`${temporary} is a file, where a directory must be`);
  mkdirOne(attemptDir);
}

/** mkdir of one directory whose parent exists; one already there is fine. */
function mkdirOne(path: string): void {
  try {
    mkdirSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    if (!statSync(path).isDirectory()) {
      throw new Error(`${path} is a file, where a directory must be`, { cause: err });
    }
  }
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
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
  mkdirOne(committed);
  renameSync(from, join(committed, partFileName(r)));
  rmSync(join(outputDir, TEMPORARY_DIR, attemptId), { recursive: true, force: true });
}

/**
 * Commits a job that succeeded: moves every committed part into the output directory, then
 * leaves `_SUCCESS` and no `_temporary`. Run again after a crash part way, it moves the rest.
 */
export function markOutputSucceeded(outputDir: string): void {
  const committed = join(outputDir, TEMPORARY_DIR, COMMITTED_DIR);
  for (const name of existsSync(committed) ? readdirSync(committed) : []) {
    renameSync(join(committed, name), join(outputDir, name));
  }
  rmSync(join(outputDir, TEMPORARY_DIR), { recursive: true, force: true });
  writeFileSync(join(outputDir, SUCCESS_FILE), "");
}

/**
 * Removes what attempts of a job that did not succeed left, or a submit that was refused after
 * prepareOutputDir: its `_temporary`, committed parts too.
 */
export function removeTemporaryOutput(outputDir: string): void {
  rmSync(join(outputDir, TEMPORARY_DIR), { recursive: true, force: true });
}
