/**
 * Fault injection into real processes: workers killed and paused, the driver killed, Redis
 * flushed and restarted, a task that always throws, chaos, cancel. Every run that succeeds must
 * give exactly the output of the local engine, with one committed attempt per task.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, inject, it } from "vitest";
import { startRedisServer, type RedisServer } from "../src/cli/processes.js";
import { submitJob } from "../src/driver/scheduler.js";
import type * as pb from "../src/gen/mapreduce.js";
import { BUILTIN_APPS } from "../src/mr/apps/index.js";
import { runLocalJob } from "../src/mr/local.js";
import { openDb } from "../src/store/db.js";
import { moveJob } from "../src/store/lifecycle.js";
import {
  countersOf,
  committedOnce,
  mr,
  startCluster,
  waitForJobEnd,
  waitForRunningAttempt,
  type Cluster,
  type ClusterOptions,
} from "./helpers/cluster.js";
import { partFiles, writeCorpus } from "./helpers/corpus.js";
import { tempDir } from "./helpers/tmp.js";

const REDUCERS = 3;
let cluster: Cluster | undefined;
let redis: RedisServer | undefined;

afterEach(async () => {
  await cluster?.stop();
  await redis?.stop();
  cluster = undefined;
  redis = undefined;
});

interface Setup {
  dir: string;
  inputs: string[];
  cluster: Cluster;
}

async function setup(options: Partial<ClusterOptions> & { bytes?: number } = {}): Promise<Setup> {
  const dir = tempDir();
  const inputs = writeCorpus(dir, { files: 3, bytes: options.bytes ?? 24_000, seed: 5 });
  cluster = await startCluster({
    dir,
    redisUrl: inject("redisUrl"),
    workers: 3,
    ...options,
    driverArgs: ["--worker-timeout", "3000", ...(options.driverArgs ?? [])],
  });
  return { dir, inputs, cluster };
}

function submit(setup: Setup, params: Record<string, string>, name = "out"): Promise<pb.Job> {
  return setup.cluster.client.submitJob({
    app: "faulty",
    inputs: setup.inputs,
    outputDir: join(setup.dir, name),
    reducers: REDUCERS,
    splitSizeBytes: 4000,
    params,
  });
}

/** The output must equal wordcount run by the local engine on the same input, file for file. */
async function expectLocalOutput({ dir, inputs }: Setup, name = "out"): Promise<void> {
  const localDir = join(dir, `${name}-local`);
  await runLocalJob({
    app: BUILTIN_APPS.wordcount!,
    params: {},
    inputs,
    outputDir: localDir,
    reducers: REDUCERS,
    splitSizeBytes: 4000,
  });
  expect(partFiles(join(dir, name))).toEqual(partFiles(localDir));
  expect(existsSync(join(dir, name, "_SUCCESS"))).toBe(true);
  expect(existsSync(join(dir, name, "_temporary"))).toBe(false);
}

function countLines(inputs: string[]): number {
  return inputs.reduce((sum, path) => {
    const text = readFileSync(path, "utf8");
    return sum + text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
  }, 0);
}

/** Every line the cluster's workers have logged so far. */
function workerLogs({ dir }: Setup): string[] {
  return readdirSync(dir)
    .filter((name) => /^worker-\d+\.log$/.test(name))
    .flatMap((name) => readFileSync(join(dir, name), "utf8").split("\n"));
}

function attemptsOf(detail: pb.JobDetail, attemptId: string): { task: pb.Task; attempt: pb.Attempt } {
  for (const task of detail.tasks) {
    const attempt = task.attempts.find((candidate) => candidate.id === attemptId);
    if (attempt) return { task, attempt };
  }
  throw new Error(`no attempt ${attemptId}`);
}

describe("a worker killed with SIGKILL", () => {
  it.each(["MAP", "REDUCE"] as const)(
    "in the middle of a %s: the task runs again and the job succeeds",
    async (kind) => {
      const s = await setup();
      // Slow enough to be caught mid-flight: the maps, and the reduces when they are the victims.
      const job = await submit(s, { slowMs: "8", ...(kind === "REDUCE" ? { reduceSlowMs: "60" } : {}) });
      const victim = await waitForRunningAttempt(s.cluster.client, job.id, kind);
      const waiting = mr(["jobs", "wait", String(job.id)], s.cluster.env); // a user watching
      await sleep(300);
      await s.cluster.workerAt(victim.worker.address).stop("SIGKILL");

      const detail = await waitForJobEnd(s.cluster.client, job.id);
      expect(detail.job!.state).toBe("SUCCEEDED");
      const watched = await waiting;
      expect(watched.code).toBe(0);
      if (detail.events.some((event) => event.type === "map-rerun")) {
        // The maps done fell back: the watcher was told why, not left with a count that drops.
        expect(watched.stderr).toMatch(/\d+ maps? to run again: their output was lost with a worker/);
      }
      await expectLocalOutput(s);
      expect(committedOnce(detail)).toBe(true);
      const { task, attempt } = attemptsOf(detail, victim.attempt.id);
      expect(attempt.state).toBe("LOST");
      expect(attempt.error).toMatch(/lost: no heartbeat for \d+ ms/);
      const retry = task.attempts.find((other) => other.state === "SUCCEEDED")!;
      expect(retry.workerId).not.toBe(victim.worker.id);
      expect(retry.startedAtMs).toBeGreaterThan(attempt.startedAtMs);
      const types = detail.events.map((event) => event.type);
      expect(types).toContain("worker-lost");
      // Retried and re-run attempts count nothing: each record once.
      expect(countersOf(detail).MAP_INPUT_RECORDS).toBe(countLines(s.inputs));
      expect(countersOf(detail).REDUCE_INPUT_GROUPS).toBe(countersOf(detail).REDUCE_OUTPUT_RECORDS);

      const shown = await mr(["jobs", "show", String(job.id)], s.cluster.env);
      expect(shown.stdout).toContain(victim.attempt.id);
      expect(shown.stdout).toMatch(/worker-lost/);
      // The job is marked as one whose tasks ran again, and a lost worker's re-run maps share a line.
      expect(detail.job!.retries).toBeGreaterThanOrEqual(1);
      expect(shown.stdout).toContain(`retries   ${detail.job!.retries} `);
      const listed = (await mr(["jobs", "list"], s.cluster.env)).stdout;
      expect(listed).toMatch(
        new RegExp(`│ ${job.id}\\s+│ faulty\\s+│ SUCCEEDED │ ${detail.job!.retries}\\s+│`),
      );
      const reruns = detail.events.filter((event) => event.type === "map-rerun").length;
      if (reruns > 1) {
        expect(shown.stdout).toMatch(new RegExp(`map-rerun\\s+${reruns} maps \\(\\d+, \\d+, `));
        const all = (await mr(["jobs", "show", String(job.id), "--all"], s.cluster.env)).stdout;
        expect(all.match(/map-rerun/g)).toHaveLength(reruns);
      }
      const workers = JSON.parse((await mr(["workers", "list", "--json"], s.cluster.env)).stdout);
      expect(workers.find((worker: { id: number }) => worker.id === victim.worker.id).state).toBe("LOST");
    },
  );
});

describe("a worker stopped with SIGTERM", () => {
  it("drains: STOPPED at once, its unfinished attempt handed back uncharged, and the job ends with no LOST attempt", async () => {
    const s = await setup({ workerArgs: ["--drain-timeout", "300"] });
    const job = await submit(s, { reduceSlowMs: "60" });
    const victim = await waitForRunningAttempt(s.cluster.client, job.id, "REDUCE");
    const signalledAt = Date.now();
    const stopped = s.cluster.workerAt(victim.worker.address).stop("SIGTERM");
    const stateOf = async () =>
      (await s.cluster.client.listWorkers()).workers.find((worker) => worker.id === victim.worker.id)!;
    await expect.poll(async () => (await stateOf()).state, { timeout: 10_000, interval: 50 }).toBe("STOPPED");
    await stopped;
    // Deregistering records when the worker was last heard from: it did not wait out the
    // 3000 ms worker timeout, as a silent worker would.
    expect((await stateOf()).lastHeartbeatMs - signalledAt).toBeLessThan(3000);

    const detail = await waitForJobEnd(s.cluster.client, job.id);
    expect(detail.job!.state).toBe("SUCCEEDED");
    await expectLocalOutput(s);
    expect(committedOnce(detail)).toBe(true);
    const states = detail.tasks.flatMap((task) => task.attempts.map((attempt) => attempt.state));
    expect(states).not.toContain("LOST");
    const { task, attempt } = attemptsOf(detail, victim.attempt.id);
    expect(attempt.state).toBe("KILLED");
    expect(attempt.error).toMatch(/stopped \(SIGTERM\); handed back/);
    expect(task.attempts.find((other) => other.state === "SUCCEEDED")!.workerId).not.toBe(victim.worker.id);
    expect(detail.events.map((event) => event.type)).toContain("worker-stopped");
    const listed = await mr(["workers", "list"], s.cluster.env);
    const row = listed.stdout.split("\n").find((line) => line.includes(victim.worker.address));
    expect(row).toContain("STOPPED");
  });
});

describe("a worker paused past its timeout", () => {
  it("is declared lost; when it resumes, its late report is refused and it registers again", async () => {
    const s = await setup();
    const job = await submit(s, { slowMs: "8" });
    const victim = await waitForRunningAttempt(s.cluster.client, job.id, "MAP");
    const paused = s.cluster.workerAt(victim.worker.address);
    paused.child.kill("SIGSTOP");
    await expect
      .poll(async () => attemptsOf(await s.cluster.client.getJob(job.id), victim.attempt.id).attempt.state, {
        timeout: 15_000,
        interval: 200,
      })
      .toBe("LOST");
    await sleep(1000);
    paused.child.kill("SIGCONT");

    const detail = await waitForJobEnd(s.cluster.client, job.id);
    expect(detail.job!.state).toBe("SUCCEEDED");
    await expectLocalOutput(s);
    expect(committedOnce(detail)).toBe(true);
    expect(attemptsOf(detail, victim.attempt.id).attempt.state).toBe("LOST");
    // The resumed worker learned that it was lost: it dropped its attempt and came back under a new id.
    await expect
      .poll(async () =>
        (await s.cluster.client.listWorkers()).workers
          .filter((w) => w.address === victim.worker.address)
          .map((w) => w.state),
      )
      .toEqual(["LOST", "ALIVE"]);
    const log = readFileSync(join(s.dir, `worker-${s.cluster.workers.indexOf(paused) + 1}.log`), "utf8");
    expect(log).toMatch(/aborting it|attempt aborted|refused; output discarded|declared this worker lost/);
  });
});

describe("the driver killed with SIGKILL mid-job, twice", () => {
  it("comes back with its history, lets running attempts report, and finishes the job", async () => {
    const s = await setup();
    const job = await submit(s, { slowMs: "8", reduceSlowMs: "40" });
    const waiting = mr(["jobs", "wait", String(job.id)], s.cluster.env); // follows the job across restarts
    for (const phase of ["MAP", "MAP"] as const) {
      await waitForRunningAttempt(s.cluster.client, job.id, phase);
      await s.cluster.driver.stop("SIGKILL");
      await sleep(500);
      await s.cluster.startDriver();
    }
    const detail = await waitForJobEnd(s.cluster.client, job.id);
    expect(detail.job!.state).toBe("SUCCEEDED");
    expect((await waiting).code).toBe(0);
    await expectLocalOutput(s);
    expect(committedOnce(detail)).toBe(true);
    const types = detail.events.map((event) => event.type);
    expect(types[0]).toBe("submitted");
    expect(types.filter((type) => type === "driver-recovered").length).toBeGreaterThanOrEqual(2);
    expect(types.at(-1)).toBe("succeeded");
    expect(countersOf(detail).MAP_INPUT_RECORDS).toBe(countLines(s.inputs));
  });
});

describe("the driver stopped between a job's end and its _SUCCESS", () => {
  it("finishes the output directory when it starts again", async () => {
    const dir = tempDir();
    // The database as that driver left it: the job SUCCEEDED, its output not yet finished.
    const home = join(dir, "home");
    mkdirSync(home, { recursive: true });
    const db = openDb(join(home, "driver.db"));
    const out = join(dir, "out");
    const { job } = submitJob(
      db,
      { app: "wordcount", inputs: [], outputDir: out, reducers: 1, splitSizeBytes: 1, params: {} },
      Date.now(),
    );
    expect(moveJob(db, job.id, "succeed", null, Date.now())).toBe(true);
    db.close();
    mkdirSync(join(out, "_temporary", "a0123456789abcdef"), { recursive: true });
    writeFileSync(join(out, "part-r-00000"), "word\t1\n");

    cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 0 });
    expect(readdirSync(out).sort()).toEqual(["_SUCCESS", "part-r-00000"]);
    const reader = openDb(join(home, "driver.db"));
    expect(reader.prepare("SELECT output_finished FROM jobs WHERE id = ?").pluck().get(job.id)).toBe(1);
    reader.close();
  });
});

describe("Redis", () => {
  async function setupWithOwnRedis(): Promise<Setup> {
    redis = await startRedisServer();
    return setup({ redisUrl: redis.url, driverArgs: ["--reconcile-interval", "1000"] });
  }

  it("flushed mid-job: the queue is rebuilt from SQLite and the job succeeds", async () => {
    const s = await setupWithOwnRedis();
    const job = await submit(s, { slowMs: "8" });
    await waitForRunningAttempt(s.cluster.client, job.id, "MAP");
    const { Redis } = await import("ioredis");
    const connection = new Redis(redis!.url);
    await connection.flushall();
    connection.disconnect();
    const detail = await waitForJobEnd(s.cluster.client, job.id);
    expect(detail.job!.state).toBe("SUCCEEDED");
    await expectLocalOutput(s);
    expect(committedOnce(detail)).toBe(true);
    expect(detail.events.map((event) => event.type)).toContain("driver-recovered");
  });

  it("stopped and restarted mid-job: submits fail with UNAVAILABLE meanwhile, then the job succeeds", async () => {
    const s = await setupWithOwnRedis();
    const job = await submit(s, { slowMs: "8" });
    await waitForRunningAttempt(s.cluster.client, job.id, "MAP");
    const port = redis!.port;
    await redis!.stop();
    // A submit may still be taken in the moment before the driver sees Redis go (SQLite holds
    // it; the queue check adds it later): each try names a directory of its own.
    let tries = 0;
    await expect
      .poll(
        () =>
          s.cluster.client
            .submitJob({ ...jobRequest(s), outputDir: join(s.dir, `other-${tries++}`) })
            .catch((err) => err.details),
        { timeout: 15_000 },
      )
      .toMatch(/cannot reach Redis .* \(start Redis, then submit again\)/);
    const list = await mr(["jobs", "list", "--json"], s.cluster.env);
    expect(list.code).toBe(0); // history stays readable
    await sleep(1500);
    redis = await startRedisServer(port);
    const detail = await waitForJobEnd(s.cluster.client, job.id);
    expect(detail.job!.state).toBe("SUCCEEDED");
    await expectLocalOutput(s);
    expect(committedOnce(detail)).toBe(true);
  });
});

function jobRequest(s: Setup): pb.SubmitJobRequest {
  return {
    app: "wordcount",
    inputs: s.inputs,
    outputDir: join(s.dir, "x"),
    reducers: 1,
    splitSizeBytes: 0,
    params: {},
    overwrite: false,
    priority: 0,
    maxRunningTasks: 0,
    noSpeculation: false,
  };
}

/** The task that a failed job's error names: of several that fail, the first to fail for good. */
function failedTask(detail: pb.JobDetail): pb.Task {
  const [, kind, index] = /^(map|reduce) (\d+) failed/.exec(detail.job!.error)!;
  return detail.tasks.find((task) => task.kind === kind!.toUpperCase() && task.index === Number(index))!;
}

describe("a task that always throws", () => {
  it("fails its job after 4 attempts with the error shown, and the driver runs the next job", async () => {
    const s = await setup();
    const job = await submit(s, { poison: "Москва" });
    const detail = await waitForJobEnd(s.cluster.client, job.id);
    expect(detail.job!.state).toBe("FAILED");
    expect(detail.job!.error).toMatch(
      /^map \d+ failed 4 times; last error: poisoned record at .*input-\d\.txt:\d+$/,
    );
    const failed = failedTask(detail);
    expect(failed.attempts.map((attempt) => attempt.state)).toEqual(["FAILED", "FAILED", "FAILED", "FAILED"]);
    // Exponential backoff between the tries, by the attempts' recorded times: each retry waits
    // at least the first delay (1 s), and longer than the one before.
    const gaps = failed.attempts
      .slice(1)
      .map((attempt, i) => attempt.startedAtMs - failed.attempts[i]!.finishedAtMs);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(900);
    expect(gaps).toEqual([...gaps].sort((a, b) => a - b));
    const shown = await mr(["jobs", "show", String(job.id)], s.cluster.env);
    expect(shown.stdout).toContain("poisoned record at");
    expect(shown.stdout).toMatch(/task-retried/);
    expect(existsSync(join(s.dir, "out", "_temporary"))).toBe(false);

    const next = await submit(s, {}, "next");
    expect((await waitForJobEnd(s.cluster.client, next.id)).job!.state).toBe("SUCCEEDED");
    await expectLocalOutput(s, "next");
  });

  it.each([
    ["map", { unrecoverable: "Москва" }, /cannot parse the record at .*input-\d\.txt:\d+/],
    ["reduce", { unrecoverableKey: "Москва" }, /cannot reduce key Москва/],
  ] as const)(
    "fails its job at the first attempt when its %s throws an UnrecoverableError",
    async (kind, params, message) => {
      const s = await setup();
      const job = await submit(s, params);
      const detail = await waitForJobEnd(s.cluster.client, job.id);
      expect(detail.job!.state).toBe("FAILED");
      expect(detail.job!.error).toMatch(
        new RegExp(`^${kind} \\d+ failed with an unrecoverable error, not retried: `),
      );
      expect(detail.job!.error).toMatch(message);
      expect(failedTask(detail).attempts.map((attempt) => attempt.state)).toEqual(["FAILED"]);
      expect(detail.events.map((event) => event.type)).not.toContain("task-retried");
    },
  );
});

describe("chaos", () => {
  it("fail their job once a task has lost --max-lost-attempts attempts with them: an app that kills its worker", async () => {
    const s = await setup({
      workers: 2,
      driverArgs: ["--heartbeat-interval", "250", "--worker-timeout", "1000", "--max-lost-attempts", "2"],
    });
    const stopReplacing = s.cluster.replaceDeadWorkers();
    try {
      const job = await submit(s, { crash: "1" }); // every map kills its worker at its first record
      const detail = await waitForJobEnd(s.cluster.client, job.id, 60_000);
      expect(detail.job!.state).toBe("FAILED");
      expect(detail.job!.error).toMatch(
        /^map \d+: worker lost 2 times while running this task; the app may be killing its worker$/,
      );
    } finally {
      await stopReplacing();
    }
  }, 90_000);

  it("workers that crash and stall at random, restarted as they die, still give the exact output", async () => {
    const s = await setup();
    const stopReplacing = s.cluster.replaceDeadWorkers();
    try {
      // Four records of this corpus kill their worker once each; beyond those, about 1 map
      // attempt in 20 kills its worker and 1 in 20 hangs it past the timeout.
      const markers = join(s.dir, "crashed");
      mkdirSync(markers);
      const job = await submit(s, {
        crashOnce: markers,
        crashEvery: "400",
        crash: "0.0005",
        stall: "0.0005",
        stallMs: "4000",
      });
      const detail = await waitForJobEnd(s.cluster.client, job.id, 240_000);
      expect(detail.job!.state, detail.job!.error).toBe("SUCCEEDED");
      await expectLocalOutput(s);
      expect(committedOnce(detail)).toBe(true);
      expect(readdirSync(markers)).toHaveLength(4);
      // The crashes cost attempts: lost with their workers, or beaten by a backup while the
      // dead worker was not yet declared lost (a dead holder's progress stops: a straggler).
      const attempts = detail.tasks.flatMap((task) => task.attempts);
      const costly = attempts.filter(
        (attempt) => attempt.state === "LOST" || /committed (map|reduce) \d+ first/.test(attempt.error),
      );
      expect(costly.length).toBeGreaterThan(0);
    } finally {
      await stopReplacing();
    }
  }, 300_000);
});

describe("the early shuffle", () => {
  it("starts reduces while maps still run, each fetching map output as it commits, with the exact output", async () => {
    const s = await setup({ bytes: 12_000 });
    const job = await submit(s, { slowMs: "15" });
    const detail = await waitForJobEnd(s.cluster.client, job.id, 120_000);
    expect(detail.job!.state, detail.job!.error).toBe("SUCCEEDED");
    expect(detail.job!.reduceSlowstart).toBe(0.05);
    await expectLocalOutput(s);
    expect(committedOnce(detail)).toBe(true);
    const types = detail.events.map(({ type }) => type);
    expect(types.indexOf("reduces-released")).toBeGreaterThan(0);
    expect(types.indexOf("reduces-released")).toBeLessThan(types.indexOf("maps-done"));
    // Three single-slot workers: one reduce at a time may start early, the others once every map is done.
    const committed = (kind: string) =>
      detail.tasks
        .filter((task) => task.kind === kind)
        .map((task) => task.attempts.find((attempt) => attempt.state === "SUCCEEDED")!);
    const lastMapEnd = Math.max(...committed("MAP").map((attempt) => attempt.finishedAtMs));
    const early = committed("REDUCE").filter((attempt) => attempt.startedAtMs < lastMapEnd);
    expect(early.length).toBe(1);
    expect(countersOf(detail).SHUFFLE_BYTES).toBeGreaterThan(0);
  });

  it("finishes, with the exact output, while a worker is SIGKILLed every 1.5 s and replaced", async () => {
    // Losses seen within a second: a worker lives about 4.5 s here.
    const s = await setup({
      bytes: 48_000,
      slots: 2,
      // Each kill loses the attempts of its worker, an early reduce's too: a reduce is lost
      // about once a job's worth of its workers' lives, which the default budget (20) is not for.
      driverArgs: ["--heartbeat-interval", "250", "--worker-timeout", "1000", "--max-lost-attempts", "1000"],
    });
    const stopReplacing = s.cluster.replaceDeadWorkers();
    let kills = 0;
    try {
      const job = await submit(s, { slowMs: "2" });
      let ended = false;
      const end = waitForJobEnd(s.cluster.client, job.id, 240_000).finally(() => (ended = true));
      while (!ended) {
        await Promise.race([sleep(1500), end]);
        // The oldest: each worker lives about as long as the others.
        if (!ended && (await s.cluster.killOldestWorker())) kills++;
      }
      const detail = await end;
      expect(detail.job!.state, detail.job!.error).toBe("SUCCEEDED");
      await expectLocalOutput(s);
      expect(committedOnce(detail)).toBe(true);
      expect(kills).toBeGreaterThanOrEqual(2);
      const lost = detail.tasks.flatMap((task) => task.attempts).filter(({ state }) => state === "LOST");
      expect(lost.length).toBeGreaterThan(0);
    } finally {
      await stopReplacing();
    }
  }, 300_000);
});

describe("cancel", () => {
  it("stops a running job: CANCELLED, attempts killed, and no part file written, even later", async () => {
    const s = await setup();
    const job = await submit(s, { slowMs: "8" });
    const running = await waitForRunningAttempt(s.cluster.client, job.id, "MAP");
    const cancelled = await mr(["jobs", "cancel", String(job.id)], s.cluster.env);
    expect(cancelled.stdout).toBe(`job ${job.id} CANCELLED\n`);
    const detail = await s.cluster.client.getJob(job.id);
    expect(detail.job!.state).toBe("CANCELLED");
    expect(attemptsOf(detail, running.attempt.id).attempt.state).toBe("KILLED");
    expect(detail.tasks.every((task) => task.state === "CANCELLED" || task.state === "SUCCEEDED")).toBe(true);
    // The attempt ends on its worker: stopped when a heartbeat tells of the cancel, or, if it
    // finished first, with its report refused and its output dropped.
    const ended = (line: string): boolean =>
      line.includes(running.attempt.id) && /attempt aborted|refused; output discarded/.test(line);
    await expect.poll(() => workerLogs(s).some(ended), { timeout: 15_000 }).toBe(true);
    const output = join(s.dir, "out");
    expect(existsSync(output) ? readdirSync(output).filter((name) => name.startsWith("part-")) : []).toEqual(
      [],
    );
    expect((await s.cluster.client.getJob(job.id)).job!.state).toBe("CANCELLED");
    expect(
      (await s.cluster.client.listWorkers()).workers.every((worker) => worker.runningAttempts.length === 0),
    ).toBe(true);
  });
});
