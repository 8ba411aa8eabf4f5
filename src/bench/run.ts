/**
 * npm run bench. Measures, in one run, on one generated corpus:
 * - the word tokenizer alone (lines, as `map` splits them), the byte word counter alone (as the
 *   block mapper counts), and wordcount with `mr run --local` on one slot and on every core,
 *   with clusters of 1 and 2 single-slot workers, and with 1 worker of a slot per core: wall
 *   time, MB/s, peak RSS, and the ratios between them;
 * - dispatch: a job of 1,000+ tiny splits end to end, against a bare BullMQ loop on the same Redis;
 * - memory: four sort buffers of input into one partition, on one worker of 1 slot and of 2;
 * - small files: wordcount over 320 files of 400 KB (128 MB), R = 8, with `mr run --local`,
 *   against the same bytes as one file, and with 2 single-slot workers, their splits packed and
 *   a map per file, with the job's time broken down by phase from its attempt records; and one
 *   reduce over 320 small map outputs (3 MB), merged in memory and on disk.
 * - a small job: wordcount over eight books on 3 workers, submit to SUCCEEDED, by phase, with
 *   reduces started after the last map (reduce slowstart 1) and early (0.05);
 * - chaos: wordcount over 1.3 GB while a worker is SIGKILLed every 1.5 s, both ways.
 * Environment: MR_BENCH_MB (corpus size, default 256), MR_BENCH_RUNS (runs per setup, default 1),
 * MR_BENCH_CHAOS_MB (default 1300), MR_BENCH_ONLY (a comma-separated choice of throughput,
 * dispatch, memory, smallfiles, smalljob and chaos; default all).
 */
import { Queue, Worker } from "bullmq";
import { spawn } from "node:child_process";
import { once } from "node:events";
import {
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { LocalCluster, type LocalClusterOptions } from "../cli/cluster.js";
import { table } from "../cli/format.js";
import { MR_BIN, startRedisServer, type RedisServer } from "../cli/processes.js";
import { followJob } from "../cli/watch.js";
import { WordCounts } from "../mr/apps/wordCounts.js";
import { forEachWord } from "../mr/apps/words.js";
import { readRange, readRangeBlocks } from "../mr/split.js";
import type * as pb from "../gen/mapreduce.js";
import { BUILTIN_APPS } from "../mr/apps/index.js";
import { compareKeys } from "../mr/merge.js";
import { RecordWriter, type FileRecords } from "../mr/records.js";
import { runReduceTask } from "../mr/reduceTask.js";
import { resolveTunables } from "../mr/tunables.js";
import { random, vocabulary, writeZipfCorpus } from "./corpus.js";
import { median } from "./median.js";

const MB = 1024 * 1024;
const CORPUS_MB = Number(process.env.MR_BENCH_MB ?? 256);
const RUNS = Number(process.env.MR_BENCH_RUNS ?? 1);
const SORT_BUFFER_MB = 64;
/** The cores: the slots of a worker, and of mr run --local, by default. */
const CORES = availableParallelism();
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

async function runLocal(inputs: string[], out: string, reducers = 4, slots = 1): Promise<Measure> {
  rmSync(out, { recursive: true, force: true });
  const started = performance.now();
  const child = spawn(
    process.execPath,
    [
      MR_BIN,
      "run",
      "--local",
      "--slots",
      String(slots),
      "--app",
      "wordcount",
      "--reducers",
      String(reducers),
      "--output",
      out,
      ...inputs,
    ],
    { stdio: "ignore" },
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
  openCostBytes?: number;
  reduceSlowstart?: number;
}

interface JobMeasure extends Measure {
  tasks: number;
  maps: number;
  phases: Phases;
}

/**
 * Where a job's time went, in seconds, from its committed attempts: submit to the first map's
 * start, the map phase (first map start to last map end), the hand-over (last map end to first
 * reduce start), the reduce phase, and the last reduce's end to the client seeing SUCCEEDED.
 */
interface Phases {
  toFirstMap: number;
  maps: number;
  /** How long reduces ran before the last map ended (the early shuffle). */
  overlap: number;
  /** From the last map's end to the last reduce's. */
  tail: number;
  toSeen: number;
  /** The median committed reduce attempt, in seconds. */
  medianReduce: number;
}

function phasesOf(detail: pb.JobDetail, submittedAt: number, seenAt: number): Phases {
  const span = (kind: string) => {
    const committed = detail.tasks
      .filter((task) => task.kind === kind)
      .flatMap((task) => task.attempts.filter((attempt) => attempt.state === "SUCCEEDED"));
    return {
      start: Math.min(...committed.map((a) => a.startedAtMs)),
      end: Math.max(...committed.map((a) => a.finishedAtMs)),
      median: median(committed.map((a) => a.finishedAtMs - a.startedAtMs)) / 1000,
    };
  };
  const maps = span("MAP");
  const reduces = span("REDUCE");
  return {
    toFirstMap: (maps.start - submittedAt) / 1000,
    maps: (maps.end - maps.start) / 1000,
    overlap: Math.max(0, maps.end - reduces.start) / 1000,
    tail: (reduces.end - maps.end) / 1000,
    toSeen: (seenAt - reduces.end) / 1000,
    medianReduce: reduces.median,
  };
}

const PHASE_NAMES = "submit>first map | maps | reduces overlapping maps | last map>last reduce | >seen";

/** The median of each phase of `measures`, in the order of PHASE_NAMES, to `digits` decimals. */
function medianPhases(measures: JobMeasure[], digits: number): string {
  const phases: (keyof Phases)[] = ["toFirstMap", "maps", "overlap", "tail", "toSeen"];
  return phases.map((name) => median(measures.map((m) => m.phases[name])).toFixed(digits)).join(" | ");
}

async function runJob(cluster: LocalCluster, request: JobRequest): Promise<JobMeasure> {
  rmSync(request.outputDir, { recursive: true, force: true });
  const rss = new RssWatch(() => cluster.workers.map((worker) => worker.child.pid!));
  const started = performance.now();
  const submittedAt = Date.now();
  const job = await cluster.client.submitJob({ ...request, params: {} });
  const done = await followJob(cluster.client, job.id, {
    update: () => undefined,
    unreachable: () => undefined,
  });
  const seconds = (performance.now() - started) / 1000;
  const seenAt = Date.now();
  const peakRssMb = rss.stop();
  if (done.state !== "SUCCEEDED") throw new Error(`job ${job.id} ${done.state}: ${done.error}`);
  const phases = phasesOf(await cluster.client.getJob(job.id), submittedAt, seenAt);
  return { seconds, peakRssMb, tasks: done.mapsTotal + done.reducesTotal, maps: done.mapsTotal, phases };
}

/** A cluster started afresh in `home`, emptied first; the caller stops it. */
function clusterIn(
  redis: RedisServer,
  home: string,
  options: Omit<LocalClusterOptions, "redisUrl" | "home">,
): Promise<LocalCluster> {
  rmSync(home, { recursive: true, force: true });
  return LocalCluster.start({ ...options, redisUrl: redis.url, home });
}

/** Runs one job on a cluster started afresh in `home` (emptied first), then stops the cluster. */
async function jobOnNewCluster(
  redis: RedisServer,
  home: string,
  workers: number,
  workerArgs: string[],
  request: JobRequest,
): Promise<JobMeasure> {
  const cluster = await clusterIn(redis, home, { workers, workerArgs: () => workerArgs });
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

/**
 * Wordcount on the corpus with `mr run --local` on one slot and on every core, then clusters of
 * 1 and 2 single-slot workers, and of 1 worker with a slot per core.
 */
/** The corpus of MR_BENCH_MB, generated into `work` once. */
function corpusIn(work: string): string {
  const corpus = join(work, `zipf-${CORPUS_MB}mb-100k-seed1.txt`);
  if (!existsSync(corpus)) {
    console.error(`generating a ${CORPUS_MB} MB corpus in ${corpus} ...`);
    writeZipfCorpus(corpus, { bytes: CORPUS_MB * MB, vocabulary: 100_000, seed: 1 });
  }
  return corpus;
}

async function throughput(redis: RedisServer, work: string, rows: Row[], ratios: Row[]): Promise<void> {
  const corpus = corpusIn(work);
  const corpusMb = statSync(corpus).size / MB;
  console.error(
    `corpus: ${corpusMb.toFixed(0)} MB, Zipf over 100,000 words (seed 1); medians of ${RUNS} run(s)`,
  );
  const tokenizerRuns: number[] = [];
  const counterRuns: number[] = [];
  const clusters = [
    ["cluster1", 1, 1],
    ["cluster2", 2, 1],
    ["clusterCores", 1, CORES],
  ] as const;
  const results: Record<string, Measure[]> = {
    local: [],
    localCores: [],
    cluster1: [],
    cluster2: [],
    clusterCores: [],
  };
  for (let run = 0; run < RUNS; run++) {
    console.error(`run ${run + 1} of ${RUNS}: tokenizers, local, clusters ...`);
    tokenizerRuns.push(await tokenizerAlone(corpus));
    counterRuns.push(await wordCounterAlone(corpus));
    results.local!.push(await runLocal([corpus], join(work, "out-local"), 4, 1));
    results.localCores!.push(await runLocal([corpus], join(work, "out-local"), 4, CORES));
    for (const [name, workers, slots] of clusters) {
      const home = join(work, `home-${name}`);
      const measure = await jobOnNewCluster(redis, home, workers, ["--slots", String(slots)], {
        app: "wordcount",
        inputs: [corpus],
        outputDir: join(work, `out-${name}`),
        reducers: 4,
        splitSizeBytes: 0,
      });
      results[name]!.push(measure);
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
    ["local", "wordcount, mr run --local --slots 1"],
    ["localCores", `wordcount, mr run --local --slots ${CORES} (every core)`],
    ["cluster1", "wordcount, cluster of 1 worker of 1 slot"],
    ["cluster2", "wordcount, cluster of 2 workers of 1 slot"],
    ["clusterCores", `wordcount, cluster of 1 worker of ${CORES} slots`],
  ] as const) {
    const rss = median(results[name]!.map((m) => m.peakRssMb));
    rows.push([label, seconds(name).toFixed(1), (corpusMb / seconds(name)).toFixed(1), rss.toFixed(0)]);
  }
  ratios.push([
    `1 worker of ${CORES} slots time / local 1 slot time`,
    (seconds("clusterCores") / seconds("local")).toFixed(2),
    "<= 0.60",
  ]);
  ratios.push([
    `1 worker of ${CORES} slots time / 2 workers of 1 slot time`,
    (seconds("clusterCores") / seconds("cluster2")).toFixed(2),
    "<= 1.00",
  ]);
  ratios.push([
    `local: ${CORES} slots speed-up over 1 slot`,
    (seconds("local") / seconds("localCores")).toFixed(2),
    ">= 1.70",
  ]);
  ratios.push([
    "cluster(2 x 1 slot) time / local 1 slot time",
    (seconds("cluster2") / seconds("local")).toFixed(2),
    "<= 0.65",
  ]);
  ratios.push(["local 1 slot MB/s", (corpusMb / seconds("local")).toFixed(1), ">= 25"]);
  ratios.push(["local 1 slot MB/s / line tokenizer MB/s", (tokenizer / seconds("local")).toFixed(2), "-"]);
  ratios.push(["local 1 slot MB/s / byte word counter MB/s", (counter / seconds("local")).toFixed(2), "-"]);
}

/**
 * Worker slots in the dispatch test: each worker runs this many tasks at once. A tiny task is
 * mostly round trips to the driver, so a slot waits most of the time; the last setting has
 * enough tasks in flight to keep the driver busy, and measures its capacity.
 */
const DISPATCH_SLOTS = [1, 4, 16];

/** Two samples of the driver's /metrics: the process's CPU and its event loop's busy time, in seconds. */
async function driverTimes(cluster: LocalCluster): Promise<{ cpu: number; busy: number }> {
  const text = await (await fetch(`${cluster.httpUrl!}/metrics`)).text();
  const sample = (name: string): number => {
    const line = text.split("\n").find((one) => one.startsWith(`${name} `));
    if (line === undefined) throw new Error(`the driver's /metrics has no ${name}`);
    return Number(line.slice(name.length + 1));
  };
  return {
    cpu: sample("process_cpu_seconds_total"),
    busy: sample("mr_driver_event_loop_busy_seconds_total"),
  };
}

/**
 * 1,000 maps of one tiny line each and one reduce, end to end, on 2 workers of each number of
 * slots: a first job on the new cluster (its threads and the driver still cold), then the same
 * job again on it, measured with the driver's CPU and event-loop time per task; then a bare
 * BullMQ loop.
 */
async function dispatch(redis: RedisServer, work: string, ratios: Row[]): Promise<void> {
  const tiny = join(work, "tiny.txt");
  writeFileSync(tiny, "a b\n".repeat(1000));
  const request: JobRequest = {
    app: "wordcount",
    inputs: [tiny],
    outputDir: join(work, "out-tiny"),
    reducers: 1,
    splitSizeBytes: 4,
  };
  const cold = new Map<number, number[]>(DISPATCH_SLOTS.map((slots) => [slots, []]));
  const warm = new Map<number, number[]>(DISPATCH_SLOTS.map((slots) => [slots, []]));
  const driverCpuMs: number[] = [];
  const driverBusyMs: number[] = [];
  const bare: number[] = [];
  let tasks = 0;
  for (let run = 0; run < RUNS; run++) {
    for (const slots of DISPATCH_SLOTS) {
      const cluster = await clusterIn(redis, join(work, "home-dispatch"), {
        workers: 2,
        workerArgs: () => ["--slots", String(slots)],
      });
      try {
        const first = await runJob(cluster, request);
        cold.get(slots)!.push(first.tasks / first.seconds);
        const before = await driverTimes(cluster);
        const again = await runJob(cluster, { ...request, outputDir: join(work, "out-tiny-again") });
        const after = await driverTimes(cluster);
        tasks = again.tasks;
        warm.get(slots)!.push(again.tasks / again.seconds);
        if (slots === DISPATCH_SLOTS.at(-1)) {
          driverCpuMs.push(((after.cpu - before.cpu) * 1000) / again.tasks);
          driverBusyMs.push(((after.busy - before.busy) * 1000) / again.tasks);
        }
      } finally {
        await cluster.stop();
      }
    }
    bare.push(await bareBullmq(redis, 1000));
  }
  const most = DISPATCH_SLOTS.at(-1)!;
  const best = median(warm.get(most)!);
  for (const slots of DISPATCH_SLOTS) {
    ratios.push([
      `dispatch: ${tasks} tasks end to end, 2 workers x ${slots} slot(s), first job / next job, tasks/s`,
      `${median(cold.get(slots)!).toFixed(0)} / ${median(warm.get(slots)!).toFixed(0)}`,
      slots === most ? ">= 1500 (next job)" : "-",
    ]);
  }
  const busy = median(driverBusyMs);
  ratios.push([
    `driver per task (${most} slots, next job): CPU ms / event loop busy ms`,
    `${median(driverCpuMs).toFixed(2)} / ${busy.toFixed(2)}`,
    "-",
  ]);
  ratios.push([
    "driver capacity: tasks/s its event loop could hand out (1000 / busy ms)",
    (1000 / busy).toFixed(0),
    "-",
  ]);
  ratios.push(["bare BullMQ add + fetch + complete, tasks/s", median(bare).toFixed(0), "-"]);
  ratios.push([
    `dispatch (${most} slots, next job) / bare BullMQ`,
    (best / median(bare)).toFixed(2),
    ">= 0.90",
  ]);
}

/**
 * Four sort buffers of lines into one reduce, on one worker: in one map on 1 slot, and in two
 * maps at once on 2 slots, each map with a sort buffer of its own.
 */
async function memory(redis: RedisServer, work: string, ratios: Row[]): Promise<void> {
  const input = join(work, `memory-${4 * SORT_BUFFER_MB}mb.txt`);
  if (!existsSync(input))
    writeZipfCorpus(input, { bytes: 4 * SORT_BUFFER_MB * MB, vocabulary: 100_000, seed: 2 });
  for (const slots of [1, 2]) {
    const peaks: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const args = [
        "--apps-dir",
        BENCH_APPS,
        "--sort-buffer-mb",
        String(SORT_BUFFER_MB),
        "--slots",
        String(slots),
      ];
      const measure = await jobOnNewCluster(redis, join(work, "home-memory"), 1, args, {
        app: "identity",
        inputs: [input],
        outputDir: join(work, "out-memory"),
        reducers: 1,
        splitSizeBytes: (4 * SORT_BUFFER_MB * MB) / slots,
      });
      peaks.push(measure.peakRssMb);
    }
    ratios.push([
      `memory: ${4 * SORT_BUFFER_MB} MB into one reduce, ${slots} slot(s) of a ${SORT_BUFFER_MB} MB buffer, peak worker RSS MB`,
      median(peaks).toFixed(0),
      // One slot: the buffer and the merge's share, plus 150 MB; two: two buffers plus 200 MB.
      `<= ${2 * SORT_BUFFER_MB + (slots === 1 ? 150 : 200)}`,
    ]);
  }
}

const SMALL_FILES = 320;
const SMALL_FILES_MB = 128;
const SMALL_REDUCERS = 8;

/**
 * Cuts `corpus` at line ends into `count` files of about the same size in `dir`, unless they
 * are there; returns their paths.
 */
function cutIntoFiles(corpus: string, dir: string, count: number): string[] {
  const paths = Array.from({ length: count }, (_, i) => join(dir, `part-${String(i).padStart(4, "0")}.txt`));
  if (paths.every((path) => existsSync(path))) return paths;
  mkdirSync(dir, { recursive: true });
  const text = readFileSync(corpus);
  const size = Math.ceil(text.length / count);
  let start = 0;
  paths.forEach((path, i) => {
    const at =
      i === count - 1
        ? text.length
        : text.indexOf(0x0a, Math.min(text.length, start + size)) + 1 || text.length;
    writeFileSync(path, text.subarray(start, at));
    start = at;
  });
  return paths;
}

/** 320 sorted runs of wordcount output, 3 MB in all, in one file as a reduce fetches them. */
function writeSmallRuns(path: string): FileRecords[] {
  const next = random(7);
  const words = vocabulary(20_000, next).sort(compareKeys);
  const writer = new RecordWriter(path);
  const ranges: FileRecords[] = [];
  for (let m = 0; m < SMALL_FILES; m++) {
    const start = writer.bytes;
    for (const word of words) if (next() < 0.055) writer.write(word, String(1 + Math.floor(next() * 9)));
    ranges.push({ path, start, end: writer.bytes });
  }
  writer.close();
  return ranges;
}

/** Seconds for one reduce of wordcount over `runs`, with these tunables. */
async function reduceAlone(runs: FileRecords[], work: string, mergeMemoryBytes?: number): Promise<number> {
  const started = performance.now();
  await runReduceTask({
    app: BUILTIN_APPS.wordcount!,
    params: {},
    inputs: runs,
    outputPath: join(work, "reduce-alone.out"),
    workDir: join(work, "reduce-alone"),
    tunables: resolveTunables({ mergeMemoryBytes }),
  });
  return (performance.now() - started) / 1000;
}

/** Wordcount over many small files, local and on 2 workers, with the phases of each job. */
async function smallFiles(redis: RedisServer, work: string, rows: Row[], ratios: Row[]): Promise<void> {
  const corpus = join(work, `zipf-${SMALL_FILES_MB}mb-100k-seed3.txt`);
  if (!existsSync(corpus)) {
    console.error(`generating a ${SMALL_FILES_MB} MB corpus in ${corpus} ...`);
    writeZipfCorpus(corpus, { bytes: SMALL_FILES_MB * MB, vocabulary: 100_000, seed: 3 });
  }
  const files = cutIntoFiles(corpus, join(work, `small-${SMALL_FILES}`), SMALL_FILES);
  const corpusMb = statSync(corpus).size / MB;
  const runs = writeSmallRuns(join(work, "small-runs"));
  const runsMb = (runs.at(-1)!.end! / MB).toFixed(1);
  const oneFile: Measure[] = [];
  const manyFiles: Measure[] = [];
  const clusters: Record<"packed" | "perFile", JobMeasure[]> = { packed: [], perFile: [] };
  const reduces: Record<"memory" | "disk", number[]> = { memory: [], disk: [] };
  for (let run = 0; run < RUNS; run++) {
    console.error(`run ${run + 1} of ${RUNS}: ${SMALL_FILES} small files, local, then 2 workers ...`);
    oneFile.push(await runLocal([corpus], join(work, "out-small-one"), SMALL_REDUCERS));
    manyFiles.push(await runLocal(files, join(work, "out-small-local"), SMALL_REDUCERS));
    for (const [name, openCostBytes] of [
      ["packed", undefined],
      ["perFile", 64 * MB], // as big as the split: a map per file, as before packing
    ] as const) {
      clusters[name].push(
        await jobOnNewCluster(redis, join(work, "home-small"), 2, ["--slots", "1"], {
          app: "wordcount",
          inputs: files,
          outputDir: join(work, "out-small-2"),
          reducers: SMALL_REDUCERS,
          splitSizeBytes: 0,
          openCostBytes,
        }),
      );
    }
    for (let i = 0; i < 5; i++) {
      reduces.memory.push(await reduceAlone(runs, work));
      reduces.disk.push(await reduceAlone(runs, work, 0));
    }
  }
  const seconds = (measures: Measure[]): number => median(measures.map((m) => m.seconds));
  const label = `${SMALL_FILES} files, ${corpusMb.toFixed(0)} MB, R = ${SMALL_REDUCERS}`;
  rows.push([`wordcount, mr run --local, the same bytes as one file`, ...measured(oneFile, corpusMb)]);
  rows.push([`wordcount, mr run --local, ${label}`, ...measured(manyFiles, corpusMb)]);
  for (const [name, how] of [
    ["packed", "splits packed"],
    ["perFile", "a map per file"],
  ] as const) {
    const measures = clusters[name];
    rows.push([`wordcount, 2 workers, ${label}, ${how}`, ...measured(measures, corpusMb)]);
    ratios.push([
      `small files, 2 workers, ${how} (${measures[0]!.maps} maps): ${PHASE_NAMES}, s`,
      medianPhases(measures, 2),
      "-",
    ]);
  }
  ratios.push([
    "small files: 2 workers (packed) time / local time",
    (seconds(clusters.packed) / seconds(manyFiles)).toFixed(2),
    "<= 0.60",
  ]);
  ratios.push([
    "small files: local time / local time on the same bytes as one file",
    (seconds(manyFiles) / seconds(oneFile)).toFixed(2),
    "<= 1.30",
  ]);
  ratios.push([
    `one reduce over ${SMALL_FILES} map outputs (${runsMb} MB), merged in memory, ms`,
    (median(reduces.memory) * 1000).toFixed(0),
    "<= 150",
  ]);
  ratios.push([
    `the same reduce merged on disk in passes (factor 100), ms`,
    (median(reduces.disk) * 1000).toFixed(0),
    "-",
  ]);
}

/** The eight books of ../shared beside the checkout, when there; else eight generated files of their size. */
const BOOKS_DIR = fileURLToPath(new URL("../../../shared/data/gutenberg", import.meta.url));
const SMALL_JOBS = 7;

function books(work: string): { inputs: string[]; from: string } {
  if (existsSync(BOOKS_DIR)) {
    const inputs = readdirSync(BOOKS_DIR).map((name) => join(BOOKS_DIR, name));
    return { inputs, from: BOOKS_DIR };
  }
  const corpus = join(work, "books-3mb-seed4.txt");
  if (!existsSync(corpus)) writeZipfCorpus(corpus, { bytes: 3.2 * MB, vocabulary: 30_000, seed: 4 });
  return { inputs: cutIntoFiles(corpus, join(work, "books"), 8), from: "generated (Zipf, seed 4)" };
}

/**
 * The latency of a small job: wordcount over eight books (3.2 MB, R = 4) on 3 workers, from
 * submit to the client seeing SUCCEEDED, jobs one after another on one cluster: the first (its
 * workers' code not warm yet) and the median of the rest, with their phases; packed into as
 * many maps as slots, and cut into 64 KiB splits as the demo does.
 */
async function smallJob(redis: RedisServer, work: string, ratios: Row[]): Promise<void> {
  const { inputs, from } = books(work);
  console.error(`small job: ${inputs.length} books from ${from}, 3 workers, ${SMALL_JOBS} jobs each way ...`);
  for (const [how, splitSizeBytes, reduceSlowstart] of [
    ["packed", 0, 1],
    ["packed", 0, 0.05],
    ["64 KiB splits", 64 * 1024, 1],
    ["64 KiB splits", 64 * 1024, 0.05],
  ] as const) {
    const cluster = await clusterIn(redis, join(work, "home-smalljob"), { workers: 3 });
    const measures: JobMeasure[] = [];
    try {
      for (let i = 0; i < SMALL_JOBS; i++) {
        const outputDir = join(work, `out-smalljob-${i}`);
        measures.push(
          await runJob(cluster, {
            app: "wordcount",
            inputs,
            outputDir,
            reducers: 4,
            splitSizeBytes,
            reduceSlowstart,
          }),
        );
      }
    } finally {
      await cluster.stop();
    }
    const [first, ...rest] = measures;
    const warm = median(rest.map((m) => m.seconds));
    ratios.push([
      `small job, eight books, 3 workers, ${how} (${first!.maps} maps), reduce slowstart ${reduceSlowstart}: submit to SUCCEEDED, warm median, s`,
      warm.toFixed(2),
      "<= 0.50",
    ]);
    ratios.push([`the same, the first job of a new cluster, s`, first!.seconds.toFixed(2), "-"]);
    ratios.push([`the same, warm: ${PHASE_NAMES}, s`, medianPhases(rest, 3), "-"]);
  }
}

function measured(measures: Measure[], mb: number): string[] {
  const seconds = median(measures.map((m) => m.seconds));
  const rss = median(measures.map((m) => m.peakRssMb));
  return [seconds.toFixed(1), (mb / seconds).toFixed(1), rss.toFixed(0)];
}

const CHAOS_MB = Number(process.env.MR_BENCH_CHAOS_MB ?? 1300);
const CHAOS_KILL_EVERY_MS = 1500;
const CHAOS_LIMIT_MS = 240_000;

/**
 * Wordcount over MR_BENCH_CHAOS_MB (hard links to the corpus, 1.3 GB by default) on 3 workers
 * while the oldest worker is SIGKILLed every 1.5 s and a new one started as each dies, with
 * the reduces started once every map has committed (slowstart 1, the release before) and early
 * (0.05): whether the job finishes within 4 minutes, how long it took, and what it cost.
 */
async function chaos(redis: RedisServer, work: string, ratios: Row[]): Promise<void> {
  const corpus = corpusIn(work);
  const copies = Math.max(1, Math.round(CHAOS_MB / (statSync(corpus).size / MB)));
  const dir = join(work, "chaos");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir);
  const inputs = Array.from({ length: copies }, (_, i) => {
    const path = join(dir, `input-${i}.txt`);
    linkSync(corpus, path);
    return path;
  });
  const mb = Math.round((copies * statSync(corpus).size) / MB);
  for (const reduceSlowstart of [1, 0.05]) {
    console.error(`chaos: ${mb} MB, slowstart ${reduceSlowstart}, a worker killed every 1.5 s ...`);
    const cluster = await clusterIn(redis, join(work, "home-chaos"), {
      workers: 3,
      // Losses seen within a second, as a cluster under such faults would be set up.
      driverArgs: ["--heartbeat-interval", "250", "--worker-timeout", "1000"],
    });
    cluster.replaceDeadWorkers(); // until the cluster stops
    let kills = 0;
    let outcome: string;
    try {
      const started = performance.now();
      const job = await cluster.client.submitJob({
        app: "wordcount",
        inputs,
        outputDir: join(dir, `out-${reduceSlowstart}`),
        reducers: 4,
        splitSizeBytes: 0,
        params: {},
        reduceSlowstart,
      });
      const deadline = Date.now() + CHAOS_LIMIT_MS;
      let detail = await cluster.client.getJob(job.id);
      while (detail.job!.state === "RUNNING" && Date.now() < deadline) {
        await sleep(CHAOS_KILL_EVERY_MS);
        if (await cluster.killOldestWorker()) kills++;
        detail = await cluster.client.getJob(job.id);
      }
      const seconds = ((performance.now() - started) / 1000).toFixed(0);
      const attempts = detail.tasks.flatMap((task) => task.attempts).length;
      const { state, mapsDone, mapsTotal, reducesDone, reducesTotal, error } = detail.job!;
      const progress = `${mapsDone} of ${mapsTotal} maps and ${reducesDone} of ${reducesTotal} reduces committed`;
      outcome =
        state === "RUNNING"
          ? `not done in ${CHAOS_LIMIT_MS / 1000} s (${progress}; ${kills} kills)`
          : `${state} in ${seconds} s (${kills} kills, ${attempts} attempts for ${detail.tasks.length} tasks${state === "SUCCEEDED" ? "" : `; ${progress}: ${error}`})`;
    } finally {
      await cluster.stop();
    }
    ratios.push([
      `wordcount ${mb} MB, 3 workers, the oldest SIGKILLed every 1.5 s and replaced, reduce slowstart ${reduceSlowstart}`,
      outcome,
      "finishes",
    ]);
  }
}

const SECTIONS = ["throughput", "dispatch", "memory", "smallfiles", "smalljob", "chaos"] as const;

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
    if (only.includes("smallfiles")) await smallFiles(redis, work, rows, ratios);
    if (only.includes("smalljob")) await smallJob(redis, work, ratios);
    if (only.includes("chaos")) await chaos(redis, work, ratios);
  } finally {
    await redis.stop();
    // What was measured before a failure is printed all the same.
    console.log(`\nMedians of ${RUNS} run(s) each`);
    if (rows.length > 0) console.log(table(["RUN", "SECONDS", "MB/S", "PEAK RSS MB"], rows));
    console.log(table(["RATIO OR RATE", "MEASURED", "TARGET"], ratios));
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
