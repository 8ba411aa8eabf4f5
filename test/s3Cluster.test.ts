/**
 * A cluster of real processes reading and writing `s3://` (s3rver on loopback, see
 * helpers/s3.ts), with faults: a worker killed in the reduce phase, the driver killed between
 * the last reduce and `_SUCCESS`, a zombie reduce. Whatever happens, the output is exactly the
 * local engine's on the same data as files, each part is completed once, and no upload is left.
 */
import { readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { BUILTIN_APPS } from "../src/mr/apps/index.js";
import { runLocalJob } from "../src/mr/local.js";
import {
  committedOnce,
  mr,
  startCluster,
  waitForJobEnd,
  waitForRunningAttempt,
  type Cluster,
} from "./helpers/cluster.js";
import { partFiles, writeCorpus } from "./helpers/corpus.js";
import { startS3, type TestS3 } from "./helpers/s3.js";
import { tempDir } from "./helpers/tmp.js";

const BUCKET = "corpus";
const REDUCERS = 3;
let s3: TestS3;
let cluster: Cluster | undefined;

beforeAll(async () => {
  s3 = await startS3();
  await s3.createBucket(BUCKET);
});

afterAll(async () => {
  await s3?.close();
});

afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

interface Setup {
  dir: string;
  /** The input files, also in the store under `<name>/`. */
  files: string[];
  prefix: string;
  cluster: Cluster;
}

let setups = 0;

async function setup(workers = 3, driverArgs: string[] = []): Promise<Setup> {
  const dir = tempDir();
  const files = writeCorpus(dir, { files: 3, bytes: 24_000, seed: 5 });
  const prefix = `job-${++setups}`;
  for (const file of files) await s3.put(BUCKET, `${prefix}/in/${basename(file)}`, readFileSync(file));
  cluster = await startCluster({
    dir,
    redisUrl: inject("redisUrl"),
    workers,
    env: s3.env,
    driverArgs: ["--worker-timeout", "3000", ...driverArgs],
  });
  return { dir, files, prefix, cluster };
}

function submit({ cluster, prefix }: Setup, params: Record<string, string>, app = "faulty") {
  return cluster.client.submitJob({
    app,
    inputs: [`s3://${BUCKET}/${prefix}/in/`],
    outputDir: `s3://${BUCKET}/${prefix}/out`,
    reducers: REDUCERS,
    splitSizeBytes: 4000,
    params,
  });
}

/** The output in the store is exactly wordcount's by the local engine on the files, and nothing else is there. */
async function expectExactOutput({ dir, files, prefix }: Setup): Promise<void> {
  const localDir = join(dir, "local");
  await runLocalJob({
    app: BUILTIN_APPS.wordcount!,
    params: {},
    inputs: files,
    outputDir: localDir,
    reducers: REDUCERS,
    splitSizeBytes: 4000,
  });
  const expected = partFiles(localDir);
  const names = Object.keys(expected);
  expect(await s3.keys(BUCKET, `${prefix}/out/`)).toEqual([
    `${prefix}/out/_SUCCESS`,
    ...names.map((name) => `${prefix}/out/${name}`),
  ]);
  for (const name of names) expect(await s3.get(BUCKET, `${prefix}/out/${name}`)).toBe(expected[name]);
  expect(JSON.parse(await s3.get(BUCKET, `${prefix}/out/_SUCCESS`)).parts).toEqual(names);
  for (const name of names) expect(s3.completed.get(`${prefix}/out/${name}`)).toBe(1);
  expect(s3.pendingUploads(BUCKET)).toEqual([]);
}

/** `mr submit --wait` of wordcount over the setup's input prefix, into its output prefix. */
function submitAndWait(s: Setup) {
  return mr(
    [
      "submit",
      "--app",
      "wordcount",
      "--reducers",
      String(REDUCERS),
      "--split-size",
      "4000",
      "--wait",
      `s3://${BUCKET}/${s.prefix}/in/`,
      "--output",
      `s3://${BUCKET}/${s.prefix}/out`,
    ],
    s.cluster.env,
  );
}

describe("wordcount from s3:// to s3:// on a cluster", () => {
  it("gives exactly the output of mr run --local on the same data as files", async () => {
    const s = await setup(2);
    s3.resetCounts();
    const submitted = await submitAndWait(s);
    expect(submitted.stderr).toMatch(/SUCCEEDED; output in s3:\/\/corpus\/job-\d+\/out/);
    expect(submitted.code).toBe(0);
    await expectExactOutput(s);
    console.log(`S3 requests of one job: ${JSON.stringify(Object.fromEntries(s3.counts))}`);
    const shown = JSON.parse((await mr(["jobs", "show", "1", "--json"], s.cluster.env)).stdout);
    expect(shown.outputFinished).toBe(true);

    // A missing key at submit is refused by the driver too, in one line, before anything runs.
    const missing = await mr(
      [
        "submit",
        "--app",
        "wordcount",
        "--reducers",
        "1",
        `s3://${BUCKET}/nothing.txt`,
        "--output",
        `s3://${BUCKET}/x`,
      ],
      s.cluster.env,
    );
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim()).toBe(
      "mr: input s3://corpus/nothing.txt: no such key (check the path; a prefix of several objects ends with /)",
    );
  });

  it("a worker SIGKILLed in the reduce phase: the reduce runs again, its part completed once", async () => {
    const s = await setup();
    s3.resetCounts();
    const job = await submit(s, { slowMs: "4", reduceSlowMs: "60" });
    const victim = await waitForRunningAttempt(s.cluster.client, job.id, "REDUCE");
    await sleep(300);
    await s.cluster.workerAt(victim.worker.address).stop("SIGKILL");
    const detail = await waitForJobEnd(s.cluster.client, job.id);
    expect(detail.job!.state).toBe("SUCCEEDED");
    expect(committedOnce(detail)).toBe(true);
    await expect.poll(async () => (await s.cluster.client.getJob(job.id)).job!.outputFinished).toBe(true);
    await expectExactOutput(s);
  });

  it("the driver SIGKILLed between the last reduce and _SUCCESS: the next one finishes the commit", async () => {
    const s = await setup();
    s3.resetCounts();
    const held = s3.holdCompletes(2); // the first part completes; the second waits, and the driver dies
    const job = await submit(s, {});
    await held.arrived;
    await s.cluster.driver.stop("SIGKILL");
    expect(await s3.keys(BUCKET, `${s.prefix}/out/`)).not.toContain(`${s.prefix}/out/_SUCCESS`);
    held.release();
    await s.cluster.startDriver();
    const detail = await waitForJobEnd(s.cluster.client, job.id);
    expect(detail.job!.state).toBe("SUCCEEDED");
    await expect
      .poll(async () => (await s.cluster.client.getJob(job.id)).job!.outputFinished, { timeout: 20_000 })
      .toBe(true);
    await expectExactOutput(s);
  });

  it("a store down when the job ends: SUCCEEDED but not committed, said so, and committed once it is back", async () => {
    const s = await setup(2, ["--reconcile-interval", "1000"]);
    s3.resetCounts();
    s3.failNext(1_000_000, { operation: "CompleteMultipartUpload", status: 500, code: "InternalError" });
    const waited = await submitAndWait(s);
    expect(waited.code).toBe(1);
    expect(waited.stderr).toMatch(
      /SUCCEEDED, but its output in s3:\/\/corpus\/job-\d+\/out is not committed yet/,
    );
    const shown = await mr(["jobs", "show", "1"], s.cluster.env);
    expect(shown.stdout).toMatch(/output {4}s3:\/\/corpus\/job-\d+\/out \(not committed yet/);
    expect(await s3.keys(BUCKET, `${s.prefix}/out/`)).toEqual([]);
    s3.failNext(0);
    await expect
      .poll(async () => (await s.cluster.client.getJob(1)).job!.outputFinished, { timeout: 20_000 })
      .toBe(true);
    await expectExactOutput(s);
  });

  it("a zombie reduce, paused past the timeout and resumed, cannot make its part visible", async () => {
    // Two workers run the maps and two of the reduces; a third, started once the maps are
    // done, takes the last reduce and holds no map output that another reduce needs.
    const s = await setup(2);
    s3.resetCounts();
    const job = await submit(s, { reduceSlowMs: "40" });
    await waitForRunningAttempt(s.cluster.client, job.id, "REDUCE");
    const zombie = await s.cluster.startWorker();
    const attemptOnZombie = async (): Promise<string | undefined> => {
      const { workers } = await s.cluster.client.listWorkers();
      const id = workers.find((worker) => worker.address === zombie.address)?.id;
      const { tasks } = await s.cluster.client.getJob(job.id);
      return tasks.flatMap((task) => task.attempts).find((a) => a.workerId === id && a.state === "RUNNING")
        ?.id;
    };
    await expect.poll(attemptOnZombie, { timeout: 30_000, interval: 100 }).toBeDefined();
    const victim = { attempt: { id: (await attemptOnZombie())! } };
    const paused = zombie;
    paused.child.kill("SIGSTOP");
    const detail = await waitForJobEnd(s.cluster.client, job.id);
    expect(detail.job!.state).toBe("SUCCEEDED");
    await expect.poll(async () => (await s.cluster.client.getJob(job.id)).job!.outputFinished).toBe(true);
    paused.child.kill("SIGCONT");
    // It finishes its reduce and is refused, or learns first that it was lost: either way,
    // what it uploaded is aborted, and its part is the committed attempt's.
    const log = join(s.dir, `worker-${s.cluster.workers.indexOf(paused) + 1}.log`);
    await expect
      .poll(() => readFileSync(log, "utf8"), { timeout: 20_000, interval: 200 })
      .toMatch(/refused; output discarded|attempt aborted|declared this worker lost/);
    await sleep(1000);
    await expectExactOutput(s);
    const task = detail.tasks.find((t) => t.attempts.some((a) => a.id === victim.attempt.id))!;
    // Lost with its worker, or killed when a backup of its task committed first.
    expect(["LOST", "KILLED"]).toContain(task.attempts.find((a) => a.id === victim.attempt.id)!.state);
  });
});
