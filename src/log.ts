import { pino, type Logger } from "pino";
import pretty from "pino-pretty";

export type { Logger };

/** How log lines look: one JSON object each, or pino-pretty's lines for a person. */
export const LOG_FORMATS = ["json", "pretty"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/**
 * A logger on stderr, at $MR_LOG_LEVEL (default info): pretty on a terminal, JSON otherwise,
 * unless `format` says which.
 */
export function createLogger(
  name: string,
  env: Readonly<Record<string, string | undefined>>,
  format: LogFormat = process.stderr.isTTY ? "pretty" : "json",
): Logger {
  const options = { name, level: env.MR_LOG_LEVEL ?? "info", base: { pid: process.pid } };
  if (format === "json") return pino(options, pino.destination(2));
  return pino(
    options,
    pretty({ destination: 2, sync: true, colorize: process.stderr.isTTY, ignore: "hostname" }),
  );
}
