import { status } from "@grpc/grpc-js";
import { InvalidArgumentError as CommanderInvalidArgument } from "commander";
import { firstLine, hasCode, toError } from "../errors.js";

/** A mistake in how mr was called: exit 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A job that ended in failure or cancellation: exit 1, its reason already printed. */
export class JobDidNotSucceed extends Error {
  override name = "JobDidNotSucceed";
}

export const ExitCode = { OK: 0, FAILURE: 1, USAGE: 2 } as const;

/**
 * Prints one line, `mr: <what went wrong> (<what to do>)`, and returns the exit code. The stack
 * is printed only with MR_LOG_LEVEL=debug.
 */
export function reportError(thrown: unknown, context: { driver?: string }, env: NodeJS.ProcessEnv): number {
  const err = toError(thrown);
  if (env.MR_LOG_LEVEL === "debug") console.error(err);
  if (err instanceof JobDidNotSucceed) return ExitCode.FAILURE;
  // The driver itself may say that what it needs is down (Redis, the object store): that is not it.
  const dependencyDown = /cannot reach (?:Redis|the object store)/.test(err.message);
  if (hasCode(thrown, status.UNAVAILABLE) && context.driver !== undefined && !dependencyDown) {
    const tlsError = /Last error: (?:Error: )?([^.]*(?:certificate|SSL|TLS|handshake)[^.]*)/i.exec(
      (thrown as { details?: string }).details ?? "",
    );
    console.error(
      tlsError
        ? `mr: TLS with the driver at ${context.driver} failed: ${tlsError[1]} (give --tls-ca, --tls-cert and --tls-key that it accepts)`
        : `mr: cannot reach the driver at ${context.driver} (start it with 'mr driver', or set MR_DRIVER; a driver that serves TLS needs --tls-ca)`,
    );
    return ExitCode.FAILURE;
  }
  if (hasCode(thrown, status.DEADLINE_EXCEEDED)) {
    console.error(`mr: the driver at ${context.driver} did not answer in time (check that it is running)`);
    return ExitCode.FAILURE;
  }
  const message = hasCode(thrown, 0)
    ? err.message
    : ((thrown as { details?: string }).details ?? err.message);
  console.error(`mr: ${firstLine(message)}`);
  // A request refused as invalid, here or by the driver, is bad usage too: the same call fails again.
  return err instanceof UsageError ||
    err instanceof CommanderInvalidArgument ||
    hasCode(thrown, status.INVALID_ARGUMENT)
    ? ExitCode.USAGE
    : ExitCode.FAILURE;
}
