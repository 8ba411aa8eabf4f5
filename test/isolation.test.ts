/**
 * App code runs on a task thread of its own: an app that blocks fails its attempt after the
 * worker's --task-timeout, while the worker heartbeats, serves and goes on with other tasks.
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, inject, it } from "vitest";
import { startCluster, waitForJobEnd, type Cluster } from "./helpers/cluster.js";
import { tempDir } from "./helpers/tmp.js";

let cluster: Cluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

describe("an app that blocks", () => {
  it("fails its attempts after --task-timeout, naming the cause; its worker is never lost and runs the next job", async () => {
    const dir = tempDir();
    cluster = await startCluster({
      dir,
      redisUrl: inject("redisUrl"),
      workers: 1,
      driverArgs: ["--max-attempts", "2", "--worker-timeout", "2000"],
      workerArgs: ["--task-timeout", "2500"],
    });
    const input = join(dir, "in.txt");
    writeFileSync(input, "a b\nc d\n");
    const job = (app: string, params: Record<string, string>, out: string) =>
      cluster!.client.submitJob({
        app,
        inputs: [input],
        outputDir: join(dir, out),
        reducers: 1,
        splitSizeBytes: 0,
        params,
      });
    const { workers: before } = await cluster.client.listWorkers();
    // Blocks its thread for a minute on the first record: longer than the worker timeout, too.
    const stuck = await job("faulty", { stall: "1", stallMs: "60000" }, "stuck");
    const done = await waitForJobEnd(cluster.client, stuck.id);
    expect(done.job!.state).toBe("FAILED");
    expect(done.job!.error).toMatch(
      /made no progress for 2500 ms and was stopped \(the worker's --task-timeout\)/,
    );
    const map = done.tasks.find((task) => task.kind === "MAP")!;
    expect(map.attempts.map((attempt) => attempt.state)).toEqual(["FAILED", "FAILED"]);
    expect(done.events.filter((event) => event.type === "worker-lost")).toEqual([]);
    const { workers: after } = await cluster.client.listWorkers();
    expect(after.map(({ id, state }) => ({ id, state }))).toEqual(
      before.map(({ id }) => ({ id, state: "ALIVE" })),
    );
    // A fresh thread takes the next job.
    const next = await job("wordcount", {}, "next");
    expect((await waitForJobEnd(cluster.client, next.id)).job!.state).toBe("SUCCEEDED");
  });
});

describe("a task thread", () => {
  it("loads neither the AWS SDK nor gRPC to run a task: one starts per slot, and those two were most of its start", () => {
    // The modules taskThread.ts imports, in a process of their own; the SDK and gRPC are CommonJS,
    // so whatever loads them shows in the module cache.
    const script = `
      await import("./dist/mr/mapTask.js");
      await import("./dist/mr/reduceTask.js");
      await import("./dist/worker/apps.js");
      const { createRequire } = await import("node:module");
      const loaded = Object.keys(createRequire(import.meta.url).cache);
      console.log(JSON.stringify(loaded.filter((path) => /@aws-sdk|@grpc/.test(path))));`;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    expect(JSON.parse(out)).toEqual([]);
  });
});
