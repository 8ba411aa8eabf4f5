/**
 * The limits on what one request may make the driver do, through a real driver: each refusal
 * is clear, arrives at once, leaves the connection usable, and stores nothing.
 */
import { status, type ClientReadableStream } from "@grpc/grpc-js";
import Database from "better-sqlite3";
import { Redis } from "ioredis";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { cut, hasCode } from "../src/errors.js";
import type * as pb from "../src/gen/mapreduce.js";
import { LIMITS } from "../src/limits.js";
import { TaskCounters } from "../src/mr/context.js";
import { grpcDriverCalls } from "../src/worker/driverCalls.js";
import { mr, startCluster, tokenOf, type Cluster } from "./helpers/cluster.js";

let cluster: Cluster;
let dir: string;
let book: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "mr-limits-"));
  book = join(dir, "book.txt");
  writeFileSync(book, "a b a\n");
  cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 0 });
});

afterAll(async () => {
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const request = (fields: Partial<pb.SubmitJobRequest>): pb.SubmitJobRequest => ({
  app: "wordcount",
  inputs: [book],
  outputDir: join(dir, "out", String(Math.random()).slice(2)),
  reducers: 1,
  splitSizeBytes: 0,
  params: {},
  overwrite: false,
  priority: 0,
  maxRunningTasks: 0,
  noSpeculation: false,
  ...fields,
});

/** Submits, expecting a refusal with `code`; returns its message. */
async function refused(
  fields: Partial<pb.SubmitJobRequest>,
  code = status.INVALID_ARGUMENT,
): Promise<string> {
  const err = await cluster.client.submitJob(request(fields)).then(
    () => new Error("accepted"),
    (thrown: unknown) => thrown,
  );
  expect(hasCode(err, code), String(err)).toBe(true);
  return (err as Error).message;
}

async function jobCount(): Promise<number> {
  return (await cluster.client.listJobs({ state: "", limit: 1000, pageToken: "" })).jobs.length;
}

describe("a submit", () => {
  it("that would make more maps than a job may have is refused, saying which --split-size would do", async () => {
    const before = await jobCount();
    const big = join(dir, "big.txt");
    writeFileSync(big, "x".repeat(LIMITS.maps * 2 + 10));
    expect(await refused({ inputs: [big], splitSizeBytes: 1 })).toContain(
      `cuts the inputs into ${LIMITS.maps * 2 + 10} maps, more than the ${LIMITS.maps} a job may have (give --split-size 3 or more)`,
    );
    expect(await jobCount()).toBe(before); // nothing half-created
  });

  it("with too many inputs, or a directory of too many files, is refused", async () => {
    expect(await refused({ inputs: Array.from({ length: LIMITS.inputs + 1 }, () => book) })).toContain(
      `at most ${LIMITS.inputs} inputs`,
    );
    const many = join(dir, "many");
    mkdirSync(many);
    for (let i = 0; i <= LIMITS.inputFiles; i++) writeFileSync(join(many, `f${i}`), "");
    expect(await refused({ inputs: [many] })).toContain(`holds more than ${LIMITS.inputFiles} files`);
  });

  it("with a reduce slowstart outside 0 to 1 is refused, saying what it is", async () => {
    const before = await jobCount();
    for (const reduceSlowstart of [1.5, -0.5, Number.NaN]) {
      expect(await refused({ reduceSlowstart })).toContain(
        `reduce_slowstart: must be 0 to 1, the share of the maps that commit before the reduces start; got ${reduceSlowstart}`,
      );
    }
    expect(await jobCount()).toBe(before);
  });

  it("with too many or too large params is refused", async () => {
    const params = Object.fromEntries(Array.from({ length: LIMITS.params + 1 }, (_, i) => [`p${i}`, "v"]));
    expect(await refused({ params })).toContain(`at most ${LIMITS.params} params`);
    expect(await refused({ params: { big: "x".repeat(3_500_000) } })).toContain(
      `at most ${LIMITS.paramBytes} bytes in all`,
    );
    expect(await refused({ params: { "a b": "v" } })).toContain("a name is letters, digits");
  });

  it("with a path no worker could use is refused at once: a NUL byte, 100 KB, a name too long", async () => {
    expect(await refused({ outputDir: join(dir, "a\0b") })).toContain("a path may not hold a NUL byte");
    expect(await refused({ outputDir: `/${"d/".repeat(50_000)}` })).toContain(
      `a path may have at most ${LIMITS.pathBytes} bytes`,
    );
    expect(await refused({ inputs: [`/${"n".repeat(300)}`] })).toContain(
      "each name in a path may have at most 255",
    );
    expect(await jobCount()).toBeGreaterThanOrEqual(0); // the same connection still answers
  });

  it("bigger than the driver takes is refused whole, and the connection goes on", async () => {
    const message = await refused(
      { inputs: [`/${"x".repeat(LIMITS.driverMessageBytes)}`] },
      status.RESOURCE_EXHAUSTED,
    );
    expect(message).toMatch(/larger than max/);
    expect(await jobCount()).toBeGreaterThanOrEqual(0);
  });
});

describe("ListJobs", () => {
  it("ends a page early rather than send more than it may, and the rest follows by its token", async () => {
    const params = { big: "p".repeat(60_000) };
    const ids: number[] = [];
    for (let i = 0; i < 20; i++) ids.push((await cluster.client.submitJob(request({ params }))).id);
    const first = await cluster.client.listJobs({ state: "", limit: 50, pageToken: "" });
    expect(first.jobs.length).toBeLessThan(20);
    expect(first.nextPageToken).not.toBe("");
    const second = await cluster.client.listJobs({ state: "", limit: 50, pageToken: first.nextPageToken });
    const listed = [...first.jobs, ...second.jobs].map((job) => job.id);
    expect(listed.slice(0, 20)).toEqual(ids.reverse());
    // mr jobs list follows the tokens up to its --limit.
    const cli = await mr(["jobs", "list", "--limit", "20", "--json"], cluster.env);
    expect((JSON.parse(cli.stdout) as unknown[]).length).toBe(20);
  });
});

describe("WatchJob", () => {
  it("lets one client hold only so many streams, and frees each as it ends", async () => {
    const job = await cluster.client.submitJob(request({})); // no worker: it stays RUNNING
    const open = (): Promise<{ stream: ClientReadableStream<pb.Job>; error?: unknown }> =>
      new Promise((resolve) => {
        const stream = cluster.client.raw.watchJob({ jobId: job.id });
        stream.once("data", () => resolve({ stream }));
        stream.once("error", (error) => resolve({ stream, error }));
      });
    const streams = [];
    for (let i = 0; i < LIMITS.watchesPerClient; i++) streams.push(await open());
    expect(streams.every(({ error }) => error === undefined)).toBe(true);
    const over = await open();
    expect(hasCode(over.error, status.RESOURCE_EXHAUSTED)).toBe(true);
    expect((over.error as Error).message).toContain(`already watches ${LIMITS.watchesPerClient} jobs`);
    streams.pop()!.stream.cancel();
    let again = await open();
    for (let i = 0; i < 50 && again.error !== undefined; i++) again = await open(); // the cancel lands
    expect(again.error).toBeUndefined();
    for (const { stream } of [...streams, again]) stream.cancel();
    await cluster.client.cancelJob(job.id);
  });
});

describe("ListWorkers", () => {
  it("lists the workers alive or lately gone, in pages, however many have come and gone", async () => {
    // Ten thousand workers that left long ago, as a driver that has run for months holds them.
    const db = new Database(cluster.dbPath);
    const insert = db.prepare(
      "INSERT INTO workers (address, state, apps, registered_at, last_heartbeat_at) VALUES (?, 'STOPPED', '[]', 0, 0)",
    );
    db.transaction(() => {
      for (let i = 0; i < 10_000; i++) insert.run(`127.0.0.1:${1 + (i % 60_000)}`);
    })();
    db.close();
    const calls = grpcDriverCalls(cluster.driver.address, tokenOf(cluster, "worker"), undefined);
    try {
      const { workerId } = await calls.registerWorker({
        address: "127.0.0.1:9",
        apps: ["wordcount"],
        slots: 1,
      });
      const recent = await cluster.client.listWorkers();
      expect(recent.workers.map((worker) => worker.id)).toContain(workerId);
      expect(recent.workers.every((worker) => worker.state === "ALIVE" || worker.lastHeartbeatMs > 0)).toBe(
        true,
      );
      const first = await cluster.client.listWorkers({ all: true });
      expect(first.workers).toHaveLength(100);
      expect(first.nextPageToken).not.toBe("");
      const all = JSON.parse(
        (await mr(["workers", "list", "--all", "--json"], cluster.env)).stdout,
      ) as unknown[];
      expect(all.length).toBeGreaterThanOrEqual(10_001);
      await calls.deregisterWorker({ workerId, reason: "test" });
    } finally {
      calls.close();
    }
  });
});

describe("a worker", () => {
  const driver = () => grpcDriverCalls(cluster.driver.address, tokenOf(cluster, "worker"), undefined);

  it("offering an app name that is no name, too many apps or slots, is refused at registration", async () => {
    const calls = driver();
    try {
      const register = (apps: string[], slots = 1) =>
        calls.registerWorker({ address: "127.0.0.1:1", apps, slots }).then(
          () => undefined,
          (err: unknown) => err,
        );
      const colon = await register(["a:b"]);
      expect(hasCode(colon, status.INVALID_ARGUMENT)).toBe(true);
      expect((colon as Error).message).toContain(`"a:b" is not an app name`);
      const many = await register(Array.from({ length: LIMITS.appsPerWorker + 1 }, (_, i) => `app${i}`));
      expect((many as Error).message).toContain(`at most ${LIMITS.appsPerWorker} apps`);
      const slots = await register(["wordcount"], LIMITS.slotsPerWorker + 1);
      expect(hasCode(slots, status.INVALID_ARGUMENT)).toBe(true);
      expect((slots as Error).message).toContain(`slots: must be 1 to ${LIMITS.slotsPerWorker}`);
      const { workers } = await cluster.client.listWorkers();
      expect(workers.filter((worker) => worker.state === "ALIVE")).toEqual([]);
    } finally {
      calls.close();
    }
  });

  it("offering many apps opens no Redis connection for them when it polls", async () => {
    const redis = new Redis(inject("redisUrl"));
    const calls = driver();
    try {
      const clients = async (): Promise<number> =>
        String(await redis.client("LIST"))
          .trim()
          .split("\n").length;
      const before = await clients();
      const apps = Array.from({ length: LIMITS.appsPerWorker }, (_, i) => `offered${i}`);
      const { workerId } = await calls.registerWorker({ address: "127.0.0.1:8", apps, slots: 1 });
      const poll = new AbortController();
      setTimeout(() => poll.abort(), 1500);
      await calls.pollTask({ workerId, maxTasks: 1 }, poll.signal).catch(() => undefined);
      expect(await clients()).toBeLessThan(before + 5); // not one a lane
      await calls.deregisterWorker({ workerId, reason: "test" });
    } finally {
      calls.close();
      redis.disconnect();
    }
  });

  it("reporting counters no app could make is refused", async () => {
    const calls = driver();
    try {
      const err = await calls
        .completeTask({
          workerId: 1,
          completions: [{ attemptId: "a0", counters: [{ name: "n".repeat(200), value: "1" }] }],
          nextTasks: 0,
        })
        .catch((thrown: unknown) => thrown);
      expect(hasCode(err, status.INVALID_ARGUMENT)).toBe(true);
    } finally {
      calls.close();
    }
  });
});

describe("an app", () => {
  it("may count only so many counters, with names of a bounded length", () => {
    const ctx = new TaskCounters().ctx({});
    for (let i = 0; i < LIMITS.userCounters; i++) ctx.count(`c${i}`);
    ctx.count("c0"); // an existing counter always counts
    expect(() => ctx.count("one-too-many")).toThrow(`at most ${LIMITS.userCounters} counters`);
    expect(() => new TaskCounters().ctx({}).count("x".repeat(200))).toThrow(
      "a counter's name may have at most",
    );
  });

  it("has a long error cut to a readable size, saying how much was cut", () => {
    const error = cut("é".repeat(10_000), LIMITS.errorBytes);
    expect(Buffer.byteLength(error)).toBeLessThanOrEqual(LIMITS.errorBytes);
    expect(error).toMatch(/^é+… \(\d+ more bytes cut\)$/);
  });
});
