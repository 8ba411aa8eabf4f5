import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, inject, it } from "vitest";
import { spawnMr } from "../src/cli/processes.js";
import { ShuffleServiceClient, type Chunk } from "../src/gen/mapreduce.js";
import { CHANNEL_OPTIONS, credentials } from "../src/grpc.js";
import { withToken } from "../src/auth.js";
import {
  countersOf,
  committedOnce,
  startCluster,
  mr,
  shuffleKeyOf,
  tokenOf,
  waitForJobEnd,
  type Cluster,
} from "./helpers/cluster.js";
import { countWords, partFiles, readOutput, writeCorpus } from "./helpers/corpus.js";
import { tempDir } from "./helpers/tmp.js";

let cluster: Cluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

describe("a job through a real driver and real workers", () => {
  it("runs wordcount on three workers to exactly the output of mr run --local, and keeps its history across a driver restart", async () => {
    const dir = tempDir();
    const inputs = writeCorpus(dir, { files: 4, bytes: 60_000, seed: 42 });
    cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 3 });
    const env = cluster.env;
    const jobArgs = ["--app", "wordcount", "--reducers", "5", "--split-size", "10000"];

    const submitted = await mr(
      ["submit", ...jobArgs, "--output", join(dir, "out"), "--wait", "--json", ...inputs],
      env,
    );
    expect(submitted.stderr).toContain("SUCCEEDED");
    expect(submitted.code).toBe(0);
    const job = JSON.parse(submitted.stdout);
    expect(job).toMatchObject({
      state: "SUCCEEDED",
      maps: { done: job.maps.total },
      reduces: { done: 5, total: 5 },
    });
    expect(job.maps.total).toBeGreaterThanOrEqual(20);

    const local = await mr(["run", "--local", ...jobArgs, "--output", join(dir, "local"), ...inputs], env);
    expect(local.code).toBe(0);
    const distributed = partFiles(join(dir, "out"));
    expect(Object.keys(distributed)).toHaveLength(5);
    expect(distributed).toEqual(partFiles(join(dir, "local")));
    expect(readOutput(join(dir, "out"))).toEqual(
      [...countWords(inputs)].map(([word, n]) => `${word}\t${n}`).sort(),
    );
    expect(readdirSync(join(dir, "out")).sort()).toEqual(["_SUCCESS", ...Object.keys(distributed).sort()]);

    const shown = JSON.parse((await mr(["jobs", "show", String(job.id), "--json"], env)).stdout);
    expect(shown.tasks).toHaveLength(job.maps.total + 5);
    for (const task of shown.tasks) {
      expect(task.state).toBe("SUCCEEDED");
      expect(
        task.attempts.filter((attempt: { state: string }) => attempt.state === "SUCCEEDED"),
      ).toHaveLength(1);
    }
    expect(shown.counters.REDUCE_OUTPUT_RECORDS).toBe(String(countWords(inputs).size));
    expect(shown.counters.MAP_INPUT_BYTES).toBe(
      String(inputs.reduce((sum, path) => sum + readFileSync(path).length, 0)),
    );
    const workersUsed = new Set(
      shown.tasks.flatMap((task: { attempts: { worker: number }[] }) => task.attempts.map((a) => a.worker)),
    );
    expect(workersUsed.size).toBeGreaterThan(1);

    const workers = JSON.parse((await mr(["workers", "list", "--json"], env)).stdout);
    expect(workers.map((worker: { state: string }) => worker.state)).toEqual(["ALIVE", "ALIVE", "ALIVE"]);

    const listed = await mr(["jobs", "list"], env);
    expect(listed.stdout).toMatch(
      new RegExp(
        `${job.id}\\s+│ wordcount │ SUCCEEDED │\\s+│ ${job.maps.total}/${job.maps.total}\\s+│ 5/5\\s+│ ${join(dir, "out")}`,
      ),
    );

    await cluster.driver.stop(); // SIGTERM: a clean stop, exit code 0
    expect(cluster.driver.child.exitCode).toBe(0);
    await cluster.startDriver();
    const afterRestart = await mr(["jobs", "list", "--json"], env);
    expect(JSON.parse(afterRestart.stdout)).toEqual([
      expect.objectContaining({ id: job.id, state: "SUCCEEDED" }),
    ]);
    const shownAgain = JSON.parse((await mr(["jobs", "show", String(job.id), "--json"], env)).stdout);
    expect(shownAgain).toEqual(shown);
  });

  it("runs a second job after the first on the same workers, and an indexer job to the same output as local", async () => {
    const dir = tempDir();
    const inputs = writeCorpus(dir, { files: 3, bytes: 20_000, seed: 9 });
    cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 2 });
    const jobArgs = ["--app", "indexer", "--reducers", "3", "--split-size", "6000"];
    for (const name of ["first", "second"]) {
      const result = await mr(
        ["submit", ...jobArgs, "--output", join(dir, name), "--wait", ...inputs],
        cluster.env,
      );
      expect(result.code, result.stderr).toBe(0);
    }
    await mr(["run", "--local", ...jobArgs, "--output", join(dir, "local"), ...inputs], cluster.env);
    expect(partFiles(join(dir, "second"))).toEqual(partFiles(join(dir, "local")));
    expect(partFiles(join(dir, "first"))).toEqual(partFiles(join(dir, "local")));
  });

  it("packs many small files into a few maps, and indexes each word under its own file, as local does", async () => {
    const dir = tempDir();
    const inputs = writeCorpus(dir, { files: 30, bytes: 2_000, seed: 19 });
    cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 2 });
    const jobArgs = ["--app", "indexer", "--reducers", "2", "--split-size", "64KiB", "--open-cost", "4KiB"];
    const submitted = await mr(
      ["submit", ...jobArgs, "--output", join(dir, "out"), "--wait", "--json", ...inputs],
      cluster.env,
    );
    expect(submitted.code, submitted.stderr).toBe(0);
    const job = JSON.parse(submitted.stdout);
    // 30 files of 6 KiB each counting the open cost, 64 KiB a map at most: 3 maps would do, but
    // 2 workers take 2 waves of 2 even maps.
    expect(job).toMatchObject({ state: "SUCCEEDED", maps: { total: 4 }, openCostBytes: 4096 });

    const local = await mr(["run", ...jobArgs, "--output", join(dir, "local"), ...inputs], cluster.env);
    expect(local.stderr).toContain("ran 3 maps"); // one slot: as few maps as the split size allows
    const apart = ["--app", "indexer", "--reducers", "2", "--split-size", "64KiB", "--open-cost", "64KiB"];
    const alone = await mr(["run", ...apart, "--output", join(dir, "alone"), ...inputs], cluster.env);
    expect(alone.stderr).toContain("ran 30 maps");
    expect(partFiles(join(dir, "out"))).toEqual(partFiles(join(dir, "alone")));
    expect(partFiles(join(dir, "local"))).toEqual(partFiles(join(dir, "alone")));
  });

  it("runs as many tasks at once on a worker as it has --slots", async () => {
    const dir = tempDir();
    cluster = await startCluster({
      dir,
      redisUrl: inject("redisUrl"),
      workers: 1,
      workerArgs: ["--slots", "2"],
    });
    const input = join(dir, "input.txt");
    writeFileSync(input, "slow words here\n".repeat(80));
    const job = await cluster.client.submitJob({
      app: "faulty",
      inputs: [input],
      outputDir: join(dir, "out"),
      reducers: 1,
      splitSizeBytes: 640, // two maps of 40 lines, 25 ms a line
      params: { slowMs: "25" },
    });
    let most = 0;
    for (let i = 0; i < 100 && most < 2; i++) {
      const detail = await cluster.client.getJob(job.id);
      const running = detail.tasks.filter((task) => task.attempts.some((a) => a.state === "RUNNING"));
      most = Math.max(most, running.length);
      await sleep(20);
    }
    expect(most).toBe(2);
    const done = await waitForJobEnd(cluster.client, job.id);
    expect(done.job!.state).toBe("SUCCEEDED");
    expect(committedOnce(done)).toBe(true);
    expect(readOutput(join(dir, "out"))).toEqual(["here\t80", "slow\t80", "words\t80"]);
  });

  it("gives each worker started with --port 0 a data directory of its own, gone when it stops", async () => {
    const dir = tempDir();
    cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 0 });
    // MR_TOKEN_FILE gives these workers their secret, as --token-file would.
    const env: NodeJS.ProcessEnv = {
      ...cluster.env,
      MR_DRIVER: cluster.driver.address,
      MR_TOKEN_FILE: cluster.tokenFiles!.worker,
    };
    const workers = [
      await spawnMr(["worker", "--port", "0"], { env }),
      await spawnMr(["worker", "--port", "0"], { env }),
    ];
    const dirs = workers.map((worker) => join(env.MR_HOME!, `worker-${worker.address.split(":")[1]}`));
    expect(dirs[0]).not.toBe(dirs[1]);
    expect(dirs.map((path) => existsSync(path))).toEqual([true, true]);
    for (const worker of workers) await worker.stop();
    expect(dirs.map((path) => existsSync(path))).toEqual([false, false]);
  });

  it("drops a job's map output once the job has ended, from memory and from disk", async () => {
    const dir = tempDir();
    cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 1 });
    const letters = (i: number): string =>
      [...i.toString(26)].map((digit) => String.fromCharCode(97 + parseInt(digit, 26))).join("");
    const big = join(dir, "big.txt"); // one map of 200,000 distinct words: over 1 MiB of output, on disk
    writeFileSync(big, Array.from({ length: 200_000 }, (_, i) => letters(i)).join(" ") + "\n");
    const small = join(dir, "small.txt"); // small maps: their output stays in memory
    writeFileSync(small, "a b\n".repeat(4));
    const job = await cluster.client.submitJob({
      app: "wordcount",
      inputs: [big, small],
      outputDir: join(dir, "out"),
      reducers: 1,
      splitSizeBytes: 8 * 1024 * 1024,
      params: {},
    });
    const done = await waitForJobEnd(cluster.client, job.id);
    expect(done.job!.state).toBe("SUCCEEDED");
    expect(countersOf(done).MAP_OUTPUT_BYTES).toBeGreaterThan(1024 * 1024);
    const mapAttempts = done.tasks
      .filter((task) => task.kind === "MAP")
      .map((task) => task.attempts.find((attempt) => attempt.state === "SUCCEEDED")!.id);
    const worker = cluster.workers[0]!;
    const shuffle = new ShuffleServiceClient(
      worker.address,
      credentials.createInsecure(),
      withToken(CHANNEL_OPTIONS, tokenOf(cluster, "worker")),
    );
    const dataDir = join(dir, "worker-1"); // the helper's --data-dir of its first worker
    const shuffleKey = shuffleKeyOf(cluster, job.id);
    try {
      const errors = async (): Promise<string[]> => {
        const found: string[] = [];
        const stream = shuffle.fetchPartition({
          attemptIds: mapAttempts,
          partition: 0,
          jobId: job.id,
          shuffleKey,
        });
        for await (const chunk of stream as AsyncIterable<Chunk>) if (chunk.error) found.push(chunk.error);
        return found;
      };
      let left = await errors();
      for (let i = 0; i < 50 && left.length < mapAttempts.length; i++) {
        await sleep(100);
        left = await errors();
      }
      expect(left).toEqual(
        mapAttempts.map((id) => `attempt ${id} has no committed output of job ${job.id} on this worker`),
      );
      expect(readdirSync(dataDir).filter((name) => name.endsWith(".out"))).toEqual([]);
    } finally {
      shuffle.close();
    }
  });

  it("reports how far each running attempt has got, in mr jobs show and in the job's progress", async () => {
    const dir = tempDir();
    cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 1 });
    const [input] = writeCorpus(dir, { files: 1, bytes: 24_000, seed: 8 });
    // One slow map: about 400 lines at 8 ms each, so heartbeats see it part of the way through.
    const job = await cluster.client.submitJob({
      app: "faulty",
      inputs: [input!],
      outputDir: join(dir, "out"),
      reducers: 1,
      splitSizeBytes: 1 << 20,
      params: { slowMs: "8" },
    });
    const progressOf = async () =>
      (await cluster!.client.getJob(job.id)).tasks[0]!.attempts[0]?.progress ?? 0;
    await expect.poll(progressOf, { timeout: 20_000, interval: 100 }).toBeGreaterThan(0);
    const running = await cluster.client.getJob(job.id);
    const share = running.tasks[0]!.attempts[0]!.progress;
    expect(share).toBeLessThan(1);
    expect(running.job!.mapsProgress).toBeGreaterThan(0);
    expect(running.job!.mapsDone).toBe(0);
    const shown = await mr(["jobs", "show", String(job.id)], cluster.env);
    expect(shown.stdout).toMatch(/RUNNING \d+%/);
    const done = await waitForJobEnd(cluster.client, job.id);
    expect(done.tasks.flatMap((task) => task.attempts.map((attempt) => attempt.progress))).toEqual([1, 1]);
  });
});
