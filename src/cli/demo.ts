/** `mr demo`: a whole cluster on this machine, one wordcount job, the top words. */
import type { Command } from "commander";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { LocalCluster } from "./cluster.js";
import { table } from "./format.js";
import { parsePositiveInt } from "./options.js";
import { deleteRedisKeys, pingRedis, startRedisServer, type RedisServer } from "./processes.js";
import { reportOutcome, waitWithProgress } from "./submit.js";

const SAMPLE_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "examples", "data");

export function addDemoCommand(program: Command, env: NodeJS.ProcessEnv): void {
  program
    .command("demo")
    .description(
      "start Redis if needed, a driver and two workers; run wordcount on sample books; print the top words",
    )
    .option("--workers <n>", "how many workers to start (default 2)", parsePositiveInt("--workers"))
    .option("--keep", "keep the demo's directory (database, logs, output) instead of removing it")
    .option("--serve", "keep the cluster and its web UI up after the job, until Ctrl-C")
    .action(async (options: { workers?: number; keep?: boolean; serve?: boolean }) =>
      runDemo(options.workers ?? 2, { keep: options.keep ?? false, serve: options.serve ?? false }, env),
    );
}

/**
 * Runs the demo, then leaves nothing behind: the cluster and any private Redis stopped, the
 * queue's keys deleted from a shared Redis, and the temporary directory removed unless `keep`.
 * With `serve`, the cluster stays up after the job until SIGINT or SIGTERM, for the web UI.
 */
async function runDemo(
  workerCount: number,
  { keep, serve }: { keep: boolean; serve: boolean },
  env: NodeJS.ProcessEnv,
): Promise<void> {
  const home = mkdtempSync(join(tmpdir(), "mr-demo-"));
  const queuePrefix = `mr-demo-${process.pid}`;
  let redis: RedisServer | undefined;
  let redisUrl: string | undefined;
  let cluster: LocalCluster | undefined;
  const say = (line: string): void => void process.stderr.write(`${line}\n`);
  try {
    redisUrl = await findRedis(env, (server) => (redis = server), say);
    cluster = await LocalCluster.start({ redisUrl, home, workers: workerCount, env, queuePrefix });
    say(`driver on ${cluster.driver.address}, state in ${cluster.dbPath}`);
    if (cluster.httpUrl) say(`web UI at ${cluster.httpUrl}/ (metrics at ${cluster.httpUrl}/metrics)`);
    cluster.workers.forEach((worker, i) => say(`worker ${i + 1} on ${worker.address}`));
    const inputs = readdirSync(SAMPLE_DIR).map((name) => join(SAMPLE_DIR, name));
    const outputDir = join(home, "out");
    const submitted = await cluster.client.submitJob({
      app: "wordcount",
      inputs,
      outputDir,
      reducers: 4,
      splitSizeBytes: 64 * 1024,
      params: {},
    });
    say(`job ${submitted.id}: wordcount over ${inputs.length} books, ${submitted.mapsTotal} maps, 4 reduces`);
    if (cluster.httpUrl) say(`watch it at ${cluster.httpUrl}/jobs/${submitted.id}`);
    const job = await waitWithProgress(cluster.client, submitted.id);
    reportOutcome(job);
    console.log(`Top 10 words${keep ? ` (output in ${outputDir})` : ""}:`);
    console.log(table(["WORD", "COUNT"], topWords(outputDir, 10)));
    if (serve && cluster.httpUrl) {
      say(
        `the cluster stays up: see the job at ${cluster.httpUrl}/jobs/${job.id} (Ctrl-C stops it and cleans up)`,
      );
      await new Promise((resolve) => {
        process.once("SIGINT", resolve);
        process.once("SIGTERM", resolve);
      });
    }
  } finally {
    await cluster?.stop();
    if (redis !== undefined) await redis.stop();
    else if (redisUrl !== undefined) await deleteRedisKeys(redisUrl, queuePrefix).catch(() => 0);
    if (keep) say(`kept ${home}`);
    else rmSync(home, { recursive: true, force: true });
  }
}

/** MR_REDIS_URL if it answers; else a private redis-server; else the default port if it answers. */
async function findRedis(
  env: NodeJS.ProcessEnv,
  onStarted: (server: RedisServer) => void,
  say: (line: string) => void,
): Promise<string> {
  if (env.MR_REDIS_URL && (await pingRedis(env.MR_REDIS_URL))) {
    say(`using Redis at ${env.MR_REDIS_URL}`);
    return env.MR_REDIS_URL;
  }
  try {
    const server = await startRedisServer();
    onStarted(server);
    say(`started a private redis-server on ${server.url}`);
    return server.url;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const fallback = "redis://127.0.0.1:6379";
  if (await pingRedis(fallback)) {
    say(`using Redis at ${fallback}`);
    return fallback;
  }
  throw new Error(
    "no Redis to use: MR_REDIS_URL is unset or does not answer, and there is no redis-server on PATH " +
      "(run 'docker compose -f docker-compose.redis.yml up -d', or install Redis: apt-get install redis-server, brew install redis)",
  );
}

/** The `n` most frequent words in wordcount output, ties broken by the word. */
function topWords(outputDir: string, n: number): [string, number][] {
  const counts: [string, number][] = [];
  for (const name of readdirSync(outputDir).filter((file) => file.startsWith("part-r-"))) {
    for (const line of readFileSync(join(outputDir, name), "utf8").split("\n")) {
      const tab = line.indexOf("\t");
      if (tab > 0) counts.push([line.slice(0, tab), Number(line.slice(tab + 1))]);
    }
  }
  return counts.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, n);
}
