/**
 * Speculative execution through real processes: a cluster with one slow host (the faulty app
 * blocks there, as an overloaded machine would be slow; no SIGSTOP), where backups of its tasks
 * on the other workers win, commit once and count once.
 */
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, inject, it } from "vitest";
import type * as pb from "../src/gen/mapreduce.js";
import { BUILTIN_APPS } from "../src/mr/apps/index.js";
import { runLocalJob } from "../src/mr/local.js";
import {
  committedOnce,
  countersOf,
  mr,
  startCluster,
  waitForJobEnd,
  type Cluster,
} from "./helpers/cluster.js";
import { partFiles } from "./helpers/corpus.js";
import { tempDir } from "./helpers/tmp.js";

let cluster: Cluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

const SLOW_HOST = "MR_TEST_SLOW_HOST";
const LINE = "a b c d e f g h i j\n";
/** 60 words (the app's words are letters only): aa, ab, …, ch. */
const WORDS = Array.from({ length: 60 }, (_, i) =>
  String.fromCharCode(97 + Math.floor(i / 26), 97 + (i % 26)),
);

/** Two workers and a slow third; the driver speculates tasks that ran 300 ms and more. */
async function clusterWithStraggler(
  dir: string,
  driverArgs: string[] = [],
): Promise<{ c: Cluster; slowId: number }> {
  const c = await startCluster({
    dir,
    redisUrl: inject("redisUrl"),
    workers: 2,
    driverArgs: ["--speculation-min-runtime", "300", ...driverArgs],
  });
  cluster = c;
  const slow = await c.startWorker({ [SLOW_HOST]: "1" });
  for (;;) {
    const { workers } = await c.client.listWorkers();
    const found = workers.find((worker) => worker.address === slow.address && worker.state === "ALIVE");
    if (found) return { c, slowId: found.id };
    await sleep(50);
  }
}

/** Submits faulty (wordcount, slow on the slow host) over `maps` splits of 20 lines. */
async function submit(
  c: Cluster,
  dir: string,
  name: string,
  maps: number,
  reducers: number,
  params: string[],
  extra: string[] = [],
  line = LINE,
) {
  const input = join(dir, `${name}.txt`);
  writeFileSync(input, line.repeat(20 * maps));
  const args = [
    "submit",
    "--app",
    "faulty",
    "--reducers",
    String(reducers),
    "--split-size",
    String(20 * line.length),
  ];
  for (const param of [`slowWhereEnv=${SLOW_HOST}`, ...params]) args.push("--param", param);
  const result = await mr([...args, "--output", join(dir, name), "--json", ...extra, input], c.env);
  expect(result.code, result.stderr).toBe(0);
  return { id: (JSON.parse(result.stdout) as { id: number }).id, input };
}

/** The job's output is wordcount's by the local engine, file for file, and nothing else is left. */
async function expectLocalOutput(dir: string, name: string, input: string, reducers: number): Promise<void> {
  const local = join(dir, `${name}-local`);
  await runLocalJob({
    app: BUILTIN_APPS.wordcount!,
    params: {},
    inputs: [input],
    outputDir: local,
    reducers,
    splitSizeBytes: 20 * LINE.length,
  });
  expect(partFiles(join(dir, name))).toEqual(partFiles(local));
  expect(readdirSync(join(dir, name)).sort()).toEqual([...Object.keys(partFiles(local)), "_SUCCESS"].sort());
}

/** The tasks a backup won, with the holder it beat on the slow host. */
function backupWins(detail: pb.JobDetail, slowId: number) {
  return detail.tasks.flatMap((task) => {
    const won = task.attempts.find((attempt) => attempt.speculative && attempt.state === "SUCCEEDED");
    const beaten = task.attempts.find((attempt) => attempt.workerId === slowId && attempt.state === "KILLED");
    return won && beaten ? [{ task, won, beaten }] : [];
  });
}

describe("a slow host", () => {
  it("holds no phase back: backups of its maps and of its reduces win elsewhere, commit once and count once", async () => {
    const dir = tempDir();
    const { c, slowId } = await clusterWithStraggler(dir);

    // Maps: 20 records of 250 ms on the slow host (5 s), of 5 ms elsewhere.
    const maps = await submit(c, dir, "maps", 12, 1, ["slowMs=5", "slowWhereMs=250"]);
    const mapsDone = await waitForJobEnd(c.client, maps.id);
    expect(mapsDone.job!.state).toBe("SUCCEEDED");
    expect(committedOnce(mapsDone)).toBe(true);
    const mapWins = backupWins(mapsDone, slowId);
    expect(mapWins.length).toBeGreaterThan(0);
    for (const { task, won, beaten } of mapWins) {
      expect(task.kind).toBe("MAP");
      expect(won.workerId).not.toBe(slowId);
      expect(beaten.error).toBe(
        `backup attempt ${won.id} on worker ${won.workerId} committed map ${task.index} first`,
      );
    }
    expect(countersOf(mapsDone).MAP_INPUT_RECORDS).toBe(12 * 20); // the beaten holder counted nothing
    expect(mapsDone.events.map((event) => event.type)).toEqual(
      expect.arrayContaining(["speculated", "speculation-ended"]),
    );
    await expectLocalOutput(dir, "maps", maps.input, 1);
    const shown = await mr(["jobs", "show", String(maps.id)], c.env);
    expect(shown.stdout).toContain(`${mapWins[0]!.won.id} (backup)`);
    expect(shown.stdout).toMatch(/speculated +map \d+: attempt \S+ on worker \d+ has run/);

    // Reduces: one map, then 6 reduces of about 10 keys each: 20 ms a key (200 ms a reduce), and
    // 500 ms more on the slow host (5 s). The three workers are idle when the reduces come: the
    // slow one takes one.
    const reduces = await submit(
      c,
      dir,
      "reduces",
      1,
      6,
      ["reduceSlowMs=20", "reduceSlowWhereMs=500"],
      [],
      `${WORDS.join(" ")}\n`,
    );
    const reducesDone = await waitForJobEnd(c.client, reduces.id);
    expect(reducesDone.job!.state).toBe("SUCCEEDED");
    expect(committedOnce(reducesDone)).toBe(true);
    const reduceWins = backupWins(reducesDone, slowId);
    expect(reduceWins.map(({ task }) => task.kind)).toEqual(reduceWins.map(() => "REDUCE"));
    expect(reduceWins.length).toBeGreaterThan(0);
    expect(countersOf(reducesDone).REDUCE_OUTPUT_RECORDS).toBe(60);
    // The beaten reduce's file went with it: only the winners' parts, and no _temporary.
    await expectLocalOutput(dir, "reduces", reduces.input, 6);
  });

  it("gets no backups for a job submitted with --no-speculation", async () => {
    const dir = tempDir();
    const { c, slowId } = await clusterWithStraggler(dir);
    const job = await submit(c, dir, "out", 6, 1, ["slowMs=5", "slowWhereMs=50"], ["--no-speculation"]);
    const detail = await waitForJobEnd(c.client, job.id);
    expect(detail.job!.state).toBe("SUCCEEDED");
    const attempts = detail.tasks.flatMap((task) => task.attempts);
    expect(attempts.some((attempt) => attempt.workerId === slowId)).toBe(true); // it straggled
    expect(attempts.filter((attempt) => attempt.speculative)).toEqual([]);
    expect(detail.job!.speculation).toBe(false);
    expect((await mr(["jobs", "show", String(job.id)], c.env)).stdout).toContain(
      "no backup attempts of stragglers (--no-speculation)",
    );
    await expectLocalOutput(dir, "out", job.input, 1);
    expect(existsSync(join(dir, "out", "_temporary"))).toBe(false);
  });

  it("gets no backups from a driver started with --no-speculation", async () => {
    const dir = tempDir();
    const { c, slowId } = await clusterWithStraggler(dir, ["--no-speculation"]);
    const job = await submit(c, dir, "out", 6, 1, ["slowMs=5", "slowWhereMs=50"]);
    const detail = await waitForJobEnd(c.client, job.id);
    expect(detail.job!.state).toBe("SUCCEEDED");
    const attempts = detail.tasks.flatMap((task) => task.attempts);
    expect(attempts.some((attempt) => attempt.workerId === slowId)).toBe(true);
    expect(attempts.filter((attempt) => attempt.speculative)).toEqual([]);
  });
});
