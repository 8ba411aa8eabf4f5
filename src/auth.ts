/**
 * Shared-secret authentication between mr's processes, with two roles and a secret each:
 * - client: `mr submit`, `mr jobs …`, `mr workers list` (JobService);
 * - worker: registering, polling, heartbeats and reports (TaskService), and fetching map output
 *   from other workers (ShuffleService).
 * Secrets are read from files, never taken on the command line (where `ps` shows them), and go
 * as `authorization: Bearer <secret>` call metadata. A server compares digests in constant time,
 * and logs a refusal without the secret.
 */
import {
  InterceptingCall,
  status,
  type Interceptor,
  type Metadata,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import { InvalidArgumentError, MrError, toError } from "./errors.js";

export type Role = "client" | "worker";

/** A missing or wrong secret. */
export class UnauthenticatedError extends MrError {
  override readonly code = status.UNAUTHENTICATED;
}

/**
 * The secret in `path`: its first line, without surrounding white space. A missing, unreadable
 * or empty file is an InvalidArgumentError that names the flag.
 */
export function readTokenFile(path: string, flag: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new InvalidArgumentError(
      `${flag}: cannot read ${path}: ${toError(err).message} (give a file that holds the secret)`,
    );
  }
  const token = (text.split("\n", 1)[0] ?? "").trim();
  if (token.length < 16) {
    throw new InvalidArgumentError(
      `${flag}: ${path} holds no secret of at least 16 characters (write one, e.g. openssl rand -hex 32 > ${path})`,
    );
  }
  return token;
}

/** True for an address on this machine only: 127.0.0.0/8, ::1 or localhost. */
export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, "");
  return bare === "localhost" || bare === "::1" || /^127\.\d+\.\d+\.\d+$/.test(bare);
}

/** A client interceptor that sends `token` with every call. */
export function bearerInterceptor(token: string): Interceptor {
  const value = `Bearer ${token}`;
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set("authorization", value);
        next(metadata, listener);
      },
    });
}

/** Client options for a channel that sends `token`, if there is one. */
export function withToken<T extends object>(options: T, token: string | undefined): T {
  return token === undefined ? options : { ...options, interceptors: [bearerInterceptor(token)] };
}

const digest = (secret: string): Buffer => createHash("sha256").update(secret).digest();

/** True when two secrets are equal, in a time that does not tell how much of them matched. */
export function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

/**
 * Checks the secret of each call against the one of the role a service serves. With no secret
 * for a role, its calls go unchecked (a loopback-only setup).
 */
export class TokenCheck {
  private readonly digests: Partial<Record<Role, Buffer>>;
  /** Calls refused so far. */
  refused = 0;

  constructor(
    tokens: Partial<Record<Role, string>>,
    private readonly log: Logger,
  ) {
    this.digests = Object.fromEntries(
      Object.entries(tokens).map(([role, token]) => [role, digest(token)]),
    ) as Partial<Record<Role, Buffer>>;
  }

  get enabled(): boolean {
    return Object.keys(this.digests).length > 0;
  }

  /** Throws UnauthenticatedError unless the call carries the secret of `role`. */
  check(metadata: Metadata, role: Role, method: string, peer: string): void {
    const expected = this.digests[role];
    if (expected === undefined) return;
    const [header] = metadata.get("authorization");
    const given = typeof header === "string" && header.startsWith("Bearer ") ? header.slice(7) : undefined;
    if (given !== undefined && timingSafeEqual(digest(given), expected)) return;
    this.refused++;
    const why = given === undefined ? "no token" : "a wrong token";
    this.log.warn({ method, peer, role, refused: this.refused }, `refused a call with ${why}`);
    throw new UnauthenticatedError(
      `${why} for the ${role} role (give the ${role} secret with --token-file or MR_TOKEN_FILE)`,
    );
  }

  /**
   * The service's handlers, each checking the caller's secret for `role` first. A refused
   * unary call gets UNAUTHENTICATED; a refused stream ends with it.
   */
  guard(
    definition: ServiceDefinition,
    implementation: UntypedServiceImplementation,
    role: Role,
  ): UntypedServiceImplementation {
    if (this.digests[role] === undefined) return implementation;
    const guarded: UntypedServiceImplementation = {};
    for (const [name, handler] of Object.entries(implementation)) {
      const { path, responseStream, requestStream } = definition[name]!;
      if (requestStream) throw new Error(`${path}: client streams are not guarded`);
      const refuse = (call: { metadata: Metadata; getPeer(): string }) => {
        try {
          this.check(call.metadata, role, path, call.getPeer());
          return undefined;
        } catch (err) {
          const { code, message } = err as UnauthenticatedError;
          return { code, details: message };
        }
      };
      guarded[name] = responseStream
        ? (call: { metadata: Metadata; getPeer(): string; emit(event: "error", error: object): void }) => {
            const refusal = refuse(call);
            if (refusal) call.emit("error", refusal);
            else (handler as (call: unknown) => void)(call);
          }
        : (call: { metadata: Metadata; getPeer(): string }, callback: (error: object | null) => void) => {
            const refusal = refuse(call);
            if (refusal) callback(refusal);
            else (handler as (call: unknown, callback: unknown) => void)(call, callback);
          };
    }
    return guarded;
  }
}
