/**
 * Several hosts: the driver, Redis, workers and a client each on a network namespace with its
 * own address (see src/cli/hosts.ts); shuffle crosses hosts. Links go down and come back, and
 * carry delay and loss. Every output is checked against the local engine, file for file.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { HostCluster, hostsUnavailable, netemUnavailable } from "../src/cli/hosts.js";
import { BUILTIN_APPS } from "../src/mr/apps/index.js";
import { runLocalJob } from "../src/mr/local.js";
import { FIXTURE_APPS } from "./helpers/cluster.js";
import { partFiles, writeCorpus } from "./helpers/corpus.js";
import { tempDir } from "./helpers/tmp.js";

const unavailable = hostsUnavailable();
const REDUCERS = 3;
const SPLIT = 4000;

interface Net {
  cluster: HostCluster;
  dir: string;
  inputs: string[];
}

let net: Net | undefined;
afterEach(async () => {
  await net?.cluster.stop();
  net = undefined;
});

/** A HostCluster of `workers` workers offering the fixture apps, and a corpus to count. */
async function startNet(workers: number, driverArgs: string[] = []): Promise<Net> {
  const dir = tempDir();
  const cluster = await HostCluster.start({ dir, workers, driverArgs, appsDir: FIXTURE_APPS });
  mkdirSync(join(dir, "in"));
  net = { cluster, dir, inputs: writeCorpus(join(dir, "in"), { files: 3, bytes: 40_000, seed: 14 }) };
  return net;
}

/** `mr ARGS…` run on the client host. */
function mr(n: Net, args: string[]) {
  return n.cluster.mr(args);
}

async function submit(n: Net, params: string[] = [], name = "out", flags: string[] = []): Promise<number> {
  const result = await mr(n, [
    "submit",
    ...flags,
    "--app",
    "faulty",
    "--reducers",
    String(REDUCERS),
    "--split-size",
    String(SPLIT),
    "--output",
    join(n.dir, name),
    "--json",
    ...params.flatMap((param) => ["--param", param]),
    ...n.inputs,
  ]);
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout).id as number;
}

interface Shown {
  state: string;
  error: string | null;
  tasks: { kind: string; attempts: { state: string; worker: number; error: string | null }[] }[];
  events: { type: string; message: string }[];
}

async function show(n: Net, jobId: number): Promise<Shown> {
  const result = await mr(n, ["jobs", "show", String(jobId), "--json"]);
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as Shown;
}

async function waitForEnd(n: Net, jobId: number, timeoutMs = 120_000): Promise<Shown> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const shown = await show(n, jobId);
    if (shown.state !== "RUNNING") return shown;
    if (Date.now() > deadline) throw new Error(`job ${jobId} still running after ${timeoutMs} ms`);
    await sleep(300);
  }
}

/** The output equals wordcount by the local engine, file for file, and each task committed once. */
async function expectLocalOutput(n: Net, shown: Shown, name = "out"): Promise<void> {
  expect(shown.state, shown.error ?? "").toBe("SUCCEEDED");
  const localDir = join(n.dir, `${name}-local`);
  await runLocalJob({
    app: BUILTIN_APPS.wordcount!,
    params: {},
    inputs: n.inputs,
    outputDir: localDir,
    reducers: REDUCERS,
    splitSizeBytes: SPLIT,
  });
  expect(partFiles(join(n.dir, name))).toEqual(partFiles(localDir));
  expect(existsSync(join(n.dir, name, "_SUCCESS"))).toBe(true);
  for (const task of shown.tasks) {
    expect(task.attempts.filter((attempt) => attempt.state === "SUCCEEDED")).toHaveLength(1);
  }
}

/** Waits until some attempt of the job's `kind` tasks runs on a worker of `host`. */
async function waitForAttemptOn(n: Net, jobId: number, kind: string, workerIds: Set<number>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const shown = await show(n, jobId);
    const running = shown.tasks
      .filter((task) => task.kind === kind)
      .flatMap((task) => task.attempts)
      .some((attempt) => attempt.state === "RUNNING" && workerIds.has(attempt.worker));
    if (running) return;
    await sleep(100);
  }
  throw new Error(`no ${kind} attempt ran on workers ${[...workerIds].join(", ")}`);
}

/** The ids the driver gave the worker at `address`, over its registrations. */
async function workerIdsAt(n: Net, address: string): Promise<Set<number>> {
  const result = await mr(n, ["workers", "list", "--all", "--json"]);
  const workers = JSON.parse(result.stdout) as { id: number; address: string }[];
  return new Set(workers.filter((worker) => worker.address === address).map((worker) => worker.id));
}

describe.skipIf(unavailable !== undefined)(
  `several hosts${unavailable ? ` (skipped: ${unavailable})` : ""}`,
  () => {
    it("run wordcount with the driver, Redis, workers and client each on a host of its own", async () => {
      const n = await startNet(2);
      const jobId = await submit(n);
      const shown = await waitForEnd(n, jobId);
      await expectLocalOutput(n, shown);
      // Both workers, each on its own host address, ran tasks: shuffle crossed hosts.
      const listed = JSON.parse((await mr(n, ["workers", "list", "--json"])).stdout) as { address: string }[];
      expect(listed.map((worker) => worker.address).sort()).toEqual([...n.cluster.workers.values()].sort());
      const ran = new Set(shown.tasks.flatMap((task) => task.attempts.map((attempt) => attempt.worker)));
      expect(ran.size).toBe(2);
    });

    it.each(["MAP", "REDUCE"])(
      "lose a worker host's link in the %s phase for longer than the worker timeout: its attempts re-run elsewhere, and it comes back",
      async (kind) => {
        const n = await startNet(2, ["--worker-timeout", "2000"]);
        // In the MAP phase, reduces wait for the last map, so that both workers run maps.
        const slowstart = kind === "MAP" ? ["--reduce-slowstart", "1"] : [];
        const params = kind === "MAP" ? ["slowMs=6"] : ["slowMs=6", "reduceSlowMs=40"];
        const jobId = await submit(n, params, "out", slowstart);
        const w1Ids = await workerIdsAt(n, n.cluster.workers.get("w1")!);
        await waitForAttemptOn(n, jobId, kind, w1Ids);
        await n.cluster.cutOff("w1", 5000); // past the worker timeout: the driver declares w1 lost
        const shown = await waitForEnd(n, jobId);
        await expectLocalOutput(n, shown);
        const lost = shown.tasks
          .flatMap((task) => task.attempts)
          .filter((attempt) => attempt.state === "LOST");
        expect(lost.length).toBeGreaterThanOrEqual(1);
        expect(lost.every((attempt) => w1Ids.has(attempt.worker))).toBe(true);
        expect(shown.events.map((event) => event.type)).toContain("worker-lost");
        // The worker, alive all along, registered again under a new id once it could.
        for (
          let i = 0;
          i < 100 && (await workerIdsAt(n, n.cluster.workers.get("w1")!)).size <= w1Ids.size;
          i++
        ) {
          await sleep(200);
        }
        expect((await workerIdsAt(n, n.cluster.workers.get("w1")!)).size).toBeGreaterThan(w1Ids.size);
      },
      90_000,
    );

    it("keep their tasks through a driver host's link going down for less than the worker timeout", async () => {
      const n = await startNet(2, ["--worker-timeout", "8000"]);
      const jobId = await submit(n, ["slowMs=4"]);
      await sleep(1500);
      await n.cluster.cutOff("hub", 3000);
      const shown = await waitForEnd(n, jobId);
      await expectLocalOutput(n, shown);
      const attempts = shown.tasks.flatMap((task) => task.attempts);
      expect(attempts.filter((attempt) => attempt.state !== "SUCCEEDED")).toEqual([]);
    }, 90_000);

    it("finish a job whose Redis host is cut off for a few seconds mid-job", async () => {
      const n = await startNet(2);
      const jobId = await submit(n, ["slowMs=4"]);
      await sleep(1500);
      await n.cluster.cutOff("redis", 4000);
      const shown = await waitForEnd(n, jobId);
      await expectLocalOutput(n, shown);
    }, 90_000);

    const noNetem = unavailable ?? netemUnavailable();
    it.skipIf(noNetem !== undefined)(
      `finish a job with 200 ms of delay and 5% loss on every link, losing no attempt to lateness${noNetem ? ` (skipped: ${noNetem})` : ""}`,
      async () => {
        const n = await startNet(2, ["--worker-timeout", "5000"]);
        for (const name of n.cluster.hosts.names)
          n.cluster.hosts.netem(name, { delayMs: 200, lossPercent: 5 });
        const jobId = await submit(n);
        const shown = await waitForEnd(n, jobId, 180_000);
        await expectLocalOutput(n, shown);
        const attempts = shown.tasks.flatMap((task) => task.attempts);
        expect(attempts.filter((attempt) => attempt.state === "LOST")).toEqual([]);
      },
      200_000,
    );
  },
);
