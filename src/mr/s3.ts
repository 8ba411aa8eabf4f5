/**
 * Object storage: `s3://bucket/key` paths, read and written with the AWS SDK against S3 or any
 * S3-compatible store (MinIO, Ceph RGW, R2, B2). Credentials and region come the AWS way (the
 * SDK's default chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, instance
 * roles; AWS_REGION); an endpoint of another store comes from `--s3-endpoint` or
 * MR_S3_ENDPOINT, and is addressed path-style. Credentials are never logged nor stored.
 *
 * This module holds the requests and what their failures mean; the paths themselves are in
 * s3Uri.ts (which does not load the SDK), the commit protocol of an S3 output in s3Output.ts.
 */
import {
  AbortMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { open } from "node:fs/promises";
import { InvalidArgumentError, UnavailableError, toError } from "../errors.js";
import { parseS3Uri, s3Uri, type S3Location, type S3Options } from "./s3Uri.js";

// The SDK is pinned to the last minor that supports Node 20 (see README): its notice that later
// ones will not is no news to a user, and would be printed by every worker.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

/** Attempts per request: throttling (503 SlowDown) and dropped connections are retried with backoff. */
const MAX_ATTEMPTS = 5;

const clients = new Map<string, S3Client>();

/** One client per endpoint in a process (or task thread): it holds the connection pool. */
export function s3Client(options: S3Options): S3Client {
  const id = options.endpoint ?? "";
  let client = clients.get(id);
  if (!client) {
    client = new S3Client({
      ...(options.endpoint ? { endpoint: options.endpoint, forcePathStyle: true } : {}),
      // A store of one's own has no region; AWS's needs one, from the environment or a profile.
      region:
        process.env.AWS_REGION ??
        process.env.AWS_DEFAULT_REGION ??
        (options.endpoint ? "us-east-1" : undefined),
      maxAttempts: MAX_ATTEMPTS,
      retryMode: "standard",
      requestHandler: { connectionTimeout: 5000, requestTimeout: 120_000 },
    });
    clients.set(id, client);
  }
  return client;
}

/** What kind of failure a store's error is, for the one line a user reads. */
type S3Failure = "no-bucket" | "no-key" | "denied" | "unreachable" | "no-credentials" | "other";

function failureOf(err: unknown): S3Failure {
  const e = err as { name?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  const name = e.name ?? "";
  if (name === "NoSuchBucket") return "no-bucket";
  if (name === "NoSuchKey" || name === "NotFound") return "no-key";
  if (
    ["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"].includes(name) ||
    e.$metadata?.httpStatusCode === 403
  ) {
    return "denied";
  }
  if (name === "CredentialsProviderError") return "no-credentials";
  if (
    ["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH"].includes(
      e.code ?? "",
    ) ||
    name === "TimeoutError"
  ) {
    return "unreachable";
  }
  return "other";
}

/**
 * A store's failure as one line that says what to do: `what` names the request's object, such
 * as "input s3://logs/2026/". Missing buckets and keys and denied requests are the user's to
 * fix (InvalidArgumentError); a store out of reach may come back (UnavailableError).
 */
export function explainS3Error(err: unknown, what: string, options: S3Options, bucket?: string): Error {
  const store = options.endpoint ?? "AWS S3";
  const message = firstLine(toError(err).message);
  switch (failureOf(err)) {
    case "no-bucket":
      return new InvalidArgumentError(
        `${what}: no such bucket${bucket ? ` ${bucket}` : ""} at ${store} (check the bucket's name, and --s3-endpoint or MR_S3_ENDPOINT)`,
        { cause: err },
      );
    case "no-key":
      return new InvalidArgumentError(
        `${what}: no such key (check the path; a prefix of several objects ends with /)`,
        { cause: err },
      );
    case "denied":
      return new InvalidArgumentError(
        `${what}: access denied by ${store}: ${message} (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, and what they may do on the bucket)`,
        { cause: err },
      );
    case "no-credentials":
      return new InvalidArgumentError(
        `${what}: no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)`,
        { cause: err },
      );
    case "unreachable":
      return new UnavailableError(
        `${what}: cannot reach the object store at ${store}: ${message} (start it, or check --s3-endpoint or MR_S3_ENDPOINT)`,
        { cause: err },
      );
    default:
      return new Error(`${what}: ${store} answered ${errorName(err)}: ${message}`, { cause: err });
  }
}

function errorName(err: unknown): string {
  return err instanceof S3ServiceException ? err.name : toError(err).name;
}

function firstLine(text: string): string {
  return text.split("\n", 1)[0]!.slice(0, 300);
}

/** True for an object store's answer that a key is not there (as opposed to any other failure). */
export function isNotFound(err: unknown): boolean {
  return failureOf(err) === "no-key";
}

/** Sends a request, its failure explained as explainS3Error does. */
export async function s3Send<T>(
  options: S3Options,
  what: string,
  bucket: string,
  send: (client: S3Client) => Promise<T>,
): Promise<T> {
  try {
    return await send(s3Client(options));
  } catch (err) {
    throw explainS3Error(err, what, options, bucket);
  }
}

/** An object: its key and size. */
export interface S3Object {
  key: string;
  size: number;
}

/**
 * The objects of an input: the object `key` itself, or, for a key that ends with `/` or that
 * names no object, every object directly under it as a directory's files (but for names that
 * start with `.` or `_`, as Hadoop skips them), sorted by key. Stops listing past `limit`.
 */
export async function listInputObjects(uri: string, options: S3Options, limit: number): Promise<S3Object[]> {
  const { bucket, key } = parseS3Uri(uri);
  if (key !== "" && !key.endsWith("/")) {
    try {
      const head = await s3Client(options).send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return [{ key, size: head.ContentLength ?? 0 }];
    } catch (err) {
      // A HEAD cannot tell a missing key from a missing bucket: the listing below will.
      if (!isNotFound(err)) throw explainS3Error(err, `input ${uri}`, options, bucket);
    }
    const under = await listObjects({ bucket, key: `${key}/` }, options, `input ${uri}`, limit);
    if (under.length === 0) throw explainS3Error({ name: "NoSuchKey" }, `input ${uri}`, options);
    return under;
  }
  return listObjects({ bucket, key }, options, `input ${uri}`, limit);
}

/** The objects directly under a prefix, but for hidden and `_` names; at most `limit` + 1. */
async function listObjects(
  prefix: S3Location,
  options: S3Options,
  what: string,
  limit: number,
): Promise<S3Object[]> {
  const objects: S3Object[] = [];
  for await (const page of listPages(prefix, options, what, { directly: true })) {
    for (const object of page) {
      const name = object.key.slice(prefix.key.length);
      if (name === "" || name.startsWith(".") || name.startsWith("_")) continue;
      objects.push(object);
      if (objects.length > limit) return objects;
    }
  }
  return objects.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** Every key under a prefix, in pages of up to 1000 as the store lists them; one page of `maxKeys`, if given. */
export async function* listKeys(
  prefix: S3Location,
  options: S3Options,
  what: string,
  maxKeys?: number,
): AsyncGenerator<string[]> {
  for await (const page of listPages(prefix, options, what, { maxKeys })) {
    yield page.map(({ key }) => key);
  }
}

/** The objects under a prefix (`directly`: not under a further `/`), page by page. */
async function* listPages(
  prefix: S3Location,
  options: S3Options,
  what: string,
  { directly = false, maxKeys }: { directly?: boolean; maxKeys?: number },
): AsyncGenerator<S3Object[]> {
  let token: string | undefined;
  do {
    const page = await s3Send(options, what, prefix.bucket, (client) =>
      client.send(
        new ListObjectsV2Command({
          Bucket: prefix.bucket,
          Prefix: prefix.key,
          Delimiter: directly ? "/" : undefined,
          ContinuationToken: token,
          MaxKeys: maxKeys,
        }),
      ),
    );
    yield (page.Contents ?? []).map(({ Key, Size }) => ({ key: Key!, size: Size ?? 0 }));
    token = page.IsTruncated && maxKeys === undefined ? page.NextContinuationToken : undefined;
  } while (token);
}

/**
 * Reads an object's bytes from a position on, as readRangeBlocks reads a file: ranged GETs of
 * up to CHUNK_BYTES, the next one on its way while the last is read. `end` is where the reader
 * expects to stop, near enough: past it, reads are small, since only the rest of a line is
 * wanted there.
 */
export class S3RangeReader {
  static readonly CHUNK_BYTES = 8 << 20;
  /** Past `end`, a line's tail: usually a few bytes. */
  private static readonly TAIL_BYTES = 64 << 10;

  private chunk: { start: number; data: Uint8Array } | undefined;
  private next: { start: number; data: Promise<Uint8Array> } | undefined;
  /** Where the object ends, once a GET has come back short. */
  private size = Infinity;
  private readonly location: S3Location;

  constructor(
    private readonly uri: string,
    private readonly end: number,
    private readonly options: S3Options,
    private readonly signal?: AbortSignal,
  ) {
    this.location = parseS3Uri(uri);
  }

  /** Copies bytes from `position` into `buffer` at `offset`; 0 at the object's end. */
  async read(buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
    let chunk = this.chunk;
    if (!chunk || position < chunk.start || position >= chunk.start + chunk.data.length) {
      if (position >= this.size) return 0;
      const fetched =
        this.next?.start === position ? this.next : { start: position, data: this.get(position) };
      this.next = undefined;
      chunk = this.chunk = { start: position, data: await fetched.data };
      if (chunk.data.length === 0) return 0;
      const after = position + chunk.data.length;
      // Read ahead only while the range's own bytes go on: its last line's tail is small.
      if (after < this.end && after < this.size) this.next = { start: after, data: this.get(after) };
    }
    const from = position - chunk.start;
    const count = Math.min(length, chunk.data.length - from);
    buffer.set(chunk.data.subarray(from, from + count), offset);
    return count;
  }

  /** Holds nothing open: a read-ahead still on its way is left to settle, unread. */
  close(): void {
    this.chunk = this.next = undefined;
  }

  private get(start: number): Promise<Uint8Array> {
    const bytes =
      start < this.end
        ? Math.min(S3RangeReader.CHUNK_BYTES, this.end - start + S3RangeReader.TAIL_BYTES)
        : S3RangeReader.TAIL_BYTES;
    const { bucket, key } = this.location;
    const request = s3Client(this.options)
      .send(
        new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${start}-${start + bytes - 1}` }),
        { abortSignal: this.signal },
      )
      .then((reply) => reply.Body!.transformToByteArray())
      .then((data) => {
        if (data.length < bytes) this.size = Math.min(this.size, start + data.length); // the end
        return data;
      })
      .catch((err: unknown) => {
        // A range that starts at the end of the object: nothing more to read.
        if ((err as { name?: string }).name === "InvalidRange") return new Uint8Array(0);
        throw explainS3Error(err, `reading ${this.uri}`, this.options, bucket);
      });
    request.catch(() => undefined); // a read-ahead nobody waits for must not be unhandled
    return request;
  }
}

/** A multipart upload that was never completed: readers cannot see it. */
export interface PendingUpload {
  uploadId: string;
  /** The ETag of each part, part 1 first. */
  etags: string[];
  bytes: number;
}

/** Parts of 16 MiB (S3's least is 5 MiB), more for files past 160 GB: at most 10,000 parts. */
function partBytes(size: number): number {
  return Math.max(16 << 20, Math.ceil(size / 10_000));
}

/** Parts sent at once. */
const PARALLEL_PARTS = 4;

/**
 * Uploads a local file to `target` as a multipart upload that it does not complete (Hadoop's
 * magic committer): the object appears only when the driver completes the upload, so an
 * attempt that is never committed shows nothing. On failure the upload is aborted.
 */
export async function uploadPending(
  path: string,
  target: S3Location,
  options: S3Options,
  signal?: AbortSignal,
): Promise<PendingUpload> {
  const what = `writing ${s3Uri(target)}`;
  const { bucket, key } = target;
  const created = await s3Send(options, what, bucket, (client) =>
    client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }), { abortSignal: signal }),
  );
  const uploadId = created.UploadId!;
  const file = await open(path, "r");
  try {
    const size = (await file.stat()).size;
    const partSize = partBytes(size);
    const parts = Math.max(1, Math.ceil(size / partSize)); // an empty output is one empty part
    const etags: string[] = new Array(parts);
    let next = 0;
    const sendParts = async (): Promise<void> => {
      while (next < parts) {
        const part = next++;
        const start = part * partSize;
        const body = Buffer.allocUnsafe(Math.min(partSize, size - start));
        await file.read(body, 0, body.length, start);
        const sent = await s3Send(options, what, bucket, (client) =>
          client.send(
            new UploadPartCommand({
              Bucket: bucket,
              Key: key,
              UploadId: uploadId,
              PartNumber: part + 1,
              Body: body,
              ContentLength: body.length,
            }),
            { abortSignal: signal },
          ),
        );
        etags[part] = sent.ETag!;
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_PARTS, parts) }, sendParts));
    return { uploadId, etags, bytes: size };
  } catch (err) {
    await abortUpload(target, uploadId, options).catch(() => undefined);
    throw err;
  } finally {
    await file.close();
  }
}

/** Aborts a multipart upload; one already gone (completed or aborted) is fine. */
export async function abortUpload(target: S3Location, uploadId: string, options: S3Options): Promise<void> {
  try {
    await s3Client(options).send(
      new AbortMultipartUploadCommand({ Bucket: target.bucket, Key: target.key, UploadId: uploadId }),
    );
  } catch (err) {
    if ((err as { name?: string }).name === "NoSuchUpload") return;
    throw explainS3Error(err, `aborting an upload to ${s3Uri(target)}`, options, target.bucket);
  }
}

/**
 * The multipart uploads under a prefix that were never completed nor aborted, or undefined if
 * the store cannot list them (s3rver cannot, for one).
 */
export async function listPendingUploads(
  prefix: S3Location,
  options: S3Options,
): Promise<{ key: string; uploadId: string }[] | undefined> {
  const uploads: { key: string; uploadId: string }[] = [];
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  do {
    let page;
    try {
      page = await s3Client(options).send(
        new ListMultipartUploadsCommand({
          Bucket: prefix.bucket,
          Prefix: prefix.key,
          KeyMarker: keyMarker,
          UploadIdMarker: uploadIdMarker,
        }),
      );
    } catch (err) {
      if ((err as { name?: string }).name === "NotImplemented") return undefined;
      throw explainS3Error(err, `listing the uploads under ${s3Uri(prefix)}`, options, prefix.bucket);
    }
    for (const { Key, UploadId } of page.Uploads ?? []) uploads.push({ key: Key!, uploadId: UploadId! });
    keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
    uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
  } while (keyMarker !== undefined);
  return uploads;
}
