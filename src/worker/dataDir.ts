import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { InvalidArgumentError } from "../errors.js";

/**
 * Attempt ids are made by the driver (`a` and 16 hex digits); anything else could escape the
 * data directory, or name a file that is not ours.
 */
const ATTEMPT_ID = /^a[0-9a-f]{16}$/;
/** The names an attempt's files take in the data directory: its directory and its map output. */
const ATTEMPT_FILE = /^a[0-9a-f]{16}(\.out)?$/;

function checked(attemptId: string): string {
  if (!ATTEMPT_ID.test(attemptId))
    throw new InvalidArgumentError(`not an attempt id: ${JSON.stringify(attemptId)}`);
  return attemptId;
}

/** The directory of one attempt's scratch files (a map's spills, a reduce's fetched input). */
export function attemptDir(dataDir: string, attemptId: string): string {
  return join(dataDir, checked(attemptId));
}

/** The file of a map attempt's output, when it is not kept in memory. */
export function mapOutputPath(dataDir: string, attemptId: string): string {
  return join(dataDir, `${checked(attemptId)}.out`);
}

/**
 * Creates the data directory if needed and deletes every attempt's files in it, and nothing
 * else: the directory is the user's choice, and may hold other things.
 */
export function clearAttemptFiles(dataDir: string): void {
  mkdirSync(dataDir, { recursive: true });
  for (const name of readdirSync(dataDir)) {
    if (ATTEMPT_FILE.test(name)) rmSync(join(dataDir, name), { recursive: true, force: true });
  }
}
