import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { Redis } from "ioredis";
import { describe, expect, inject, it } from "vitest";
import { MR_BIN } from "../src/cli/processes.js";
import { mr } from "./helpers/cluster.js";

describe("mr demo", () => {
  it("runs wordcount on the sample books with its own driver and workers, prints the top words, and leaves nothing behind", async () => {
    const result = await mr(["demo"], { ...process.env, MR_REDIS_URL: inject("redisUrl") });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain(`using Redis at ${inject("redisUrl")}`);
    expect(result.stderr).toMatch(/job 1 SUCCEEDED/);
    expect(result.stdout).toMatch(/Top 10 words:/);
    expect(result.stdout).toMatch(/│ the\s+│ 6120\s+│/);
    // Its directory is gone, and so are its queue's keys in the shared Redis.
    const home = /state in (\S+)\/driver\.db/.exec(result.stderr)![1]!;
    expect(existsSync(home)).toBe(false);
    const redis = new Redis(inject("redisUrl"));
    try {
      expect(await redis.keys("mr-demo-*")).toEqual([]);
    } finally {
      redis.disconnect();
    }
  });

  it("with --serve keeps its web UI up after the job, until Ctrl-C, then cleans up", async () => {
    const child = spawn(process.execPath, [MR_BIN, "demo", "--workers", "1", "--serve"], {
      env: { ...process.env, MR_REDIS_URL: inject("redisUrl") },
      stdio: ["ignore", "ignore", "pipe"],
    });
    const exited = once(child, "exit");
    let home = "";
    let url = "";
    for await (const line of createInterface({ input: child.stderr! })) {
      home ||= /state in (\S+)\/driver\.db/.exec(line)?.[1] ?? "";
      url = /see the job at (http:\S+)\/jobs\/1/.exec(line)?.[1] ?? "";
      if (url) break;
    }
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const jobs = (await (await fetch(`${url}/api/v1/jobs`)).json()) as { jobs: { state: string }[] };
    expect(jobs.jobs.map((job) => job.state)).toEqual(["SUCCEEDED"]);
    child.kill("SIGINT");
    const [code] = await exited;
    expect(code).toBe(0);
    expect(existsSync(home)).toBe(false);
  });

  it("starts a private redis-server when MR_REDIS_URL does not answer, and keeps its directory with --keep", async () => {
    const result = await mr(["demo", "--workers", "1", "--keep"], {
      ...process.env,
      MR_REDIS_URL: "redis://127.0.0.1:1",
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/started a private redis-server on redis:\/\/127\.0\.0\.1:\d+/);
    const kept = /kept (\S+)/.exec(result.stderr)![1]!;
    expect(existsSync(`${kept}/out/_SUCCESS`)).toBe(true);
    expect(result.stdout).toContain(`Top 10 words (output in ${kept}/out):`);
  });
});
