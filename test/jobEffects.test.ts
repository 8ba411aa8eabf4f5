import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { Dispatcher } from "../src/driver/dispatcher.js";
import { JobEffects } from "../src/driver/jobEffects.js";
import type { TaskQueue } from "../src/driver/queue.js";
import type { Db } from "../src/store/db.js";
import type { TaskRecord } from "../src/store/rows.js";
import { task } from "./helpers/tasks.js";

describe("job effects", () => {
  it("enqueues a big job in chunks, and wakes pollers after each, so its first tasks start at once", async () => {
    const seen: string[] = [];
    const queue = {
      isConnected: () => true,
      enqueue: async (tasks: readonly TaskRecord[]) => {
        await Promise.resolve();
        seen.push(`enqueue ${tasks[0]!.id}-${tasks.at(-1)!.id}`);
      },
    } as unknown as TaskQueue;
    const dispatcher = { wake: () => seen.push("wake") } as unknown as Dispatcher;
    const effects = new JobEffects({} as Db, queue, dispatcher, pino({ level: "silent" }));

    await effects.applyQueueWork({ enqueue: Array.from({ length: 250 }, (_, i) => task(i)), drop: [] });

    expect(seen).toEqual(["enqueue 0-99", "wake", "enqueue 100-199", "wake", "enqueue 200-249", "wake"]);
  });

  it("leaves the chunks after one that fails to recovery, rather than failing each in turn", async () => {
    let calls = 0;
    const queue = {
      isConnected: () => true,
      enqueue: () => {
        calls++;
        return Promise.reject(new Error("READONLY You can't write against a read only replica."));
      },
    } as unknown as TaskQueue;
    const dispatcher = { wake: () => undefined } as unknown as Dispatcher;
    const effects = new JobEffects({} as Db, queue, dispatcher, pino({ level: "silent" }));

    await effects.applyQueueWork({ enqueue: Array.from({ length: 250 }, (_, i) => task(i)), drop: [] });

    expect(calls).toBe(1);
  });
});
