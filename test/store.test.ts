/** The store's own machinery: migrations, group commit, and counters, from an app's count to a job's sum. */
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { INT64_MAX, INT64_MIN, addCount, fromCounterList, toCounterList } from "../src/counters.js";
import { completeAttempt, submitJob } from "../src/driver/scheduler.js";
import { TaskCounters } from "../src/mr/context.js";
import { getAttempt } from "../src/store/attempts.js";
import { JOB_COUNTERS_SQL, jobCounters } from "../src/store/counters.js";
import { MIGRATIONS_DIR, migrate, openDb } from "../src/store/db.js";
import { GroupCommit, coalesced, walSync } from "../src/store/groupCommit.js";
import { getJob } from "../src/store/jobs.js";
import { parseSplit } from "../src/store/rows.js";
import { getTask } from "../src/store/tasks.js";
import { claim, setupScheduler as setup, submitRequest as request } from "./helpers/scheduler.js";
import { tempDir } from "./helpers/tmp.js";

/** The migrations this mr knows. */
const KNOWN = readdirSync(MIGRATIONS_DIR).filter((name) => name.endsWith(".sql")).length;

/** A database in a temp directory migrated only by the migrations before `version`. */
function openDbBefore(version: string) {
  const dir = tempDir();
  const before = join(dir, "migrations");
  mkdirSync(before);
  for (const name of readdirSync(MIGRATIONS_DIR).filter((file) => file < version)) {
    copyFileSync(join(MIGRATIONS_DIR, name), join(before, name));
  }
  return openDb(join(dir, "a.db"), before);
}

describe("migrations", () => {
  it("apply once; a second run changes nothing", () => {
    const dir = tempDir();
    const db = openDb(join(dir, "a.db"));
    expect(migrate(db, MIGRATIONS_DIR)).toEqual([]);
    const tables = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
      .pluck()
      .all();
    expect(tables).toEqual([
      "attempts",
      "counters",
      "driver_lease",
      "events",
      "exclusions",
      "jobs",
      "output_uploads",
      "schema_migrations",
      "tasks",
      "workers",
    ]);
    db.close();
    const again = openDb(join(dir, "a.db"));
    expect(again.prepare("SELECT count(*) FROM schema_migrations").pluck().get()).toBe(KNOWN);
    again.close();
  });

  it("refuse a database migrated by a newer mr, and leave it as it was", () => {
    const dir = tempDir();
    const db = openDb(join(dir, "a.db"));
    db.prepare(
      "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, '0099_future', 0)",
    ).run();
    db.close();
    expect(() => openDb(join(dir, "a.db"))).toThrow(
      new RegExp(`schema version 99 is newer than this mr knows \\(${KNOWN}\\)`),
    );
  });

  it("apply new files in order, each with its ledger row", () => {
    const dir = tempDir();
    const migrations = join(dir, "migrations");
    mkdirSync(migrations);
    writeFileSync(join(migrations, "0001_a.sql"), "CREATE TABLE a (x INTEGER);");
    const db = openDb(join(dir, "a.db"), migrations);
    writeFileSync(join(migrations, "0002_b.sql"), "ALTER TABLE a ADD COLUMN y INTEGER;");
    expect(migrate(db, migrations)).toEqual([2]);
    expect(migrate(db, migrations)).toEqual([]);
    writeFileSync(join(migrations, "0003_bad.sql"), "ALTER TABLE nope ADD COLUMN z INTEGER;");
    expect(() => migrate(db, migrations)).toThrow();
    expect(db.prepare("SELECT max(version) FROM schema_migrations").pluck().get()).toBe(2);
  });

  it("give jobs from before shuffle keys each a random key of their own", () => {
    const db = openDbBefore("0003");
    const insert = db.prepare(
      `INSERT INTO jobs (app, state, inputs, output_dir, reducers, split_size_bytes, params, maps_total, submitted_at)
       VALUES ('wordcount', 'RUNNING', '[]', ?, 1, 1, '{}', 0, 0)`,
    );
    insert.run("/out/1");
    insert.run("/out/2");
    migrate(db, MIGRATIONS_DIR);
    const keys = db.prepare("SELECT shuffle_key FROM jobs ORDER BY id").pluck().all() as string[];
    expect(keys).toHaveLength(2);
    for (const key of keys) expect(key).toMatch(/^[0-9a-f]{32}$/);
    expect(keys[0]).not.toBe(keys[1]);
    db.close();
  });

  it("keep each map's one range as a split of one range when splits may pack files", () => {
    const db = openDbBefore("0013");
    db.prepare(
      `INSERT INTO jobs (app, state, inputs, output_dir, reducers, split_size_bytes, params, maps_total, submitted_at, shuffle_key)
       VALUES ('wordcount', 'RUNNING', '["/in/a b"]', '/out', 1, 10, '{}', 2, 0, 'k')`,
    ).run();
    const task = db.prepare(
      `INSERT INTO tasks (job_id, kind, idx, state, file, start_byte, end_byte) VALUES (1, ?, ?, ?, ?, ?, ?)`,
    );
    task.run("MAP", 0, "SUCCEEDED", "/in/a b", 0, 10);
    task.run("MAP", 1, "PENDING", "/in/a b", 10, 17);
    task.run("REDUCE", 0, "WAITING", null, null, null);
    migrate(db, MIGRATIONS_DIR);
    const splits = db.prepare("SELECT split FROM tasks ORDER BY id").pluck().all() as (string | null)[];
    expect(splits.map((split) => split && parseSplit(split))).toEqual([
      [{ file: "/in/a b", start: 0, end: 10 }],
      [{ file: "/in/a b", start: 10, end: 17 }],
      null,
    ]);
    const columns = db.prepare("SELECT name FROM pragma_table_info('tasks')").pluck().all();
    expect(columns).not.toContain("start_byte");
    expect(db.prepare("SELECT open_cost_bytes FROM jobs").pluck().get()).toBe(0);
    db.close();
  });
});

describe("group commit", () => {
  it("commits the changes of one turn together; one that throws undoes only itself", async () => {
    const { db, workerId } = setup();
    const { enqueue } = submitJob(db, request(), 1);
    const [a, b, c] = enqueue.map((task) => claim(db, task.id, workerId)!);
    const commits = new GroupCommit(db);
    const complete = (attemptId: string) =>
      commits.run(() => completeAttempt(db, { attemptId, workerId, counters: { N: 1 } }, 20));
    const outcomes = await Promise.allSettled([
      complete(a!.attemptId),
      // fails half-way: its attempt was just completed by the change before it
      complete(a!.attemptId).then(() => {
        throw new Error("unreachable");
      }),
      commits.run(() => {
        completeAttempt(db, { attemptId: b!.attemptId, workerId, counters: {} }, 20);
        throw new Error("second thoughts");
      }),
      complete(c!.attemptId),
    ]);
    expect(outcomes.map((outcome) => outcome.status)).toEqual([
      "fulfilled",
      "rejected",
      "rejected",
      "fulfilled",
    ]);
    expect((outcomes[2] as PromiseRejectedResult).reason).toEqual(new Error("second thoughts"));
    expect(getTask(db, a!.task.id)!.state).toBe("SUCCEEDED");
    expect(getTask(db, b!.task.id)).toMatchObject({ state: "RUNNING", attemptId: b!.attemptId });
    expect(getAttempt(db, b!.attemptId)!.state).toBe("RUNNING");
    expect(getTask(db, c!.task.id)!.state).toBe("SUCCEEDED");
    expect(getJob(db, a!.job.id)!.mapsDone).toBe(2);
  });

  it("answers no caller before the shared transaction has committed", async () => {
    const { db } = setup();
    const commits = new GroupCommit(db);
    const seen: boolean[] = [];
    const inTransactionWhenAnswered = commits
      .run(() => db.inTransaction)
      .then((inside) => {
        seen.push(inside, db.inTransaction);
      });
    await inTransactionWhenAnswered;
    expect(seen).toEqual([true, false]);
  });
});

describe("group commit's sync to disk", () => {
  /** A sync that ends when the test says, counting the syncs begun. */
  function heldSync() {
    const ends: (() => void)[] = [];
    const fails: ((err: Error) => void)[] = [];
    const sync = (): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        ends.push(resolve);
        fails.push(reject);
      });
    return { sync, ends, fails };
  }
  const turn = () => new Promise((resolve) => setImmediate(resolve));

  it("commits without SQLite's own sync, and answers callers only once the sync after the commit has ended", async () => {
    const { db } = setup();
    expect(db.pragma("synchronous", { simple: true })).toBe(2); // FULL, for every other writer
    const { sync, ends } = heldSync();
    const commits = new GroupCommit(db, { sync });
    let answered = false;
    const synchronousInside = commits.run(() => db.pragma("synchronous", { simple: true }));
    void synchronousInside.then(() => (answered = true));
    await turn();
    await turn();
    expect(ends).toHaveLength(1);
    expect(db.inTransaction).toBe(false); // committed, and readable ...
    expect(answered).toBe(false); // ... but nobody hears so before the disk has it
    ends[0]!();
    expect(await synchronousInside).toBe(1); // NORMAL inside the group's transaction
    expect(db.pragma("synchronous", { simple: true })).toBe(2);
  });

  it("refuses the changes a failed sync covered, and every later one, and says so once", async () => {
    const { db } = setup();
    const { sync, fails } = heldSync();
    const failures: Error[] = [];
    const commits = new GroupCommit(db, { sync, onSyncFailed: (err) => failures.push(err) });
    const first = commits.run(() => 1);
    await turn();
    fails[0]!(new Error("EIO: i/o error, fdatasync"));
    await expect(first).rejects.toThrow(
      "the database's disk failed to sync its log (EIO: i/o error, fdatasync); restart the driver",
    );
    await expect(commits.run(() => 2)).rejects.toThrow(/failed to sync its log/);
    expect(failures).toHaveLength(1);
  });

  it("syncs the WAL of a database on disk, and leaves one in memory to SQLite", async () => {
    const { db } = setup();
    await expect(walSync(db)!()).resolves.toBeUndefined();
    const memory = openDb(":memory:");
    expect(walSync(memory)).toBeNull();
    memory.close();
  });

  it("starts one sync for the calls that come while another runs, after it ends", async () => {
    const { sync, ends } = heldSync();
    const shared = coalesced(sync);
    const first = shared();
    const [second, third] = [shared(), shared()];
    expect(ends).toHaveLength(1);
    ends[0]!();
    await first;
    await turn();
    expect(ends).toHaveLength(2); // the one the two later calls share, begun after the first ended
    ends[1]!();
    await Promise.all([second, third]);
    expect(ends).toHaveLength(2);
  });
});

describe("the database", () => {
  it("keeps its savepoint journals in memory, not in temporary files", () => {
    const { db } = setup();
    expect(db.pragma("temp_store", { simple: true })).toBe(2); // MEMORY
  });
});

describe("counters", () => {
  it("are summed from the job's own tasks, not by scanning every job's succeeded ones", () => {
    const { db } = setup();
    const plan = db.prepare(`EXPLAIN QUERY PLAN ${JOB_COUNTERS_SQL}`).all(1) as { detail: string }[];
    expect(plan.map((row) => row.detail).join("\n")).toMatch(/SEARCH t USING INDEX \S+ \(job_id=\?\)/);
  });

  it("are 64-bit sums, exact past 2^53, that stop at the 64-bit edge rather than fail", () => {
    const { db, workerId } = setup();
    const { job, enqueue } = submitJob(db, request(), 1);
    const big = 2n ** 52n + 1n;
    for (const task of enqueue) {
      const { attemptId } = claim(db, task.id, workerId)!;
      completeAttempt(db, { attemptId, workerId, counters: { small: 2, big, edge: INT64_MAX } }, 20);
    }
    expect(enqueue).toHaveLength(3);
    // 3 × (2^52 + 1) is past 2^53, and 3 × (2^63 − 1) is past what SQLite's sum() can hold.
    expect(jobCounters(db, job.id)).toEqual({ small: 6, big: 3n * big, edge: INT64_MAX });
  });
});

describe("a count", () => {
  it("is a number while it is a safe integer, an exact bigint past that, and stops at the 64-bit edge", () => {
    expect(addCount(1, 2)).toBe(3);
    expect(addCount(Number.MAX_SAFE_INTEGER, 2)).toBe(2n ** 53n + 1n);
    expect(addCount(2n ** 53n + 1n, -2)).toBe(Number.MAX_SAFE_INTEGER);
    expect(addCount(INT64_MAX, 1)).toBe(INT64_MAX);
    expect(addCount(INT64_MIN, -1n)).toBe(INT64_MIN);
  });

  it("goes on the wire as a decimal string, and comes back as the same 64-bit integer", () => {
    const counters = { a: 7, b: 2n ** 60n, c: -(2n ** 63n) };
    expect(toCounterList(counters)).toEqual([
      { name: "a", value: "7" },
      { name: "b", value: "1152921504606846976" },
      { name: "c", value: "-9223372036854775808" },
    ]);
    expect(fromCounterList(toCounterList(counters))).toEqual(counters);
    expect(() =>
      fromCounterList([
        { name: "a", value: "1" },
        { name: "a", value: "2" },
      ]),
    ).toThrow('"a" is named twice');
    expect(() => fromCounterList([{ name: "a", value: "9223372036854775808" }])).toThrow(
      "not a 64-bit integer",
    );
  });

  it("an app makes is an integer, a bigint for a step past 2^53", () => {
    const counters = new TaskCounters();
    const ctx = counters.ctx({});
    ctx.count("n", 2 ** 53 - 1);
    ctx.count("n", 2n);
    expect(counters.values["app.n"]).toBe(2n ** 53n + 1n);
    expect(() => ctx.count("n", 0.5)).toThrow("n must be an integer");
    expect(() => ctx.count("n", Number.NaN)).toThrow("n must be an integer");
  });
});
