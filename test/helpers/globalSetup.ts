import type { TestProject } from "vitest/node";
import { startRedisServer } from "../../src/cli/processes.js";

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

/** One private redis-server for the run, on a free loopback port, unless MR_TEST_REDIS_URL names one. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env.MR_TEST_REDIS_URL) {
    project.provide("redisUrl", process.env.MR_TEST_REDIS_URL);
    return async () => undefined;
  }
  const redis = await startRedisServer();
  project.provide("redisUrl", redis.url);
  return () => redis.stop();
}
