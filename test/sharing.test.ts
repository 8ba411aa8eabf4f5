/** Jobs that share the cluster (round-robin, priorities) and workers they exclude, through real processes. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, inject, it } from "vitest";
import { mr, startCluster, waitForJobEnd, type Cluster } from "./helpers/cluster.js";
import { tempDir } from "./helpers/tmp.js";

let cluster: Cluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

/** Submits a faulty-app job of `maps` maps, each about 100 ms on one line of 20 records. */
async function submit(c: Cluster, dir: string, name: string, maps: number, extra: string[] = []) {
  const input = join(dir, `${name}.txt`);
  writeFileSync(input, "a b c d e f g h i j\n".repeat(20 * maps));
  const result = await mr(
    [
      "submit",
      "--app",
      "faulty",
      "--reducers",
      "1",
      "--split-size",
      String(20 * 20),
      "--param",
      "slowMs=5",
      "--output",
      join(dir, name),
      "--json",
      ...extra,
      input,
    ],
    c.env,
  );
  expect(result.code, result.stderr).toBe(0);
  const job = JSON.parse(result.stdout) as { id: number; maps: { total: number } };
  expect(job.maps.total).toBe(maps);
  return job.id;
}

describe("jobs that share the workers", () => {
  it("make progress together: a small job submitted after a big one does not wait for all of it", async () => {
    const dir = tempDir();
    cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 1 });
    const big = await submit(cluster, dir, "big", 40);
    await sleep(500);
    const small = await submit(cluster, dir, "small", 3);
    expect((await waitForJobEnd(cluster.client, small)).job!.state).toBe("SUCCEEDED");
    // Round-robin: the small job's maps went between the big one's, which is far from done.
    const bigNow = (await cluster.client.getJob(big)).job!;
    expect(bigNow.state).toBe("RUNNING");
    expect(bigNow.mapsDone).toBeLessThan(25);
    expect((await waitForJobEnd(cluster.client, big)).job!.state).toBe("SUCCEEDED");
  });

  it("let a job of higher priority go first", async () => {
    const dir = tempDir();
    cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 1 });
    const big = await submit(cluster, dir, "big", 30);
    await sleep(500);
    const urgent = await submit(cluster, dir, "urgent", 8, ["--priority", "5"]);
    expect((await waitForJobEnd(cluster.client, urgent)).job!.state).toBe("SUCCEEDED");
    const bigNow = (await cluster.client.getJob(big)).job!;
    // Its eight maps, and its reduce, ran before any more of the big job's, bar those under way.
    expect(bigNow.mapsDone).toBeLessThan(15);
    const shown = JSON.parse((await mr(["jobs", "show", String(urgent), "--json"], cluster.env)).stdout);
    expect(shown.priority).toBe(5);
    const refused = await mr(
      [
        "submit",
        "--app",
        "wordcount",
        "--reducers",
        "1",
        "--priority",
        "11",
        "--output",
        join(dir, "x"),
        "x",
      ],
      cluster.env,
    );
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("--priority must be an integer from 0 to 10");
    await cluster.client.cancelJob(big);
  });
});

describe("a job with --max-running-tasks", () => {
  it("never runs more of its tasks at once than that, however many slots are free", async () => {
    const dir = tempDir();
    cluster = await startCluster({
      dir,
      redisUrl: inject("redisUrl"),
      workers: 2,
      workerArgs: ["--slots", "2"],
    });
    const job = await submit(cluster, dir, "capped", 12, ["--max-running-tasks", "1"]);
    let most = 0;
    for (;;) {
      const detail = await cluster.client.getJob(job);
      const running = detail.tasks.filter((task) => task.state === "RUNNING").length;
      most = Math.max(most, running);
      if (detail.job!.state !== "RUNNING") break;
      await sleep(20);
    }
    expect(most).toBe(1);
    const shown = await mr(["jobs", "show", String(job)], cluster.env);
    expect(shown.stdout).toContain("at most   1 tasks at once");
    expect((await cluster.client.getJob(job)).job!.state).toBe("SUCCEEDED");
  });
});

describe("a worker that fails every task it touches", () => {
  it("gets no more of a job's tasks after 3 failures, and none of any job once two jobs excluded it", async () => {
    const dir = tempDir();
    cluster = await startCluster({
      dir,
      redisUrl: inject("redisUrl"),
      workers: 2,
      driverArgs: ["--max-attempts", "8"],
    });
    const bad = await cluster.startWorker({ MR_TEST_BAD_HOST: "1" });
    const job = await submit(cluster, dir, "out", 30, ["--param", "failWhereEnv=MR_TEST_BAD_HOST"]);
    let shownExcluded = false;
    for (let i = 0; i < 200 && !shownExcluded; i++) {
      const workers = JSON.parse((await mr(["workers", "list", "--json"], cluster.env)).stdout) as {
        address: string;
        excludedByJobs: number[];
      }[];
      shownExcluded = workers.some(
        (worker) => worker.address === bad.address && worker.excludedByJobs.includes(job),
      );
      if (!shownExcluded) await sleep(50);
    }
    expect(shownExcluded).toBe(true);
    const detail = await waitForJobEnd(cluster.client, job);
    expect(detail.job!.state).toBe("SUCCEEDED");
    const { workers } = await cluster.client.listWorkers();
    const badId = workers.find((worker) => worker.address === bad.address)!.id;
    const failed = detail.tasks
      .flatMap((task) => task.attempts)
      .filter((attempt) => attempt.state === "FAILED");
    expect(failed.map((attempt) => attempt.workerId)).toEqual([badId, badId, badId]);
    expect(
      detail.events.filter((event) => event.type === "worker-excluded").map((event) => event.message),
    ).toEqual([
      `worker ${badId} (${bad.address}) failed 3 of this job's attempts; it gets no more of its tasks`,
    ]);

    // A second job excludes it too: a bad host, not a bad fit. No job gives it a task for a while.
    const second = await submit(cluster, dir, "second", 30, ["--param", "failWhereEnv=MR_TEST_BAD_HOST"]);
    const secondDone = await waitForJobEnd(cluster.client, second);
    expect(secondDone.job!.state).toBe("SUCCEEDED");
    expect(secondDone.events.map((event) => event.message)).toContainEqual(
      expect.stringMatching(
        new RegExp(
          `^worker ${badId} .* was excluded by jobs ${job}, ${second}; it gets no task of any job until `,
        ),
      ),
    );
    const third = await submit(cluster, dir, "third", 12);
    const thirdDone = await waitForJobEnd(cluster.client, third);
    expect(thirdDone.job!.state).toBe("SUCCEEDED");
    const ranOn = thirdDone.tasks.flatMap((task) => task.attempts.map((attempt) => attempt.workerId));
    expect(ranOn).not.toContain(badId);
    const listed = JSON.parse((await mr(["workers", "list", "--json"], cluster.env)).stdout) as {
      id: number;
      excludedUntil: string | null;
    }[];
    expect(Date.parse(listed.find((worker) => worker.id === badId)!.excludedUntil!)).toBeGreaterThan(
      Date.now(),
    );
    expect((await mr(["workers", "list"], cluster.env)).stdout).toMatch(/all jobs until \d{4}-/);
  });
});
