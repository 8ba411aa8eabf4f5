/**
 * npm run bench:faults. Measures, on real processes with the default timeouts:
 * - recovery latency: from SIGKILL of a worker holding a task to the start of that task's next attempt;
 * - driver restart: from the start of a new driver process to the first task completed after it;
 * - sharing: a job submitted 1 s after another, its time from submit to end, with round-robin
 *   between them (equal priorities) and first come first served (the first job at a higher
 *   priority, so that the second waits behind all of it, as a FIFO queue would have it); once
 *   for two equal jobs, once for a job an eighth the size of the first;
 * - a straggler: a job on 5 workers and a sixth 4 times slower (the faulty app blocks longer
 *   there, as on an overloaded host; no SIGSTOP), with speculative execution (the default) and
 *   without (--no-speculation), against the same job with no slow worker.
 * Prints each sample and the median.
 */
import { mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { LocalCluster } from "../cli/cluster.js";
import { table } from "../cli/format.js";
import { startRedisServer } from "../cli/processes.js";
import type * as pb from "../gen/mapreduce.js";
import { median } from "./median.js";

const SAMPLES = Number(process.env.MR_BENCH_SAMPLES ?? 5);
const FIXTURE_APPS = fileURLToPath(new URL("../../test/fixtures/apps", import.meta.url));

async function poll<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function runningMap(detail: pb.JobDetail): { task: pb.Task; attempt: pb.Attempt } | undefined {
  for (const task of detail.tasks) {
    const attempt = task.kind === "MAP" ? task.attempts.find((a) => a.state === "RUNNING") : undefined;
    if (attempt) return { task, attempt };
  }
  return undefined;
}

async function main(): Promise<void> {
  const home = mkdtempSync(join(tmpdir(), "mr-bench-faults-"));
  const redis = await startRedisServer();
  const line = "lorem ipsum dolor sit amet consectetur\n";
  const input = join(home, "input.txt");
  writeFileSync(input, line.repeat(20_000));
  const smallInput = join(home, "small.txt");
  writeFileSync(smallInput, line.repeat(2_500));
  // MR_BENCH_LOGS=DIR keeps the processes' logs there.
  const logs = process.env.MR_BENCH_LOGS;
  const cluster = await LocalCluster.start({
    redisUrl: redis.url,
    home,
    workers: 3,
    workerArgs: () => ["--apps-dir", FIXTURE_APPS],
    logTo: (name) => (logs ? openSync(join(logs, `${name}.log`), "a") : "ignore"),
  });
  const { client, workers } = cluster;
  let jobs = 0;
  // Recovery: two long maps on three workers, so a free worker is there to take the task at once.
  // Restart: many maps of about a second each, so some complete soon after the driver is back.
  const submit = (splitSizeBytes: number, slowMs: string, priority = 0, inputs = [input]) =>
    client.submitJob({
      app: "faulty",
      inputs,
      outputDir: join(home, `out-${++jobs}`),
      reducers: 2,
      splitSizeBytes,
      params: { slowMs },
      priority,
    });
  const finished = (jobId: number) =>
    poll(
      "the job's end",
      async () => {
        const { job } = await client.getJob(jobId);
        return job!.state === "RUNNING" ? undefined : job!;
      },
      300_000,
    );
  const recovery: number[] = [];
  const restart: number[] = [];
  const sharing = {
    equal: { roundRobin: [] as number[], firstComeFirstServed: [] as number[] },
    small: { roundRobin: [] as number[], firstComeFirstServed: [] as number[] },
  };
  try {
    for (let i = 0; i < SAMPLES; i++) {
      for (const size of ["equal", "small"] as const) {
        for (const mode of ["roundRobin", "firstComeFirstServed"] as const) {
          const first = await submit(16_000, "1", mode === "roundRobin" ? 0 : 1);
          await sleep(1000);
          const second = await submit(16_000, "1", 0, size === "equal" ? [input] : [smallInput]);
          const done = await finished(second.id);
          await finished(first.id);
          sharing[size][mode].push(done.finishedAtMs - done.submittedAtMs);
        }
      }
    }
    for (let i = 0; i < SAMPLES; i++) {
      const job = await submit((line.length * 20_000) / 2, "1");
      const victim = await poll("a running map", async () => runningMap(await client.getJob(job.id)));
      const { workers: known } = await client.listWorkers();
      const address = known.find((w) => w.id === victim.attempt.workerId)?.address;
      const worker = workers.find((w) => w.address === address)!;
      const killedAt = Date.now();
      await worker.stop("SIGKILL");
      workers.splice(workers.indexOf(worker), 1);
      await cluster.startWorker();
      const next = await poll("the task's next attempt", async () => {
        const task = (await client.getJob(job.id)).tasks.find((t) => t.id === victim.task.id)!;
        return task.attempts.find(
          (a) => a.startedAtMs > victim.attempt.startedAtMs && a.id !== victim.attempt.id,
        );
      });
      recovery.push(next.startedAtMs - killedAt);
      await client.cancelJob(job.id);
    }
    for (let i = 0; i < SAMPLES; i++) {
      const job = await submit(16_000, "2");
      await poll("a running map", async () => runningMap(await client.getJob(job.id)));
      await cluster.driver.stop("SIGKILL");
      const startedAt = Date.now();
      await cluster.startDriver();
      const first = await poll("a task completed after the restart", async () => {
        const detail = await client.getJob(job.id);
        const done = detail.tasks
          .flatMap((t) => t.attempts)
          .filter((a) => a.state === "SUCCEEDED" && a.finishedAtMs >= startedAt);
        return done.length > 0 ? Math.min(...done.map((a) => a.finishedAtMs)) : undefined;
      });
      restart.push(first - startedAt);
      await client.cancelJob(job.id);
    }
  } finally {
    await cluster.stop();
  }
  let stragglers: Stragglers;
  try {
    stragglers = await measureStragglers(redis.url, home, line);
  } finally {
    await redis.stop();
    rmSync(home, { recursive: true, force: true });
  }
  const row = (name: string, samples: number[], bound: string) => [
    name,
    samples.map((ms) => String(ms)).join(" "),
    String(median(samples)),
    bound,
  ];
  console.log("Fault recovery (ms), default timeouts: worker timeout 5000, heartbeat 1000");
  console.log(
    table(
      ["MEASURE", "SAMPLES", "MEDIAN", "TARGET"],
      [
        row("SIGKILL of a worker -> next attempt starts", recovery, "<= 6000 (timeout + 1 s)"),
        row("driver start -> first task completed", restart, "-"),
        row("2nd of two equal jobs 1 s apart, submit -> end, round-robin", sharing.equal.roundRobin, "-"),
        row("the same, first come first served", sharing.equal.firstComeFirstServed, "-"),
        row("a job 1/8 the size, 1 s after, round-robin", sharing.small.roundRobin, "-"),
        row("the same, first come first served", sharing.small.firstComeFirstServed, "-"),
        row("a job, no slow worker, submit -> end", stragglers.none, "-"),
        row("the same with a 4x slow worker, speculation on", stragglers.speculation, "-"),
        row("the same, --no-speculation", stragglers.noSpeculation, "-"),
      ],
    ),
  );
  for (const size of ["equal", "small"] as const) {
    const ratio = median(sharing[size].roundRobin) / median(sharing[size].firstComeFirstServed);
    console.log(`second job (${size}): round-robin / first come first served, medians: ${ratio.toFixed(2)}`);
  }
  const none = median(stragglers.none);
  console.log(
    `a slow worker, speculation / no slow worker, medians: ${(median(stragglers.speculation) / none).toFixed(2)} (target <= 1.30); ` +
      `--no-speculation / no slow worker: ${(median(stragglers.noSpeculation) / none).toFixed(2)}`,
  );
}

interface Stragglers {
  none: number[];
  speculation: number[];
  noSpeculation: number[];
}

/** The environment variable that makes a worker the faulty app's slow host. */
const SLOW_HOST = "MR_BENCH_SLOW_HOST";

/**
 * One job, 30 maps of about 1 s (20 records of 50 ms) and 2 reduces, on 5 workers and a sixth
 * where each record takes 150 ms more (4 s a map): submit to end with speculation, without, and
 * with no slow worker (the job names a host variable no worker sets). The three alternate.
 */
async function measureStragglers(redisUrl: string, home: string, line: string): Promise<Stragglers> {
  const input = join(home, "stragglers.txt");
  writeFileSync(input, line.repeat(20 * 30));
  const cluster = await LocalCluster.start({
    redisUrl,
    home: join(home, "stragglers"),
    workers: 5,
    workerArgs: () => ["--apps-dir", FIXTURE_APPS],
    logTo: () => "ignore",
  });
  await cluster.startWorker({ [SLOW_HOST]: "1" });
  const times: Stragglers = { none: [], speculation: [], noSpeculation: [] };
  try {
    for (let i = 0; i < SAMPLES; i++) {
      for (const kind of ["none", "speculation", "noSpeculation"] as const) {
        const job = await cluster.client.submitJob({
          app: "faulty",
          inputs: [input],
          outputDir: join(home, `straggler-${kind}-${i}`),
          reducers: 2,
          splitSizeBytes: 20 * line.length,
          params: {
            slowMs: "50",
            slowWhereEnv: kind === "none" ? "MR_BENCH_NO_SUCH_HOST" : SLOW_HOST,
            slowWhereMs: "150",
          },
          noSpeculation: kind === "noSpeculation",
        });
        const done = await poll(
          "the job's end",
          async () => {
            const { job: now } = await cluster.client.getJob(job.id);
            return now!.state === "RUNNING" ? undefined : now!;
          },
          300_000,
        );
        if (done.state !== "SUCCEEDED") throw new Error(`job ${job.id} ${done.state}: ${done.error}`);
        times[kind].push(done.finishedAtMs - done.submittedAtMs);
      }
    }
  } finally {
    await cluster.stop();
  }
  return times;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
