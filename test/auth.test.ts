/**
 * Secrets, through real processes: each role's calls need that role's secret, and nothing else
 * gets in. (Every other cluster test runs with secrets on, too.)
 */
import { status } from "@grpc/grpc-js";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { withToken } from "../src/auth.js";
import { withoutPassword } from "../src/driver/driver.js";
import { hasCode } from "../src/errors.js";
import { ShuffleServiceClient, type Chunk } from "../src/gen/mapreduce.js";
import { CHANNEL_OPTIONS, credentials } from "../src/grpc.js";
import { mr, shuffleKeyOf, startCluster, tokenOf, waitForJobEnd, type Cluster } from "./helpers/cluster.js";

let cluster: Cluster;
let dir: string;
let wrongToken: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "mr-auth-"));
  cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 1 });
  wrongToken = join(dir, "wrong.token");
  writeFileSync(wrongToken, "0123456789abcdef0123456789abcdef\n");
});

afterAll(async () => {
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function jobOf(input: string, outputDir: string, reducers: number) {
  return { app: "wordcount", inputs: [input], outputDir, reducers, splitSizeBytes: 0, params: {} };
}

/** `mr ARGS…` against the cluster, with MR_TOKEN_FILE set to `tokenFile`, or unset. */
function mrWith(tokenFile: string | undefined, ...args: string[]) {
  const env = { ...cluster.env, MR_TOKEN_FILE: tokenFile };
  if (tokenFile === undefined) delete env.MR_TOKEN_FILE;
  return mr(args, env);
}

async function fetchShuffle(token: string | undefined): Promise<unknown> {
  const shuffle = new ShuffleServiceClient(
    cluster.workers[0]!.address,
    credentials.createInsecure(),
    withToken(CHANNEL_OPTIONS, token),
  );
  try {
    for await (const chunk of shuffle.fetchPartition({
      attemptIds: ["a0"],
      partition: 0,
      jobId: 1,
      shuffleKey: "",
    }) as AsyncIterable<Chunk>) {
      void chunk;
    }
    return undefined;
  } catch (err) {
    return err;
  } finally {
    shuffle.close();
  }
}

describe("secrets", () => {
  it("let a client with the client secret in, by MR_TOKEN_FILE or --token-file, and run a job", async () => {
    const input = join(dir, "in.txt");
    writeFileSync(input, "a b a\n");
    const submitted = await mrWith(
      undefined,
      "submit",
      "--token-file",
      cluster.tokenFiles!.client,
      "--app",
      "wordcount",
      "--reducers",
      "1",
      "--output",
      join(dir, "out"),
      "--json",
      input,
    );
    expect(submitted.code).toBe(0);
    const job = JSON.parse(submitted.stdout);
    expect((await waitForJobEnd(cluster.client, job.id)).job!.state).toBe("SUCCEEDED");
    expect((await mrWith(cluster.tokenFiles!.client, "jobs", "list")).code).toBe(0);
  });

  it("refuse a client with no secret, or a wrong one, in one line that says what to do", async () => {
    const none = await mrWith(undefined, "jobs", "list");
    expect(none.code).toBe(1);
    expect(none.stderr).toBe(
      "mr: no token for the client role (give the client secret with --token-file or MR_TOKEN_FILE)\n",
    );
    const wrong = await mrWith(wrongToken, "workers", "list");
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/^mr: a wrong token for the client role/);
  });

  it("do not let the worker secret submit or cancel jobs", async () => {
    const submitted = await mrWith(
      cluster.tokenFiles!.worker,
      "submit",
      "--app",
      "wordcount",
      "--reducers",
      "1",
      "--output",
      join(dir, "never"),
      join(dir, "in.txt"),
    );
    expect(submitted.code).toBe(1);
    expect(submitted.stderr).toMatch(/a wrong token for the client role/);
    expect((await mrWith(cluster.tokenFiles!.worker, "jobs", "cancel", "1")).stderr).toMatch(/wrong token/);
  });

  it("do not let the client secret register a worker", async () => {
    const env = { ...cluster.env, MR_TOKEN_FILE: cluster.tokenFiles!.client };
    const worker = await mr(["worker", "--port", "0", "--data-dir", join(dir, "intruder")], env);
    expect(worker.code).toBe(1);
    expect(worker.stderr).toMatch(/^mr: a wrong token for the worker role/);
    const { workers } = await cluster.client.listWorkers();
    expect(workers).toHaveLength(1);
  });

  it("guard a worker's map output: only the worker secret may fetch it", async () => {
    expect(hasCode(await fetchShuffle(undefined), status.UNAUTHENTICATED)).toBe(true);
    expect(hasCode(await fetchShuffle(tokenOf(cluster, "client")), status.UNAUTHENTICATED)).toBe(true);
    expect(await fetchShuffle(tokenOf(cluster, "worker"))).toBeUndefined();
  });

  it("guard a job's map output from workers given no task of it: a fetch must show the job's key", async () => {
    const input = join(dir, "keyed.txt");
    writeFileSync(input, "a b c d e f g h\n".repeat(100));
    const earlier = await cluster.client.submitJob(jobOf(input, join(dir, "keyed-earlier"), 1));
    await waitForJobEnd(cluster.client, earlier.id);
    // Many reduces on one slot: the job runs for a while after its maps, whose output is held.
    const job = await cluster.client.submitJob(jobOf(input, join(dir, "keyed"), 500));
    let mapAttempt: string | undefined;
    for (let i = 0; i < 200 && mapAttempt === undefined; i++) {
      const detail = await cluster.client.getJob(job.id);
      if (detail.job!.mapsDone === detail.job!.mapsTotal) {
        mapAttempt = detail.tasks[0]!.attempts.find((attempt) => attempt.state === "SUCCEEDED")!.id;
      } else await sleep(50);
    }
    const fetch = async (jobId: number, shuffleKey: string) => {
      const shuffle = new ShuffleServiceClient(
        cluster.workers[0]!.address,
        credentials.createInsecure(),
        withToken(CHANNEL_OPTIONS, tokenOf(cluster, "worker")),
      );
      try {
        const chunks: Chunk[] = [];
        const stream = shuffle.fetchPartition({ attemptIds: [mapAttempt!], partition: 0, jobId, shuffleKey });
        for await (const chunk of stream as AsyncIterable<Chunk>) chunks.push(chunk);
        return chunks;
      } finally {
        shuffle.close();
      }
    };
    try {
      const unheld = `attempt ${mapAttempt} has no committed output of job`;
      // Another job's key names the other job; a guessed key for this job reads the same.
      expect((await fetch(earlier.id, shuffleKeyOf(cluster, earlier.id)))[0]!.error).toContain(unheld);
      expect((await fetch(job.id, "0".repeat(32)))[0]!.error).toContain(unheld);
      const served = await fetch(job.id, shuffleKeyOf(cluster, job.id));
      expect(served.at(-1)).toMatchObject({ last: true, error: "" });
      expect((await cluster.client.getJob(job.id)).job!.state).toBe("RUNNING"); // so it was held
    } finally {
      await cluster.client.cancelJob(job.id).catch(() => undefined);
    }
  });

  it("are logged as refusals, counted, and never written to the log themselves", () => {
    const log = readFileSync(join(dir, "driver.log"), "utf8");
    expect(log).toMatch(/"refused":\d+.*refused a call with no token/);
    expect(log).toMatch(/refused a call with a wrong token/);
    for (const role of ["client", "worker"] as const) expect(log).not.toContain(tokenOf(cluster, role));
    expect(log).not.toContain("0123456789abcdef0123456789abcdef");
  });
});

describe("a driver", () => {
  const start = (...args: string[]) =>
    mr(["driver", "--db", join(dir, "other.db"), "--redis", inject("redisUrl"), ...args], cluster.env);

  it("refuses to listen beyond loopback without secrets, before it binds anything", async () => {
    const refused = await start("--listen", "0.0.0.0:0");
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(
      /^mr: listening on 0\.0\.0\.0:0 lets anyone who reaches it run jobs .*--insecure if that is intended\)\n$/,
    );
  });

  it("refuses to listen beyond loopback with secrets but without input and output roots", async () => {
    const { client, worker } = cluster.tokenFiles!;
    const refused = await start(
      "--listen",
      "0.0.0.0:0",
      "--client-token-file",
      client,
      "--worker-token-file",
      worker,
      "--output-root",
      dir,
    );
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(
      /^mr: listening on 0\.0\.0\.0:0 without --input-root lets any client name any file .*--insecure if that is intended\)\n$/,
    );
  });

  it("refuses one secret without the other, the same secret for both roles, and a file without one", async () => {
    const { client, worker } = cluster.tokenFiles!;
    expect((await start("--client-token-file", client)).stderr).toMatch(/give both --client-token-file/);
    expect((await start("--client-token-file", client, "--worker-token-file", client)).stderr).toMatch(
      /the client and worker secrets are the same/,
    );
    const empty = join(dir, "empty.token");
    writeFileSync(empty, "\n");
    expect((await start("--client-token-file", empty, "--worker-token-file", worker)).stderr).toMatch(
      /--client-token-file: .*empty\.token holds no secret of at least 16 characters/,
    );
  });
});

describe("a worker", () => {
  it("refuses to serve map output beyond loopback without the worker secret, before it binds anything", async () => {
    const { MR_TOKEN_FILE: _, ...env } = cluster.env;
    const refused = await mr(["worker", "--listen", "0.0.0.0:0"], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(
      /^mr: serving map output on 0\.0\.0\.0 lets anyone who reaches it read it \(give --token-file, or --insecure if that is intended\)\n$/,
    );
  });
});

describe("the driver's log", () => {
  it("leaves a Redis password out of the URL it logs", () => {
    expect(withoutPassword("redis://:hunter2hunter2@127.0.0.1:6379")).toBe("redis://:***@127.0.0.1:6379");
    expect(withoutPassword("redis://127.0.0.1:6379")).toBe("redis://127.0.0.1:6379");
  });
});
