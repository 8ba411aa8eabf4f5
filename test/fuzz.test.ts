/**
 * Hostile bytes: random and mutated protobuf messages sent to every RPC of a real driver and of
 * a real worker's shuffle service, bounded in count and time. Afterwards both still serve, every
 * reply was a proper status (never a crash, a hang or a stack trace), the database is intact,
 * and no job, task or attempt that existed before changed.
 */
import { Client, Metadata, credentials, status, type ServiceError } from "@grpc/grpc-js";
import Database from "better-sqlite3";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { random as seededRandom } from "../src/bench/corpus.js";
import * as pb from "../src/gen/mapreduce.js";
import { startCluster, tokenOf, waitForJobEnd, type Cluster } from "./helpers/cluster.js";

/** Messages per RPC; every RPC of the three services gets as many. */
const PER_METHOD = Number(process.env.MR_FUZZ_PER_METHOD ?? 400);
/** The seed of the generator, printed, so that a failing run can be run again. */
const SEED = Number(process.env.MR_FUZZ_SEED ?? Date.now() % 2 ** 31);
const CONCURRENCY = 24;
const DEADLINE_MS = 10_000;

let cluster: Cluster;
let dir: string;

/** Every row of the tables that hold jobs, tasks and attempts, by table. */
type Snapshot = Record<"jobs" | "tasks" | "attempts", { id: unknown }[]>;

function snapshot(): Snapshot {
  const db = new Database(cluster.dbPath, { readonly: true });
  try {
    const all = (table: string) =>
      db.prepare(`SELECT * FROM ${table} ORDER BY id`).all() as { id: unknown }[];
    return { jobs: all("jobs"), tasks: all("tasks"), attempts: all("attempts") };
  } finally {
    db.close();
  }
}

function rssMiB(pid: number): number {
  const kib = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]!;
  return Math.round(Number(kib) / 1024);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "mr-fuzz-"));
  for (const sub of ["in", "out"]) mkdirSync(join(dir, sub));
  writeFileSync(join(dir, "in", "book.txt"), "the quick brown fox\njumps over the lazy dog\n".repeat(50));
  cluster = await startCluster({
    dir,
    redisUrl: inject("redisUrl"),
    workers: 1,
    // Whatever a mutated submit names, no job reads or writes outside the test's directory.
    driverArgs: ["--input-root", join(dir, "in"), "--output-root", join(dir, "out")],
  });
});

afterAll(async () => {
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("hostile bytes", () => {
  it("sent to every RPC leave the driver and the worker serving, and what was stored unchanged", async () => {
    const job = await cluster.client.submitJob({
      app: "wordcount",
      inputs: [join(dir, "in")],
      outputDir: join(dir, "out", "before"),
      reducers: 2,
      splitSizeBytes: 512,
      params: {},
    });
    const done = await waitForJobEnd(cluster.client, job.id);
    expect(done.job!.state).toBe("SUCCEEDED");
    const attemptId = done.tasks[0]!.attempts[0]!.id;
    const before = snapshot();
    const driverPid = cluster.driver.child.pid!;
    const workerPid = cluster.workers[0]!.child.pid!;
    const rssBefore = rssMiB(driverPid);

    const seeds = seedMessages(job.id, attemptId, cluster.workers[0]!.address);
    const services = [
      { definition: pb.JobServiceService, address: cluster.driver.address, role: "client" as const },
      { definition: pb.TaskServiceService, address: cluster.driver.address, role: "worker" as const },
      { definition: pb.ShuffleServiceService, address: cluster.workers[0]!.address, role: "worker" as const },
    ];
    const random = seededRandom(SEED);
    const calls: (() => Promise<Outcome>)[] = [];
    for (const { definition, address, role } of services) {
      for (const [name, method] of Object.entries(definition)) {
        const valid = seeds[name];
        expect(valid, `no seed messages for ${method.path}`).toBeDefined();
        const encoded = valid!.map((message) => Buffer.from(method.requestSerialize(message as never)));
        for (let i = 0; i < PER_METHOD; i++) {
          const bytes = mutate(encoded[Math.floor(random() * encoded.length)]!, random);
          // Most calls carry the right secret, so that they reach the handlers; some do not.
          const token =
            random() < 0.9 ? tokenOf(cluster, role) : random() < 0.5 ? undefined : "not-the-secret-000";
          calls.push(() => send(address, method.path, method.responseStream, bytes, token));
        }
      }
    }

    const outcomes: Outcome[] = [];
    const started = Date.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < calls.length) outcomes.push(await calls[next++]!());
      }),
    );
    const seconds = (Date.now() - started) / 1000;

    const byCode = new Map<string, number>();
    for (const { code } of outcomes) byCode.set(status[code], (byCode.get(status[code]) ?? 0) + 1);
    const rssAfter = rssMiB(driverPid);
    console.log(
      `fuzz (seed ${SEED}): ${outcomes.length} messages in ${seconds.toFixed(1)} s; ` +
        `${[...byCode].map(([code, n]) => `${code} ${n}`).join(", ")}; driver RSS ${rssBefore} MiB before, ${rssAfter} MiB after`,
    );

    // Every reply a proper status: no hang, no internal error, no stack trace.
    const improper = outcomes.filter(
      ({ code, details, hung }) =>
        hung || code === status.INTERNAL || code === status.UNKNOWN || /\n\s+at /.test(details),
    );
    expect(improper.slice(0, 5)).toEqual([]);
    // Both processes still up, and still serving.
    expect(cluster.driver.child.exitCode).toBeNull();
    expect(cluster.workers[0]!.child.exitCode).toBeNull();
    expect(process.kill(workerPid, 0)).toBe(true);
    const listed = await cluster.client.listJobs({ state: "", limit: 1, pageToken: "" });
    expect(listed.jobs.length).toBe(1);
    expect(readFileSync(join(dir, "driver.log"), "utf8")).not.toMatch(/"msg":"internal error/);
    // The store intact, and nothing that existed before changed.
    const db = new Database(cluster.dbPath, { readonly: true });
    try {
      expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
    } finally {
      db.close();
    }
    const after = snapshot();
    for (const table of ["jobs", "tasks", "attempts"] as const) {
      const ids = new Set(before[table].map((row) => row.id));
      expect(
        after[table].filter((row) => ids.has(row.id)),
        table,
      ).toEqual(before[table]);
    }
  });
});

interface Outcome {
  code: status;
  details: string;
  hung: boolean;
}

/** One raw call: the bytes go as they are, past any serializer; the reply is not decoded. */
async function send(
  address: string,
  path: string,
  stream: boolean,
  bytes: Buffer,
  token: string | undefined,
): Promise<Outcome> {
  const client = new Client(address, credentials.createInsecure());
  const metadata = new Metadata();
  if (token !== undefined) metadata.set("authorization", `Bearer ${token}`);
  const raw = (buffer: Buffer): Buffer => buffer;
  const deadline = Date.now() + DEADLINE_MS;
  try {
    return await new Promise<Outcome>((resolve) => {
      const settle = (err: ServiceError | null, received: boolean): void =>
        resolve({
          code: err?.code ?? status.OK,
          details: err?.details ?? "",
          // A watch of a running job never ends by itself; any other call must end in time.
          hung: err?.code === status.DEADLINE_EXCEEDED && !(stream && received),
        });
      if (!stream) {
        client.makeUnaryRequest(path, raw, raw, bytes, metadata, { deadline }, (err) => settle(err, false));
        return;
      }
      let received = false;
      const call = client.makeServerStreamRequest(path, raw, raw, bytes, metadata, { deadline });
      call.on("data", () => (received = true));
      call.on("error", (err: ServiceError) => settle(err, received));
      call.on("end", () => settle(null, received));
    });
  } finally {
    client.close();
  }
}

/** Valid messages of each RPC to mutate: ordinary ones, and ones at the edges of their fields. */
function seedMessages(jobId: number, attemptId: string, workerAddress: string): Record<string, unknown[]> {
  const submit: pb.SubmitJobRequest = {
    app: "wordcount",
    inputs: [join(dir, "in", "book.txt")],
    outputDir: join(dir, "out", "fuzz"),
    reducers: 2,
    splitSizeBytes: 64,
    params: { pattern: "fox" },
    overwrite: false,
    priority: 0,
    maxRunningTasks: 0,
    noSpeculation: false,
  };
  const huge = 2 ** 53 - 1;
  return {
    submitJob: [
      submit,
      { ...submit, app: "grep", params: { pattern: "(a+)+$" } },
      { ...submit, reducers: -1, splitSizeBytes: -huge },
      { ...submit, reducers: 2 ** 31 - 1, splitSizeBytes: huge },
      { ...submit, inputs: [join(dir, "in", "..", "..", "etc", "passwd")], outputDir: "../../x" },
      { ...submit, inputs: Array.from({ length: 50 }, () => join(dir, "in")), params: { "": "" } },
    ],
    getJob: [{ jobId }, { jobId: -1 }, { jobId: huge }],
    listJobs: [
      { state: "", limit: 10, pageToken: "" },
      { state: "running", limit: -5, pageToken: "9999999999999999999999" },
      { state: "\u0000", limit: 2 ** 31 - 1, pageToken: "-1" },
    ],
    cancelJob: [{ jobId }, { jobId: 0 }, { jobId: -huge }],
    watchJob: [{ jobId }, { jobId: -1 }],
    listWorkers: [
      { all: false, limit: 10, pageToken: "" },
      { all: true, limit: -1, pageToken: "-5" },
    ],
    registerWorker: [
      { address: "127.0.0.1:1", apps: ["wordcount"], slots: 1 },
      { address: "x".repeat(300), apps: ["a:b", ""], slots: -1 },
      { address: "127.0.0.1:2", apps: [], slots: 2 ** 31 - 1 },
    ],
    deregisterWorker: [
      { workerId: 9999, reason: "fuzz" },
      { workerId: -1, reason: "" },
    ],
    pollTask: [
      { workerId: 9999, maxTasks: 3 },
      { workerId: -huge, maxTasks: 0xffffffff },
    ],
    awaitMapOutputs: [
      { workerId: 9999, attemptId, held: Buffer.alloc(1 << 16, 0xff), unreachable: [] },
      {
        workerId: -1,
        attemptId: "",
        held: Buffer.alloc(0),
        unreachable: [{ mapIndex: -1, attemptId: "\u0000", address: "x".repeat(300) }],
      },
    ],
    heartbeat: [
      { workerId: 9999, attempts: [{ attemptId, progress: 2 }], outputJobIds: [jobId, -1] },
      { workerId: 0, attempts: [{ attemptId: "", progress: Number.NaN }], outputJobIds: [] },
    ],
    completeTask: [
      {
        workerId: 9999,
        completions: [{ attemptId, counters: [{ name: "MAP_INPUT_RECORDS", value: String(huge) }] }],
        nextTasks: 0xffffffff,
      },
      {
        workerId: 1,
        completions: [
          { attemptId: "a0000000000000000", counters: [] },
          { attemptId, counters: [] },
        ],
        nextTasks: 0,
      },
    ],
    failTask: [
      { workerId: 9999, attemptId, error: "boom", unrecoverable: true },
      {
        workerId: 1,
        attemptId,
        error: "",
        fetchFailure: { mapIndex: -1, mapAttemptId: attemptId },
        unrecoverable: false,
      },
    ],
    fetchPartition: [
      { attemptIds: [attemptId], partition: 0, jobId, shuffleKey: "" },
      {
        attemptIds: Array.from({ length: 1001 }, () => attemptId),
        partition: -1,
        jobId: -1,
        shuffleKey: workerAddress,
      },
      { attemptIds: ["../../etc/passwd", ""], partition: 2 ** 31 - 1, jobId, shuffleKey: "x" },
    ],
  };
}

/** A copy of `valid` with one of a few kinds of damage, or random bytes. */
function mutate(valid: Buffer, random: () => number): Buffer {
  const int = (n: number): number => Math.floor(random() * n);
  const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));
  const copy = Buffer.from(valid);
  switch (int(8)) {
    case 0:
      return bytes(int(512));
    case 1: // a few bits flipped
      for (let i = 0, n = 1 + int(4); i < n && copy.length > 0; i++) copy[int(copy.length)]! ^= 1 << int(8);
      return copy;
    case 2: // random bytes spliced in
      return Buffer.concat([
        copy.subarray(0, int(copy.length + 1)),
        bytes(1 + int(16)),
        copy.subarray(int(copy.length + 1)),
      ]);
    case 3: // cut short
      return copy.subarray(0, int(copy.length + 1));
    case 4: // twice over: protobuf merges, so repeated fields double
      return Buffer.concat([copy, copy]);
    case 5: // a field that claims to be 4 GiB long
      return Buffer.concat([copy, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), bytes(8)]);
    case 6: // a field number and wire type from nowhere
      return Buffer.concat([copy, Buffer.from([0xf8, 0xff, 0xff, 0xff, 0x0f, int(256)])]);
    default:
      return copy; // sent as it is: the seeds themselves are edge cases
  }
}
