/**
 * npm run bench. Measures, in one run, on one generated corpus:
 * - the word tokenizer alone (lines, as `map` splits them), the byte word counter alone (as the
 *   block mapper counts), and wordcount with `mr run --local`, with a cluster of 1 worker
 *   and with a cluster of 2 workers: wall time, MB/s, peak worker RSS, and cluster(2)/local;
 * - dispatch: a job of 1,000+ tiny splits end to end, against a bare BullMQ loop on the same Redis;
 * - memory: one map sorting an input four times its sort buffer into one partition.
 * Environment: MR_BENCH_MB (corpus size, default 256), MR_BENCH_RUNS (runs per setup, default 1),
 * MR_BENCH_ONLY (a comma-separated choice of throughput, dispatch and memory; default all).
 */
import { Queue, Worker } from "bullmq";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { LocalCluster } from "../cli/cluster.js";
import { table } from "../cli/format.js";
import { MR_BIN, startRedisServer, type RedisServer } from "../cli/processes.js";
import { followJob } from "../cli/watch.js";
import { WordCounts } from "../mr/apps/wordCounts.js";
import { forEachWord } from "../mr/apps/words.js";
import { readRange, readRangeBlocks } from "../mr/split.js";
import { writeZipfCorpus } from "./corpus.js";
import { median } from "./median.js";

const MB = 1024 * 1024;
const CORPUS_MB = Number(process.env.MR_BENCH_MB ?? 256);
const RUNS = Number(process.env.MR_BENCH_RUNS ?? 1);
const SORT_BUFFER_MB = 64;
const BENCH_APPS = fileURLToPath(new URL("../../bench/apps", import.meta.url));

interface Measure {
  seconds: number;
  peakRssMb: number;
}

/** Peak RSS of live processes, read from /proc (VmHWM) a few times a second. */
class RssWatch {
  private peakKb = 0;
  private readonly timer: NodeJS.Timeout;
  constructor(private readonly pids: () => number[]) {
    this.timer = setInterval(() => this.sample(), 100);
  }
  sample(): void {
    for (const pid of this.pids()) {
      try {
        const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
        if (match) this.peakKb = Math.max(this.peakKb, Number(match[1]));
      } catch {
        // the process is gone
      }
    }
  }
  stop(): number {
    this.sample();
    clearInterval(this.timer);
    return this.peakKb / 1024;
  }
}

async function runLocal(corpus: string, out: string): Promise<Measure> {
  rmSync(out, { recursive: true, force: true });
  const started = performance.now();
  const child = spawn(
    process.execPath,
    [MR_BIN, "run", "--local", "--app", "wordcount", "--reducers", "4", "--output", out, corpus],
    {
      stdio: "ignore",
    },
  );
  const rss = new RssWatch(() => (child.pid ? [child.pid] : []));
  const [code] = (await once(child, "exit")) as [number];
  const peakRssMb = rss.stop();
  if (code !== 0) throw new Error(`mr run --local exited with ${code}`);
  return { seconds: (performance.now() - started) / 1000, peakRssMb };
}

interface JobRequest {
  app: string;
  inputs: string[];
  outputDir: string;
  reducers: number;
  splitSizeBytes: number;
}

async function runJob(cluster: LocalCluster, request: JobRequest): Promise<Measure & { tasks: number }> {
  rmSync(request.outputDir, { recursive: true, force: true });
  const rss = new RssWatch(() => cluster.workers.map((worker) => worker.child.pid!));
  const started = performance.now();
  const job = await cluster.client.submitJob({ ...request, params: {} });
  const done = await followJob(cluster.client, job.id, {
    update: () => undefined,
    unreachable: () => undefined,
  });
  const seconds = (performance.now() - started) / 1000;
  const peakRssMb = rss.stop();
  if (done.state !== "SUCCEEDED") throw new Error(`job ${job.id} ${done.state}: ${done.error}`);
  return { seconds, peakRssMb, tasks: done.mapsTotal + done.reducesTotal };
}

/** Runs one job on a cluster started afresh in `home` (emptied first), then stops the cluster. */
async function jobOnNewCluster(
  redis: RedisServer,
  home: string,
  workers: number,
  workerArgs: string[],
  request: JobRequest,
): Promise<Measure & { tasks: number }> {
  rmSync(home, { recursive: true, force: true });
  const cluster = await LocalCluster.start({
    redisUrl: redis.url,
    home,
    workers,
    workerArgs: () => workerArgs,
  });
  try {
    return await runJob(cluster, request);
  } finally {
    await cluster.stop();
  }
}

/** Seconds to read the corpus and split it into words as wordcount's `map` does, line by line. */
async function tokenizerAlone(corpus: string): Promise<number> {
  const started = performance.now();
  let words = 0;
  await readRange({ file: corpus, start: 0, end: statSync(corpus).size }, (_offset, line) =>
    forEachWord(line, () => words++),
  );
  return (performance.now() - started) / 1000;
}

/** Seconds to read the corpus and count its words over bytes, as wordcount's block mapper does. */
async function wordCounterAlone(corpus: string): Promise<number> {
  const started = performance.now();
  const counts = new WordCounts();
  await readRangeBlocks({ file: corpus, start: 0, end: statSync(corpus).size }, (block) =>
    counts.addWords(block),
  );
  return (performance.now() - started) / 1000;
}

/** The same work as dispatch, minus mr: add, fetch by hand, complete, on the same Redis. */
async function bareBullmq(redis: RedisServer, tasks: number): Promise<number> {
  const connection = { url: redis.url, maxRetriesPerRequest: null };
  const name = `bare${Date.now()}`;
  const queue = new Queue(name, { connection });
  const worker = new Worker(name, null, { connection, autorun: false });
  const started = performance.now();
  await queue.addBulk(
    Array.from({ length: tasks }, (_, i) => ({
      name: "t",
      data: { i },
      opts: { jobId: `t${i}`, removeOnComplete: true },
    })),
  );
  for (let done = 0; done < tasks; done++) {
    const job = await worker.getNextJob(`token${done}`, { block: false });
    await job!.moveToCompleted("ok", `token${done}`, false);
  }
  const seconds = (performance.now() - started) / 1000;
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  return tasks / seconds;
}

type Row = string[];

/** Wordcount on the corpus with `mr run --local`, then clusters of 1 and 2 workers. */
async function throughput(redis: RedisServer, work: string, rows: Row[], ratios: Row[]): Promise<void> {
  const corpus = join(work, `zipf-${CORPUS_MB}mb-100k-seed1.txt`);
  if (!existsSync(corpus)) {
    console.error(`generating a ${CORPUS_MB} MB corpus in ${corpus} ...`);
    writeZipfCorpus(corpus, { bytes: CORPUS_MB * MB, vocabulary: 100_000, seed: 1 });
  }
  const corpusMb = statSync(corpus).size / MB;
  console.error(
    `corpus: ${corpusMb.toFixed(0)} MB, Zipf over 100,000 words (seed 1); medians of ${RUNS} run(s)`,
  );
  const tokenizerRuns: number[] = [];
  const counterRuns: number[] = [];
  const results: Record<string, Measure[]> = { local: [], cluster1: [], cluster2: [] };
  for (let run = 0; run < RUNS; run++) {
    console.error(`run ${run + 1} of ${RUNS}: tokenizers, local, cluster of 1, cluster of 2 ...`);
    tokenizerRuns.push(await tokenizerAlone(corpus));
    counterRuns.push(await wordCounterAlone(corpus));
    results.local!.push(await runLocal(corpus, join(work, "out-local")));
    for (const workers of [1, 2]) {
      const measure = await jobOnNewCluster(redis, join(work, `home-${workers}`), workers, [], {
        app: "wordcount",
        inputs: [corpus],
        outputDir: join(work, `out-${workers}`),
        reducers: 4,
        splitSizeBytes: 0,
      });
      results[`cluster${workers}`]!.push(measure);
    }
  }
  const seconds = (name: string): number => median(results[name]!.map((m) => m.seconds));
  const tokenizer = median(tokenizerRuns);
  const counter = median(counterRuns);
  for (const [label, time] of [
    ["tokenizer alone: lines, as map (read + split into words)", tokenizer],
    ["word counter alone: bytes, as the block mapper (read + count)", counter],
  ] as const) {
    rows.push([label, time.toFixed(1), (corpusMb / time).toFixed(1), "-"]);
  }
  for (const [name, label] of [
    ["local", "wordcount, mr run --local"],
    ["cluster1", "wordcount, cluster of 1 worker"],
    ["cluster2", "wordcount, cluster of 2 workers"],
  ] as const) {
    const rss = median(results[name]!.map((m) => m.peakRssMb));
    rows.push([label, seconds(name).toFixed(1), (corpusMb / seconds(name)).toFixed(1), rss.toFixed(0)]);
  }
  ratios.push([
    "cluster(2) time / local time",
    (seconds("cluster2") / seconds("local")).toFixed(2),
    "<= 0.65",
  ]);
  ratios.push(["local MB/s", (corpusMb / seconds("local")).toFixed(1), ">= 25"]);
  ratios.push(["local MB/s / line tokenizer MB/s", (tokenizer / seconds("local")).toFixed(2), "-"]);
  ratios.push(["local MB/s / byte word counter MB/s", (counter / seconds("local")).toFixed(2), "-"]);
}

/**
 * Worker slots in the dispatch test: each worker runs this many tasks at once. A tiny task is
 * mostly round trips to the driver, so a slot waits most of the time; the last setting has
 * enough tasks in flight to keep the driver busy, and measures its capacity.
 */
const DISPATCH_SLOTS = [1, 4, 16];

/**
 * 1,000 maps of one tiny line each and one reduce, end to end, on 2 workers of each number of
 * slots; then a bare BullMQ loop.
 */
async function dispatch(redis: RedisServer, work: string, ratios: Row[]): Promise<void> {
  const tiny = join(work, "tiny.txt");
  writeFileSync(tiny, "a b\n".repeat(1000));
  const rates = new Map<number, number[]>(DISPATCH_SLOTS.map((slots) => [slots, []]));
  const bare: number[] = [];
  let tasks = 0;
  for (let run = 0; run < RUNS; run++) {
    for (const slots of DISPATCH_SLOTS) {
      const measure = await jobOnNewCluster(
        redis,
        join(work, "home-dispatch"),
        2,
        ["--slots", String(slots)],
        {
          app: "wordcount",
          inputs: [tiny],
          outputDir: join(work, "out-tiny"),
          reducers: 1,
          splitSizeBytes: 4,
        },
      );
      tasks = measure.tasks;
      rates.get(slots)!.push(measure.tasks / measure.seconds);
    }
    bare.push(await bareBullmq(redis, 1000));
  }
  const best = median(rates.get(DISPATCH_SLOTS.at(-1)!)!);
  for (const slots of DISPATCH_SLOTS) {
    const rate = median(rates.get(slots)!);
    ratios.push([
      `dispatch: ${tasks} tasks end to end, 2 workers x ${slots} slot(s), tasks/s`,
      rate.toFixed(0),
      rate === best ? ">= 500" : "-",
    ]);
  }
  ratios.push(["bare BullMQ add + fetch + complete, tasks/s", median(bare).toFixed(0), "-"]);
  ratios.push([
    `dispatch (${DISPATCH_SLOTS.at(-1)} slots) / bare BullMQ`,
    (best / median(bare)).toFixed(2),
    ">= 0.30",
  ]);
}

/** One map over four sort buffers of lines, all into one partition. */
async function memory(redis: RedisServer, work: string, ratios: Row[]): Promise<void> {
  const input = join(work, `memory-${4 * SORT_BUFFER_MB}mb.txt`);
  if (!existsSync(input))
    writeZipfCorpus(input, { bytes: 4 * SORT_BUFFER_MB * MB, vocabulary: 100_000, seed: 2 });
  const peaks: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const args = ["--apps-dir", BENCH_APPS, "--sort-buffer-mb", String(SORT_BUFFER_MB)];
    const measure = await jobOnNewCluster(redis, join(work, "home-memory"), 1, args, {
      app: "identity",
      inputs: [input],
      outputDir: join(work, "out-memory"),
      reducers: 1,
      splitSizeBytes: 1024 * MB,
    });
    peaks.push(measure.peakRssMb);
  }
  ratios.push([
    `memory: ${4 * SORT_BUFFER_MB} MB sorted with a ${SORT_BUFFER_MB} MB buffer, peak worker RSS MB`,
    median(peaks).toFixed(0),
    `<= ${2 * SORT_BUFFER_MB + 150}`,
  ]);
}

const SECTIONS = ["throughput", "dispatch", "memory"] as const;

async function main(): Promise<void> {
  const only = (process.env.MR_BENCH_ONLY ?? SECTIONS.join(",")).split(",");
  const unknown = only.filter((name) => !(SECTIONS as readonly string[]).includes(name));
  if (unknown.length > 0) {
    throw new Error(
      `MR_BENCH_ONLY: unknown section ${unknown.join(", ")} (choose from ${SECTIONS.join(", ")})`,
    );
  }
  const work = join(tmpdir(), "mr-bench");
  mkdirSync(work, { recursive: true });
  const redis = await startRedisServer();
  const rows: Row[] = [];
  const ratios: Row[] = [];
  try {
    if (only.includes("throughput")) await throughput(redis, work, rows, ratios);
    if (only.includes("dispatch")) await dispatch(redis, work, ratios);
    if (only.includes("memory")) await memory(redis, work, ratios);
  } finally {
    await redis.stop();
  }
  console.log(`\nMedians of ${RUNS} run(s) each`);
  if (rows.length > 0) console.log(table(["RUN", "SECONDS", "MB/S", "PEAK RSS MB"], rows));
  console.log(table(["RATIO OR RATE", "MEASURED", "TARGET"], ratios));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
