/**
 * The driver's HTTP side through real processes: the JSON API answers in the shapes of the
 * CLI's --json, a job's live updates stream as Server-Sent Events, bad requests get a JSON 4xx,
 * and /metrics (on the driver, and on a worker with --http) moves by a job's own numbers.
 */
import { request } from "node:http";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, inject, it } from "vitest";
import {
  countersOf,
  FIXTURE_APPS,
  mr,
  startCluster,
  waitForJobEnd,
  type Cluster,
} from "./helpers/cluster.js";
import { writeCorpus } from "./helpers/corpus.js";
import { tempDir } from "./helpers/tmp.js";

let cluster: Cluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

interface Reply {
  status: number;
  type: string;
  body: string;
}

/** A raw HTTP request, so that the method and the Host header are the test's to choose. */
function send(url: string, options: { method?: string; host?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: options.method ?? "GET", headers: options.host ? { Host: options.host } : {} },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () =>
          resolve({ status: res.statusCode!, type: res.headers["content-type"] ?? "", body }),
        );
      },
    );
    req.on("error", reject);
    req.end();
  });
}

async function getJson(url: string): Promise<unknown> {
  const reply = await send(url);
  expect(reply.status, reply.body).toBe(200);
  return JSON.parse(reply.body);
}

/** `name{labels} value` lines of a Prometheus scrape, as a map from `name{labels}` to the value. */
async function scrape(url: string): Promise<Map<string, number>> {
  const reply = await send(url);
  expect(reply.status).toBe(200);
  expect(reply.type).toContain("text/plain");
  const samples = new Map<string, number>();
  for (const line of reply.body.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

/** What moved between two scrapes, for the samples `names` gives. */
function moved(
  before: Map<string, number>,
  after: Map<string, number>,
  names: string[],
): Record<string, number> {
  return Object.fromEntries(names.map((name) => [name, (after.get(name) ?? 0) - (before.get(name) ?? 0)]));
}

/** The job snapshots and the end a watch stream carries, read to its end. */
async function readWatch(
  url: string,
): Promise<{ jobs: { state: string; maps: { done: number } }[]; ended: boolean }> {
  const reply = await send(url);
  expect(reply.status).toBe(200);
  expect(reply.type).toContain("text/event-stream");
  const jobs = [];
  let ended = false;
  for (const block of reply.body.split("\n\n")) {
    const event = /^event: (\w+)$/m.exec(block)?.[1];
    const data = /^data: (.*)$/m.exec(block)?.[1];
    if (event === "job") jobs.push(JSON.parse(data!));
    if (event === "end") ended = true;
  }
  return { jobs, ended };
}

describe("the driver's HTTP API", () => {
  it("answers in the shapes of --json, streams a job's progress, and refuses bad requests with a JSON 4xx", async () => {
    const dir = tempDir();
    const inputs = writeCorpus(dir, { files: 2, bytes: 20_000, seed: 5 });
    cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 2 });
    const base = cluster.httpUrl!;
    expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    // A job slow enough to be watched: 8 maps whose records take 10 ms each.
    const job = await cluster.client.submitJob({
      app: "faulty",
      inputs,
      outputDir: join(dir, "out"),
      reducers: 2,
      splitSizeBytes: 5000,
      params: { slowMs: "10" },
    });
    const watched = await readWatch(`${base}/api/v1/jobs/${job.id}/watch`);
    expect(watched.ended).toBe(true);
    expect(watched.jobs.at(-1)!.state).toBe("SUCCEEDED");
    // It moved while it was watched: more than one count of maps done went by.
    expect(new Set(watched.jobs.map((snapshot) => snapshot.maps.done)).size).toBeGreaterThan(1);
    // A job that has ended: one snapshot, then the end.
    const again = await readWatch(`${base}/api/v1/jobs/${job.id}/watch`);
    expect(again.jobs.map((snapshot) => snapshot.state)).toEqual(["SUCCEEDED"]);
    expect(again.ended).toBe(true);

    // The same shapes as the CLI's --json.
    const listed = JSON.parse((await mr(["jobs", "list", "--json"], cluster.env)).stdout);
    expect(await getJson(`${base}/api/v1/jobs`)).toEqual({ jobs: listed, nextPageToken: null });
    const shown = JSON.parse((await mr(["jobs", "show", String(job.id), "--json"], cluster.env)).stdout);
    const detail = (await getJson(`${base}/api/v1/jobs/${job.id}`)) as typeof shown;
    expect(detail).toEqual(shown);
    expect(detail.taskDurationsMs.map).toMatchObject({ tasks: job.mapsTotal });
    expect(detail.taskDurationsMs.map.min).toBeLessThanOrEqual(detail.taskDurationsMs.map.median);
    expect(detail.taskDurationsMs.map.median).toBeLessThanOrEqual(detail.taskDurationsMs.map.max);
    const withoutHeartbeats = (workers: { lastHeartbeatAt: string }[]) =>
      workers.map(({ lastHeartbeatAt: _, ...rest }) => rest);
    const cliWorkers = JSON.parse((await mr(["workers", "list", "--json"], cluster.env)).stdout);
    const apiWorkers = (await getJson(`${base}/api/v1/workers`)) as { workers: typeof cliWorkers };
    expect(withoutHeartbeats(apiWorkers.workers)).toEqual(withoutHeartbeats(cliWorkers));

    // Filters and pages, as `mr jobs list --state --app`.
    const second = await cluster.client.submitJob({
      app: "wordcount",
      inputs,
      outputDir: join(dir, "out2"),
      reducers: 1,
      splitSizeBytes: 1 << 20,
      params: {},
    });
    await waitForJobEnd(cluster.client, second.id);
    const ids = (body: unknown) => (body as { jobs: { id: number }[] }).jobs.map(({ id }) => id);
    expect(ids(await getJson(`${base}/api/v1/jobs?app=faulty`))).toEqual([job.id]);
    expect(ids(await getJson(`${base}/api/v1/jobs?state=succeeded&app=wordcount`))).toEqual([second.id]);
    expect(ids(await getJson(`${base}/api/v1/jobs?state=failed`))).toEqual([]);
    const first = (await getJson(`${base}/api/v1/jobs?limit=1`)) as {
      jobs: { id: number }[];
      nextPageToken: string;
    };
    expect(ids(first)).toEqual([second.id]);
    expect(ids(await getJson(`${base}/api/v1/jobs?limit=1&page_token=${first.nextPageToken}`))).toEqual([
      job.id,
    ]);
    const cliFiltered = JSON.parse(
      (await mr(["jobs", "list", "--app", "faulty", "--json"], cluster.env)).stdout,
    );
    expect(cliFiltered.map(({ id }: { id: number }) => id)).toEqual([job.id]);

    // The pages themselves ship in the package, with a policy that lets nothing in from elsewhere.
    for (const path of ["/", `/jobs/${job.id}`, "/workers"]) {
      const page = await send(`${base}${path}`);
      expect(page.status).toBe(200);
      expect(page.body).toContain('<script type="module" src="/ui/app.js">');
    }
    const script = await send(`${base}/ui/app.js`);
    expect(script.type).toContain("text/javascript");
    expect(script.body).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);

    // Bad requests: a 4xx with a one-line JSON error, never a stack trace.
    const bad: [string, number, RegExp][] = [
      ["/api/v1/jobs/999", 404, /no job 999/],
      ["/api/v1/jobs/abc", 400, /a job id is a positive integer/],
      ["/api/v1/jobs?state=sleeping", 400, /unknown state "sleeping"/],
      ["/api/v1/jobs?page_token=xyz", 400, /page_token: not a token/],
      ["/api/v1/jobs?limit=-3", 400, /limit must be a positive integer/],
      ["/api/v1/workers?all=maybe", 400, /all must be true or false/],
      ["/api/v1/jobs/999/watch", 404, /no job 999/],
      ["/ui/../driver.db", 404, /no such page/],
      ["/ui/nothing.js", 404, /no such file/],
      ["/api/v2/jobs", 404, /no such page/],
    ];
    for (const [path, status, error] of bad) {
      const reply = await send(`${base}${path}`);
      expect(reply.status, path).toBe(status);
      expect(reply.type).toContain("application/json");
      const body = JSON.parse(reply.body) as { error: string };
      expect(body.error).toMatch(error);
      expect(reply.body).not.toMatch(/\n\s+at /);
    }
    const post = await send(`${base}/api/v1/jobs`, { method: "POST" });
    expect(post.status).toBe(405);
    expect(JSON.parse(post.body).error).toMatch(/read-only/);
    // Another site's page cannot reach it through a name that resolves to loopback (DNS rebinding).
    const rebound = await send(`${base}/api/v1/jobs`, { host: "attacker.example:80" });
    expect(rebound.status).toBe(421);
  });

  it("refuses --http beyond loopback without --insecure, and serves nothing with --http off", async () => {
    const dir = tempDir();
    const driver = ["driver", "--listen", "127.0.0.1:0", "--db", join(dir, "driver.db")];
    const refused = await mr([...driver, "--http", "0.0.0.0:0"], { ...process.env, MR_HOME: dir });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("--http 0.0.0.0:0: the web UI, its API and /metrics need no secret");

    cluster = await startCluster({
      dir,
      redisUrl: inject("redisUrl"),
      workers: 1,
      driverArgs: ["--http", "off"],
    });
    expect(cluster.httpUrl).toBeUndefined();
    const worker = await mr(["worker", "--port", "0", "--http", "0.0.0.0:0", "--apps-dir", FIXTURE_APPS], {
      ...cluster.env,
    });
    expect(worker.stderr).toContain("--http 0.0.0.0:0: /metrics needs no secret");
  });
});

describe("Prometheus metrics", () => {
  it("move by a job's own numbers, on the driver and on a worker with --http", async () => {
    const dir = tempDir();
    const inputs = writeCorpus(dir, { files: 3, bytes: 30_000, seed: 9 });
    cluster = await startCluster({
      dir,
      redisUrl: inject("redisUrl"),
      workers: 1,
      workerArgs: ["--http", "127.0.0.1:0"],
    });
    const driverMetrics = `${cluster.httpUrl}/metrics`;
    const workerMetrics = `http://${cluster.workers[0]!.httpAddress}/metrics`;
    const before = await scrape(driverMetrics);
    const scrapedAt = performance.now();
    const workerBefore = await scrape(workerMetrics);
    // The default process metrics are there, and no job or attempt id is a label.
    expect(before.has("process_cpu_seconds_total")).toBe(true);
    expect(before.get('mr_workers{state="alive"}')).toBe(1);

    const job = await cluster.client.submitJob({
      app: "wordcount",
      inputs,
      outputDir: join(dir, "out"),
      reducers: 3,
      splitSizeBytes: 10_000,
      params: {},
    });
    const detail = await waitForJobEnd(cluster.client, job.id);
    expect(detail.job!.state).toBe("SUCCEEDED");
    const counters = countersOf(detail);
    const maps = detail.job!.mapsTotal;

    // Attempts are counted once their end is a second old.
    await sleep(1200);
    const after = await scrape(driverMetrics);
    // The driver's event loop was busy for some of the time between the scrapes, and no more.
    const busy =
      after.get("mr_driver_event_loop_busy_seconds_total")! -
      before.get("mr_driver_event_loop_busy_seconds_total")!;
    expect(busy).toBeGreaterThan(0);
    expect(busy).toBeLessThan((performance.now() - scrapedAt) / 1000);
    expect(
      moved(before, after, [
        'mr_task_attempts_total{kind="map",outcome="succeeded"}',
        'mr_task_attempts_total{kind="reduce",outcome="succeeded"}',
        'mr_task_attempts_total{kind="map",outcome="failed"}',
        'mr_task_duration_seconds_count{kind="map"}',
        'mr_task_duration_seconds_count{kind="reduce"}',
        'mr_task_queue_wait_seconds_count{kind="map"}',
        'mr_task_queue_wait_seconds_count{kind="reduce"}',
        "mr_read_bytes_total",
        "mr_shuffled_bytes_total",
        "mr_written_bytes_total",
        'mr_jobs{state="succeeded"}',
      ]),
    ).toEqual({
      'mr_task_attempts_total{kind="map",outcome="succeeded"}': maps,
      'mr_task_attempts_total{kind="reduce",outcome="succeeded"}': 3,
      'mr_task_attempts_total{kind="map",outcome="failed"}': 0,
      'mr_task_duration_seconds_count{kind="map"}': maps,
      'mr_task_duration_seconds_count{kind="reduce"}': 3,
      'mr_task_queue_wait_seconds_count{kind="map"}': maps,
      'mr_task_queue_wait_seconds_count{kind="reduce"}': 3,
      mr_read_bytes_total: counters.MAP_INPUT_BYTES,
      mr_shuffled_bytes_total: counters.SHUFFLE_BYTES,
      mr_written_bytes_total: counters.BYTES_WRITTEN,
      'mr_jobs{state="succeeded"}': 1,
    });
    expect(after.get('mr_jobs{state="running"}')).toBe(0);
    expect(after.get('mr_queue_tasks{state="waiting"}')).toBe(0);
    expect([...after.keys()].some((name) => /job_?id|attempt/i.test(name.slice(name.indexOf("{"))))).toBe(
      false,
    );

    // The one worker ran every attempt.
    const workerAfter = await scrape(workerMetrics);
    expect(
      moved(workerBefore, workerAfter, [
        'mr_worker_task_attempts_total{kind="map",outcome="succeeded"}',
        'mr_worker_task_attempts_total{kind="reduce",outcome="succeeded"}',
        "mr_worker_read_bytes_total",
        "mr_worker_written_bytes_total",
      ]),
    ).toEqual({
      'mr_worker_task_attempts_total{kind="map",outcome="succeeded"}': maps,
      'mr_worker_task_attempts_total{kind="reduce",outcome="succeeded"}': 3,
      mr_worker_read_bytes_total: counters.MAP_INPUT_BYTES,
      mr_worker_written_bytes_total: counters.BYTES_WRITTEN,
    });
    expect(workerAfter.get('mr_worker_slots{state="busy"}')).toBe(0);
    expect(workerAfter.get('mr_worker_slots{state="idle"}')).toBe(1);

    // And `mr jobs show` gives the same quantiles as the UI.
    const shown = await mr(["jobs", "show", String(job.id)], cluster.env);
    expect(shown.stdout).toMatch(/Task durations \(committed attempts\)/);
    expect(shown.stdout).toMatch(new RegExp(`│ map\\s+│ ${maps}\\s+│`));
  });
});
