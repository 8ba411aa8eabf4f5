/** Daily use through real processes: one driver per database, and the CLI's answers. */
import { once } from "node:events";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { spawnMr, type MrProcess } from "../src/cli/processes.js";
import { countersOf, mr, startCluster, waitForJobEnd, type Cluster } from "./helpers/cluster.js";
import { tempDir, uniquePrefix } from "./helpers/tmp.js";

const started: MrProcess[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((process) => process.stop("SIGKILL")));
});

describe("one driver per database", () => {
  const driverArgs = (db: string, prefix: string) => [
    "driver",
    "--listen",
    "127.0.0.1:0",
    "--db",
    db,
    "--redis",
    inject("redisUrl"),
    "--queue-prefix",
    prefix,
  ];

  it("refuses a second driver on the same database, naming the first; a killed one frees it at once", async () => {
    const db = join(tempDir(), "driver.db");
    const prefix = uniquePrefix();
    const first = await spawnMr(driverArgs(db, prefix));
    started.push(first);

    const second = await mr(driverArgs(db, prefix));
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`${db} is in use by the driver pid ${first.child.pid}`);
    expect(second.stderr).toContain(`listening on ${first.address}`);
    expect(second.stderr).toContain("--takeover");

    // A driver killed outright cannot leave its hold behind on this host.
    await first.stop("SIGKILL");
    const third = await spawnMr(driverArgs(db, prefix));
    started.push(third);
    expect(third.address).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it("takes the database over with --takeover; the driver that held it stops and says why", async () => {
    const db = join(tempDir(), "driver.db");
    const prefix = uniquePrefix();
    const first = await spawnMr(driverArgs(db, prefix), { stderr: "pipe" });
    started.push(first);
    let firstErr = "";
    first.child.stderr!.on("data", (chunk: Buffer) => (firstErr += chunk.toString()));
    const exited = once(first.child, "exit");

    const second = await spawnMr([...driverArgs(db, prefix), "--takeover"]);
    started.push(second);
    const [code] = (await exited) as [number];
    expect(code).toBe(1);
    expect(firstErr).toContain(`another driver took the database over (pid ${second.child.pid}`);
  });
});

describe("mr submit and mr run --local", () => {
  let cluster: Cluster;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mr-daily-"));
    cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 1 });
  });
  afterAll(async () => {
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs the job both ways, each into its own output directory. */
  const both = (args: string[], output: (command: string) => string) =>
    Promise.all(
      [
        ["submit", "--wait"],
        ["run", "--local"],
      ].map((command) => mr([...command, ...args, "--output", output(command[0]!)], cluster.env)),
    );

  it("refuse the same bad jobs in the same words, with exit code 2", async () => {
    const input = join(dir, "in.txt");
    writeFileSync(input, "a b\n");
    mkdirSync(join(dir, "empty"));
    const cases: [string[], string][] = [
      [["--app", "nope", "--reducers", "1", input], 'unknown app "nope"'],
      [
        ["--app", "wordcount", "--reducers", "1", join(dir, "missing.txt")],
        `input not found: ${join(dir, "missing.txt")}`,
      ],
      [["--app", "wordcount", "--reducers", "100000", input], "reducers: must be an integer from 1 to"],
      [
        ["--app", "wordcount", "--reducers", "1", join(dir, "empty")],
        `inputs: ${join(dir, "empty")} holds no input files`,
      ],
      [
        ["--app", "grep", "--reducers", "1", input],
        "params: grep needs a pattern (add --param pattern=REGEX)",
      ],
    ];
    for (const [args, refusal] of cases) {
      const results = await both(args, (command) => join(dir, "refused", command));
      for (const [i, result] of results.entries()) {
        expect(result.code, `${i === 0 ? "submit" : "run"} ${args.join(" ")}: ${result.stderr}`).toBe(2);
        expect(result.stderr).toContain(refusal);
        expect(result.stderr.split("\n")).toHaveLength(2); // one line
      }
    }
  });

  it("read directories alike, and a file named twice once", async () => {
    const books = join(dir, "books");
    mkdirSync(books);
    writeFileSync(join(books, "a.txt"), "the cat\nthe dog\n");
    writeFileSync(join(books, "b.txt"), "a bird\n");
    writeFileSync(join(books, "_skipped"), "never read\n");
    const results = await both(
      ["--app", "wordcount", "--reducers", "2", books, join(books, "a.txt")],
      (command) => join(dir, "twice", command),
    );
    for (const result of results) expect(result.code, result.stderr).toBe(0);
    const outputOf = (command: string) =>
      readdirSync(join(dir, "twice", command))
        .filter((name) => name.startsWith("part-"))
        .map((name) => readFileSync(join(dir, "twice", command, name), "utf8"))
        .join("");
    expect(outputOf("submit")).toBe(outputOf("run"));
    expect(outputOf("run").split("\n").sort().join("\n")).toBe("\na\t1\nbird\t1\ncat\t1\ndog\t1\nthe\t2");
    const { jobs } = await cluster.client.listJobs({ state: "", limit: 1, pageToken: "" });
    expect(countersOf(await waitForJobEnd(cluster.client, jobs[0]!.id)).MAP_INPUT_RECORDS).toBe(3);
  });
});

describe("mr worker", () => {
  it("says what a bad port is, and what to do when its port is taken", async () => {
    const bad = await mr(["worker", "--port", "abc"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('mr: --port must be a port from 0 to 65535 (0 picks a free one), got "abc"\n');

    const holder = createServer().listen(0, "127.0.0.1");
    await once(holder, "listening");
    const { port } = holder.address() as { port: number };
    try {
      const taken = await mr(["worker", "--port", String(port), "--data-dir", join(tempDir(), "data")]);
      expect(taken.code).toBe(1);
      expect(taken.stderr).toBe(
        `mr: 127.0.0.1:${port} is already in use by another process (stop it, or choose another port; port 0 picks a free one)\n`,
      );
    } finally {
      holder.close();
    }
  });
});
