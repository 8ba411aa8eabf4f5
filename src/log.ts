import { pino, type Logger } from "pino";

export type { Logger };

/** A JSON logger on stderr, at $MR_LOG_LEVEL (default info). */
export function createLogger(name: string, env: Readonly<Record<string, string | undefined>>): Logger {
  return pino({ name, level: env.MR_LOG_LEVEL ?? "info", base: { pid: process.pid } }, pino.destination(2));
}
