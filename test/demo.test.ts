import { describe, expect, inject, it } from "vitest";
import { mr } from "./helpers/cluster.js";

describe("mr demo", () => {
  it("runs wordcount on the sample books with its own driver and workers, and prints the top words", async () => {
    const result = await mr(["demo"], { ...process.env, MR_REDIS_URL: inject("redisUrl") });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain(`using Redis at ${inject("redisUrl")}`);
    expect(result.stderr).toMatch(/job 1 SUCCEEDED/);
    expect(result.stdout).toMatch(/Top 10 words \(output in .*\):/);
    expect(result.stdout).toMatch(/│ the\s+│ 6120\s+│/);
  });

  it("starts a private redis-server when MR_REDIS_URL does not answer", async () => {
    const result = await mr(["demo", "--workers", "1"], {
      ...process.env,
      MR_REDIS_URL: "redis://127.0.0.1:1",
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/started a private redis-server on redis:\/\/127\.0\.0\.1:\d+/);
  });
});
