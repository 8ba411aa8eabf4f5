import { Option } from "commander";
import { UsageError } from "./errors.js";

/** `--reducers 5`: a positive integer, or a usage error that says so. */
export function parsePositiveInt(flag: string) {
  return parseIntAtLeast(flag, 1, "a positive integer");
}

/** `--drain-timeout 0`: an integer of 0 or more, or a usage error that says so. */
export function parseNonNegativeInt(flag: string) {
  return parseIntAtLeast(flag, 0, "an integer of 0 or more");
}

/** `--port 7001`: a TCP port, 0 for any free one. */
export function parsePort(flag: string) {
  return parseIntAtLeast(flag, 0, "a port from 0 to 65535 (0 picks a free one)", 65535);
}

/** `--priority 3`: an integer from `least` to `most`. */
export function parseIntRange(flag: string, least: number, most: number) {
  return parseIntAtLeast(flag, least, `an integer from ${least} to ${most}`, most);
}

/** `--speculation-quantile 0.75`: a decimal number from `least` to `most`. */
export function parseNumberRange(flag: string, least: number, most: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+(\.\d+)?$/.test(value.trim()) || n < least || n > most) {
      throw new UsageError(`${flag} must be a number from ${least} to ${most}, got ${JSON.stringify(value)}`);
    }
    return n;
  };
}

function parseIntAtLeast(flag: string, least: number, what: string, most = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < least || n > most) {
      throw new UsageError(`${flag} must be ${what}, got ${JSON.stringify(value)}`);
    }
    return n;
  };
}

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
};

/**
 * `--split-size 64MiB`: bytes, with an optional unit (KiB, MiB, GiB, KB, MB, GB, or K, M, G as
 * binary); at least 1, or 0 too where `zero` allows it.
 */
export function parseBytes(flag: string, { zero = false } = {}) {
  return (value: string): number => {
    const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
    const unit = match && UNITS[match[2]!.toLowerCase()];
    const bytes = match && unit ? Math.floor(Number(match[1]) * unit) : NaN;
    if (!Number.isSafeInteger(bytes) || bytes < (zero ? 0 : 1)) {
      throw new UsageError(
        `${flag} must be a size such as 1048576, 512KiB or 64MiB, got ${JSON.stringify(value)}`,
      );
    }
    return bytes;
  };
}

const DURATION_UNITS: Record<string, number> = { ms: 1, "": 1000, s: 1000, m: 60_000, h: 3_600_000 };

/** `--timeout 90s`: a duration in ms, from a number and an optional unit (ms, s, m, h; seconds without one). */
export function parseDuration(flag: string) {
  return (value: string): number => {
    const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|)$/i.exec(value.trim());
    const ms = match ? Math.round(Number(match[1]) * DURATION_UNITS[match[2]!.toLowerCase()]!) : NaN;
    if (!Number.isSafeInteger(ms) || ms < 1) {
      throw new UsageError(
        `${flag} must be a duration such as 90, 90s, 5m or 1h, got ${JSON.stringify(value)}`,
      );
    }
    return ms;
  };
}

/** `--param key=value`, repeatable, into an object. */
export function collectParam(value: string, params: Record<string, string> = {}): Record<string, string> {
  const at = value.indexOf("=");
  if (at < 1) throw new UsageError(`--param must be key=value, got ${JSON.stringify(value)}`);
  return { ...params, [value.slice(0, at)]: value.slice(at + 1) };
}

/** A repeatable flag, such as `--input-root A --input-root B`, into a list. */
export function collect(value: string, values: string[] = []): string[] {
  return [...values, value];
}

/** `mr jobs show 12`: a job id. */
export function parseJobId(value: string): number {
  return parsePositiveInt("JOB_ID")(value);
}

/** Runs `stop` on the first SIGINT or SIGTERM; a second one exits at once. */
export function onShutdownSignal(stop: (signal: NodeJS.Signals) => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals): void => {
    if (stopping) process.exit(130);
    stopping = true;
    stop(signal).then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(`mr: ${String(err)} (while stopping after ${signal})`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
}

/** `--s3-endpoint URL`, the same on `mr driver`, `mr worker` and `mr run`. */
export function s3EndpointOption(): Option {
  return new Option(
    "--s3-endpoint <url>",
    "the S3-compatible store of s3:// inputs and outputs, addressed path-style (default $MR_S3_ENDPOINT, else AWS S3)",
  );
}
