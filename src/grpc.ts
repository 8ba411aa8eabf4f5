import {
  Metadata,
  Server,
  ServerCredentials,
  credentials,
  type CallOptions,
  type ClientUnaryCall,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServiceError,
} from "@grpc/grpc-js";
import type { Logger } from "pino";
import { toStatus } from "./errors.js";

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
    server.bindAsync(address, serverCredentials, (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  return `${address.slice(0, address.lastIndexOf(":"))}:${port}`;
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
type UnaryMethod<Req, Res> = (
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

/** Client options shared by every channel: no hidden retries, so callers see each failure. */
export const CHANNEL_OPTIONS = {
  "grpc.enable_retries": 0,
  "grpc.max_receive_message_length": 8 * 1024 * 1024,
} as const;

export { credentials };
