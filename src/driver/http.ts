/**
 * The driver's HTTP side: the web UI (`ui/`, shipped in the package: nothing is fetched from
 * elsewhere), the JSON API under `/api/v1/` in the shapes of the CLI's `--json`, a job's live
 * updates as Server-Sent Events, `/metrics` for Prometheus and `/healthz`. Read-only.
 */
import { readdirSync, readFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import { InvalidArgumentError, NotFoundError } from "../errors.js";
import type { Health } from "../health.js";
import {
  positiveIntParam,
  sendHealth,
  sendJson,
  sendText,
  startHttpServer,
  type HttpServer,
  type Route,
} from "../http.js";
import { jobDetailJson, jobJson, workerJson } from "../json.js";
import type { Db } from "../store/db.js";
import { getJob } from "../store/jobs.js";
import type { JobWatches } from "./jobWatch.js";
import type { DriverMetrics } from "./metrics.js";
import { jobDetailMessage, listJobsPage, listWorkersPage } from "./views.js";

/** The UI's files, at the package root beside `src/` and `dist/`. */
const UI_DIR = fileURLToPath(new URL("../../ui/", import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
};

/** A job's live updates: `job` events, each a snapshot as `mr jobs list --json` has it, then `end`. */
const EVENT_STREAM_HEADERS = {
  "Content-Type": "text/event-stream; charset=utf-8",
  "Cache-Control": "no-store",
  Connection: "keep-alive",
};

export interface DriverHttpDeps {
  db: Db;
  watches: JobWatches;
  health: Health;
  metrics: DriverMetrics;
  log: Logger;
}

export async function startDriverHttp(listen: string, deps: DriverHttpDeps): Promise<HttpServer> {
  const { db, watches, health, metrics, log } = deps;
  // Read once: the set of files served is fixed, so no path from a request reaches the disk.
  const files = new Map(
    readdirSync(UI_DIR).map((name) => [
      name,
      { body: readFileSync(join(UI_DIR, name)), type: CONTENT_TYPES[extname(name)] },
    ]),
  );
  const page: Route = (_req, res) => sendFile(res, "index.html");
  const sendFile = (res: ServerResponse, name: string): void => {
    const file = files.get(name);
    if (file?.type === undefined) throw new NotFoundError(`no such file: /ui/${name}`);
    sendText(res, 200, file.type, file.body);
  };

  const routes: [RegExp, Route][] = [
    [/^\/(?:jobs(?:\/\d+)?|workers)?\/?$/, page],
    [/^\/ui\/([\w.-]+)$/, (_req, res, _url, [name]) => sendFile(res, name!)],
    [
      /^\/api\/v1\/jobs\/?$/,
      (_req, res, url) => {
        const reply = listJobsPage(db, {
          state: url.searchParams.get("state") ?? "",
          app: url.searchParams.get("app") ?? "",
          limit: positiveIntParam(url, "limit") ?? 0,
          pageToken: url.searchParams.get("page_token") ?? "",
        });
        sendJson(res, 200, { jobs: reply.jobs.map(jobJson), nextPageToken: reply.nextPageToken || null });
      },
    ],
    [
      /^\/api\/v1\/jobs\/([^/]+)\/?$/,
      (_req, res, _url, [id]) => sendJson(res, 200, jobDetailJson(jobDetailMessage(db, mustGetJob(db, id!)))),
    ],
    [
      /^\/api\/v1\/jobs\/([^/]+)\/watch$/,
      (req, res, _url, [id]) => {
        const job = mustGetJob(db, id!);
        const watch = watches.follow(job.id, req.socket.remoteAddress ?? "unknown", {
          write: (snapshot) => {
            if (!res.headersSent) res.writeHead(200, EVENT_STREAM_HEADERS);
            return res.write(`event: job\ndata: ${JSON.stringify(jobJson(snapshot))}\n\n`);
          },
          end: () => res.end("event: end\ndata: {}\n\n"),
        });
        res.on("drain", watch.drained);
        res.on("close", watch.close);
      },
    ],
    [
      /^\/api\/v1\/workers\/?$/,
      (_req, res, url) => {
        const all = url.searchParams.get("all");
        if (all !== null && all !== "true" && all !== "false") {
          throw new InvalidArgumentError(`all must be true or false, got ${JSON.stringify(all)}`);
        }
        const reply = listWorkersPage(db, {
          all: all === "true",
          limit: positiveIntParam(url, "limit") ?? 0,
          pageToken: url.searchParams.get("page_token") ?? "",
        });
        sendJson(res, 200, {
          workers: reply.workers.map(workerJson),
          nextPageToken: reply.nextPageToken || null,
        });
      },
    ],
    [
      /^\/metrics$/,
      async (_req, res) => sendText(res, 200, metrics.registry.contentType, await metrics.text()),
    ],
    [/^\/healthz$/, (_req, res) => sendHealth(res, health)],
  ];
  const server = await startHttpServer(listen, routes, log);
  return { address: server.address, close: () => server.close() };
}

function mustGetJob(db: Db, id: string) {
  if (!/^\d{1,15}$/.test(id) || Number(id) < 1) {
    throw new InvalidArgumentError(`a job id is a positive integer, got ${JSON.stringify(id)}`);
  }
  const job = getJob(db, Number(id));
  if (!job) throw new NotFoundError(`no job ${id}`);
  return job;
}
