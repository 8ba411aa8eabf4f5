/** Daily use through real processes: one driver per database, and the CLI's answers. */
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { MR_BIN, freePort, spawnMr, type MrProcess } from "../src/cli/processes.js";
import {
  FIXTURE_APPS,
  countersOf,
  mr,
  startCluster,
  waitForJobEnd,
  type Cluster,
} from "./helpers/cluster.js";
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
    cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 1, slots: "cores" });
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
  it("run --local with two slots gives the one-slot output, and fails at a task's error in one line with nothing committed", async () => {
    const input = join(dir, "slots.txt");
    writeFileSync(
      input,
      Array.from({ length: 4000 }, (_, i) => `w${i % 97} x${i % 13} line ${i}`).join("\n"),
    );
    const outputs = [];
    for (const slots of ["1", "2"]) {
      const output = join(dir, "slots", slots);
      const args = ["--app", "wordcount", "--reducers", "3", "--split-size", "8192", "--output", output];
      const result = await mr(["run", "--local", "--slots", slots, ...args, input], cluster.env);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toMatch(/^ran \d+ maps and 3 reduces/);
      outputs.push(readdirSync(output).map((name) => [name, readFileSync(join(output, name), "utf8")]));
    }
    expect(outputs[1]).toEqual(outputs[0]);

    const failed = join(dir, "slots", "failed");
    const poisoned = await mr(
      [
        "run",
        "--local",
        "--slots",
        "2",
        "--apps-dir",
        FIXTURE_APPS,
        "--app",
        "faulty",
        "--param",
        "poison=line 3999",
        "--reducers",
        "2",
        "--split-size",
        "8192",
        "--output",
        failed,
        input,
      ],
      cluster.env,
    );
    expect(poisoned.code).toBe(1);
    expect(poisoned.stderr).toMatch(/^mr: poisoned record at .*slots\.txt:\d+\n$/);
    expect(existsSync(join(failed, "_SUCCESS"))).toBe(false);

    const tooMany = await mr([
      "run",
      "--local",
      "--slots",
      "65",
      "--app",
      "wordcount",
      "--reducers",
      "1",
      "--output",
      failed,
      input,
    ]);
    expect(tooMany.code).toBe(2);
    expect(tooMany.stderr).toBe("mr: --slots is at most 64\n");
  });

  it("starts a worker with a slot per core unless told otherwise", async () => {
    const { workers } = await cluster.client.listWorkers();
    expect(workers.map((worker) => worker.slots)).toEqual([availableParallelism()]);
  });
});

describe("mr worker", () => {
  it("stopped before the driver answered, leaves no data directory of its own", async () => {
    const home = tempDir();
    const port = await freePort();
    const child = spawn(
      process.execPath,
      [MR_BIN, "worker", "--port", "0", "--driver", `127.0.0.1:${port}`],
      {
        env: { ...process.env, MR_HOME: home },
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = once(child, "exit");
    for (let i = 0; i < 200 && !stderr.includes("driver unreachable"); i++) await sleep(50);
    expect(readdirSync(home)).toEqual([expect.stringMatching(/^worker-\d+$/)]); // made at start
    child.kill("SIGTERM");
    const [code] = (await exited) as [number];
    expect(code).toBe(0);
    expect(readdirSync(home)).toEqual([]);
  });

  it("logs JSON lines when not on a terminal, and pretty ones when asked", async () => {
    const run = async (format: string[]) => {
      const child = spawn(
        process.execPath,
        [MR_BIN, "worker", "--port", "0", "--driver", "127.0.0.1:1", ...format],
        {
          env: { ...process.env, MR_HOME: tempDir() },
          stdio: ["ignore", "ignore", "pipe"],
        },
      );
      let stderr = "";
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = once(child, "exit");
      for (let i = 0; i < 200 && !stderr.includes("driver unreachable"); i++) await sleep(50);
      child.kill("SIGTERM");
      await exited;
      return stderr.split("\n")[0]!;
    };
    expect(JSON.parse(await run([]))).toMatchObject({ name: "worker", msg: expect.any(String) });
    expect(await run(["--log-format", "pretty"])).toMatch(/^\[[\d:.]+\] (INFO|WARN) \(worker\/\d+\): /);
  });

  it("prints its version", async () => {
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, "..", "package.json"), "utf8"));
    expect((await mr(["--version"])).stdout).toBe(`${pkg.version}\n`);
  });

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

describe("waiting on a job", () => {
  it("says at once that the driver does not answer, and tries until --timeout", async () => {
    const port = await freePort();
    const started = Date.now();
    const child = spawn(
      process.execPath,
      [MR_BIN, "jobs", "wait", "1", "--driver", `127.0.0.1:${port}`, "--timeout", "6s"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    let firstWordAt: number | undefined;
    child.stderr.on("data", (chunk: Buffer) => {
      firstWordAt ??= Date.now();
      stderr += chunk.toString();
    });
    const [code] = (await once(child, "exit")) as [number];
    const endedAt = Date.now();
    expect(code).toBe(1);
    expect(stderr).toMatch(
      new RegExp(`^cannot reach the driver at 127\\.0\\.0\\.1:${port}; trying again, giving up in [56]s\n`),
    );
    expect(stderr).toContain(`mr: cannot reach the driver at 127.0.0.1:${port}`);
    // It spoke long before it gave up, and gave up only at the timeout.
    expect(endedAt - firstWordAt!).toBeGreaterThan(3000);
    expect(endedAt - started).toBeGreaterThanOrEqual(6000);
  });

  const hasScript = spawnSync("script", ["--version"]).status === 0;
  it.skipIf(!hasScript)(
    "on a terminal, gives the terminal back on Ctrl-C and says how to wait again; the job goes on (needs util-linux script for a pty)",
    async () => {
      const dir = tempDir();
      const cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 0 });
      try {
        writeFileSync(join(dir, "in.txt"), "a b\n");
        const job = await cluster.client.submitJob({
          app: "wordcount",
          inputs: [join(dir, "in.txt")],
          outputDir: join(dir, "out"),
          reducers: 1,
          splitSizeBytes: 0,
          params: {},
        });
        const timedOut = await mr(["jobs", "wait", String(job.id), "--timeout", "1s"], cluster.env);
        expect(timedOut.code).toBe(1);
        expect(timedOut.stderr).toContain(
          `mr: job ${job.id} is still running after the --timeout (it goes on; mr jobs wait ${job.id} to wait again)`,
        );
        // script runs mr on a pseudo-terminal; a ^C written to it is the user's Ctrl-C.
        const child = spawn(
          "script",
          ["-qfec", `${process.execPath} ${MR_BIN} jobs wait ${job.id}`, "/dev/null"],
          {
            env: cluster.env,
            stdio: ["pipe", "pipe", "pipe"],
          },
        );
        let screen = "";
        child.stdout.on("data", (chunk: Buffer) => (screen += chunk.toString()));
        const exited = once(child, "exit");
        for (let i = 0; i < 200 && !screen.includes("reduces"); i++) await sleep(50);
        expect(screen).toContain("reduces");
        child.stdin.write("\x03");
        const [code] = (await exited) as [number];
        expect(code).toBe(130);
        expect(screen).toContain(
          `job ${job.id} goes on without this wait; mr jobs wait ${job.id} to follow it again`,
        );
        expect(screen.lastIndexOf("\x1b[?25h")).toBeGreaterThan(screen.lastIndexOf("\x1b[?25l")); // cursor shown
        expect((await cluster.client.getJob(job.id)).job!.state).toBe("RUNNING");
      } finally {
        await cluster.stop();
      }
    },
  );
});

describe("a worker cut off from the driver", () => {
  it("is heard again within seconds of the driver's return, however long it was gone", async () => {
    const dir = tempDir();
    const cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 1 });
    try {
      await cluster.driver.stop("SIGKILL");
      // Long enough for backoff left to itself to reach tens of seconds.
      await sleep(30_000);
      await cluster.startDriver();
      const back = Date.now();
      let heardAt: number | undefined;
      for (let i = 0; i < 300 && heardAt === undefined; i++) {
        const { workers } = await cluster.client.listWorkers();
        if (workers.some((worker) => worker.state === "ALIVE" && worker.lastHeartbeatMs > back))
          heardAt = Date.now();
        else await sleep(100);
      }
      expect(heardAt).toBeDefined();
      expect(heardAt! - back).toBeLessThan(10_000); // the retry is capped at 5 s, and jittered
    } finally {
      await cluster.stop();
    }
  }, 90_000);
});
