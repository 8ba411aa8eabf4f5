/**
 * The commit protocol of an output in object storage, where there is no rename: Hadoop's
 * "magic" committer, with the driver's fencing in SQLite.
 *
 * - A reduce attempt uploads its part to the part's final key as a multipart upload that it
 *   does not complete (s3.ts uploadPending): nothing is visible, whatever the attempt does next.
 * - Committing the attempt records its upload in SQLite, in the transaction that commits the
 *   attempt (store/uploads.ts): the same fencing as a file's rename, so a zombie or a backup
 *   that lost can report its upload, and is refused.
 * - Committing the job, once it has succeeded, completes each committed upload (each part
 *   appears whole, at once), aborts every other upload under the prefix, and writes
 *   `_SUCCESS` last, once (If-None-Match: *), as a JSON list of the parts.
 * - A job that fails or is cancelled aborts every upload under its prefix: no part appears.
 *
 * Either end runs again after a driver restart until it is done; each step may run twice.
 */
import {
  CompleteMultipartUploadCommand,
  DeleteObjectsCommand,
  HeadObjectCommand,
  PutObjectCommand,
} from "@aws-sdk/client-s3";
import { InvalidArgumentError } from "../errors.js";
import { partFileName, SUCCESS_FILE } from "./output.js";
import { abortUpload, isNotFound, listKeys, listPendingUploads, s3Send } from "./s3.js";
import { parseS3Uri, s3Uri, type S3Location, type S3Options } from "./s3Uri.js";

/**
 * An output as the job keeps it, `s3://bucket/prefix` without a trailing `/`; refused at the
 * bucket's root, which `--overwrite` would empty.
 */
export function normalS3Output(uri: string): string {
  const { bucket, key } = parseS3Uri(uri);
  const prefix = key.replace(/\/+$/, "");
  if (prefix === "") {
    throw new InvalidArgumentError(
      `output ${uri}: give a prefix inside the bucket, such as s3://${bucket}/wordcount`,
    );
  }
  return s3Uri({ bucket, key: prefix });
}

/** The keys of the output's objects start with this. */
function outputPrefix(output: string): S3Location {
  const { bucket, key } = parseS3Uri(output);
  return { bucket, key: `${key}/` };
}

/** Where partition `r` of an output goes. */
export function partLocation(output: string, r: number): S3Location {
  const { bucket, key } = outputPrefix(output);
  return { bucket, key: key + partFileName(r) };
}

/**
 * Refuses an output whose bucket is missing or out of reach, or that already holds objects,
 * unless `overwrite`, as checkOutputDir refuses a directory. Looks, and changes nothing.
 */
export async function checkS3Output(output: string, overwrite: boolean, options: S3Options): Promise<void> {
  const prefix = outputPrefix(output);
  const keys = await listKeys(prefix, options, `output ${output}`, 4).next();
  const names = (keys.value ?? []).map((key: string) => key.slice(prefix.key.length));
  if (overwrite || names.length === 0) return;
  const held = names.includes(SUCCESS_FILE) ? "a finished job's output" : names.slice(0, 3).join(", ");
  throw new InvalidArgumentError(
    `output ${output} is not empty: it holds ${held} (choose another --output, or give --overwrite to empty it first)`,
  );
}

/**
 * Empties an output for `--overwrite`: `_SUCCESS` first, so that no reader takes what is left
 * for a finished output, then every other object and every upload under the prefix.
 */
export async function emptyS3Output(output: string, options: S3Options): Promise<void> {
  const prefix = outputPrefix(output);
  const what = `emptying ${output}`;
  await deleteKeys(prefix.bucket, [prefix.key + SUCCESS_FILE], options, what);
  for await (const keys of listKeys(prefix, options, what)) {
    await deleteKeys(prefix.bucket, keys, options, what);
  }
  await abortUploads(output, new Set(), options);
}

async function deleteKeys(bucket: string, keys: string[], options: S3Options, what: string): Promise<void> {
  if (keys.length === 0) return;
  const reply = await s3Send(options, what, bucket, (client) =>
    client.send(
      new DeleteObjectsCommand({
        Bucket: bucket,
        Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true },
      }),
    ),
  );
  const failed = reply.Errors?.[0];
  if (failed) throw new Error(`${what}: could not delete ${failed.Key}: ${failed.Code} ${failed.Message}`);
}

/** A committed reduce's upload, as store/uploads.ts keeps it. */
export interface CommittedUpload {
  partition: number;
  uploadId: string;
  etags: string[];
  /** Set once the upload was completed: its part is in place. */
  completed: boolean;
}

/** What a job commit reports as it goes: each part completed, and a store that cannot list uploads. */
export interface S3CommitHooks {
  completed(partition: number): void;
  /** The store cannot list uploads: those of attempts killed mid-upload could not be looked for. */
  cannotList?(): void;
}

/**
 * Commits a job that succeeded: completes the committed upload of each of its `reducers`
 * partitions that is not yet complete, aborts every other upload under the prefix, then writes
 * `_SUCCESS`. Run again after a crash part way, it does the rest.
 */
export async function commitS3Output(
  output: string,
  reducers: number,
  committed: readonly CommittedUpload[],
  /** Uploads of attempts that were committed, then replaced. */
  replaced: readonly { uploadId: string; partition: number }[],
  options: S3Options,
  hooks: S3CommitHooks,
): Promise<void> {
  const byPartition = new Map(committed.map((upload) => [upload.partition, upload]));
  const parts: string[] = [];
  for (let r = 0; r < reducers; r++) {
    const upload = byPartition.get(r);
    if (!upload) throw new Error(`output ${output}: partition ${r} has no committed upload`);
    const target = partLocation(output, r);
    if (!upload.completed) {
      await completeUpload(target, upload, options);
      hooks.completed(r);
    }
    parts.push(partFileName(r));
  }
  for (const { uploadId, partition } of replaced) {
    await abortUpload(partLocation(output, partition), uploadId, options);
  }
  if (!(await abortUploads(output, new Set(committed.map(({ uploadId }) => uploadId)), options))) {
    hooks.cannotList?.();
  }
  const prefix = outputPrefix(output);
  const manifest = JSON.stringify({ committer: "mr", parts }) + "\n";
  await s3Send(options, `writing ${output}/${SUCCESS_FILE}`, prefix.bucket, async (client) => {
    try {
      await client.send(
        new PutObjectCommand({
          Bucket: prefix.bucket,
          Key: prefix.key + SUCCESS_FILE,
          Body: manifest,
          ContentType: "application/json",
          IfNoneMatch: "*",
        }),
      );
    } catch (err) {
      // Written by an earlier run of this commit, which stopped before it was marked done.
      if ((err as { name?: string }).name !== "PreconditionFailed") throw err;
    }
  });
}

/**
 * Completes an upload. One completed earlier, by a commit that stopped before it was marked
 * so, is gone from the store's uploads: then the part itself must be there.
 */
async function completeUpload(
  target: S3Location,
  upload: CommittedUpload,
  options: S3Options,
): Promise<void> {
  const what = `completing ${s3Uri(target)}`;
  try {
    await s3Send(options, what, target.bucket, (client) =>
      client.send(
        new CompleteMultipartUploadCommand({
          Bucket: target.bucket,
          Key: target.key,
          UploadId: upload.uploadId,
          MultipartUpload: { Parts: upload.etags.map((ETag, i) => ({ PartNumber: i + 1, ETag })) },
        }),
      ),
    );
  } catch (err) {
    const there = await s3Send(options, what, target.bucket, (client) =>
      client.send(new HeadObjectCommand({ Bucket: target.bucket, Key: target.key })),
    ).then(
      () => true,
      (head: unknown) => (isNotFound((head as Error).cause) ? false : Promise.reject(err)),
    );
    if (!there) throw err;
  }
}

/**
 * Commits a job that did not succeed: aborts every upload it made, those it knows of and any
 * under its prefix. No part appears.
 */
export async function abortS3Output(
  output: string,
  known: readonly { uploadId: string; partition: number }[],
  options: S3Options,
): Promise<boolean> {
  for (const { uploadId, partition } of known) {
    await abortUpload(partLocation(output, partition), uploadId, options);
  }
  return abortUploads(output, new Set(), options);
}

/**
 * Aborts every upload under the output's prefix but those in `keep`. Returns false if the store
 * cannot list uploads.
 */
async function abortUploads(output: string, keep: ReadonlySet<string>, options: S3Options): Promise<boolean> {
  const prefix = outputPrefix(output);
  const pending = await listPendingUploads(prefix, options);
  if (!pending) return false;
  for (const { key, uploadId } of pending) {
    if (!keep.has(uploadId)) await abortUpload({ bucket: prefix.bucket, key }, uploadId, options);
  }
  return true;
}
