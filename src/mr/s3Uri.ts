/**
 * `s3://bucket/key` paths and where their requests go: what needs no AWS SDK, so that a process
 * or task thread that reads no object never loads it (its load costs about 300 ms of CPU).
 */
import { InvalidArgumentError } from "../errors.js";

const S3_SCHEME = "s3://";

/** Where requests go: the store's endpoint, or AWS's own for the region when unset. */
export interface S3Options {
  /** An S3-compatible store's URL, such as http://127.0.0.1:9000; path-style addressing. */
  endpoint?: string;
}

/** An endpoint must be an http(s) URL: refused at once, rather than at the first request. */
export function checkEndpoint(endpoint: string): string {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new InvalidArgumentError(
      `--s3-endpoint: ${JSON.stringify(endpoint)} is not a URL (give one such as http://127.0.0.1:9000)`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new InvalidArgumentError(`--s3-endpoint: ${endpoint} must start with http:// or https://`);
  }
  return endpoint;
}

/** A bucket and a key (or a prefix of keys). */
export interface S3Location {
  bucket: string;
  key: string;
}

export function isS3Uri(path: string): boolean {
  return path.startsWith(S3_SCHEME);
}

/** `s3://bucket/key` as a bucket and a key; the key may be empty or end in `/`. */
export function parseS3Uri(uri: string): S3Location {
  const rest = uri.slice(S3_SCHEME.length);
  const slash = rest.indexOf("/");
  const bucket = slash === -1 ? rest : rest.slice(0, slash);
  const key = slash === -1 ? "" : rest.slice(slash + 1);
  // S3's own rule for bucket names: 3 to 63 lower-case letters, digits, dots and hyphens.
  if (!isS3Uri(uri) || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new InvalidArgumentError(
      `${uri} is not an S3 path (write s3://bucket/key, with a bucket name of 3 to 63 lower-case letters, digits, dots and hyphens)`,
    );
  }
  return { bucket, key };
}

export function s3Uri({ bucket, key }: S3Location): string {
  return `${S3_SCHEME}${bucket}/${key}`;
}
