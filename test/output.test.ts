/**
 * Outputs are complete or absent: committed parts wait in the job's temporary area until the
 * job commits, a job that does not succeed leaves no part file, and no job writes into a
 * directory that holds anything, unless told to empty it first.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, inject, it } from "vitest";
import {
  checkOutputDir,
  commitPartFile,
  markOutputSucceeded,
  prepareOutputDir,
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

  it("must be empty or not yet there, in a writable directory on a real filesystem", () => {
    const out = tempDir();
    checkOutputDir(join(out, "not", "yet"), false);
    checkOutputDir(out, false);
    writeFileSync(join(out, "notes.txt"), "mine\n");
    expect(() => checkOutputDir(out, false)).toThrow(
      `output directory ${out} is not empty: it holds notes.txt (choose another --output, or give --overwrite to empty it first)`,
    );
    checkOutputDir(out, true);
    writeFileSync(join(out, "_SUCCESS"), "");
    expect(() => checkOutputDir(out, false)).toThrow("it holds a finished job's output");
    expect(() => checkOutputDir(join(out, "notes.txt", "sub"), false)).toThrow(
      `${join(out, "notes.txt")} is not a directory`,
    );
    // Node's recursive mkdir loops forever under /proc: refused before anything tries.
    expect(() => checkOutputDir("/proc/mrout/sub", false)).toThrow("/proc is on proc, which holds no files");
  });

  it("is made one level at a time, and emptied only when told to", () => {
    const out = join(tempDir(), "a", "b");
    prepareOutputDir(out, false);
    expect(readdirSync(out)).toEqual(["_temporary"]); // where its attempts write, made by the submit
    writeFileSync(join(out, "old"), "");
    writeFileSync(join(out, "_temporary", "theirs"), "");
    prepareOutputDir(out, false);
    expect(readdirSync(out).sort()).toEqual(["_temporary", "old"]);
    expect(readdirSync(join(out, "_temporary"))).toEqual(["theirs"]);
    prepareOutputDir(out, true);
    expect(readdirSync(out)).toEqual(["_temporary"]);
    expect(readdirSync(join(out, "_temporary"))).toEqual([]);
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
      workers: 0,
      driverArgs: ["--max-attempts", "2"],
    });
    const out = join(dir, "out");
    writeFileSync(join(dir, "in.txt"), "a b\n");
    const job = await cluster.client.submitJob({
      app: "wordcount",
      inputs: [join(dir, "in.txt")],
      outputDir: out,
      reducers: 1,
      splitSizeBytes: 0,
      params: {},
    });
    // The submit made the directory and its _temporary; something puts a file in its place.
    expect(readdirSync(out)).toEqual(["_temporary"]);
    rmdirSync(join(out, "_temporary"));
    writeFileSync(join(out, "_temporary"), "a file where the committer needs a directory\n");
    await cluster.startWorker();
    const done = await waitForJobEnd(cluster.client, job.id);
    expect(done.job!.state).toBe("FAILED");
    expect(done.job!.error).toContain(`${join(out, "_temporary")} is a file, where a directory must be`);
    const reduce = done.tasks.find((task) => task.kind === "REDUCE")!;
    expect(reduce.attempts.map((attempt) => attempt.state)).toEqual(["FAILED", "FAILED"]);
  });

  it("that holds anything is refused by submit and run alike, and emptied with --overwrite", async () => {
    const dir = tempDir();
    cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 1 });
    const out = join(dir, "mine");
    mkdirSync(join(out, "_temporary"), { recursive: true });
    writeFileSync(join(out, "part-r-00000"), "the user's own\n");
    writeFileSync(join(out, "_temporary", "keep"), "the user's own\n");
    writeFileSync(join(dir, "in.txt"), "a\n");
    const job = ["--app", "wordcount", "--reducers", "2", "--output", out, join(dir, "in.txt")];
    const refusal = `mr: output directory ${out} is not empty: it holds _temporary, part-r-00000 (choose another --output, or give --overwrite to empty it first)\n`;
    for (const command of [["submit"], ["run", "--local"], ["run"]]) {
      const refused = await mr([...command, ...job], cluster.env);
      expect(refused.code, command.join(" ")).toBe(2);
      expect(refused.stderr).toBe(refusal);
    }
    expect(readFileSync(join(out, "part-r-00000"), "utf8")).toBe("the user's own\n");
    expect(existsSync(join(out, "_temporary", "keep"))).toBe(true);

    const submitted = await mr(["submit", ...job, "--overwrite", "--wait"], cluster.env);
    expect(submitted.code, submitted.stderr).toBe(0);
    expect(readdirSync(out).sort()).toEqual(["_SUCCESS", "part-r-00000", "part-r-00001"]);
    expect((await mr(["submit", ...job], cluster.env)).stderr).toContain(
      "which is SUCCEEDED (choose another --output, or give --overwrite to replace its output)",
    );
    const local = await mr(["run", ...job, "--overwrite"], cluster.env);
    expect(local.code, local.stderr).toBe(0);
    expect(readdirSync(out).sort()).toEqual(["_SUCCESS", "part-r-00000", "part-r-00001"]);

    // --overwrite never empties a directory that holds the job's own inputs.
    const books = join(dir, "books");
    mkdirSync(books);
    writeFileSync(join(books, "a.txt"), "a b\n");
    for (const command of [["submit"], ["run"]]) {
      const refused = await mr(
        [...command, "--app", "wordcount", "--reducers", "1", "--output", dir, "--overwrite", books],
        cluster.env,
      );
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain(`output directory ${dir} holds the input ${join(books, "a.txt")}`);
    }
    expect(readFileSync(join(books, "a.txt"), "utf8")).toBe("a b\n");
  });

  it("that cannot hold files, or whose parent is a file, is refused at once by submit and run alike", async () => {
    const dir = tempDir();
    cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 0 });
    writeFileSync(join(dir, "in.txt"), "a\n");
    writeFileSync(join(dir, "some-file.txt"), "");
    const cases = [
      ["/proc/mrout/", "/proc is on proc, which holds no files (choose a directory on a real filesystem)"],
      [join(dir, "some-file.txt", "sub"), `${join(dir, "some-file.txt")} is not a directory`],
    ];
    for (const [output, refusal] of cases) {
      for (const command of [["submit"], ["run", "--local"]]) {
        const refused = await mr(
          [...command, "--app", "wordcount", "--reducers", "1", "--output", output!, join(dir, "in.txt")],
          cluster.env,
        );
        expect(refused.code, `${command.join(" ")} ${output}`).toBe(2);
        expect(refused.stderr).toContain(refusal);
      }
    }
  });
});
