import { Server, status as grpcStatus } from "@grpc/grpc-js";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer, type AddressInfo } from "node:net";
import { connect } from "node:http2";
import { mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pino from "pino";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { setTimeout as sleep } from "node:timers/promises";
import { FetchFailedError } from "../src/errors.js";
import {
  FetchPartitionRequest,
  ShuffleServiceService,
  type MapOutput,
  type TaskAssignment,
} from "../src/gen/mapreduce.js";
import { listen, shutdown } from "../src/grpc.js";
import { LIMITS } from "../src/limits.js";
import { BUILTIN_APPS } from "../src/mr/apps/index.js";
import { runMapTask } from "../src/mr/mapTask.js";
import { prepareOutputDir } from "../src/mr/output.js";
import { resolveTunables } from "../src/mr/tunables.js";
import { Roots } from "../src/roots.js";
import { TaskKind } from "../src/types.js";
import { attemptDir } from "../src/worker/dataDir.js";
import { MapOutputs } from "../src/worker/mapOutputs.js";
import { createShuffleService } from "../src/worker/shuffleServer.js";
import { TaskRunner, batchByAddress } from "../src/worker/taskRunner.js";
import { tempDir } from "./helpers/tmp.js";

const log = pino({ level: "silent" });
const SHUFFLE_KEY = "5".repeat(32);
const servers: Server[] = [];
const SEVEN = ["one", "two", "three", "four", "five", "six", "seven"];
const THREE = ["one", "red", "blue"];

afterEach(async () => {
  for (const server of servers.splice(0)) await shutdown(server, 100);
});

/** A worker's shuffle side: `maps` map attempts of wordcount, each over its own line of words. */
async function shuffleWorker(
  first: number,
  maps: number,
  reducers: number,
): Promise<{ address: string; outputs: MapOutput[]; committed: Set<string>; inMemory: number }> {
  const dataDir = tempDir();
  // A budget that keeps the first outputs in memory and sends the rest to disk: both are served.
  const store = new MapOutputs(dataDir, 1_500);
  const committed = new Set<string>();
  const outputs: MapOutput[] = [];
  for (let m = first; m < first + maps; m++) {
    const attemptId = `a${m.toString(16).padStart(16, "0")}`;
    const input = join(dataDir, `input-${m}`);
    writeFileSync(input, `${SEVEN[m % 7]} ${THREE[m % 3]} shared\n`);
    const { output } = await runMapTask({
      app: BUILTIN_APPS.wordcount!,
      params: {},
      split: [{ file: input, start: 0, end: 1e9 }],
      reducers,
      ...store.placeFor(attemptId),
      spillDir: attemptDir(dataDir, attemptId),
    });
    store.add(attemptId, { jobId: 1, shuffleKey: SHUFFLE_KEY }, output);
    committed.add(attemptId);
    outputs.push({ mapIndex: m, attemptId, address: "" });
  }
  const server = new Server();
  server.addService(
    ShuffleServiceService,
    createShuffleService((id) => (committed.has(id) ? store.get(id) : undefined), log),
  );
  const address = await listen(server, "127.0.0.1:0");
  servers.push(server);
  for (const output of outputs) output.address = address;
  const inMemory = outputs.filter(({ attemptId }) => store.get(attemptId)!.data !== undefined).length;
  return { address, outputs, committed, inMemory };
}

/** A reduce of these map outputs, into `outputDir`, made ready as a submit makes it. */
function reduceTask(outputDir: string, mapOutputs: MapOutput[]): TaskAssignment {
  prepareOutputDir(outputDir, false);
  return {
    attemptId: "a00000000000000ff",
    jobId: 1,
    taskId: 1,
    kind: TaskKind.REDUCE,
    index: 0,
    app: "wordcount",
    params: {},
    reducers: 1,
    split: [],
    mapOutputs,
    mapsTotal: mapOutputs.length,
    outputDir,
    shuffleKey: SHUFFLE_KEY,
  };
}

describe("the shuffle", () => {
  // Held in memory by the reducer as fetched (a quarter of these): none, some (the rest in files), all.
  it.each([0, 600, 1 << 20])(
    "fetches hundreds of map outputs from two workers in batched streams, merging %i bytes in memory",
    async (mergeMemoryBytes) => {
      const one = await shuffleWorker(0, 150, 1);
      const two = await shuffleWorker(150, 130, 1);
      expect(one.inMemory).toBeGreaterThan(0); // and the others come from files
      expect(one.inMemory).toBeLessThan(150);
      const outputDir = tempDir();
      const runner = new TaskRunner({
        dataDir: tempDir(),
        tunables: resolveTunables({ sortBufferBytes: 1 << 20, mergeMemoryBytes }),
        apps: BUILTIN_APPS,
        roots: () => Roots.NONE,
      });
      try {
        const mapOutputs = [...one.outputs, ...two.outputs].sort((a, b) => a.mapIndex - b.mapIndex);
        const { counters } = await runner.run(
          reduceTask(outputDir, mapOutputs),
          new AbortController().signal,
        );
        const part = readFileSync(join(outputDir, "_temporary", "a00000000000000ff", "part-r-00000"), "utf8");
        const counts = new Map(
          part
            .trim()
            .split("\n")
            .map((line) => line.split("\t") as [string, string]),
        );
        expect(counts.get("shared")).toBe("280");
        let ones = 0;
        for (let m = 0; m < 280; m++) ones += Number(m % 7 === 0) + Number(m % 3 === 0);
        expect(Number(counts.get("one"))).toBe(ones);
        expect(Number(counts.get("seven"))).toBe(40);
        expect(counters.SHUFFLE_BYTES).toBeGreaterThan(0);
      } finally {
        runner.close();
      }
    },
  );

  it("batches outputs by worker, at most 100 to a stream, alternating workers", () => {
    const outputs = Array.from({ length: 250 }, (_, i) => ({
      mapIndex: i,
      attemptId: "",
      address: i % 5 === 0 ? "b:1" : "a:1",
    }));
    const batches = batchByAddress(
      outputs.map((_, i) => i),
      outputs,
      100,
    );
    expect(batches.map((batch) => [outputs[batch[0]!]!.address, batch.length])).toEqual([
      ["b:1", 50],
      ["a:1", 100],
      ["a:1", 100],
    ]);
    expect(batches.flat().sort((a, b) => a - b)).toEqual(outputs.map((_, i) => i));
  });

  it("names the map whose output a worker cannot serve, after asking again", async () => {
    const worker = await shuffleWorker(0, 120, 1);
    worker.committed.delete(worker.outputs[42]!.attemptId);
    const runner = new TaskRunner({
      dataDir: tempDir(),
      tunables: resolveTunables({ sortBufferBytes: 1 << 20 }),
      apps: BUILTIN_APPS,
      roots: () => Roots.NONE,
    });
    try {
      const failure = await runner
        .run(reduceTask(tempDir(), worker.outputs), new AbortController().signal)
        .catch((err: unknown) => err);
      expect(failure).toBeInstanceOf(FetchFailedError);
      expect((failure as FetchFailedError).mapIndex).toBe(42);
      expect((failure as FetchFailedError).message).toMatch(
        /has no committed output of job 1 on this worker/,
      );
    } finally {
      runner.close();
    }
  });

  it("gives up a fetch from a worker that accepts and answers nothing (frozen), and names the map", async () => {
    const frozen = createServer(() => undefined); // connections accepted, never a byte back
    frozen.listen(0, "127.0.0.1");
    await once(frozen, "listening");
    const address = `127.0.0.1:${(frozen.address() as AddressInfo).port}`;
    const runner = new TaskRunner({
      dataDir: tempDir(),
      tunables: resolveTunables({
        sortBufferBytes: 1 << 20,
        fetchTries: 2,
        fetchRetryMs: 0,
        fetchIdleMs: 300,
      }),
      apps: BUILTIN_APPS,
      roots: () => Roots.NONE,
    });
    try {
      const outputs = [{ mapIndex: 7, attemptId: "a0000000000000007", address }];
      const started = Date.now();
      const failure = await runner
        .run(reduceTask(tempDir(), outputs), new AbortController().signal)
        .catch((err: unknown) => err);
      expect(failure).toBeInstanceOf(FetchFailedError);
      expect((failure as FetchFailedError).mapIndex).toBe(7);
      expect((failure as FetchFailedError).message).toMatch(
        /could not fetch map 7 .* nothing came from 127\.0\.0\.1:\d+ for 300 ms \(is that worker frozen\?\)/,
      );
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      runner.close();
      frozen.close();
    }
  });

  it("fails the reduce, not the map, when the reducer's own disk is full, and keeps no file open", async () => {
    const worker = await shuffleWorker(0, 4, 1);
    const dataDir = tempDir();
    const task = reduceTask(tempDir(), worker.outputs);
    // The first file the fetch writes is /dev/full, where every write gets ENOSPC.
    mkdirSync(attemptDir(dataDir, task.attemptId));
    symlinkSync("/dev/full", join(attemptDir(dataDir, task.attemptId), "in-0"));
    const runner = new TaskRunner({
      dataDir,
      tunables: resolveTunables({ sortBufferBytes: 1 << 20, fetchBatch: 100, mergeMemoryBytes: 0 }),
      apps: BUILTIN_APPS,
      roots: () => Roots.NONE,
    });
    const openOnFull = (): number =>
      readdirSync("/proc/self/fd").filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`) === "/dev/full";
        } catch {
          return false;
        }
      }).length;
    try {
      const failure = await runner.run(task, new AbortController().signal).catch((err: unknown) => err);
      expect(failure).not.toBeInstanceOf(FetchFailedError);
      expect((failure as Error).message).toMatch(/^could not write fetched map output to .*in-0: ENOSPC/);
      expect(openOnFull()).toBe(0);
    } finally {
      runner.close();
    }
  });

  it("keeps small map outputs in memory, never writing them: a full disk does not matter to it", async () => {
    const worker = await shuffleWorker(0, 4, 1);
    const dataDir = tempDir();
    const outputDir = tempDir();
    const task = reduceTask(outputDir, worker.outputs);
    mkdirSync(attemptDir(dataDir, task.attemptId));
    symlinkSync("/dev/full", join(attemptDir(dataDir, task.attemptId), "in-0"));
    const runner = new TaskRunner({
      dataDir,
      tunables: resolveTunables({ sortBufferBytes: 1 << 20, fetchBatch: 100 }), // held as fetched: up to 256 KiB
      apps: BUILTIN_APPS,
      roots: () => Roots.NONE,
    });
    try {
      const { counters } = await runner.run(task, new AbortController().signal);
      expect(counters.SHUFFLE_BYTES).toBeGreaterThan(0);
      expect(readFileSync(join(outputDir, "_temporary", task.attemptId, "part-r-00000"), "utf8")).toContain(
        "shared\t4\n",
      );
    } finally {
      runner.close();
    }
  });

  it("serves a job's map output only to a fetch that names the job and shows its shuffle key", async () => {
    const worker = await shuffleWorker(0, 3, 1);
    const runner = new TaskRunner({
      dataDir: tempDir(),
      tunables: resolveTunables({ sortBufferBytes: 1 << 20, fetchTries: 1 }),
      apps: BUILTIN_APPS,
      roots: () => Roots.NONE,
    });
    const fetchAs = (task: Partial<TaskAssignment>): Promise<unknown> =>
      runner
        .run({ ...reduceTask(tempDir(), worker.outputs), ...task }, new AbortController().signal)
        .catch((err: unknown) => err);
    try {
      const otherJob = await fetchAs({ jobId: 2 }); // another job's reduce, with its own key
      expect(otherJob).toBeInstanceOf(FetchFailedError);
      expect((otherJob as Error).message).toMatch(/has no committed output of job 2 on this worker/);
      const guessed = await fetchAs({ shuffleKey: "0".repeat(32) });
      expect(guessed).toBeInstanceOf(FetchFailedError);
      expect((guessed as Error).message).toMatch(/has no committed output of job 1 on this worker/);
      expect(await fetchAs({})).toMatchObject({ counters: { REDUCE_OUTPUT_RECORDS: 6 } }); // one two three red blue shared
    } finally {
      runner.close();
    }
  });

  it("is served by a busy worker within a few turns of its event loop", async () => {
    // The worker's loop runs I/O once every 20 ms, as while it runs a task. A fetch that took a
    // turn for each file read, or for each HTTP/2 window update (64 KiB by default), would take
    // dozens of turns for its few MiB.
    const server = spawn(
      process.execPath,
      [fileURLToPath(new URL("helpers/shuffleServer.mjs", import.meta.url)), tempDir(), "300000", "busy"],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    try {
      const lines = createInterface({ input: server.stdout! })[Symbol.asyncIterator]();
      const { address, attemptId, onDisk } = JSON.parse((await lines.next()).value as string) as {
        address: string;
        attemptId: string;
        onDisk: boolean;
      };
      expect(onDisk).toBe(true);
      const outputDir = tempDir();
      const runner = new TaskRunner({
        dataDir: tempDir(),
        tunables: resolveTunables({ sortBufferBytes: 1 << 20 }),
        apps: BUILTIN_APPS,
        roots: () => Roots.NONE,
      });
      try {
        const mapOutputs = [{ mapIndex: 0, attemptId, address }];
        const { counters } = await runner.run(
          reduceTask(outputDir, mapOutputs),
          new AbortController().signal,
        );
        expect(counters.SHUFFLE_BYTES).toBeGreaterThan(2 << 20);
        expect(counters.REDUCE_OUTPUT_RECORDS).toBe(300_001);
      } finally {
        runner.close();
      }
      const served = /served in (\d+) turns/.exec((await lines.next()).value as string);
      expect(Number(served![1])).toBeLessThanOrEqual(3);
    } finally {
      if (server.exitCode === null && server.signalCode === null) {
        server.kill();
        await once(server, "exit");
      }
    }
  });
});

describe("a worker's shuffle service", () => {
  it("serves only so many streams at once, holds little for those not read, and frees all when they go", async () => {
    const server = spawn(
      process.execPath,
      [fileURLToPath(new URL("helpers/shuffleServer.mjs", import.meta.url)), tempDir(), "600000"],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    try {
      const lines = createInterface({ input: server.stdout! })[Symbol.asyncIterator]();
      const { address, attemptId, pid, bytes } = JSON.parse((await lines.next()).value as string) as {
        address: string;
        attemptId: string;
        pid: number;
        bytes: number;
      };
      expect(bytes).toBeGreaterThan(4 << 20);
      const status_ = (name: string): number =>
        Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) /
        1024;
      const outputFds = (): number =>
        readdirSync(`/proc/${pid}/fd`).filter((fd) => {
          try {
            return readlinkSync(`/proc/${pid}/fd/${fd}`).endsWith(".out");
          } catch {
            return false;
          }
        }).length;
      const rssBefore = status_("VmRSS");
      // A thousand fetches over plain HTTP/2 that never read a byte, as a hostile client would
      // (grpc-js's own client reads everything the server sends, whether or not it is asked for).
      const session = connect(`http://${address}`);
      const request = FetchPartitionRequest.encode({
        attemptIds: [attemptId],
        partition: 0,
        jobId: 1,
        shuffleKey: SHUFFLE_KEY,
      }).finish();
      const framed = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), request]);
      framed.writeUInt32BE(request.length, 1);
      const statuses: string[] = [];
      const streams = Array.from({ length: 1000 }, () => {
        const stream = session.request({
          ":method": "POST",
          ":path": "/mr.v1.ShuffleService/FetchPartition",
          "content-type": "application/grpc",
          te: "trailers",
        });
        stream.on("response", (headers) => {
          if (headers["grpc-status"] !== undefined) statuses.push(String(headers["grpc-status"]));
        });
        stream.on("error", () => undefined);
        stream.end(framed);
        stream.pause();
        return stream;
      });
      for (let i = 0; i < 100 && statuses.length < 1000 - LIMITS.shuffleStreams; i++) await sleep(100);
      expect(statuses).toEqual(
        Array(1000 - LIMITS.shuffleStreams).fill(String(grpcStatus.RESOURCE_EXHAUSTED)),
      );
      await sleep(1000);
      expect(outputFds()).toBe(LIMITS.shuffleStreams); // the served ones wait for their readers
      const rssUnread = status_("VmRSS");
      console.log(
        `shuffle: 1000 unread streams (${LIMITS.shuffleStreams} served, the rest refused): server RSS ${Math.round(rssBefore)} MiB before, ${Math.round(rssUnread)} MiB with them open`,
      );
      expect(rssUnread - rssBefore).toBeLessThan(LIMITS.shuffleStreams * 4); // MiB: a few chunks a stream
      for (const stream of streams) stream.close();
      for (let i = 0; i < 50 && outputFds() > 0; i++) await sleep(100);
      expect(outputFds()).toBe(0);
      session.close();
    } finally {
      if (server.exitCode === null && server.signalCode === null) {
        server.kill();
        await once(server, "exit");
      }
    }
  });
});

describe("map outputs", () => {
  it("set memory aside for maps running at once, so that together they keep within the budget", () => {
    const MiB = 1 << 20;
    const store = new MapOutputs(tempDir(), 1.5 * MiB);
    expect(store.placeFor("a0000000000000001").memoryBytes).toBe(MiB);
    expect(store.placeFor("a0000000000000002").memoryBytes).toBe(0.5 * MiB); // a1 may still need its MiB
    store.discard("a0000000000000001"); // it failed: what it had set aside is free again
    expect(store.placeFor("a0000000000000003").memoryBytes).toBe(MiB);
    store.add(
      "a0000000000000002",
      { jobId: 1, shuffleKey: SHUFFLE_KEY },
      { data: Buffer.alloc(100), path: "", partitions: [[0, 100]] },
    );
    expect(store.placeFor("a0000000000000004").memoryBytes).toBe(0.5 * MiB - 100); // a2 holds what it used, no more
  });
});
