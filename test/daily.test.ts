/** Daily use through real processes: one driver per database, and the CLI's answers. */
import { once } from "node:events";
import { join } from "node:path";
import { afterEach, describe, expect, inject, it } from "vitest";
import { spawnMr, type MrProcess } from "../src/cli/processes.js";
import { mr } from "./helpers/cluster.js";
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
