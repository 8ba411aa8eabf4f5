import { pino } from "pino";
import { afterEach, describe, expect, inject, it } from "vitest";
import { Redis } from "ioredis";
import { startRedisServer } from "../src/cli/processes.js";
import { BullmqTaskQueue, queueJobId } from "../src/driver/queue.js";
import { task } from "./helpers/tasks.js";
import { uniquePrefix } from "./helpers/tmp.js";

const log = pino({ level: "silent" });
const APPS = ["wordcount"];
const open: BullmqTaskQueue[] = [];

function openQueue(overrides: { lockDurationMs?: number; redisUrl?: string } = {}): BullmqTaskQueue {
  const queue = BullmqTaskQueue.open(
    {
      redisUrl: overrides.redisUrl ?? inject("redisUrl"),
      prefix: uniquePrefix(),
      lockDurationMs: overrides.lockDurationMs ?? 5000,
      maxAttempts: 4,
      retryBackoffMs: 100,
      maxStalledCount: 20,
    },
    log,
  );
  open.push(queue);
  return queue;
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((queue) => queue.close()));
});

describe("the queue adapter (BullMQ on a real Redis)", () => {
  it("names entries after task and generation, so enqueueing twice adds nothing", async () => {
    const queue = openQueue();
    expect(queueJobId(task(3, 2))).toBe("j1-m3-g2");
    await queue.enqueue([task(1), task(2)]);
    await queue.enqueue([task(1)]);
    const first = await queue.fetch("token-a", APPS);
    const second = await queue.fetch("token-b", APPS);
    expect([first?.taskId, second?.taskId].sort()).toEqual([1, 2]);
    expect(await queue.fetch("token-c", APPS)).toBeNull();
  });

  it("hands out the tasks of jobs of one priority round-robin, and a job of a higher priority's first", async () => {
    const queue = openQueue();
    const of = (jobId: number, index: number, jobPriority = 0) => ({
      ...task(jobId * 100 + index),
      jobId,
      index,
      jobPriority,
    });
    await queue.enqueue([0, 1, 2, 3, 4].map((m) => of(1, m)));
    await queue.enqueue([0, 1, 2].map((m) => of(2, m))); // a second job, submitted after
    await queue.enqueue([0, 1].map((m) => of(3, m, 5))); // a third, of priority 5
    const order: number[] = [];
    for (let entry = await queue.fetch("t", APPS); entry; entry = await queue.fetch("t", APPS)) {
      order.push(entry.taskId);
    }
    expect(order).toEqual([300, 301, 100, 200, 101, 201, 102, 202, 103, 104]);
  });

  it("holds a fetched entry under its token until it is completed", async () => {
    const queue = openQueue();
    await queue.enqueue([task(1)]);
    const entry = (await queue.fetch("attempt-1", APPS))!;
    expect(await queue.extend([{ task: task(1), token: "attempt-1" }])).toEqual([]);
    expect(await queue.extend([{ task: task(1), token: "someone-else" }])).toEqual([entry.queueJobId]);
    await queue.release(task(1), { as: "done", token: "attempt-1" });
    expect(await queue.missing([task(1), task(9)])).toEqual([task(1), task(9)]);
  });

  it("brings a failed entry back after its backoff, and drops one failed for good", async () => {
    const queue = openQueue();
    await queue.enqueue([task(1), task(2)]);
    const a = (await queue.fetch("t1", APPS))!;
    const b = (await queue.fetch("t2", APPS))!;
    await queue.release(task(a.taskId), { as: "retry", token: "t1", error: "flaky" });
    await queue.release(task(b.taskId), { as: "gone", token: "t2", why: "broken" });
    await expect
      .poll(() => queue.fetch("t3", APPS).then((entry) => entry?.queueJobId), { timeout: 5000 })
      .toBe(a.queueJobId);
    expect(await queue.missing([task(b.taskId)])).toEqual([task(b.taskId)]);
  });

  it("hands an entry out again once its lease expires", async () => {
    const queue = openQueue({ lockDurationMs: 1000 });
    await queue.enqueue([task(1)]);
    const entry = (await queue.fetch("dead-worker", APPS))!;
    await expect
      .poll(() => queue.fetch("next", APPS).then((again) => again?.queueJobId), {
        timeout: 10_000,
        interval: 250,
      })
      .toBe(entry.queueJobId);
  });

  it("removes waiting and held entries alike", async () => {
    const queue = openQueue();
    await queue.enqueue([task(1), task(2)]);
    const held = (await queue.fetch("t1", APPS))!;
    const waiting = task(held.taskId === 1 ? 2 : 1);
    await queue.release(task(held.taskId), { as: "gone", token: "t1", why: "task ended" });
    await queue.release(waiting, { as: "gone", token: null, why: "task ended" });
    expect(await queue.missing([task(held.taskId), waiting])).toEqual([task(held.taskId), waiting]);
    expect(await queue.fetch("t2", APPS)).toBeNull();
  });

  it("hands a worker only tasks of the apps it offers, each app in its own lane", async () => {
    const queue = openQueue();
    await queue.enqueue([task(1, 0, "custom"), task(2, 0, "wordcount")]);
    expect(await queue.fetch("t1", ["indexer"])).toBeNull();
    expect((await queue.fetch("t2", ["wordcount"]))?.taskId).toBe(2);
    expect(await queue.fetch("t3", ["wordcount"])).toBeNull();
    expect(await queue.fetch("t4", ["wordcount", "custom"])).toMatchObject({ taskId: 1, app: "custom" });
  });

  it("tries a lane lately found empty after the others, until something is added to it", async () => {
    // A Redis of its own, so that its script calls are this test's alone.
    const redis = await startRedisServer();
    const stats = new Redis(redis.url);
    const scriptCalls = async (): Promise<number> => {
      const info = await stats.info("commandstats");
      return [...info.matchAll(/cmdstat_eval(?:sha)?:calls=(\d+)/g)].reduce(
        (sum, m) => sum + Number(m[1]),
        0,
      );
    };
    try {
      const queue = openQueue({ redisUrl: redis.url, lockDurationMs: 120_000 });
      const apps = ["custom", "wordcount"];
      await queue.enqueue([task(1), task(2), task(3)]);
      expect(await queue.fetch("t1", apps, 0)).toMatchObject({ taskId: 1 }); // custom was tried first
      await new Promise((resolve) => setTimeout(resolve, 200)); // the lanes' first stalled checks
      const before = await scriptCalls();
      expect(await queue.fetch("t2", apps, 0)).toMatchObject({ taskId: 2 });
      expect((await scriptCalls()) - before).toBe(1); // straight to wordcount
      await queue.enqueue([task(4, 0, "custom")]);
      expect(await queue.fetch("t3", apps, 0)).toMatchObject({ taskId: 4, app: "custom" });
    } finally {
      stats.disconnect();
      await redis.stop();
    }
  });
});
