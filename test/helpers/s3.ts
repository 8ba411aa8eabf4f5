/**
 * A real S3-compatible HTTP server on loopback for tests: s3rver, in this process, with its
 * files in a temporary directory, spoken to by the real AWS SDK.
 *
 * s3rver lacks two operations the commit protocol uses, ListMultipartUploads and
 * AbortMultipartUpload: they are added here, in front of it, over s3rver's own store of
 * uploads (`<dir>/<bucket>/._S3rver_uploads/<uploadId>/key`), so that a test can see that no
 * upload is left. The same layer counts requests by operation, and injects faults: 503 SlowDown
 * for the next requests, and CompleteMultipartUpload held until a test lets it go.
 */
import {
  CreateBucketCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import S3rver from "s3rver";

/** Of a Koa context, what the layer in front of s3rver reads and sets. */
interface Context {
  method: string;
  path: string;
  query: Record<string, string | string[] | undefined>;
  status: number;
  type: string;
  body: unknown;
}
type Next = () => Promise<void>;

export const S3_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

/** What each request is, as S3's API names it. */
function operationOf(ctx: Context): string {
  const { method, query } = ctx;
  const segments = ctx.path.split("/").filter(Boolean);
  const onBucket = segments.length === 1;
  if (method === "HEAD") return onBucket ? "HeadBucket" : "HeadObject";
  if (method === "GET" && "uploads" in query) return "ListMultipartUploads";
  if (method === "GET") return onBucket ? "ListObjects" : "GetObject";
  if (method === "POST" && "uploads" in query) return "CreateMultipartUpload";
  if (method === "POST" && "uploadId" in query) return "CompleteMultipartUpload";
  if (method === "POST" && "delete" in query) return "DeleteObjects";
  if (method === "PUT" && "uploadId" in query) return "UploadPart";
  if (method === "PUT") return onBucket ? "CreateBucket" : "PutObject";
  if (method === "DELETE" && "uploadId" in query) return "AbortMultipartUpload";
  return `${method} ${onBucket ? "bucket" : "object"}`;
}

export interface TestS3 {
  endpoint: string;
  /** The environment a driver, a worker or `mr` needs to use this store. */
  env: NodeJS.ProcessEnv;
  client: S3Client;
  /** Requests by operation since the start, or the last `resetCounts`. */
  counts: Map<string, number>;
  /** Successful CompleteMultipartUploads, by key. */
  completed: Map<string, number>;
  resetCounts(): void;
  /**
   * The next `n` requests (of `operation` only, if given) fail: with 503 SlowDown, or the
   * status and code given.
   */
  failNext(n: number, how?: { operation?: string; status?: number; code?: string }): void;
  /**
   * Holds CompleteMultipartUploads from now on: `arrived` resolves at the `nth` (1-based);
   * `release` lets every held one go on and stops holding.
   */
  holdCompletes(nth: number): { arrived: Promise<void>; release(): void };
  createBucket(bucket: string): Promise<void>;
  put(bucket: string, key: string, body: string | Buffer): Promise<void>;
  get(bucket: string, key: string): Promise<string>;
  /** Every key in the bucket under `prefix`. */
  keys(bucket: string, prefix: string): Promise<string[]>;
  /** The keys of the multipart uploads neither completed nor aborted. */
  pendingUploads(bucket: string): string[];
  close(): Promise<void>;
}

export async function startS3(): Promise<TestS3> {
  const dir = mkdtempSync(join(tmpdir(), "mr-s3-")); // removed by close

  const server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory: dir });
  const counts = new Map<string, number>();
  const completed = new Map<string, number>();
  let failures = 0;
  let failure: { operation?: string; status?: number; code?: string } = {};
  let hold: { nth: number; seen: number; arrived: () => void; released: Promise<void> } | undefined;
  const uploadsDir = (bucket: string): string => join(dir, bucket, "._S3rver_uploads");

  const extra = async (ctx: Context, next: Next): Promise<void> => {
    const operation = operationOf(ctx);
    counts.set(operation, (counts.get(operation) ?? 0) + 1);
    if (failures > 0 && (failure.operation === undefined || failure.operation === operation)) {
      failures--;
      ctx.status = failure.status ?? 503;
      ctx.type = "application/xml";
      ctx.body = errorXml(failure.code ?? "SlowDown", "Injected by the test.");
      return;
    }
    const [bucket, ...rest] = ctx.path.split("/").filter(Boolean).map(decodeURIComponent);
    if (operation === "ListMultipartUploads") {
      const prefix = String(ctx.query.prefix ?? "");
      const uploads = readUploads(uploadsDir(bucket!)).filter(({ key }) => key.startsWith(prefix));
      ctx.type = "application/xml";
      ctx.body =
        `<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
        `<Bucket>${bucket}</Bucket><Prefix>${escapeXml(prefix)}</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>` +
        uploads
          .map(
            ({ key, uploadId }) =>
              `<Upload><Key>${escapeXml(key)}</Key><UploadId>${uploadId}</UploadId></Upload>`,
          )
          .join("") +
        `</ListMultipartUploadsResult>`;
      return;
    }
    if (operation === "AbortMultipartUpload") {
      const upload = join(uploadsDir(bucket!), String(ctx.query.uploadId));
      if (!existsSync(upload)) {
        ctx.status = 404;
        ctx.type = "application/xml";
        ctx.body = errorXml("NoSuchUpload", "The specified upload does not exist.");
        return;
      }
      rmSync(upload, { recursive: true, force: true });
      ctx.status = 204;
      return;
    }
    if (operation === "CompleteMultipartUpload" && hold) {
      const held = hold;
      if (++held.seen === held.nth) held.arrived();
      if (held.seen >= held.nth) await held.released;
    }
    await next();
    if (operation === "CompleteMultipartUpload" && ctx.status === 200) {
      const key = rest.join("/");
      completed.set(key, (completed.get(key) ?? 0) + 1);
    }
  };
  (server as unknown as { middleware: unknown[] }).middleware.unshift(extra);
  const { port } = (await server.run()) as { port: number };
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({
    endpoint,
    forcePathStyle: true,
    region: "us-east-1",
    credentials: S3_CREDENTIALS,
  });
  return {
    endpoint,
    env: {
      MR_S3_ENDPOINT: endpoint,
      AWS_ACCESS_KEY_ID: S3_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3_CREDENTIALS.secretAccessKey,
      AWS_REGION: "us-east-1",
    },
    client,
    counts,
    completed,
    resetCounts: () => {
      counts.clear();
      completed.clear();
    },
    failNext: (n, how = {}) => {
      failures = n;
      failure = how;
    },
    holdCompletes: (nth) => {
      let arrived!: () => void;
      let release!: () => void;
      const arrival = new Promise<void>((resolve) => (arrived = resolve));
      const released = new Promise<void>((resolve) => (release = resolve));
      hold = { nth, seen: 0, arrived, released };
      return {
        arrived: arrival,
        release: () => {
          hold = undefined;
          release();
        },
      };
    },
    createBucket: async (bucket) => {
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
    },
    put: async (bucket, key, body) => {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    },
    get: async (bucket, key) => {
      const reply = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return reply.Body!.transformToString();
    },
    keys: async (bucket, prefix) => {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const page = await client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
        );
        for (const { Key } of page.Contents ?? []) keys.push(Key!);
        token = page.NextContinuationToken;
      } while (token);
      return keys.sort();
    },
    pendingUploads: (bucket) => readUploads(uploadsDir(bucket)).map(({ key }) => key),
    close: async () => {
      client.destroy();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function readUploads(dir: string): { key: string; uploadId: string }[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((uploadId) => existsSync(join(dir, uploadId, "key")))
    .map((uploadId) => ({ uploadId, key: readFileSync(join(dir, uploadId, "key"), "utf8") }));
}

function errorXml(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
