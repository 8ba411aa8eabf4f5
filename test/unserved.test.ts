/** A job whose app no live worker offers says so, and fails in the end, naming the app. */
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

async function submitted(dir: string): Promise<number> {
  const input = join(dir, "in.txt");
  writeFileSync(input, "a b a\n");
  const job = await cluster!.client.submitJob({
    app: "wordcount",
    inputs: [input],
    outputDir: join(dir, "out"),
    reducers: 1,
    splitSizeBytes: 0,
    params: {},
  });
  return job.id;
}

describe("a job no live worker can run", () => {
  it("says what it waits for, notes it in its history, and fails after --no-worker-timeout naming the app", async () => {
    const dir = tempDir();
    cluster = await startCluster({
      dir,
      redisUrl: inject("redisUrl"),
      workers: 0,
      driverArgs: ["--no-worker-timeout", "4000"],
    });
    const jobId = await submitted(dir);
    const shown = await mr(["jobs", "show", String(jobId)], cluster.env);
    expect(shown.stdout).toContain("waiting   for a live worker that offers app wordcount");
    const done = await waitForJobEnd(cluster.client, jobId);
    expect(done.job!.state).toBe("FAILED");
    expect(done.job!.error).toMatch(
      /^no live worker offered app wordcount for \d+ s \(start a worker whose --apps-dir has wordcount\.mjs, or raise the driver's --no-worker-timeout\)$/,
    );
    expect(done.job!.waitingFor).toBe("");
    const noted = done.events.filter((event) => event.type === "app-unserved").map((event) => event.message);
    expect(noted).toEqual([
      "no live worker offers app wordcount; the job waits, and fails if none does within 4 s (start a worker whose --apps-dir has wordcount.mjs)",
    ]);
  });

  it("goes on once a worker that offers its app registers", async () => {
    const dir = tempDir();
    cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 0 });
    const jobId = await submitted(dir);
    expect((await cluster.client.getJob(jobId)).job!.waitingFor).toBe(
      "a live worker that offers app wordcount",
    );
    await sleep(200);
    await cluster.startWorker();
    const done = await waitForJobEnd(cluster.client, jobId);
    expect(done.job!.state).toBe("SUCCEEDED");
    expect(done.job!.waitingFor).toBe("");
  });
});
