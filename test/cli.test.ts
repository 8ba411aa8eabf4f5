import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { freePort } from "../src/cli/processes.js";
import { startCluster, mr, type Cluster } from "./helpers/cluster.js";

let cluster: Cluster;
let dir: string;
let input: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "mr-cli-"));
  input = join(dir, "words.txt");
  writeFileSync(input, "the quick brown fox\njumps over the lazy dog\n");
  cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 1 });
});

afterAll(async () => {
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs mr against the test cluster. */
const run = (...args: string[]) => mr(args, cluster.env);

/** After each bad request the driver must still serve. */
async function expectDriverServing(): Promise<void> {
  const listed = await run("jobs", "list", "--json");
  expect(listed.code).toBe(0);
}

describe("the mr command", () => {
  it("submits, waits and prints the job as JSON", async () => {
    const result = await run(
      "submit",
      "--app",
      "wordcount",
      "--reducers",
      "2",
      "--output",
      join(dir, "ok"),
      "--json",
      "--wait",
      input,
    );
    expect(result.code).toBe(0);
    const job = JSON.parse(result.stdout);
    expect(job).toMatchObject({ id: expect.any(Number), state: "SUCCEEDED", app: "wordcount", reducers: 2 });
    expect((await run("jobs", "wait", String(job.id))).code).toBe(0);
  });

  it("returns at once with --json and no --wait", async () => {
    const result = await run(
      "submit",
      "--app",
      "wordcount",
      "--reducers",
      "1",
      "--output",
      join(dir, "nowait"),
      "--json",
      input,
    );
    expect(result.code).toBe(0);
    const job = JSON.parse(result.stdout);
    expect(job.state).toBe("RUNNING");
    const waited = await run("jobs", "wait", String(job.id));
    expect(waited.code).toBe(0);
    expect(waited.stderr).toContain(`job ${job.id} SUCCEEDED`);
  });

  it("refuses a missing input file, naming it", async () => {
    const missing = join(dir, "nope.txt");
    const result = await run(
      "submit",
      "--app",
      "wordcount",
      "--reducers",
      "2",
      "--output",
      join(dir, "o1"),
      missing,
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      `mr: input not found: ${missing} (check the path; inputs are read by the workers)\n`,
    );
    await expectDriverServing();
  });

  it.each(["0", "-3", "two", "1.5"])("refuses --reducers %s as bad usage", async (reducers) => {
    const result = await run(
      "submit",
      "--app",
      "wordcount",
      "--reducers",
      reducers,
      "--output",
      join(dir, "o2"),
      input,
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(`mr: --reducers must be a positive integer, got "${reducers}"\n`);
  });

  it.each(["1.5", "-0.1", "half"])("refuses --reduce-slowstart %s as bad usage", async (share) => {
    const output = join(dir, "o-slowstart");
    const result = await run(
      "submit",
      ...["--app", "wordcount", "--reducers", "1", "--output", output, "--reduce-slowstart", share],
      input,
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(`mr: --reduce-slowstart must be a number from 0 to 1, got "${share}"\n`);
  });

  it("refuses an unknown app, listing the available ones", async () => {
    const result = await run(
      "submit",
      "--app",
      "wordcunt",
      "--reducers",
      "2",
      "--output",
      join(dir, "o3"),
      input,
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      'mr: app: unknown app "wordcunt" (available: wordcount, indexer, grep, faulty; a worker offers more with --apps-dir)\n',
    );
    await expectDriverServing();
  });

  it("refuses an output directory that holds a finished job, and leaves it alone", async () => {
    const finished = join(dir, "finished");
    mkdirSync(finished);
    writeFileSync(join(finished, "_SUCCESS"), "");
    writeFileSync(join(finished, "part-r-00000"), "precious\t1\n");
    const result = await run("submit", "--app", "wordcount", "--reducers", "1", "--output", finished, input);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /^mr: output directory .*finished is not empty: it holds a finished job's output \(choose another --output, or give --overwrite/,
    );
    const again = await run(
      "run",
      "--local",
      "--app",
      "wordcount",
      "--reducers",
      "1",
      "--output",
      finished,
      input,
    );
    expect(again.code).toBe(2);
    expect(readFileSync(join(finished, "part-r-00000"), "utf8")).toBe("precious\t1\n");
    await expectDriverServing();
  });

  it("refuses a second job into the output of a running or succeeded one", async () => {
    const output = join(dir, "shared-out");
    expect(
      (await run("submit", "--app", "wordcount", "--reducers", "1", "--output", output, "--wait", input))
        .code,
    ).toBe(0);
    rmSync(join(output, "_SUCCESS")); // even without the marker, the driver remembers who owns it
    const result = await run("submit", "--app", "wordcount", "--reducers", "1", "--output", output, input);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /belongs to job \d+, which is SUCCEEDED \(choose another --output, or give --overwrite to replace its output\)/,
    );
  });

  it("says so for an unknown job id, in every jobs command", async () => {
    for (const command of ["show", "wait", "cancel"]) {
      const result = await run("jobs", command, "9999");
      expect(result.code, command).toBe(1);
      expect(result.stderr).toBe("mr: no job 9999 (see mr jobs list)\n");
    }
    const bad = await run("jobs", "show", "x1");
    expect(bad.code).toBe(2);
    await expectDriverServing();
  });

  it("names the address of a driver it cannot reach", async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const result = await mr(["jobs", "list", "--driver", address], cluster.env);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `mr: cannot reach the driver at ${address} (start it with 'mr driver', or set MR_DRIVER; a driver that serves TLS needs --tls-ca)\n`,
    );
    const viaEnv = await mr(["workers", "list"], { ...cluster.env, MR_DRIVER: address });
    expect(viaEnv.stderr).toContain(`cannot reach the driver at ${address}`);
  });

  it("refuses a driver whose worker timeout is no longer than its heartbeat interval, before it starts", async () => {
    const db = join(dir, "refused.db");
    const args = ["driver", "--db", db, "--listen", "127.0.0.1:0", "--http", "off"];
    const result = await run(...args, "--heartbeat-interval", "500", "--worker-timeout", "500");
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      "mr: workerTimeoutMs: 500 ms is no longer than a heartbeat interval of 500 ms: every worker would be lost between two heartbeats (give a --worker-timeout of at least twice the --heartbeat-interval)\n",
    );
    expect(existsSync(db)).toBe(false);
  });

  it("prints one line and exit 2 for unknown commands and options", async () => {
    const unknown = await run("jobs", "lst");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.trim().split("\n")).toHaveLength(1);
    const option = await run(
      "submit",
      "--app",
      "wordcount",
      "--reducers",
      "1",
      "--output",
      join(dir, "b"),
      "--bogus",
      input,
    );
    expect(option.code).toBe(2);
    expect(option.stderr).toMatch(/^mr: unknown option '--bogus'/);
    // --local is run's only mode: it may be left out.
    const noLocal = await run(
      "run",
      "--app",
      "wordcount",
      "--reducers",
      "1",
      "--output",
      join(dir, "x"),
      input,
    );
    expect(noLocal.code, noLocal.stderr).toBe(0);
    expect(readdirSync(join(dir, "x"))).toContain("_SUCCESS");
  });

  it("lists jobs newest first with their columns, and filters by state", async () => {
    const listed = await run("jobs", "list");
    expect(listed.stdout).toMatch(
      /ID\s+│ APP\s+│ STATE\s+│ RETRIES │ MAPS\s+│ REDUCES\s+│ OUTPUT\s+│ SUBMITTED\s+│ DURATION/,
    );
    const jobs = JSON.parse((await run("jobs", "list", "--json")).stdout);
    const ids = jobs.map((job: { id: number }) => job.id);
    expect(ids).toEqual([...ids].sort((a, b) => b - a));
    const running = JSON.parse((await run("jobs", "list", "--state", "running", "--json")).stdout);
    expect(running).toEqual([]);
    expect((await run("jobs", "list", "--state", "weird")).code).toBe(2);
    const limited = JSON.parse((await run("jobs", "list", "--limit", "1", "--json")).stdout);
    expect(limited).toHaveLength(1);
  });

  it("shows a job's tasks, attempts, counters and events", async () => {
    const [job] = JSON.parse((await run("jobs", "list", "--limit", "1", "--json")).stdout);
    const text = (await run("jobs", "show", String(job.id))).stdout;
    expect(text).toContain(`job ${job.id}: wordcount, SUCCEEDED`);
    expect(text).toMatch(/Counters[\s\S]*MAP_INPUT_RECORDS/);
    expect(text).toMatch(/Tasks[\s\S]*m0 .*SUCCEEDED/);
    expect(text).toMatch(/Events[\s\S]*submitted[\s\S]*succeeded/);
    const shown = JSON.parse((await run("jobs", "show", String(job.id), "--json")).stdout);
    expect(shown.tasks[0].attempts[0]).toEqual({
      id: expect.any(String),
      worker: expect.any(Number),
      state: "SUCCEEDED",
      startedAt: expect.any(String),
      finishedAt: expect.any(String),
      progress: 1,
      speculative: false,
      error: null,
    });
    expect(shown.events.map((event: { type: string }) => event.type)).toEqual([
      "submitted",
      "maps-done",
      "succeeded",
    ]);
  });

  it("cancels a job, which then waits to exit 1", async () => {
    const big = join(dir, "big.txt");
    writeFileSync(big, "word ".repeat(200_000));
    // One worker and many splits: the job is still running when the cancel arrives.
    const submitted = await run(
      "submit",
      "--app",
      "wordcount",
      "--reducers",
      "2",
      "--split-size",
      "1000",
      "--output",
      join(dir, "c"),
      "--json",
      big,
    );
    const job = JSON.parse(submitted.stdout);
    const cancelled = await run("jobs", "cancel", String(job.id));
    expect(cancelled.stdout).toBe(`job ${job.id} CANCELLED\n`);
    const waited = await run("jobs", "wait", String(job.id));
    expect(waited.code).toBe(1);
    expect(waited.stderr).toContain(`mr: job ${job.id} CANCELLED: cancelled by the user`);
    const output = join(dir, "c");
    expect(existsSync(output) ? readdirSync(output).filter((name) => name.startsWith("part-")) : []).toEqual(
      [],
    );
  });
});
