/**
 * The HTTP side of the driver and the workers: a read-only server for the web UI, the JSON
 * API, /metrics and /healthz. Routes answer JSON; a thrown MrError becomes its status code with
 * a one-line `{"error": …}`, and anything else a logged 500 without its stack.
 */
import { status } from "@grpc/grpc-js";
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Logger } from "pino";
import { isLoopback } from "./auth.js";
import { InvalidArgumentError, MrError, toError } from "./errors.js";
import type { Health } from "./health.js";

/** A route: the request, its URL, and the path's captures. Returns nothing once it has answered. */
export type Route = (req: IncomingMessage, res: ServerResponse, url: URL, params: string[]) => unknown;

export interface HttpServer {
  /** HOST:PORT as bound. */
  address: string;
  close(): Promise<void>;
}

/** HTTP status codes of the errors that cross a boundary, by their gRPC code. */
const HTTP_STATUS: Partial<Record<status, number>> = {
  [status.INVALID_ARGUMENT]: 400,
  [status.NOT_FOUND]: 404,
  [status.FAILED_PRECONDITION]: 409,
  [status.RESOURCE_EXHAUSTED]: 429,
  [status.UNAVAILABLE]: 503,
};

/** Headers of every answer: nothing is framed, sniffed, or loaded from elsewhere. */
const COMMON_HEADERS = {
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
  "Content-Security-Policy":
    "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
  "Referrer-Policy": "no-referrer",
};

/**
 * Serves `routes` (regular expressions over the path, tried in order) on `listen`. Only GET
 * and HEAD are answered. A server on loopback answers only requests addressed to loopback by
 * their Host header, so that a web page elsewhere cannot read it through DNS rebinding.
 */
export async function startHttpServer(
  listen: string,
  routes: readonly [RegExp, Route][],
  log: Logger,
): Promise<HttpServer & { server: Server }> {
  const colon = listen.lastIndexOf(":");
  const host = listen.slice(0, colon);
  const loopbackOnly = isLoopback(host);
  const server = createServer((req, res) => {
    for (const [name, value] of Object.entries(COMMON_HEADERS)) res.setHeader(name, value);
    void handle(req, res).catch((err: unknown) => {
      const error = toError(err);
      if (error instanceof MrError && HTTP_STATUS[error.code] !== undefined) {
        sendJson(res, HTTP_STATUS[error.code]!, { error: error.message });
        return;
      }
      log.error({ err: error, url: req.url }, "internal error in an HTTP request");
      if (!res.headersSent) sendJson(res, 500, { error: "internal error (the server's log has it)" });
      else res.destroy();
    });
  });
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (loopbackOnly && !isLoopbackHost(req.headers.host)) {
      sendJson(res, 421, { error: "this server answers only requests to a loopback address" });
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("Allow", "GET, HEAD");
      sendJson(res, 405, { error: `${req.method} is not allowed: this server is read-only` });
      return;
    }
    const url = new URL(req.url ?? "/", "http://localhost");
    for (const [pattern, route] of routes) {
      const match = pattern.exec(url.pathname);
      if (match) {
        await route(req, res, url, match.slice(1));
        return;
      }
    }
    sendJson(res, 404, { error: `no such page: ${url.pathname}` });
  };
  server.listen(Number(listen.slice(colon + 1)), host);
  await Promise.race([
    once(server, "listening"),
    once(server, "error").then(([err]) => {
      const code = (err as NodeJS.ErrnoException).code;
      throw new InvalidArgumentError(
        code === "EADDRINUSE"
          ? `cannot serve HTTP on ${listen}: the address is in use (give another with --http HOST:PORT, or --http off)`
          : `cannot serve HTTP on ${listen}: ${(err as Error).message}`,
      );
    }),
  ]);
  const bound = server.address() as { address: string; port: number };
  return {
    server,
    address: `${bound.address.includes(":") ? `[${bound.address}]` : bound.address}:${bound.port}`,
    async close() {
      server.closeAllConnections(); // live-update streams never end by themselves
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Whether a Host header names a loopback address or localhost (with any port). */
function isLoopbackHost(header: string | undefined): boolean {
  if (header === undefined) return false;
  const hostname = header.startsWith("[")
    ? header.slice(1, header.indexOf("]"))
    : header.replace(/:\d*$/, "");
  return isLoopback(hostname);
}

/** 200 and SERVING, or 503 and NOT_SERVING: what the gRPC health service says, for HTTP checks. */
export function sendHealth(res: ServerResponse, health: Health): void {
  const serving = health.isServing();
  sendJson(res, serving ? 200 : 503, { status: serving ? "SERVING" : "NOT_SERVING" });
}

export function sendJson(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(text),
    "Cache-Control": "no-store",
  });
  res.end(text);
}

export function sendText(
  res: ServerResponse,
  code: number,
  contentType: string,
  body: string | Buffer,
): void {
  res.writeHead(code, { "Content-Type": contentType, "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}

/** A query parameter that must be a positive integer when given; undefined when not. */
export function positiveIntParam(url: URL, name: string): number | undefined {
  const value = url.searchParams.get(name);
  if (value === null || value === "") return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
    throw new InvalidArgumentError(`${name} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}
