import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { App } from "../src/mr/app.js";
import { BUILTIN_APPS } from "../src/mr/apps/index.js";
import { runLocalJob } from "../src/mr/local.js";
import { partitionRange, runMapTask, type MapOutput, type MapTaskOptions } from "../src/mr/mapTask.js";
import { MergedReader, compareKeys, forEachGroup, openMerge } from "../src/mr/merge.js";
import { runReduceTask } from "../src/mr/reduceTask.js";
import { RecordReader, RecordWriter, SharedFiles } from "../src/mr/records.js";
import { DEFAULT_TUNABLES, resolveTunables } from "../src/mr/tunables.js";
import { TaskThreads, threadPool } from "../src/worker/taskThreads.js";
import { countWords, random, readOutput, writeCorpus } from "./helpers/corpus.js";
import { tempDir } from "./helpers/tmp.js";

function readRecords(path: string, start?: number, end?: number): [string, string][] {
  const reader = new RecordReader(path, start, end);
  const records: [string, string][] = [];
  while (reader.next()) records.push([reader.key, reader.value]);
  return records;
}

describe("the record format", () => {
  it("round-trips keys and values of every length and script", () => {
    const path = join(tempDir(), "records");
    const records: [string, string][] = [
      ["", ""],
      ["a", "1"],
      ["k".repeat(127), "v".repeat(128)],
      ["ключ", "значение"],
      ["😀", "x".repeat(3 * 1024 * 1024)],
      ["tab\tand\nnewline", "v"],
    ];
    const writer = new RecordWriter(path);
    for (const [key, value] of records) writer.write(key, value);
    writer.close();
    expect(readRecords(path)).toEqual(records);
  });

  it("reads a byte range of a file on its own", () => {
    const path = join(tempDir(), "records");
    const writer = new RecordWriter(path);
    writer.write("a", "1");
    const middle = writer.bytes;
    writer.write("b", "2");
    writer.write("c", "3");
    const end = writer.bytes;
    writer.write("d", "4");
    writer.close();
    const reader = new RecordReader(path, middle, end);
    const seen: string[] = [];
    while (reader.next()) seen.push(reader.key);
    expect(seen).toEqual(["b", "c"]);
  });
});

/**
 * Writes `runs` sorted runs, `dir/run0` …, of `records` records each, over `keys` random keys;
 * each value names its run and place. Returns the runs' records.
 */
function writeRuns(
  dir: string,
  options: { runs: number; records: number; keys: number; seed: number },
): [string, string][][] {
  const next = random(options.seed);
  const runs: [string, string][][] = [];
  for (let r = 0; r < options.runs; r++) {
    const run = Array.from(
      { length: options.records },
      (_, i) => [`k${Math.floor(next() * options.keys)}`, `${r}:${i}`] as [string, string],
    );
    run.sort((a, b) => compareKeys(a[0], b[0]));
    runs.push(run);
    const writer = new RecordWriter(join(dir, `run${r}`));
    for (const [key, value] of run) writer.write(key, value);
    writer.close();
  }
  return runs;
}

describe("the merge", () => {
  it("merges sorted runs in key order, stable by source, and groups values lazily", async () => {
    const dir = tempDir();
    const runs = writeRuns(dir, { runs: 5, records: 200, keys: 50, seed: 7 });
    const expected = runs.flat().sort((a, b) => compareKeys(a[0], b[0])); // Array sort is stable
    const merged = new MergedReader(runs.map((_, r) => new RecordReader(join(dir, `run${r}`))));
    const groups: [string, string[]][] = [];
    const seen = await forEachGroup(merged, (key, values) => groups.push([key, [...values]]));
    expect(groups.flatMap(([key, values]) => values.map((value) => [key, value]))).toEqual(expected);
    expect(seen).toEqual({ groups: new Set(expected.map(([key]) => key)).size, records: 1000 });
  });

  it("merges more runs than its factor in passes: the same stable order, never more than factor runs read at once", async () => {
    const dir = tempDir();
    const runs = writeRuns(dir, { runs: 250, records: 20, keys: 30, seed: 11 });
    const expected = runs.flat().sort((a, b) => compareKeys(a[0], b[0]));
    const files = new CountingFiles();
    let rewritten = 0;
    const work = join(dir, "work");
    const merged = await openMerge(
      runs.map((_, r) => ({ path: join(dir, `run${r}`) })),
      {
        dir: work,
        files,
        tunables: resolveTunables({ mergeFactor: 10 }),
        onRewritten: (records) => (rewritten += records),
      },
    );
    const seen: [string, string][] = [];
    while (merged.next()) seen.push([merged.key, merged.value]);
    merged.close();
    expect(seen).toEqual(expected);
    expect(files.mostOpen).toBeLessThanOrEqual(10);
    expect(rewritten).toBeGreaterThan(0);
    expect(readdirSync(work)).toEqual([]); // the runs merged ahead are gone
  });

  it("merges runs that fit in memory in one pass, however many, and holds no descriptor for them", async () => {
    const dir = tempDir();
    const runs = writeRuns(dir, { runs: 250, records: 20, keys: 30, seed: 12 });
    const expected = runs.flat().sort((a, b) => compareKeys(a[0], b[0]));
    const ranges = runs.map((_, r) => {
      const path = join(dir, `run${r}`);
      return { path, start: 0, end: statSync(path).size };
    });
    const merge = async (mergeMemoryBytes: number) => {
      const files = new CountingFiles();
      let rewritten = 0;
      const tunables = resolveTunables({ mergeFactor: 10, mergeMemoryBytes });
      const merged = await openMerge(ranges, {
        dir: join(dir, "work"),
        files,
        tunables,
        onRewritten: (records) => (rewritten += records),
      });
      const seen: [string, string][] = [];
      while (merged.next()) seen.push([merged.key, merged.value]);
      merged.close();
      return { seen, rewritten, mostOpen: files.mostOpen };
    };
    const inMemory = await merge(1 << 20);
    expect(inMemory).toEqual({ seen: expected, rewritten: 0, mostOpen: 1 });
    const onDisk = await merge(0); // never in memory: merged ahead in passes, as before
    expect(onDisk.seen).toEqual(expected);
    expect(onDisk.rewritten).toBeGreaterThan(0);

    // Runs held in memory (as a reduce keeps small fetched outputs) beside runs in files, in passes.
    const mixed = ranges.map((range, r) => (r % 2 === 0 ? { data: readFileSync(range.path) } : range));
    const merged = await openMerge(mixed, {
      dir: join(dir, "mixed"),
      tunables: resolveTunables({ mergeFactor: 10, mergeMemoryBytes: 0 }),
    });
    const seen: [string, string][] = [];
    while (merged.next()) seen.push([merged.key, merged.value]);
    merged.close();
    expect(seen).toEqual(expected);
  });

  it("skips the values a callback leaves unread", async () => {
    const path = join(tempDir(), "run");
    const writer = new RecordWriter(path);
    for (const key of ["a", "a", "a", "b", "c", "c"]) writer.write(key, key);
    writer.close();
    const keys: string[] = [];
    const seen = await forEachGroup(new MergedReader([new RecordReader(path)]), (key) => keys.push(key));
    expect(keys).toEqual(["a", "b", "c"]);
    expect(seen.records).toBe(6);
  });
});

/** Shared files that count the most held open at once. */
class CountingFiles extends SharedFiles {
  private held = 0;
  mostOpen = 0;

  override acquire(path: string): number {
    this.mostOpen = Math.max(this.mostOpen, ++this.held);
    return super.acquire(path);
  }

  override release(path: string): void {
    this.held--;
    super.release(path);
  }
}

/** Wordcount as `map` defines it, a line at a time, without its block mapper. */
const lineWordcount: App = { ...BUILTIN_APPS.wordcount!, blockMapper: undefined };

/** The records of partition `r` of a map output, in memory or on disk. */
function readPartition(output: MapOutput, r: number): [string, string][] {
  if (output.data) {
    const path = join(tempDir(), "copy");
    writeFileSync(path, output.data);
    return readPartition({ ...output, data: undefined, path }, r);
  }
  const { path, start, end } = partitionRange(output, r);
  return readRecords(path, start, end);
}

/** Runs a map task with its output and spills in `dir/name`. */
function mapTask(dir: string, name: string, options: Omit<MapTaskOptions, "path" | "spillDir">) {
  return runMapTask({ ...options, path: join(dir, `${name}.out`), spillDir: join(dir, name) });
}

describe("the map task", () => {
  it("spills a full sort buffer many times and merges the runs, in passes, into the same output", async () => {
    const dir = tempDir();
    const [input] = writeCorpus(dir, { files: 1, bytes: 200_000, seed: 3 });
    const split = [{ file: input!, start: 0, end: 200_000 }];
    const options = { app: lineWordcount, params: {}, split, reducers: 3 };
    const inMemory = await mapTask(dir, "mem", options);
    const spilled = await mapTask(dir, "spill", {
      ...options,
      tunables: resolveTunables({ sortBufferBytes: 4096 }),
    });
    expect(inMemory.counters.SPILLED_RECORDS).toBeUndefined();
    expect(spilled.counters.SPILLED_RECORDS).toBeGreaterThan(1000);
    expect(spilled.counters.SPILLED_BYTES).toBeGreaterThan(spilled.counters.SPILLED_RECORDS!);
    // Hundreds of runs: more than a merge reads at once, so some were merged ahead, and their
    // records written twice.
    expect(spilled.counters.SPILLED_RECORDS).toBeGreaterThan(spilled.counters.MAP_OUTPUT_RECORDS!);
    for (let r = 0; r < 3; r++) {
      expect(readPartition(spilled.output, r)).toEqual(readPartition(inMemory.output, r));
    }
    expect(existsSync(join(dir, "spill"))).toBe(false); // the runs are gone once merged
    expect(spilled.counters.MAP_OUTPUT_RECORDS).toBe(inMemory.counters.MAP_OUTPUT_RECORDS);
  });

  it("maps with an app's block mapper to what its map gives, through flushes and spills", async () => {
    const dir = tempDir();
    const [input] = writeCorpus(dir, { files: 1, bytes: 3_000_000, seed: 5 }); // several read blocks
    const split = [{ file: input!, start: 1_000, end: 2_500_000 }];
    const byLine = await mapTask(dir, "line", { app: lineWordcount, params: {}, split, reducers: 2 });
    const byBlock = await mapTask(dir, "block", {
      app: BUILTIN_APPS.wordcount!,
      params: {},
      split,
      reducers: 2,
      tunables: resolveTunables({ sortBufferBytes: 8192 }), // a flush a block, and spills
    });
    expect(byBlock.counters.SPILLED_RECORDS).toBeGreaterThan(0);
    // Combined in the mapper:
    expect(byBlock.counters.MAP_OUTPUT_RECORDS).toBeLessThan(
      Number(byLine.counters.MAP_OUTPUT_RECORDS) / 100,
    );
    for (let r = 0; r < 2; r++) {
      expect(readPartition(byBlock.output, r)).toEqual(readPartition(byLine.output, r));
    }
    expect(byBlock.counters.MAP_INPUT_RECORDS).toBe(byLine.counters.MAP_INPUT_RECORDS);
    expect(byBlock.counters.MAP_INPUT_BYTES).toBe(byLine.counters.MAP_INPUT_BYTES);
  });

  it("counts the combiner one way wherever it runs: in the buffer, on a spill, on the final merge", async () => {
    const dir = tempDir();
    // One key emitted many times: combined in the buffer every combineInBufferAt values, and
    // spilled and merged through a tiny buffer. The combiner passes values through, so every
    // value handed to it comes out again, each time it runs.
    writeFileSync(join(dir, "in"), "x\n".repeat(500));
    const identity: App = {
      map: (_input, emit) => emit("k", "v"),
      reduce: () => undefined,
      combine: (key, values, emit) => {
        for (const value of values) emit(key, value);
      },
    };
    const tunables = resolveTunables({ sortBufferBytes: 2048, combineInBufferAt: 8 });
    const split = [{ file: join(dir, "in"), start: 0, end: 1000 }];
    const { counters } = await mapTask(dir, "c", { app: identity, params: {}, split, reducers: 1, tunables });
    expect(counters.MAP_OUTPUT_RECORDS).toBe(500);
    expect(counters.SPILLED_RECORDS).toBeGreaterThan(0);
    expect(counters.COMBINE_INPUT_RECORDS).toBe(counters.COMBINE_OUTPUT_RECORDS);
    // Each value went through the buffer's combines, its spill's and the merge's at least.
    expect(counters.COMBINE_INPUT_RECORDS).toBeGreaterThan(3 * 500);
  });

  it("keeps an output within memoryBytes in memory, and creates no file for it", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "in"), "b a\nc a\n");
    const options = {
      app: lineWordcount,
      params: {},
      split: [{ file: join(dir, "in"), start: 0, end: 8 }],
      reducers: 2,
    };
    const small = await mapTask(dir, "small", { ...options, memoryBytes: 1024 });
    expect(small.output.data).toBeInstanceOf(Buffer);
    expect(small.output.data!.length).toBe(small.counters.MAP_OUTPUT_BYTES);
    const onDisk = await mapTask(dir, "disk", { ...options, memoryBytes: 4 });
    expect(onDisk.output.data).toBeUndefined();
    expect(readdirSync(dir).sort()).toEqual(["disk.out", "in"]);
    for (let r = 0; r < 2; r++)
      expect(readPartition(small.output, r)).toEqual(readPartition(onDisk.output, r));
    const all = [...readPartition(small.output, 0), ...readPartition(small.output, 1)].sort();
    expect(all).toEqual([
      ["a", "2"],
      ["b", "1"],
      ["c", "1"],
    ]);
  });

  it("reads a packed split file by file: each record keeps its own file and offset", async () => {
    const dir = tempDir();
    const [a, b] = [join(dir, "a.txt"), join(dir, "b.txt")];
    writeFileSync(a, "one two\nthree\n");
    writeFileSync(b, "four\nfive six"); // no final newline
    const where: App = {
      map: ({ file, offset, line }, emit) => emit(`${file.slice(dir.length + 1)}:${offset}`, line),
      reduce: () => undefined,
    };
    const split = [
      { file: a, start: 0, end: 14 },
      { file: b, start: 0, end: 13 },
    ];
    const { output, counters } = await mapTask(dir, "m", { app: where, params: {}, split, reducers: 1 });
    expect(readPartition(output, 0)).toEqual([
      ["a.txt:0", "one two"],
      ["a.txt:8", "three"],
      ["b.txt:0", "four"],
      ["b.txt:5", "five six"],
    ]);
    expect(counters.MAP_INPUT_RECORDS).toBe(4);
    expect(counters.MAP_INPUT_BYTES).toBe(27);

    const seen: string[] = [];
    const blocks: App = {
      ...where,
      blockMapper: () => ({
        block: (block, offset, _emit, file) =>
          seen.push(`${file.slice(dir.length + 1)}@${offset}:${block.length}`),
        end: () => undefined,
      }),
    };
    await mapTask(dir, "b", { app: blocks, params: {}, split, reducers: 1 });
    expect(seen).toEqual(["a.txt@0:14", "b.txt@0:5", "b.txt@5:8"]); // a last line without a newline comes alone
  });

  it("refuses a partition outside [0, R) with a message that names it", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "in"), "x\n");
    const app: App = { map: (_, emit) => emit("k", "v"), reduce: () => undefined, partition: () => 5 };
    await expect(
      mapTask(dir, "m", {
        app,
        params: {},
        split: [{ file: join(dir, "in"), start: 0, end: 2 }],
        reducers: 2,
      }),
    ).rejects.toThrow(/partition\("k", 2\) returned 5/);
  });
});

/** Descriptors this process holds open on /dev/full. */
function openOnDevFull(): number {
  return readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === "/dev/full";
    } catch {
      return false;
    }
  }).length;
}

describe("a full disk", () => {
  it("fails a map's spill and a reduce's output with ENOSPC, and leaves no descriptor open", async () => {
    const dir = tempDir();
    const input = join(dir, "in.txt");
    const letters = (i: number): string =>
      i.toString(26).replace(/./g, (d) => String.fromCharCode(97 + parseInt(d, 26)));
    writeFileSync(input, Array.from({ length: 50_000 }, (_, i) => `w${letters(i)}`).join("\n")); // distinct: it spills
    const spillDir = join(dir, "spills");
    mkdirSync(spillDir);
    symlinkSync("/dev/full", join(spillDir, "spill-0"));
    const map = await runMapTask({
      app: BUILTIN_APPS.wordcount!,
      params: {},
      split: [{ file: input, start: 0, end: 1e9 }],
      reducers: 1,
      path: join(dir, "out"),
      spillDir,
      tunables: resolveTunables({ sortBufferBytes: 64 << 10 }),
    }).catch((err: unknown) => err);
    expect((map as Error).message).toMatch(/ENOSPC/);
    expect(openOnDevFull()).toBe(0);

    const fetched = join(dir, "fetched");
    const writer = new RecordWriter(fetched);
    for (let i = 0; i < 50_000; i++) writer.write(`key${i}`, "1");
    writer.close();
    const full = join(dir, "part");
    symlinkSync("/dev/full", full);
    const reduce = await runReduceTask({
      app: BUILTIN_APPS.wordcount!,
      params: {},
      inputs: [{ path: fetched, start: 0, end: writer.bytes }],
      outputPath: full,
      workDir: join(dir, "work"),
    }).catch((err: unknown) => err);
    expect((reduce as Error).message).toMatch(/ENOSPC/);
    expect(openOnDevFull()).toBe(0);
  });
});

describe("the reduce task", () => {
  it("reads many ranges of one file through one descriptor (below the merge factor)", async () => {
    const dir = tempDir();
    const path = join(dir, "fetched");
    const writer = new RecordWriter(path);
    const inputs = [];
    for (let m = 0; m < 90; m++) {
      const start = writer.bytes;
      writer.write(`k${m % 7}`, "1");
      inputs.push({ path, start, end: writer.bytes });
    }
    writer.close();
    const openFds = (): number => readdirSync("/proc/self/fd").length;
    const before = openFds();
    let during = 0;
    const app: App = {
      map: () => undefined,
      reduce(key, values, emit) {
        during ||= openFds();
        emit(key, String([...values].length));
      },
    };
    await runReduceTask({
      app,
      params: {},
      inputs,
      outputPath: join(dir, "part"),
      workDir: join(dir, "w"),
    });
    expect(during - before).toBeLessThan(5);
    expect(readFileSync(join(dir, "part"), "utf8")).toBe(
      ["k0\t13", "k1\t13", "k2\t13", "k3\t13", "k4\t13", "k5\t13", "k6\t12", ""].join("\n"),
    );
  });
});

describe("a local job", () => {
  it("counts words exactly, with each part file sorted by key", async () => {
    const dir = tempDir();
    const inputs = writeCorpus(dir, { files: 3, bytes: 30_000, seed: 11 });
    const outputDir = join(dir, "out");
    const { maps } = await runLocalJob({
      app: BUILTIN_APPS.wordcount!,
      params: {},
      inputs,
      outputDir,
      reducers: 4,
      splitSizeBytes: 7_000,
    });
    expect(maps).toBeGreaterThanOrEqual(12);
    const expected = [...countWords(inputs)].map(([word, n]) => `${word}\t${n}`).sort();
    expect(readOutput(outputDir)).toEqual(expected);
    for (const name of readdirSync(outputDir).filter((file) => file.startsWith("part-"))) {
      const keys = readFileSync(join(outputDir, name), "utf8")
        .trimEnd()
        .split("\n")
        .map((line) => line.split("\t")[0]!);
      expect([...keys].sort(compareKeys)).toEqual(keys);
    }
    expect(readdirSync(outputDir)).toContain("_SUCCESS");
    expect(readdirSync(outputDir)).not.toContain("_temporary");
  });

  it("counts words exactly over more maps than the merge factor, whose outputs a reduce merges in passes", async () => {
    const dir = tempDir();
    const inputs = writeCorpus(dir, { files: 1, bytes: 60_000, seed: 12 });
    const outputDir = join(dir, "out");
    const { maps, counters } = await runLocalJob({
      app: BUILTIN_APPS.wordcount!,
      params: {},
      inputs,
      outputDir,
      reducers: 2,
      splitSizeBytes: 400,
      tunables: resolveTunables({ mergeMemoryBytes: 0 }), // small outputs, merged on disk all the same
    });
    expect(maps).toBeGreaterThan(100);
    expect(counters.SPILLED_RECORDS).toBeGreaterThan(0); // records rewritten by merges ahead
    const expected = [...countWords(inputs)].map(([word, n]) => `${word}\t${n}`).sort();
    expect(readOutput(outputDir)).toEqual(expected);
  });

  it("runs its tasks on a pool of task threads, as many at once as the pool has slots, to the same output", async () => {
    const dir = tempDir();
    const inputs = writeCorpus(dir, { files: 2, bytes: 40_000, seed: 13 });
    const threads = new TaskThreads({ appsDir: undefined, taskTimeoutMs: 60_000 });
    const pool = threadPool(threads, 2, { app: "wordcount", params: {}, tunables: DEFAULT_TUNABLES });
    let running = 0;
    let most = 0;
    const counted = <T>(task: Promise<T>): Promise<T> => {
      most = Math.max(most, ++running);
      return task.finally(() => running--);
    };
    try {
      const { maps } = await runLocalJob({
        app: BUILTIN_APPS.wordcount!,
        params: {},
        inputs,
        outputDir: join(dir, "out"),
        reducers: 4,
        splitSizeBytes: 5_000,
        tasks: {
          slots: pool.slots,
          map: (task, signal) => counted(pool.map(task, signal)),
          reduce: (task, signal) => counted(pool.reduce(task, signal)),
        },
      });
      expect(maps).toBeGreaterThanOrEqual(16);
    } finally {
      await threads.close();
    }
    expect(most).toBe(2);
    const expected = [...countWords(inputs)].map(([word, n]) => `${word}\t${n}`).sort();
    expect(readOutput(join(dir, "out"))).toEqual(expected);
    expect(readdirSync(join(dir, "out"))).not.toContain("_temporary");
  });

  it("fails at its first failed task: the tasks under way are aborted, no more start, and nothing is committed", async () => {
    const dir = tempDir();
    const inputs = writeCorpus(dir, { files: 1, bytes: 40_000, seed: 14 });
    const started: number[] = [];
    const aborted: number[] = [];
    const job = runLocalJob({
      app: BUILTIN_APPS.wordcount!,
      params: {},
      inputs,
      outputDir: join(dir, "out"),
      reducers: 2,
      splitSizeBytes: 2_000,
      tasks: {
        slots: 3,
        async map(_task, signal) {
          const m = started.push(started.length) - 1;
          if (m === 1) throw new Error("map 1 broke");
          await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
          aborted.push(m);
          throw new Error("aborted");
        },
        reduce: () => Promise.reject(new Error("no reduce should start")),
      },
    });
    await expect(job).rejects.toThrow("map 1 broke");
    expect(started).toEqual([0, 1, 2]);
    expect(aborted.sort()).toEqual([0, 2]);
    expect(existsSync(join(dir, "out", "_SUCCESS"))).toBe(false);
  });

  it("indexes documents by sorted distinct basename", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "b.txt"), "cat dog\ncat\n");
    writeFileSync(join(dir, "a.txt"), "dog Ünïcödé\n");
    const outputDir = join(dir, "out");
    await runLocalJob({
      app: BUILTIN_APPS.indexer!,
      params: {},
      inputs: [join(dir, "b.txt"), join(dir, "a.txt")],
      outputDir,
      reducers: 2,
      splitSizeBytes: 3,
    });
    expect(readOutput(outputDir)).toEqual(["cat\t1 b.txt", "dog\t2 a.txt,b.txt", "Ünïcödé\t1 a.txt"].sort());
  });
});

describe("a worker's data directory", () => {
  it("is cleared of attempts' files only, whatever else the user keeps there", async () => {
    const { clearAttemptFiles, attemptDir, mapOutputPath } = await import("../src/worker/dataDir.js");
    const dir = tempDir();
    const attempt = attemptDir(dir, "a0123456789abcdef");
    const { mkdirSync } = await import("node:fs");
    mkdirSync(attempt);
    writeFileSync(join(attempt, "spill-0"), "x");
    writeFileSync(mapOutputPath(dir, "a00000000000000ff"), "x");
    writeFileSync(join(dir, "notes.txt"), "mine");
    writeFileSync(join(dir, "a0123456789abcdef.txt"), "mine too");
    mkdirSync(join(dir, "a-project"));
    clearAttemptFiles(dir);
    expect(readdirSync(dir).sort()).toEqual(["a-project", "a0123456789abcdef.txt", "notes.txt"]);
    expect(() => attemptDir(dir, "../etc")).toThrow(/not an attempt id/);
  });
});

describe("engine tunables", () => {
  it("take their defaults, and refuse a value below a tunable's minimum with its name", () => {
    expect(resolveTunables().mergeFactor).toBe(100);
    expect(resolveTunables({ mergeFactor: 10 }).mergeFactor).toBe(10);
    expect(Object.isFrozen(resolveTunables())).toBe(true);
    expect(() => resolveTunables({ mergeFactor: 1 })).toThrow(
      /mergeFactor must be an integer of at least 2, got 1/,
    );
    expect(() => resolveTunables({ sortBufferBytes: 1.5 })).toThrow(/sortBufferBytes/);
  });
});
