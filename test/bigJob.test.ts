/** A job as big as a job may be, through a real driver: its queueing is not mistaken for a loss. */
import { Redis } from "ioredis";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, inject, it } from "vitest";
import { LIMITS } from "../src/limits.js";
import { startCluster, type Cluster } from "./helpers/cluster.js";
import { tempDir, uniquePrefix } from "./helpers/tmp.js";

let cluster: Cluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

describe("a job of the most maps a job may have", () => {
  it("is queued in full, the queue check running all along never calls its tasks lost, and a cancel empties the queue", async () => {
    const dir = tempDir();
    const queuePrefix = uniquePrefix();
    cluster = await startCluster({
      dir,
      redisUrl: inject("redisUrl"),
      workers: 0,
      queuePrefix,
      driverArgs: ["--reconcile-interval", "200"],
    });
    const input = join(dir, "in.txt");
    writeFileSync(input, "x\n".repeat(LIMITS.maps / 2));
    const job = await cluster.client.submitJob({
      app: "wordcount",
      inputs: [input],
      outputDir: join(dir, "out"),
      reducers: 1,
      splitSizeBytes: 1,
      params: {},
    });
    expect(job.mapsTotal).toBe(LIMITS.maps);
    // Until every map is in the queue; the check runs every 200 ms all along, and a while after.
    const redis = new Redis(inject("redisUrl"));
    try {
      // Entries with a priority (all of them: see queuePriority) wait in BullMQ's prioritized set.
      const waiting = () => redis.zcard(`${queuePrefix}:tasks-wordcount:prioritized`);
      for (let i = 0; i < 600 && (await waiting()) < LIMITS.maps; i++) await sleep(100);
      expect(await waiting()).toBe(LIMITS.maps);
      await sleep(500);
      const { events } = await cluster.client.getJob(job.id);
      expect(events.filter((event) => event.type === "driver-recovered")).toEqual([]);
      // The cancel answers once SQLite has it; the entries leave the queue behind the reply.
      await cluster.client.cancelJob(job.id);
      for (let i = 0; i < 600 && (await waiting()) > 0; i++) await sleep(100);
      expect(await waiting()).toBe(0);
    } finally {
      redis.disconnect();
    }
  });
});
