/** The TaskService contract, spoken by hand to a real driver: what a worker sees. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, inject, it } from "vitest";
import { TaskServiceClient, type TaskAssignment } from "../src/gen/mapreduce.js";
import { CHANNEL_OPTIONS, callUnary, credentials } from "../src/grpc.js";
import { withToken } from "../src/auth.js";
import { startCluster, tokenOf, type Cluster } from "./helpers/cluster.js";
import { tempDir } from "./helpers/tmp.js";

let cluster: Cluster | undefined;
let client: TaskServiceClient | undefined;

afterEach(async () => {
  client?.close();
  await cluster?.stop();
  cluster = client = undefined;
});

/** A driver with no workers, a job of `maps` one-line maps, and a hand-driven worker registered. */
async function setup(maps: number, driverArgs: string[] = [], slots = 1) {
  const dir = tempDir();
  cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 0, driverArgs });
  client = new TaskServiceClient(
    cluster.driver.address,
    credentials.createInsecure(),
    withToken(CHANNEL_OPTIONS, tokenOf(cluster, "worker")),
  );
  const tasks = client;
  const { workerId } = await callUnary(
    tasks.registerWorker.bind(tasks),
    { address: "127.0.0.1:1", apps: ["wordcount"], slots },
    5000,
  );
  const input = join(dir, "input.txt");
  writeFileSync(input, "a b\n".repeat(maps));
  const job = await cluster.client.submitJob({
    app: "wordcount",
    inputs: [input],
    outputDir: join(dir, "out"),
    reducers: 1,
    splitSizeBytes: 4,
    params: {},
  });
  const poll = async (): Promise<TaskAssignment | undefined> =>
    (await callUnary(tasks.pollTask.bind(tasks), { workerId, maxTasks: 1 }, 10_000)).tasks[0];
  const complete = async (attemptId: string, next: boolean): Promise<TaskAssignment | undefined> =>
    (
      await callUnary(
        tasks.completeTask.bind(tasks),
        { workerId, completions: [{ attemptId, counters: [] }], nextTasks: next ? 1 : 0 },
        5000,
      )
    ).tasks[0];
  const heartbeat = async (attemptIds: string[], outputJobIds: number[] = []) => {
    const attempts = attemptIds.map((attemptId) => ({ attemptId, progress: 0 }));
    return callUnary(tasks.heartbeat.bind(tasks), { workerId, attempts, outputJobIds }, 5000);
  };
  return { job, tasks, workerId, poll, complete, heartbeat };
}

describe("Heartbeat", () => {
  it("names the jobs of the worker's map output that have ended, so that it can drop it", async () => {
    const { job, poll, complete, heartbeat } = await setup(1);
    const map = (await poll())!;
    await complete(map.attemptId, false);
    // The job still runs (its reduce has yet to fetch); job 999 is unknown here.
    expect((await heartbeat([], [job.id, 999])).endedJobIds).toEqual([999]);
    await cluster!.client.cancelJob(job.id);
    expect((await heartbeat([], [job.id])).endedJobIds).toEqual([job.id]);
  });

  it("puts back a task whose assignment never reached the worker, once its heartbeats leave it out", async () => {
    const { job, poll, heartbeat } = await setup(1, ["--worker-timeout", "1500"]);
    const lost = (await poll())!; // as if the reply had been lost: the worker never runs it
    const started = Date.now();
    let again: TaskAssignment | undefined;
    while (!again && Date.now() - started < 10_000) {
      await heartbeat([]);
      const { tasks } = await cluster!.client.getJob(job.id);
      if (tasks[0]!.state === "PENDING" || tasks[0]!.attempts.some((a) => a.state === "LOST")) {
        again = await poll();
      }
      await sleep(200);
    }
    expect(again).toMatchObject({ kind: "MAP", index: lost.index });
    expect(again!.attemptId).not.toBe(lost.attemptId);
    // Put back by the heartbeats, not by the 30 s lease: the lost attempt's own recorded times.
    const { events, tasks } = await cluster!.client.getJob(job.id);
    const orphan = tasks[0]!.attempts.find((attempt) => attempt.id === lost.attemptId)!;
    expect(orphan.state).toBe("LOST");
    expect(orphan.finishedAtMs - orphan.startedAtMs).toBeLessThan(30_000);
    expect(events.map((event) => event.type)).toContain("attempt-orphaned");
  });
});

describe("CompleteTask", () => {
  it("hands the worker its next task in the reply when it asks, and only then", async () => {
    const { job, poll, complete } = await setup(3);
    const first = (await poll())!;
    const second = await complete(first.attemptId, true);
    expect(second).toMatchObject({ jobId: job.id, kind: "MAP" });
    expect(second!.index).not.toBe(first.index);
    expect(await complete(second!.attemptId, false)).toBeUndefined();
    const third = (await poll())!;
    expect(new Set([first.index, second!.index, third.index])).toEqual(new Set([0, 1, 2]));
    // Nothing was ready when the last map reported; the reduce it released comes to a poll.
    expect(await complete(third.attemptId, true)).toBeUndefined();
    expect(await poll()).toMatchObject({ kind: "REDUCE", index: 0 });
    const detail = await cluster!.client.getJob(job.id);
    expect(detail.job).toMatchObject({ mapsDone: 3 });
  });

  it("commits the reports of one call each on its own, and hands over as many tasks as asked", async () => {
    const { job, tasks, workerId } = await setup(5, [], 4);
    const { tasks: firstTwo } = await callUnary(
      tasks.pollTask.bind(tasks),
      { workerId, maxTasks: 2 },
      10_000,
    );
    expect(firstTwo.map(({ kind }) => kind)).toEqual(["MAP", "MAP"]);
    const completions = [
      ...firstTwo.map(({ attemptId }) => ({ attemptId, counters: [] })),
      { attemptId: "a0000000000000000", counters: [] }, // unknown: refused, alone
    ];
    const reply = await callUnary(
      tasks.completeTask.bind(tasks),
      { workerId, completions, nextTasks: 3 },
      5000,
    );
    expect(reply.refused.slice(0, 2)).toEqual(["", ""]);
    expect(reply.refused[2]).toMatch(/a0000000000000000/);
    expect(reply.tasks.map(({ kind }) => kind)).toEqual(["MAP", "MAP", "MAP"]);
    const indexes = [...firstTwo, ...reply.tasks].map(({ index }) => index);
    expect(new Set(indexes)).toEqual(new Set([0, 1, 2, 3, 4]));
    expect((await cluster!.client.getJob(job.id)).job).toMatchObject({ mapsDone: 2 });
  });

  it("hands a worker no more tasks at once than it has slots", async () => {
    const { tasks, workerId } = await setup(6, [], 2);
    const polled = await callUnary(tasks.pollTask.bind(tasks), { workerId, maxTasks: 5 }, 10_000);
    expect(polled.tasks).toHaveLength(2);
  });
});
