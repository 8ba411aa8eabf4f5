import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onTestFinished } from "vitest";

/**
 * A fresh directory for one test. It is removed when the test passes and kept, with its path
 * printed, when it fails, so its logs and databases can be read.
 */
export function tempDir(prefix = "mr-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  onTestFinished(({ task }) => {
    if (task.result?.state === "fail") console.error(`kept the directory of a failed test: ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

let prefixes = 0;

/** A queue prefix no other test in this run uses. */
export function uniquePrefix(): string {
  return `t${process.pid}-${++prefixes}-${Date.now().toString(36)}`;
}
