import type { ServiceError, status } from "@grpc/grpc-js";

/**
 * The gRPC status codes of the errors below: the protocol's own numbers, as @grpc/grpc-js's
 * `status` has them. Written out so that this module does not load gRPC: task threads, which
 * never speak it, import it too.
 */
const Code = {
  INVALID_ARGUMENT: 3 as status.INVALID_ARGUMENT,
  NOT_FOUND: 5 as status.NOT_FOUND,
  RESOURCE_EXHAUSTED: 8 as status.RESOURCE_EXHAUSTED,
  FAILED_PRECONDITION: 9 as status.FAILED_PRECONDITION,
  INTERNAL: 13 as status.INTERNAL,
  UNAVAILABLE: 14 as status.UNAVAILABLE,
} as const;

/**
 * The few errors that cross a boundary. Each carries the gRPC code it maps to, so a handler
 * throws the error and `toStatus` (grpc.ts) decides nothing.
 */
export class MrError extends Error {
  readonly code: status = Code.INTERNAL;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The request is wrong; retrying it unchanged cannot help. */
export class InvalidArgumentError extends MrError {
  override readonly code = Code.INVALID_ARGUMENT;
}

export class NotFoundError extends MrError {
  override readonly code = Code.NOT_FOUND;
}

/** The caller's view is stale: an attempt that lost its task, a worker that must register again. */
export class FailedPreconditionError extends MrError {
  override readonly code = Code.FAILED_PRECONDITION;
}

/** The caller holds as much of something as it may (open streams); it may retry after letting some go. */
export class ResourceExhaustedError extends MrError {
  override readonly code = Code.RESOURCE_EXHAUSTED;
}

/** A dependency (Redis) is down; the caller may retry later. */
export class UnavailableError extends MrError {
  override readonly code = Code.UNAVAILABLE;
}

/**
 * A task failure that a retry cannot help: the task and its job fail at once. An app signals
 * one as BullMQ's apps do, by throwing any error whose `name` is "UnrecoverableError".
 */
export class UnrecoverableError extends MrError {}

/** True for an error that says its task must not be retried (see UnrecoverableError). */
export function isUnrecoverable(thrown: unknown): boolean {
  return thrown instanceof Error && thrown.name === "UnrecoverableError";
}

/** A reduce could not fetch the output of a committed map attempt: the map must run again. */
export class FetchFailedError extends MrError {
  constructor(
    readonly mapIndex: number,
    readonly mapAttemptId: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Normalises anything thrown into an Error, keeping the original as its cause. */
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  return new Error(String(thrown), { cause: thrown });
}

/** True for a gRPC client error with the given code. */
export function hasCode(thrown: unknown, code: status): thrown is ServiceError {
  return typeof thrown === "object" && thrown !== null && (thrown as ServiceError).code === code;
}

export function firstLine(text: string): string {
  return text.split("\n", 1)[0] ?? "";
}

/** `text`, cut to at most `bytes` bytes of UTF-8 with a note that it was. */
export function cut(text: string, bytes: number): string {
  if (Buffer.byteLength(text) <= bytes) return text;
  const kept = Buffer.from(text)
    .subarray(0, bytes - 32)
    .toString("utf8")
    .replace(/\uFFFD$/, "");
  return `${kept}… (${Buffer.byteLength(text) - Buffer.byteLength(kept)} more bytes cut)`;
}
