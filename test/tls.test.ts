/**
 * TLS and mutual TLS through real processes, with a throwaway CA made by openssl at run time:
 * a wordcount over mutual TLS (and secrets), and clients that do not belong are refused.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { withToken } from "../src/auth.js";
import { ShuffleServiceClient, type Chunk } from "../src/gen/mapreduce.js";
import { BUILTIN_APPS } from "../src/mr/apps/index.js";
import { runLocalJob } from "../src/mr/local.js";
import { CHANNEL_OPTIONS } from "../src/grpc.js";
import { channelCredentials, readTls } from "../src/tls.js";
import { mr, startCluster, tokenOf, waitForJobEnd, type Cluster } from "./helpers/cluster.js";
import { writeCorpus } from "./helpers/corpus.js";

function hasOpenssl(): boolean {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

interface Pki {
  ca: string;
  cert: string;
  key: string;
}

/** A CA, and a certificate it signed for 127.0.0.1 that serves and identifies a client alike. */
function makePki(dir: string, name: string): Pki {
  const path = (file: string) => join(dir, `${name}-${file}`);
  const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "ignore" });
  openssl(
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", `/CN=${name} test CA`,
    "-keyout", path("ca.key"), "-out", path("ca.pem"),
  ); // prettier-ignore
  openssl(
    "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
    "-keyout", path("node.key"), "-out", path("node.csr"),
  ); // prettier-ignore
  writeFileSync(
    path("ext.cnf"),
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
  );
  openssl(
    "x509", "-req", "-in", path("node.csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
    "-CAcreateserial", "-days", "1", "-extfile", path("ext.cnf"), "-out", path("node.pem"),
  ); // prettier-ignore
  return { ca: path("ca.pem"), cert: path("node.pem"), key: path("node.key") };
}

const skipReason = hasOpenssl() ? "" : " (skipped: no openssl on PATH to make a test CA)";

describe.skipIf(skipReason !== "")(`mutual TLS${skipReason}`, () => {
  let dir: string;
  let pki: Pki;
  let stranger: Pki;
  let cluster: Cluster;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mr-tls-"));
    pki = makePki(dir, "mr");
    stranger = makePki(dir, "stranger");
    for (const root of ["in", "out"]) mkdirSync(join(dir, root));
    // Everything on: secrets (the helper's default), mutual TLS and roots.
    cluster = await startCluster({
      dir,
      redisUrl: inject("redisUrl"),
      workers: 2,
      tls: pki,
      driverArgs: ["--input-root", join(dir, "in"), "--output-root", join(dir, "out")],
    });
  });

  afterAll(async () => {
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("runs wordcount across a driver and two workers to exactly the local engine's output", async () => {
    const inputs = writeCorpus(join(dir, "in"), { files: 3, bytes: 30_000, seed: 11 });
    const output = join(dir, "out", "words");
    const submitted = await mr(
      ["submit", "--app", "wordcount", "--reducers", "3", "--split-size", "8000", "--output", output, "--json", ...inputs],
      cluster.env,
    ); // prettier-ignore
    expect(submitted.code).toBe(0);
    const job = JSON.parse(submitted.stdout);
    const detail = await waitForJobEnd(cluster.client, job.id);
    expect(detail.job!.state).toBe("SUCCEEDED");
    const local = join(dir, "local");
    await runLocalJob({
      app: BUILTIN_APPS.wordcount!,
      params: {},
      inputs,
      outputDir: local,
      reducers: 3,
      splitSizeBytes: 8000,
    });
    const parts = (out: string) =>
      readdirSync(out)
        .filter((name) => name.startsWith("part-"))
        .map((name) => readFileSync(join(out, name), "utf8"));
    expect(parts(output)).toEqual(parts(local));
    expect(readFileSync(join(dir, "driver.log"), "utf8")).toContain('"tls":"mutual"');
    // The reduces fetched map output from both workers, over TLS too.
    expect(new Set(detail.tasks.flatMap((task) => task.attempts.map((a) => a.workerId))).size).toBe(2);
  });

  it("refuses, with the client secret and a certificate of the CA, an input outside the input roots", async () => {
    const outside = join(dir, "outside.txt");
    writeFileSync(outside, "not yours\n");
    const refused = await mr(
      ["submit", "--app", "wordcount", "--reducers", "1", "--output", join(dir, "out", "x"), outside],
      cluster.env,
    );
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`input ${outside} is outside the input roots: ${join(dir, "in")}`);
  });

  it("refuses a plaintext client, and a client whose certificate another CA signed", async () => {
    const plain = { ...cluster.env };
    for (const name of ["MR_TLS_CERT", "MR_TLS_KEY", "MR_TLS_CA"]) delete plain[name];
    const plaintext = await mr(["jobs", "list"], plain);
    expect(plaintext.code).toBe(1);
    expect(plaintext.stderr).toMatch(
      /^mr: cannot reach the driver at .*a driver that serves TLS needs --tls-ca\)\n$/,
    );
    const foreign = await mr(["jobs", "list"], {
      ...cluster.env,
      MR_TLS_CERT: stranger.cert,
      MR_TLS_KEY: stranger.key,
    });
    expect(foreign.code).toBe(1);
    const untrusting = await mr(["jobs", "list"], { ...cluster.env, MR_TLS_CA: stranger.ca });
    expect(untrusting.code).toBe(1);
    expect(untrusting.stderr).toMatch(
      /^mr: TLS with the driver at .* failed: self-signed certificate in certificate chain/,
    );
    expect((await mr(["jobs", "list"], cluster.env)).code).toBe(0);
  });

  it("serves map output only to workers with a certificate of the CA", async () => {
    const fetchWith = async (tls: ReturnType<typeof readTls>): Promise<unknown> => {
      const shuffle = new ShuffleServiceClient(
        cluster.workers[0]!.address,
        channelCredentials(tls),
        withToken(CHANNEL_OPTIONS, tokenOf(cluster, "worker")),
      );
      try {
        const stream = shuffle.fetchPartition({ attemptIds: ["a0"], partition: 0, jobId: 1, shuffleKey: "" });
        for await (const chunk of stream as AsyncIterable<Chunk>) void chunk;
        return undefined;
      } catch (err) {
        return err;
      } finally {
        shuffle.close();
      }
    };
    expect(await fetchWith(undefined)).toBeInstanceOf(Error);
    expect(await fetchWith(readTls({ ca: pki.ca, cert: stranger.cert, key: stranger.key }))).toBeInstanceOf(
      Error,
    );
    expect(await fetchWith(readTls(pki))).toBeUndefined();
  });
});
