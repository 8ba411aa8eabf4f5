/** JobEffects, the queue work that follows a commit, over an in-memory queue. */
import { join } from "node:path";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { JobEffects } from "../src/driver/jobEffects.js";
import { openDb } from "../src/store/db.js";
import { FakeQueue } from "./helpers/fakeQueue.js";
import { task } from "./helpers/tasks.js";
import { tempDir } from "./helpers/tmp.js";

function effectsOver(queue: FakeQueue, onWake: () => void = () => undefined): JobEffects {
  const db = openDb(join(tempDir(), "driver.db"));
  return new JobEffects(db, queue, { wake: onWake }, pino({ level: "silent" }));
}

describe("job effects", () => {
  it("enqueues a big job in chunks, and wakes pollers after each, so its first tasks start at once", async () => {
    const queue = new FakeQueue();
    const seen: string[] = [];
    const effects = effectsOver(queue, () => seen.push(`wake after ${queue.lanes.get("wordcount")!.length}`));

    await effects.applyQueueWork({ enqueue: Array.from({ length: 250 }, (_, i) => task(i)), drop: [] });

    expect(seen).toEqual(["wake after 100", "wake after 200", "wake after 250"]);
  });

  it("leaves the chunks after one that fails to recovery, rather than failing each in turn", async () => {
    const queue = new FakeQueue();
    queue.failEnqueue = new Error("READONLY You can't write against a read only replica.");
    const effects = effectsOver(queue);

    await effects.applyQueueWork({ enqueue: Array.from({ length: 250 }, (_, i) => task(i)), drop: [] });

    expect(queue.enqueueCalls).toBe(1);
  });

  it("drops ended tasks' entries first, then puts handed-back ones at the head of their lane", async () => {
    const queue = new FakeQueue();
    await queue.enqueue([task(1), task(2), task(3)]);
    const held = (await queue.fetch("t3", ["wordcount"]))!;
    const effects = effectsOver(queue);

    await effects.applyQueueWork({
      enqueue: [],
      drop: [{ ...task(2), state: "CANCELLED" }],
      requeue: [{ task: task(held.taskId), token: "t3" }],
    });

    expect(queue.released).toEqual(["gone j1-m2-g0", "back j1-m1-g0"]);
    expect(queue.lanes.get("wordcount")!.map((entry) => entry.taskId)).toEqual([1, 3]);
  });
});
