/**
 * Confinement of the files a job may touch: the directories under which its inputs may be read
 * (`--input-root`) and its output written (`--output-root`). A path is judged by where it
 * really leads, after every symbolic link and `..`, so neither can lead out of a root. The
 * driver checks at submit; workers check again, with the roots the driver gave them at
 * registration, just before they open or write anything, so that a path changed since the
 * submit is caught too.
 */
import { lstatSync, realpathSync, statSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve, sep } from "node:path";
import { InvalidArgumentError } from "./errors.js";
import { LIMITS } from "./limits.js";

export class Roots {
  /** No roots: every path is allowed. */
  static readonly NONE = new Roots([], []);

  private constructor(
    /** Real paths, without a trailing separator. */
    readonly input: readonly string[],
    readonly output: readonly string[],
  ) {}

  /** Roots as configured: each must be an existing directory, and is kept as its real path. */
  static resolve(input: readonly string[], output: readonly string[]): Roots {
    const real = (dir: string, flag: string): string => {
      checkPath(dir, flag);
      try {
        const path = realpathSync(dir);
        if (lstatSync(path).isDirectory()) return path;
      } catch {
        // named below
      }
      throw new InvalidArgumentError(`${flag}: ${dir} is not an existing directory`);
    };
    return new Roots(
      input.map((dir) => real(dir, "--input-root")),
      output.map((dir) => real(dir, "--output-root")),
    );
  }

  /** Roots as a worker gets them from the driver, already real paths. */
  static of(input: readonly string[], output: readonly string[]): Roots {
    return input.length === 0 && output.length === 0 ? Roots.NONE : new Roots([...input], [...output]);
  }

  /** True when inputs or outputs are confined. */
  get confined(): boolean {
    return this.input.length > 0 || this.output.length > 0;
  }

  /**
   * The real path of an input, which must exist; throws InvalidArgumentError, naming the input
   * roots, when it leads outside them.
   */
  checkInput(path: string): string {
    const real = realPath(path, "input");
    if (this.input.length > 0 && !this.input.some((root) => isInside(real, root))) {
      throw new InvalidArgumentError(
        `input ${path}${real === path ? "" : ` (really ${real})`} is outside the input roots: ${this.input.join(", ")} (move it under one, or ask the driver's operator for another --input-root)`,
      );
    }
    return real;
  }

  /**
   * The real path of an output directory, which need not exist yet: the real path of its
   * deepest existing ancestor, and the rest of it. Throws InvalidArgumentError, naming the
   * output roots, when it leads outside them.
   */
  checkOutput(dir: string): string {
    const real = realOutputPath(dir);
    if (this.output.length > 0 && !this.output.some((root) => isInside(real, root))) {
      throw new InvalidArgumentError(
        `output ${dir}${real === dir ? "" : ` (really ${real})`} is outside the output roots: ${this.output.join(", ")} (choose a directory under one, or ask the driver's operator for another --output-root)`,
      );
    }
    return real;
  }
}

function isInside(path: string, root: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * Refuses a path no worker could use: relative, with a NUL byte, or longer than Linux allows,
 * before anything looks it up.
 */
function checkPath(path: string, what: string): void {
  const shown = path.length > 80 ? `${JSON.stringify(path.slice(0, 80))}…` : JSON.stringify(path);
  if (path.includes("\0"))
    throw new InvalidArgumentError(`${what}: a path may not hold a NUL byte: ${shown}`);
  if (!isAbsolute(path)) throw new InvalidArgumentError(`${what}: must be an absolute path, got ${shown}`);
  if (Buffer.byteLength(path) > LIMITS.pathBytes) {
    throw new InvalidArgumentError(
      `${what}: a path may have at most ${LIMITS.pathBytes} bytes, got ${Buffer.byteLength(path)}: ${shown}`,
    );
  }
  if (path.split(sep).some((name) => Buffer.byteLength(name) > LIMITS.nameBytes)) {
    throw new InvalidArgumentError(
      `${what}: each name in a path may have at most ${LIMITS.nameBytes} bytes: ${shown}`,
    );
  }
}

function realPath(path: string, what: string): string {
  checkPath(path, what);
  try {
    return realpathSync(path);
  } catch {
    throw new InvalidArgumentError(
      `${what} not found: ${path} (check the path; inputs are read by the workers)`,
    );
  }
}

/** The real path of a directory that may not exist yet. */
function realOutputPath(dir: string): string {
  checkPath(dir, "output_dir");
  const rest: string[] = [];
  let at = resolve(dir);
  for (;;) {
    try {
      lstatSync(at);
      break;
    } catch {
      if (dirname(at) === at) break;
      rest.unshift(basename(at));
      at = dirname(at);
    }
  }
  let real: string;
  try {
    real = realpathSync(at);
  } catch {
    throw new InvalidArgumentError(
      `output ${dir}: ${at} is a symbolic link that leads nowhere (choose another --output)`,
    );
  }
  if (!statSync(real).isDirectory()) {
    throw new InvalidArgumentError(`output ${dir}: ${at} is not a directory (choose another --output)`);
  }
  return join(real, ...rest);
}
