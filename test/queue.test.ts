import { pino } from "pino";
import { afterEach, describe, expect, inject, it } from "vitest";
import { TaskQueue, queueJobId } from "../src/driver/queue.js";
import type { TaskRecord } from "../src/store/rows.js";
import { uniquePrefix } from "./helpers/tmp.js";

const log = pino({ level: "silent" });
const open: TaskQueue[] = [];

function openQueue(overrides: { lockDurationMs?: number } = {}): TaskQueue {
  const queue = TaskQueue.open(
    {
      redisUrl: inject("redisUrl"),
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

function task(id: number, generation = 0): TaskRecord {
  return {
    id,
    jobId: 1,
    kind: "MAP",
    index: id,
    state: "PENDING",
    generation,
    file: "f",
    startByte: 0,
    endByte: 1,
    attemptId: null,
    failedAttempts: 0,
    lostAttempts: 0,
  };
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
    const first = await queue.fetch("token-a");
    const second = await queue.fetch("token-b");
    expect([first?.taskId, second?.taskId].sort()).toEqual([1, 2]);
    expect(await queue.fetch("token-c")).toBeNull();
  });

  it("holds a fetched entry under its token until it is completed", async () => {
    const queue = openQueue();
    await queue.enqueue([task(1)]);
    const entry = (await queue.fetch("attempt-1"))!;
    expect(await queue.extend([{ queueJobId: entry.queueJobId, token: "attempt-1" }])).toEqual([]);
    expect(await queue.extend([{ queueJobId: entry.queueJobId, token: "someone-else" }])).toEqual([
      entry.queueJobId,
    ]);
    await queue.complete(entry.queueJobId, "attempt-1");
    expect(await queue.missing([entry.queueJobId, "j1-m9-g0"])).toEqual([entry.queueJobId, "j1-m9-g0"]);
  });

  it("brings a failed entry back after its backoff, and drops one failed for good", async () => {
    const queue = openQueue();
    await queue.enqueue([task(1), task(2)]);
    const a = (await queue.fetch("t1"))!;
    const b = (await queue.fetch("t2"))!;
    await queue.fail(a.queueJobId, "t1", "flaky", true);
    await queue.fail(b.queueJobId, "t2", "broken", false);
    await expect
      .poll(() => queue.fetch("t3").then((entry) => entry?.queueJobId), { timeout: 5000 })
      .toBe(a.queueJobId);
    expect(await queue.missing([b.queueJobId])).toEqual([b.queueJobId]);
  });

  it("hands an entry out again once its lease expires", async () => {
    const queue = openQueue({ lockDurationMs: 1000 });
    await queue.enqueue([task(1)]);
    const entry = (await queue.fetch("dead-worker"))!;
    await expect
      .poll(() => queue.fetch("next").then((again) => again?.queueJobId), { timeout: 10_000, interval: 250 })
      .toBe(entry.queueJobId);
  });

  it("removes waiting and held entries alike", async () => {
    const queue = openQueue();
    await queue.enqueue([task(1), task(2)]);
    const held = (await queue.fetch("t1"))!;
    const waiting = queueJobId(task(held.taskId === 1 ? 2 : 1));
    await queue.drop(held.queueJobId, "t1");
    await queue.drop(waiting, null);
    expect(await queue.missing([held.queueJobId, waiting])).toEqual([held.queueJobId, waiting]);
    expect(await queue.fetch("t2")).toBeNull();
  });
});
