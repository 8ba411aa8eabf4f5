/**
 * npm run bench:hosts. On test hosts (network namespaces: needs root and iproute2), with the
 * default worker timeout: from a worker host's link going down while it runs a map, to the
 * start of that map's next attempt on another host. Prints each sample and the median.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { table } from "../cli/format.js";
import { HostCluster, hostsUnavailable } from "../cli/hosts.js";
import { median } from "./median.js";

const SAMPLES = Number(process.env.MR_BENCH_SAMPLES ?? 5);
const WORKER_TIMEOUT_MS = 5000;
const FIXTURE_APPS = fileURLToPath(new URL("../../test/fixtures/apps", import.meta.url));

interface Shown {
  state: string;
  tasks: {
    id: number;
    kind: string;
    attempts: { id: string; state: string; worker: number; startedAt: string }[];
  }[];
}

async function main(): Promise<void> {
  const unavailable = hostsUnavailable();
  if (unavailable !== undefined) {
    console.log(`bench:hosts skipped: ${unavailable}`);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), "mr-bench-hosts-"));
  const input = join(dir, "input.txt");
  writeFileSync(input, "lorem ipsum dolor sit amet consectetur\n".repeat(4_000));
  const cluster = await HostCluster.start({ dir, workers: 3, appsDir: FIXTURE_APPS });
  const show = async (jobId: number): Promise<Shown> =>
    JSON.parse((await cluster.mr(["jobs", "show", String(jobId), "--json"])).stdout) as Shown;
  /** The host of each ALIVE worker, by worker id. */
  const hostsById = async (): Promise<Map<number, string>> => {
    const listed = JSON.parse((await cluster.mr(["workers", "list", "--json"])).stdout) as {
      id: number;
      address: string;
      state: string;
    }[];
    const byAddress = new Map([...cluster.workers].map(([host, address]) => [address, host]));
    return new Map(listed.filter((w) => w.state === "ALIVE").map((w) => [w.id, byAddress.get(w.address)!]));
  };
  // Interrupted, the bench still takes its hosts down.
  const interrupted = (): void => void cluster.stop().finally(() => process.exit(130));
  process.once("SIGINT", interrupted);
  process.once("SIGTERM", interrupted);
  const samples: number[] = [];
  try {
    for (let i = 0; i < SAMPLES; i++) {
      const hosts = await hostsById();
      const submitted = await cluster.mr([
        "submit",
        "--app",
        "faulty",
        "--reducers",
        "1",
        "--split-size",
        "80000",
        "--param",
        "slowMs=10",
        "--output",
        join(dir, `out-${i}`),
        "--json",
        input,
      ]);
      const jobId = (JSON.parse(submitted.stdout) as { id: number }).id;
      // Two long maps on three workers, so that a free one is there to take the task at once (as
      // in bench:faults). The host of a running map is cut off, and the clock starts.
      let victim: { taskId: number; attemptId: string; host: string } | undefined;
      while (victim === undefined) {
        for (const task of (await show(jobId)).tasks) {
          const attempt = task.attempts.find((a) => a.state === "RUNNING" && hosts.has(a.worker));
          if (task.kind === "MAP" && attempt) {
            victim = { taskId: task.id, attemptId: attempt.id, host: hosts.get(attempt.worker)! };
          }
        }
        if (victim === undefined) await sleep(20);
      }
      const cutAt = Date.now();
      cluster.hosts.link(victim.host, false);
      let nextAt: number | undefined;
      while (nextAt === undefined) {
        const task = (await show(jobId)).tasks.find((t) => t.id === victim!.taskId)!;
        const next = task.attempts.find((a) => a.id !== victim!.attemptId && a.state !== "LOST");
        if (next && Date.parse(next.startedAt) >= cutAt) nextAt = Date.parse(next.startedAt);
        else await sleep(20);
      }
      samples.push(nextAt - cutAt);
      cluster.hosts.link(victim.host, true);
      await cluster.mr(["jobs", "cancel", String(jobId)]);
      // The host's worker comes back, under a new id, before the next sample.
      while ((await hostsById()).size < cluster.workers.size) await sleep(100);
    }
  } finally {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`A worker host cut off mid-map (ms), worker timeout ${WORKER_TIMEOUT_MS}, 3 worker hosts`);
  console.log(
    table(
      ["MEASURE", "SAMPLES", "MEDIAN", "TARGET"],
      [
        [
          "link down -> the map's next attempt starts on another host",
          samples.join(" "),
          String(median(samples)),
          `<= ${WORKER_TIMEOUT_MS + 1000} (timeout + 1 s)`,
        ],
      ],
    ),
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
