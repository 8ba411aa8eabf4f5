/** User apps from a worker's --apps-dir, run through a real driver and workers. */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, inject, it } from "vitest";
import { spawnMr } from "../src/cli/processes.js";
import { runMapTask } from "../src/mr/mapTask.js";
import { loadApps } from "../src/worker/apps.js";
import { countersOf, startCluster, mr, waitForJobEnd, type Cluster } from "./helpers/cluster.js";
import { tempDir } from "./helpers/tmp.js";

let cluster: Cluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

// Counts words of at least `minLength` letters by their first letter; the partitioner sends
// vowels to partition 0 and the rest to 1; the combiner keeps the key; a user counter counts
// short words, and two more count past 2^53 and past 2^63.
const LETTERS_APP = `
export default {
  map({ line }, emit, ctx) {
    const min = Number(ctx.params.minLength ?? "1");
    for (const word of line.match(/\\p{L}+/gu) ?? []) {
      if (word.length < min) { ctx.count("short-words"); continue; }
      emit(word[0].toLowerCase(), "1");
    }
  },
  combine(key, values, emit) {
    let n = 0;
    for (const v of values) n += Number(v);
    emit(key, String(n));
  },
  reduce(key, values, emit, ctx) {
    let n = 0;
    for (const v of values) n += Number(v);
    ctx.count("keys");
    ctx.count("huge", 2n ** 52n + 1n);
    ctx.count("past-int64", 2n ** 62n);
    emit(key, \`\${n} \${ctx.params.label ?? ""}\`.trim());
  },
  partition(key, r) {
    return "aeiou".includes(key) ? 0 : 1 % r;
  },
};
`;

describe("a user app", () => {
  it("runs with params, a combiner, a custom partitioner and user counters, only on workers that offer it", async () => {
    const dir = tempDir();
    const apps = join(dir, "apps");
    mkdirSync(apps);
    writeFileSync(join(apps, "letters.mjs"), LETTERS_APP);
    const input = join(dir, "in.txt");
    const lines = Array.from(
      { length: 4000 },
      (_, i) => `an owl ate ${i % 7 ? "bread" : "apples"} by the river`,
    );
    writeFileSync(input, lines.join("\n") + "\n");

    // One worker offers the app; the other does not, and must never be handed its tasks.
    cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 0 });
    const workerEnv = { ...cluster.env, MR_TOKEN_FILE: cluster.tokenFiles!.worker };
    const plain = await spawnMr(["worker", "--port", "0", "--data-dir", join(dir, "plain")], {
      env: workerEnv,
    });
    cluster.workers.push(plain);
    const offering = await spawnMr(
      ["worker", "--port", "0", "--data-dir", join(dir, "offering"), "--apps-dir", apps],
      { env: workerEnv },
    );
    cluster.workers.push(offering);

    const submitted = await mr(
      [
        "submit",
        "--app",
        "letters",
        "--reducers",
        "2",
        "--split-size",
        "16KiB",
        "--output",
        join(dir, "out"),
        "--param",
        "minLength=3",
        "--param",
        "label=words",
        "--json",
        input,
      ],
      cluster.env,
    );
    expect(submitted.code, submitted.stderr).toBe(0);
    const job = JSON.parse(submitted.stdout);
    expect(job.params).toEqual({ minLength: "3", label: "words" });
    const detail = await waitForJobEnd(cluster.client, job.id);
    expect(detail.job!.state).toBe("SUCCEEDED");

    // Words of 3+ letters: owl, ate, bread|apples, the, river; "an" and "by" are short.
    const apples = lines.filter((line) => line.includes("apples")).length;
    expect(readFileSync(join(dir, "out", "part-r-00000"), "utf8")).toBe(
      `a\t${4000 + apples} words\no\t4000 words\n`,
    );
    expect(readFileSync(join(dir, "out", "part-r-00001"), "utf8")).toBe(
      `b\t${4000 - apples} words\nr\t4000 words\nt\t4000 words\n`,
    );
    expect(countersOf(detail)["app.short-words"]).toBe(8000);
    expect(countersOf(detail)["app.keys"]).toBe(5);
    expect(countersOf(detail).MAP_INPUT_RECORDS).toBe(4000);
    expect(countersOf(detail).MAP_OUTPUT_RECORDS).toBe(20_000);
    expect(countersOf(detail).COMBINE_INPUT_RECORDS).toBeGreaterThanOrEqual(20_000);
    expect(countersOf(detail).COMBINE_OUTPUT_RECORDS).toBeLessThan(1000); // the combiner shrank 20,000 records
    expect(countersOf(detail).REDUCE_INPUT_GROUPS).toBe(5);

    const { workers } = await cluster.client.listWorkers();
    const offeringId = workers.find((worker) => worker.address === offering.address)!.id;
    expect(workers.find((worker) => worker.address === offering.address)!.apps).toContain("letters");
    const ranOn = new Set(detail.tasks.flatMap((task) => task.attempts.map((attempt) => attempt.workerId)));
    expect([...ranOn]).toEqual([offeringId]);

    // Counters are 64-bit integers end to end: 5 × (2^52 + 1) is exact, though no double holds
    // it, and 5 × 2^62 stops at 2^63 − 1, in the attempts and in the job's sum alike.
    const shown = await mr(["jobs", "show", String(job.id), "--json"], cluster.env);
    expect(JSON.parse(shown.stdout).counters).toMatchObject({
      "app.short-words": "8000",
      "app.keys": "5",
      "app.huge": "22517998136852485",
      "app.past-int64": "9223372036854775807",
    });
    const text = await mr(["jobs", "show", String(job.id)], cluster.env);
    expect(text.stdout).toMatch(/app\.huge\s*│\s*22517998136852485/);
  });

  it("is refused by name when no worker offers it, and a broken one stops its worker at start", async () => {
    const dir = tempDir();
    cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 1 });
    const result = await mr(
      ["submit", "--app", "letters", "--reducers", "1", "--output", join(dir, "o"), join(dir, "nothing")],
      cluster.env,
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/unknown app "letters" \(available: wordcount, indexer, grep, faulty;/);

    const broken = join(dir, "broken");
    mkdirSync(broken);
    writeFileSync(join(broken, "half.mjs"), "export function map() {}\n");
    const worker = await mr(["worker", "--port", "0", "--apps-dir", broken], cluster.env);
    expect(worker.code).toBe(2);
    expect(worker.stderr).toMatch(/app half .* must export functions map and reduce/);
  });

  it("runs the example app of the README the same way locally", async () => {
    const dir = tempDir();
    const input = join(dir, "in.txt");
    writeFileSync(input, "The cat sat. The cat ran\nthe CAT sat\n");
    const examples = join(import.meta.dirname, "..", "examples", "apps");
    const run = await mr([
      "run",
      "--local",
      "--apps-dir",
      examples,
      "--app",
      "bigrams",
      "--reducers",
      "1",
      "--param",
      "lowercase=yes",
      "--output",
      join(dir, "out"),
      input,
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(readdirSync(join(dir, "out"))).toContain("_SUCCESS");
    expect(readFileSync(join(dir, "out", "part-r-00000"), "utf8")).toBe(
      "cat ran\t1\ncat sat\t2\nsat the\t1\nthe cat\t3\n",
    );
  });
});

describe("an apps directory", () => {
  it("offers an app's block mapper, which map tasks then use instead of map", async () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, "lines.mjs"),
      `export function map(_input, emit) { emit("lines", "1"); }
export function reduce(key, values, emit) { let n = 0; for (const v of values) n += Number(v); emit(key, String(n)); }
export function blockMapper(ctx) {
  let lines = 0;
  return {
    block(block) { for (const byte of block) if (byte === 10) lines++; ctx.count("blocks"); },
    end(emit) { emit("lines", String(lines)); },
  };
}
`,
    );
    writeFileSync(join(dir, "in.txt"), "one\ntwo\nthree\n");
    const apps = await loadApps(dir);
    const { counters } = await runMapTask({
      app: apps.lines!,
      params: {},
      split: [{ file: join(dir, "in.txt"), start: 0, end: 14 }],
      reducers: 1,
      path: join(dir, "m.out"),
      spillDir: join(dir, "m"),
    });
    expect(counters).toMatchObject({ MAP_INPUT_RECORDS: 3, MAP_OUTPUT_RECORDS: 1, "app.blocks": 1 });
  });
});

describe("grep", () => {
  it("prints matching lines keyed by file and offset, and needs a valid pattern", async () => {
    const dir = tempDir();
    cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 2 });
    const input = join(dir, "log.txt");
    writeFileSync(input, "ok start\nERROR disk full\nok\nERROR net down\n");
    const missing = await mr(
      ["submit", "--app", "grep", "--reducers", "1", "--output", join(dir, "g0"), input],
      cluster.env,
    );
    expect(missing.stderr).toBe("mr: params: grep needs a pattern (add --param pattern=REGEX)\n");
    const bad = await mr(
      [
        "submit",
        "--app",
        "grep",
        "--reducers",
        "1",
        "--param",
        "pattern=(",
        "--output",
        join(dir, "g1"),
        input,
      ],
      cluster.env,
    );
    expect(bad.stderr).toMatch(/^mr: params: pattern is not a valid regular expression/);
    const exponential = await mr(
      ["submit", "--app", "grep", "--reducers", "1", "--param", "pattern=^(a+)+$", "--output", join(dir, "g2"), input],
      cluster.env,
    ); // prettier-ignore
    expect(exponential.stderr).toMatch(
      /^mr: params: pattern "\^\(a\+\)\+\$" repeats a group that itself repeats, which can take exponential time/,
    );
    const ok = await mr(
      [
        "submit",
        "--app",
        "grep",
        "--reducers",
        "2",
        "--split-size",
        "10",
        "--param",
        "pattern=^ERROR",
        "--wait",
        "--output",
        join(dir, "g2"),
        input,
      ],
      cluster.env,
    );
    expect(ok.code, ok.stderr).toBe(0);
    const lines = readdirSync(join(dir, "g2"))
      .filter((name) => name.startsWith("part-"))
      .flatMap((name) =>
        readFileSync(join(dir, "g2", name), "utf8")
          .split("\n")
          .filter(Boolean),
      )
      .sort();
    expect(lines).toEqual([
      `${input}:000000000000009\tERROR disk full`,
      `${input}:000000000000028\tERROR net down`,
    ]);
  });
});
