/**
 * Outputs are complete or absent: committed parts wait in the job's temporary area until the
 * job commits, a job that does not succeed leaves no part file, and no job writes into a
 * directory that another job's parts are in.
 */
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, inject, it } from "vitest";
import {
  commitPartFile,
  markOutputSucceeded,
  outputConflict,
  removeTemporaryOutput,
  temporaryPartPath,
} from "../src/mr/output.js";
import { mr, startCluster, waitForJobEnd, type Cluster } from "./helpers/cluster.js";
import { tempDir } from "./helpers/tmp.js";

let cluster: Cluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

/** Writes attempt `attemptId`'s part `r`, as a reduce does. */
function writePart(outputDir: string, attemptId: string, r: number, text: string): void {
  const path = temporaryPartPath(outputDir, attemptId, r);
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, text);
}

describe("the output committer", () => {
  it("keeps committed parts out of the directory until the job commits, then moves them all", () => {
    const out = tempDir();
    writePart(out, "a0000000000000001", 0, "zero\n");
    writePart(out, "a0000000000000002", 1, "one\n");
    commitPartFile(out, "a0000000000000001", 0);
    commitPartFile(out, "a0000000000000002", 1);
    expect(readdirSync(out)).toEqual(["_temporary"]);
    markOutputSucceeded(out);
    expect(readdirSync(out).sort()).toEqual(["_SUCCESS", "part-r-00000", "part-r-00001"]);
    markOutputSucceeded(out); // again, as after a crash part way: nothing lost
    expect(readdirSync(out).sort()).toEqual(["_SUCCESS", "part-r-00000", "part-r-00001"]);
  });

  it("leaves nothing of a job that did not succeed", () => {
    const out = tempDir();
    writePart(out, "a0000000000000001", 0, "zero\n");
    commitPartFile(out, "a0000000000000001", 0);
    writePart(out, "a0000000000000003", 1, "half\n");
    removeTemporaryOutput(out);
    expect(readdirSync(out)).toEqual([]);
  });

  it("names what another job left: _SUCCESS, or stray part files", () => {
    const out = tempDir();
    expect(outputConflict(join(out, "not-yet"))).toBeUndefined();
    expect(outputConflict(out)).toBeUndefined();
    writeFileSync(join(out, "notes.txt"), "mine\n"); // other files are the user's business
    expect(outputConflict(out)).toBeUndefined();
    for (const r of [2, 0, 7, 9]) writeFileSync(join(out, `part-r-0000${r}`), "");
    expect(outputConflict(out)).toBe(
      "holds part files that another job left (part-r-00000, part-r-00002, part-r-00007, … (4 in all))",
    );
    writeFileSync(join(out, "_SUCCESS"), "");
    expect(outputConflict(out)).toBe("already holds a finished job's output");
  });
});

describe("a job's output directory", () => {
  it("gets no part file from a job cancelled part way, and then only the parts of the job that succeeds", async () => {
    const dir = tempDir();
    cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 1 });
    const input = join(dir, "in.txt");
    writeFileSync(input, "a b c d e f g h i j k l m n o p\n".repeat(200));
    const out = join(dir, "out");
    const job = { app: "wordcount", inputs: [input], outputDir: out, splitSizeBytes: 0, params: {} };
    const big = await cluster.client.submitJob({ ...job, reducers: 200 });
    for (let i = 0; i < 600; i++) {
      if ((await cluster.client.getJob(big.id)).job!.reducesDone >= 3) break;
      await sleep(50);
    }
    expect(readdirSync(out)).toEqual(["_temporary"]); // committed reduces, and no part file yet
    await cluster.client.cancelJob(big.id);
    const cancelled = await waitForJobEnd(cluster.client, big.id);
    expect(cancelled.job!.state).toBe("CANCELLED");
    expect(cancelled.job!.reducesDone).toBeGreaterThanOrEqual(3);
    for (let i = 0; i < 100 && readdirSync(out).length > 0; i++) await sleep(50);
    expect(readdirSync(out)).toEqual([]);

    const small = await cluster.client.submitJob({ ...job, reducers: 2 });
    expect((await waitForJobEnd(cluster.client, small.id)).job!.state).toBe("SUCCEEDED");
    expect(readdirSync(out).sort()).toEqual(["_SUCCESS", "part-r-00000", "part-r-00001"]);
  });

  it("that a worker cannot write into fails the job with the real cause, each attempt FAILED, none LOST", async () => {
    const dir = tempDir();
    cluster = await startCluster({
      dir,
      redisUrl: inject("redisUrl"),
      workers: 1,
      driverArgs: ["--max-attempts", "2"],
    });
    const out = join(dir, "out");
    mkdirSync(out);
    writeFileSync(join(out, "_temporary"), "a file where the committer needs a directory\n");
    writeFileSync(join(dir, "in.txt"), "a b\n");
    const job = await cluster.client.submitJob({
      app: "wordcount",
      inputs: [join(dir, "in.txt")],
      outputDir: out,
      reducers: 1,
      splitSizeBytes: 0,
      params: {},
    });
    const done = await waitForJobEnd(cluster.client, job.id);
    expect(done.job!.state).toBe("FAILED");
    expect(done.job!.error).toMatch(/ENOTDIR: not a directory/);
    const reduce = done.tasks.find((task) => task.kind === "REDUCE")!;
    expect(reduce.attempts.map((attempt) => attempt.state)).toEqual(["FAILED", "FAILED"]);
  });

  it("that holds another job's part files is refused, saying what to do", async () => {
    const dir = tempDir();
    cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 0 });
    const out = join(dir, "stale");
    mkdirSync(out);
    writeFileSync(join(out, "part-r-00002"), "old\n");
    writeFileSync(join(dir, "in.txt"), "a\n");
    const refused = await mr(
      ["submit", "--app", "wordcount", "--reducers", "2", "--output", out, join(dir, "in.txt")],
      cluster.env,
    );
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(
      `mr: output directory ${out} holds part files that another job left (part-r-00002) (choose another --output, or remove them)\n`,
    );
  });
});
