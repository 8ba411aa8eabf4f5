/**
 * Input and output roots, through real processes: a driver started with --input-root and
 * --output-root refuses what leads outside them, however it is spelled, and its workers catch
 * a path that was changed to lead outside after the submit.
 */
import { status } from "@grpc/grpc-js";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, inject, it } from "vitest";
import { hasCode } from "../src/errors.js";
import type * as pb from "../src/gen/mapreduce.js";
import { mr, startCluster, waitForJobEnd, type Cluster } from "./helpers/cluster.js";
import { tempDir } from "./helpers/tmp.js";

let cluster: Cluster;
let dir: string;
let inRoot: string;
let outRoot: string;
/** A file and a directory outside both roots: what an attacker is after. */
let secret: string;
let elsewhere: string;

beforeEach(async () => {
  dir = tempDir();
  inRoot = join(dir, "in");
  outRoot = join(dir, "out");
  elsewhere = join(dir, "elsewhere");
  for (const made of [inRoot, outRoot, elsewhere]) mkdirSync(made);
  secret = join(dir, "secret.txt");
  writeFileSync(secret, "the password is swordfish\n");
  writeFileSync(join(inRoot, "book.txt"), "a b a\n");
  cluster = await startCluster({
    dir,
    redisUrl: inject("redisUrl"),
    workers: 0,
    driverArgs: ["--input-root", inRoot, "--output-root", outRoot],
  });
});

afterEach(async () => {
  await cluster?.stop();
});

const submit = (inputs: string[], outputDir: string): Promise<pb.Job> =>
  cluster.client.submitJob({
    app: "wordcount",
    inputs,
    outputDir,
    reducers: 1,
    splitSizeBytes: 0,
    params: {},
  });

async function refusal(inputs: string[], outputDir = join(outRoot, "job")): Promise<string> {
  const err = await submit(inputs, outputDir).then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(hasCode(err, status.INVALID_ARGUMENT)).toBe(true);
  return (err as Error).message;
}

describe("a driver with roots", () => {
  it("refuses an input outside the input roots: directly, through .., and through a symbolic link", async () => {
    const named = `is outside the input roots: ${inRoot} (move it under one`;
    expect(await refusal([secret])).toContain(`input ${secret} ${named}`);
    expect(await refusal([join(inRoot, "..", "secret.txt")])).toContain(named);
    symlinkSync(secret, join(inRoot, "link.txt"));
    expect(await refusal([join(inRoot, "link.txt")])).toContain(
      `input ${join(inRoot, "link.txt")} (really ${secret}) ${named}`,
    );
    // A directory input whose entry leads out is refused whole, not read in part.
    expect(await refusal([inRoot])).toContain(named);
    const jobs = await cluster.client.listJobs({ state: "", limit: 10, pageToken: "" });
    expect(jobs.jobs).toEqual([]);
  });

  it("refuses an output outside the output roots: directly, through .., and through a symbolic link", async () => {
    const book = join(inRoot, "book.txt");
    const named = `is outside the output roots: ${outRoot} (choose a directory under one`;
    expect(await refusal([book], join(elsewhere, "job"))).toContain(named);
    expect(await refusal([book], join(outRoot, "..", "elsewhere", "job"))).toContain(named);
    symlinkSync(elsewhere, join(outRoot, "link"));
    expect(await refusal([book], join(outRoot, "link", "job"))).toContain(
      `(really ${join(elsewhere, "job")}) ${named}`,
    );
  });

  it("says so in one line through mr submit", async () => {
    const refused = await mr(
      ["submit", "--app", "wordcount", "--reducers", "1", "--output", join(outRoot, "job"), secret],
      cluster.env,
    );
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(
      new RegExp(`^mr: .*input ${secret} is outside the input roots: ${inRoot}.*\\n$`),
    );
  });

  it("stores the real path, so that two spellings of one output directory are one", async () => {
    const first = await submit([join(inRoot, "book.txt")], join(outRoot, "dup"));
    expect(first.outputDir).toBe(join(outRoot, "dup"));
    for (const spelling of [join(outRoot, "dup/"), join(outRoot, ".", "dup"), `${outRoot}//x/../dup`]) {
      expect(await refusal([join(inRoot, "book.txt")], spelling)).toContain(`belongs to job ${first.id}`);
    }
  });

  it("runs a job inside its roots", async () => {
    await cluster.startWorker();
    const job = await submit([inRoot], join(outRoot, "ok"));
    expect((await waitForJobEnd(cluster.client, job.id)).job!.state).toBe("SUCCEEDED");
    expect(readdirSync(join(outRoot, "ok")).sort()).toEqual(["_SUCCESS", "part-r-00000"]);
  });
});

describe("a worker", () => {
  it("fails the job when an input was changed after the submit to lead outside the input roots", async () => {
    const sub = join(inRoot, "sub");
    mkdirSync(sub);
    writeFileSync(join(sub, "data.txt"), "fine\n");
    writeFileSync(join(elsewhere, "data.txt"), "stolen\n");
    const job = await submit([join(sub, "data.txt")], join(outRoot, "swapped-in"));
    // Swapped before any worker runs the map: sub now leads out of the root.
    renameSync(sub, join(dir, "sub-was"));
    symlinkSync(elsewhere, sub);
    await cluster.startWorker();
    const done = await waitForJobEnd(cluster.client, job.id);
    expect(done.job!.state).toBe("FAILED");
    expect(done.job!.error).toContain(`(really ${join(elsewhere, "data.txt")}) is outside the input roots`);
    expect(existsSync(join(outRoot, "swapped-in", "part-r-00000"))).toBe(false);
  });

  it("fails the job when its output was changed after the submit to lead outside the output roots", async () => {
    const job = await submit([join(inRoot, "book.txt")], join(outRoot, "swapped-out"));
    rmSync(join(outRoot, "swapped-out"), { recursive: true }); // the submit made it, with its _temporary
    symlinkSync(elsewhere, join(outRoot, "swapped-out"));
    await cluster.startWorker();
    const done = await waitForJobEnd(cluster.client, job.id);
    expect(done.job!.state).toBe("FAILED");
    expect(done.job!.error).toContain(`(really ${elsewhere}) is outside the output roots`);
    expect(readdirSync(elsewhere)).toEqual([]);
  });
});
