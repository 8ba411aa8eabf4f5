import {
  Metadata,
  Server,
  ServerCredentials,
  credentials,
  status,
  type MethodDefinition,
  type ServiceDefinition,
  type UntypedServiceImplementation,
  type CallOptions,
  type ClientUnaryCall,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServiceError,
  type StatusObject,
} from "@grpc/grpc-js";
import type { Logger } from "pino";
import { FailedPreconditionError, MrError, firstLine, toError } from "./errors.js";

/**
 * Maps an error to the status a gRPC client sees. Known errors keep their code and message;
 * anything else is a bug: INTERNAL with a one-line message, and `logBug` gets the stack.
 */
export function toStatus(thrown: unknown, logBug: (err: Error) => void): Partial<StatusObject> {
  if (thrown instanceof MrError && thrown.code !== status.INTERNAL) {
    return { code: thrown.code, details: thrown.message, metadata: new Metadata() };
  }
  const err = toError(thrown);
  logBug(err);
  return {
    code: status.INTERNAL,
    details: `internal error: ${firstLine(err.message)}`,
    metadata: new Metadata(),
  };
}

/**
 * Adapts an async handler to grpc-js: its result is the reply, and whatever it throws goes
 * through `toStatus`, so a bug reaches the client as one line and the log with its stack.
 */
export function unary<Req, Res>(
  log: Logger,
  method: string,
  handler: (request: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res> | Res,
) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    Promise.resolve()
      .then(() => handler(call.request, call))
      .then(
        (reply) => callback(null, reply),
        (err: unknown) => callback(toStatus(err, (bug) => log.error({ err: bug, method }, "internal error"))),
      );
  };
}

/**
 * Binds a server on `host:port` (port 0 picks one), plaintext unless given TLS credentials,
 * and returns the bound address.
 */
export async function listen(
  server: Server,
  address: string,
  serverCredentials = ServerCredentials.createInsecure(),
): Promise<string> {
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, serverCredentials, (err, bound) => {
      if (!err) resolve(bound);
      else if (/EADDRINUSE/.test(err.message)) {
        reject(
          new FailedPreconditionError(
            `${address} is already in use by another process (stop it, or choose another port; port 0 picks a free one)`,
          ),
        );
      } else if (/EADDRNOTAVAIL/.test(err.message)) {
        reject(new FailedPreconditionError(`${address} is not an address of this host (choose one that is)`));
      } else reject(err);
    }),
  );
  return `${address.slice(0, address.lastIndexOf(":"))}:${port}`;
}

/** A request that did not decode, in place of the message, so its handler is never called. */
class Undecodable {
  constructor(readonly why: string) {}
}

/**
 * Adds a service whose requests that do not decode are refused with INVALID_ARGUMENT, naming
 * why, rather than grpc-js's INTERNAL: a caller's bad bytes are its own error, not the
 * server's, and no handler sees them.
 */
export function addService(
  server: Server,
  definition: ServiceDefinition,
  implementation: UntypedServiceImplementation,
): void {
  const tolerant: Record<string, MethodDefinition<unknown, unknown>> = {};
  const checked: UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(definition)) {
    tolerant[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes) as unknown;
        } catch (err) {
          return new Undecodable(
            `${method.path}: the request is not a valid message (${toError(err).message})`,
          );
        }
      },
    };
    const handler = implementation[name] as (call: unknown, callback?: unknown) => void;
    const refusal = (request: unknown) =>
      request instanceof Undecodable ? { code: status.INVALID_ARGUMENT, details: request.why } : undefined;
    checked[name] = method.responseStream
      ? (call: { request: unknown; emit(event: "error", error: object): void }) => {
          const refused = refusal(call.request);
          if (refused) call.emit("error", refused);
          else handler(call);
        }
      : (call: { request: unknown }, callback: (error: object | null) => void) => {
          const refused = refusal(call.request);
          if (refused) callback(refused);
          else handler(call, callback);
        };
  }
  server.addService(tolerant, checked);
}

/** Stops accepting calls, gives open calls `graceMs` to finish, then cuts them off. */
export async function shutdown(server: Server, graceMs: number): Promise<void> {
  await new Promise<void>((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}

/** grpc-js's callback form of a unary client method. */
export type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (err: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/**
 * Calls a unary method and resolves with its reply; `timeoutMs` sets the call's deadline.
 * `onCall` receives the call, for a caller that may need to cancel it.
 */
export function callUnary<Req, Res>(
  method: UnaryMethod<Req, Res>,
  request: Req,
  timeoutMs: number,
  onCall?: (call: ClientUnaryCall) => void,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const call = method(request, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, response) =>
      err ? reject(err) : resolve(response),
    );
    onCall?.(call);
  });
}

/**
 * Client options shared by every channel: no hidden retries, so callers see each failure; and
 * reconnection tried at least every 5 s (gRPC's default backs off to 120 s), so that a worker or
 * a wait finds a driver back from a long outage within seconds.
 */
export const CHANNEL_OPTIONS = {
  "grpc.enable_retries": 0,
  "grpc.initial_reconnect_backoff_ms": 500,
  "grpc.max_reconnect_backoff_ms": 5000,
  "grpc.max_receive_message_length": 8 * 1024 * 1024,
} as const;

export { credentials };
