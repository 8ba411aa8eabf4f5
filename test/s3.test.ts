/**
 * Inputs and outputs in object storage, against a real S3-compatible server on loopback
 * (s3rver, see helpers/s3.ts) with the real AWS SDK: reading splits with ranged GETs, the
 * commit protocol, and the errors a user sees. The driver's and workers' side, with real
 * processes, is in s3Cluster.test.ts.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { mockClient } from "aws-sdk-client-mock";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { validateSubmit } from "../src/driver/submitCheck.js";
import type * as pb from "../src/gen/mapreduce.js";
import { BUILTIN_APPS } from "../src/mr/apps/index.js";
import { runLocalJob } from "../src/mr/local.js";
import { s3Client, uploadPending } from "../src/mr/s3.js";
import { parseS3Uri } from "../src/mr/s3Uri.js";
import { commitS3Output, normalS3Output, partLocation } from "../src/mr/s3Output.js";
import { readRange, splitInputs } from "../src/mr/split.js";
import { Roots } from "../src/roots.js";
import { mr } from "./helpers/cluster.js";
import { partFiles, writeCorpus } from "./helpers/corpus.js";
import { startS3, type TestS3 } from "./helpers/s3.js";
import { tempDir } from "./helpers/tmp.js";

let s3: TestS3;
const BUCKET = "books";

beforeAll(async () => {
  s3 = await startS3();
  await s3.createBucket(BUCKET);
  Object.assign(process.env, s3.env); // the SDK's default chain reads the credentials from here
});

afterAll(async () => {
  await s3?.close();
});

const options = (): { endpoint: string } => ({ endpoint: s3.endpoint });

function submitRequest(inputs: string[], outputDir: string, overwrite = false): pb.SubmitJobRequest {
  return {
    app: "wordcount",
    inputs,
    outputDir,
    reducers: 3,
    splitSizeBytes: 0,
    params: {},
    overwrite,
    priority: 0,
    maxRunningTasks: 0,
    noSpeculation: false,
  };
}

const submit = (request: pb.SubmitJobRequest) =>
  validateSubmit(request, { defaultSplitSizeBytes: 1 << 20, s3Endpoint: s3.endpoint }, Roots.NONE, [
    "wordcount",
  ]);

describe("s3:// paths", () => {
  it("are a bucket and a key, and an output is a prefix, never a bucket's root", () => {
    expect(parseS3Uri("s3://logs/2026/12/")).toEqual({ bucket: "logs", key: "2026/12/" });
    expect(() => parseS3Uri("s3://A_b/key")).toThrow(/is not an S3 path.*bucket name of 3 to 63/);
    expect(normalS3Output("s3://logs/out/")).toBe("s3://logs/out");
    expect(() => normalS3Output("s3://logs/")).toThrow(
      /give a prefix inside the bucket, such as s3:\/\/logs\/wordcount/,
    );
  });
});

describe("reading a split from object storage", () => {
  it("gives every line once, as from the same bytes in a file, wherever the ranges cut", async () => {
    const dir = tempDir();
    // Lines of every length, one longer than a read-ahead's tail, CRLF, and no last newline.
    const lines: string[] = [];
    for (let i = 0; i < 3000; i++) lines.push(`line ${i} ${"x".repeat(i % 97)}${i % 5 === 0 ? "\r" : ""}`);
    lines.splice(1500, 0, "long ".repeat(30_000));
    const text = lines.join("\n");
    const file = join(dir, "lines.txt");
    writeFileSync(file, text);
    await s3.put(BUCKET, "lines/lines.txt", text);
    const size = Buffer.byteLength(text);
    for (const splitSize of [1000, 65_537, 150_000, size]) {
      const read = async (path: string): Promise<string[]> => {
        const seen: string[] = [];
        for (const split of splitInputs([{ path, size }], { splitSizeBytes: splitSize, openCostBytes: 0 })) {
          for (const range of split) {
            await readRange(range, (offset, line) => seen.push(`${offset}:${line}`), { s3: options() });
          }
        }
        return seen;
      };
      const fromStore = await read(`s3://${BUCKET}/lines/lines.txt`);
      expect(fromStore).toEqual(await read(file));
      expect(fromStore).toHaveLength(lines.length);
    }
  });

  it("waits out a store that throttles (503 SlowDown), inside the read", async () => {
    await s3.put(BUCKET, "slow/a.txt", "a b\nc\n");
    s3.resetCounts();
    s3.failNext(2);
    const seen: string[] = [];
    await readRange(
      { file: `s3://${BUCKET}/slow/a.txt`, start: 0, end: 6 },
      (_offset, line) => seen.push(line),
      {
        s3: options(),
      },
    );
    expect(seen).toEqual(["a b", "c"]);
    expect(s3.counts.get("GetObject")).toBe(3); // a short answer is the object's end: no GET past it
  });
});

describe("a job from s3:// to s3:// in one process (mr run --local)", () => {
  it("gives the output of the same job on files, and leaves only parts and _SUCCESS", async () => {
    const dir = tempDir();
    const inputs = writeCorpus(dir, { files: 3, bytes: 60_000, seed: 9 });
    for (const path of inputs) await s3.put(BUCKET, `corpus/${path.split("/").at(-1)}`, readFileSync(path));
    const job = { app: BUILTIN_APPS.wordcount!, params: {}, reducers: 3, splitSizeBytes: 20_000 };
    await runLocalJob({ ...job, inputs, outputDir: join(dir, "out") });
    const request = await submit(submitRequest([`s3://${BUCKET}/corpus/`], `s3://${BUCKET}/local-out`));
    expect(request.inputs.map(({ path }) => path)).toEqual(
      inputs.map((path) => `s3://${BUCKET}/corpus/${path.split("/").at(-1)}`),
    );
    s3.resetCounts();
    await runLocalJob({
      ...job,
      inputs: request.inputs.map(({ path }) => path),
      outputDir: request.outputDir,
      s3: options(),
    });
    const files = partFiles(join(dir, "out"));
    expect(await s3.keys(BUCKET, "local-out/")).toEqual([
      "local-out/_SUCCESS",
      ...Object.keys(files).map((name) => `local-out/${name}`),
    ]);
    for (const [name, text] of Object.entries(files))
      expect(await s3.get(BUCKET, `local-out/${name}`)).toBe(text);
    expect(JSON.parse(await s3.get(BUCKET, "local-out/_SUCCESS"))).toEqual({
      committer: "mr",
      parts: Object.keys(files),
    });
    expect(s3.pendingUploads(BUCKET)).toEqual([]);
    expect([...s3.completed.values()]).toEqual([1, 1, 1]);

    // Not again without --overwrite; with it, the old output goes first.
    await expect(
      submit(submitRequest([`s3://${BUCKET}/corpus/`], `s3://${BUCKET}/local-out`)),
    ).rejects.toThrow(
      /output s3:\/\/books\/local-out is not empty: it holds a finished job's output \(choose another --output, or give --overwrite/,
    );
    await s3.put(BUCKET, "local-out/stray.txt", "old");
    await runLocalJob({
      ...job,
      inputs: request.inputs.map(({ path }) => path),
      outputDir: request.outputDir,
      overwrite: true,
      s3: options(),
    });
    expect(await s3.keys(BUCKET, "local-out/")).toHaveLength(4);
  });
});

describe("a submit that names what is not in the store", () => {
  it("is refused with one line that says what to do", async () => {
    const refusal = async (inputs: string[], output = `s3://${BUCKET}/refused`): Promise<string> =>
      submit(submitRequest(inputs, output)).then(
        () => "accepted",
        (err: Error) => err.message,
      );
    expect(await refusal([`s3://no-such-bucket/x`])).toMatch(
      /^input s3:\/\/no-such-bucket\/x: no such bucket no-such-bucket at http:\/\/127\.0\.0\.1:\d+ \(check the bucket's name, and --s3-endpoint or MR_S3_ENDPOINT\)$/,
    );
    expect(await refusal([`s3://${BUCKET}/no/such/key.txt`])).toMatch(
      /^input s3:\/\/books\/no\/such\/key\.txt: no such key \(check the path; a prefix of several objects ends with \/\)$/,
    );
    expect(await refusal([`s3://${BUCKET}/empty-prefix/`])).toMatch(/holds no input files/);
    await s3.put(BUCKET, "one/a.txt", "a\n");
    expect(await refusal([`s3://${BUCKET}/one/a.txt`], "s3://no-such-bucket/out")).toMatch(
      /^output s3:\/\/no-such-bucket\/out: no such bucket no-such-bucket/,
    );
    expect(await refusal([`s3://${BUCKET}/one/`], `s3://${BUCKET}/one`)).toMatch(
      /is not empty: it holds a\.txt/,
    );
  });

  it("by `mr run`: wrong credentials, and a store that is down, exit 2 and 1 with one line each", async () => {
    const dir = tempDir();
    await s3.put(BUCKET, "cli/a.txt", "a\n");
    const args = [
      "run",
      "--app",
      "wordcount",
      "--reducers",
      "1",
      `s3://${BUCKET}/cli/a.txt`,
      "--output",
      join(dir, "out"),
    ];
    const wrongKey = await mr(args, { ...process.env, ...s3.env, AWS_ACCESS_KEY_ID: "NOT-A-KEY" });
    expect(wrongKey.code).toBe(2);
    expect(wrongKey.stderr.trim()).toMatch(
      /^mr: input s3:\/\/books\/cli\/a\.txt: access denied by http:\/\/127\.0\.0\.1:\d+: .*\(check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, and what they may do on the bucket\)$/,
    );
    const down = await mr(args, { ...process.env, ...s3.env, MR_S3_ENDPOINT: "http://127.0.0.1:1" });
    expect(down.code).not.toBe(0);
    expect(down.stderr.trim()).toMatch(
      /^mr: input s3:\/\/books\/cli\/a\.txt: cannot reach the object store at http:\/\/127\.0\.0\.1:1: .*\(start it, or check --s3-endpoint or MR_S3_ENDPOINT\)$/,
    );
    const badEndpoint = await mr([...args, "--s3-endpoint", "ftp://x"], { ...process.env, ...s3.env });
    expect(badEndpoint.code).toBe(2);
    expect(badEndpoint.stderr).toMatch(/--s3-endpoint: ftp:\/\/x must start with http:\/\/ or https:\/\//);
  });
});

describe("the commit protocol, at the level below s3rver (aws-sdk-client-mock)", () => {
  const output = "s3://bucket/out";
  const committed = [{ partition: 0, uploadId: "u0", etags: ['"e1"'], completed: false }];

  it("finishes a commit that a crash cut short: a completed part is found, and _SUCCESS written once", async () => {
    const client = s3Client({ endpoint: "http://127.0.0.1:9" });
    const mock = mockClient(client);
    try {
      const gone = new S3ServiceException({ name: "NoSuchUpload", $fault: "client", $metadata: {} });
      mock.on(CompleteMultipartUploadCommand).rejects(gone);
      mock.on(HeadObjectCommand).resolves({ ContentLength: 3 });
      mock.on(ListMultipartUploadsCommand).resolves({
        Uploads: [
          { Key: "out/part-r-00000", UploadId: "zombie" },
          { Key: "out/part-r-00000", UploadId: "u0" },
        ],
      });
      mock.on(AbortMultipartUploadCommand).resolves({});
      const written = new S3ServiceException({ name: "PreconditionFailed", $fault: "client", $metadata: {} });
      mock.on(PutObjectCommand).rejects(written);
      const completed: number[] = [];
      await commitS3Output(
        output,
        1,
        committed,
        [{ uploadId: "old", partition: 0 }],
        {
          endpoint: "http://127.0.0.1:9",
        },
        { completed: (r) => completed.push(r) },
      );
      expect(completed).toEqual([0]);
      expect(mock.commandCalls(HeadObjectCommand)[0]!.args[0].input).toEqual(partLocationInput(0));
      // The replaced upload and the zombie's, not the committed one.
      expect(
        mock.commandCalls(AbortMultipartUploadCommand).map((call) => call.args[0].input.UploadId),
      ).toEqual(["old", "zombie"]);
      const put = mock.commandCalls(PutObjectCommand)[0]!.args[0].input;
      expect(put).toMatchObject({ Key: "out/_SUCCESS", IfNoneMatch: "*" });
    } finally {
      mock.restore();
    }
  });

  it("says so when the store cannot list uploads, and still aborts those it knows", async () => {
    const client = s3Client({ endpoint: "http://127.0.0.1:10" });
    const mock = mockClient(client);
    try {
      mock.on(CompleteMultipartUploadCommand).resolves({});
      const notImplemented = new S3ServiceException({
        name: "NotImplemented",
        $fault: "server",
        $metadata: {},
      });
      mock.on(ListMultipartUploadsCommand).rejects(notImplemented);
      mock.on(AbortMultipartUploadCommand).resolves({});
      mock.on(PutObjectCommand).resolves({});
      let cannotList = 0;
      await commitS3Output(
        output,
        1,
        committed,
        [{ uploadId: "old", partition: 0 }],
        {
          endpoint: "http://127.0.0.1:10",
        },
        { completed: () => undefined, cannotList: () => cannotList++ },
      );
      expect(cannotList).toBe(1);
      expect(mock.commandCalls(AbortMultipartUploadCommand)).toHaveLength(1);
      expect(mock.commandCalls(ListObjectsV2Command)).toHaveLength(0);
    } finally {
      mock.restore();
    }
  });

  it("an upload that fails part way is aborted, not left behind", async () => {
    const dir = tempDir();
    const file = join(dir, "part");
    writeFileSync(file, "x".repeat(1000));
    s3.resetCounts();
    s3.failNext(1, { operation: "UploadPart", status: 400, code: "EntityTooLarge" });
    await expect(
      uploadPending(file, { bucket: BUCKET, key: "failing/part-r-00000" }, options()),
    ).rejects.toThrow(/writing s3:\/\/books\/failing\/part-r-00000: .* answered EntityTooLarge/);
    expect(s3.pendingUploads(BUCKET).filter((key) => key.startsWith("failing/"))).toEqual([]);
  });
});

function partLocationInput(r: number): { Bucket: string; Key: string } {
  const { bucket, key } = partLocation("s3://bucket/out", r);
  return { Bucket: bucket, Key: key };
}
