/// <reference lib="dom" />
/**
 * The web UI in a real Chromium (Debian's, driven by playwright-core), against a real driver and
 * real workers: the jobs page lists a job, the job's page follows its progress without a reload,
 * its timeline shows the attempts of a worker the test kills as LOST, and no page logs an error.
 * It saves a screenshot of the job's page: to $MR_SCREENSHOT when set (the README's comes from
 * here), else beside the test's logs. A second case renders a job of 10,000 tasks and reports
 * how long that took.
 */
import { existsSync, mkdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterEach, describe, expect, inject, it } from "vitest";
import { claimTask, completeAttempt, submitJob } from "../src/driver/scheduler.js";
import { registerWorker } from "../src/driver/workerRegistry.js";
import { openDb } from "../src/store/db.js";
import { markOutputFinished } from "../src/store/jobs.js";
import { listTasks } from "../src/store/tasks.js";
import { startCluster, waitForJobEnd, waitForRunningAttempt, type Cluster } from "./helpers/cluster.js";
import { writeCorpus } from "./helpers/corpus.js";
import { tempDir } from "./helpers/tmp.js";

const CHROMIUM = process.env.MR_CHROMIUM ?? "/usr/bin/chromium";
const unavailable = existsSync(CHROMIUM)
  ? undefined
  : `no Chromium at ${CHROMIUM}: apt-get install -y chromium, or set MR_CHROMIUM`;

/** The flags this machine's closed network needs, and a profile of the test's own. */
function launch(dir: string): Promise<BrowserContext> {
  return chromium.launchPersistentContext(join(dir, "chromium-profile"), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** Every console error and uncaught exception of `page`. */
function collectErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  page.on("pageerror", (err) => errors.push(err.message));
  return errors;
}

let cluster: Cluster | undefined;
let browser: BrowserContext | undefined;
afterEach(async () => {
  await browser?.close();
  await cluster?.stop();
  browser = undefined;
  cluster = undefined;
});

describe.skipIf(unavailable !== undefined)(
  `the web UI in Chromium${unavailable ? ` (skipped: ${unavailable})` : ""}`,
  () => {
    it("lists a job, follows it live, shows a killed worker's attempts as LOST, and logs no error", async () => {
      const dir = tempDir();
      const inputs = writeCorpus(dir, { files: 4, bytes: 16_000, seed: 11 });
      cluster = await startCluster({
        dir,
        redisUrl: inject("redisUrl"),
        workers: 3,
        driverArgs: ["--worker-timeout", "1500"],
      });
      const job = await cluster.client.submitJob({
        app: "faulty",
        inputs,
        outputDir: join(dir, "out"),
        reducers: 3,
        splitSizeBytes: 4000,
        params: { slowMs: "8" },
      });
      browser = await launch(dir);
      const page = await browser.newPage();
      const errors = collectErrors(page);

      await page.goto(`${cluster.httpUrl}/`);
      const row = page.locator(`a[href="/jobs/${job.id}"]`);
      await row.waitFor();
      expect(await page.locator("tbody tr", { has: row }).textContent()).toContain("faulty");

      await row.click();
      await page.waitForURL(`**/jobs/${job.id}`);
      await page.locator("#maps-progress").waitFor();
      // A mark on the window: were the page loaded again, it would be gone.
      await page.evaluate(() => ((window as unknown as { mark: number }).mark = 1));
      const done = () => page.locator("#maps-progress").getAttribute("data-progress").then(Number);
      const first = await done();
      await page.waitForFunction(
        (before) => Number(document.querySelector("#maps-progress")?.getAttribute("data-progress")) > before,
        first,
      );

      // Kill the worker running a map: its attempts turn LOST on its lane.
      const { worker } = await waitForRunningAttempt(cluster.client, job.id, "MAP");
      await cluster.workerAt(worker.address).stop("SIGKILL");
      await page
        .locator(`#timeline rect.attempt[data-state="LOST"][data-worker="${worker.id}"]`)
        .first()
        .waitFor({ timeout: 30_000 });

      expect((await waitForJobEnd(cluster.client, job.id)).job!.state).toBe("SUCCEEDED");
      await page.locator("h1 .badge", { hasText: "SUCCEEDED" }).waitFor();
      expect(await page.evaluate(() => (window as unknown as { mark?: number }).mark)).toBe(1);
      expect(await page.locator("#maps-progress").getAttribute("data-done")).toBe(String(job.mapsTotal));
      expect(await page.locator("#quantiles tbody tr").first().textContent()).toMatch(/^map\d+/);
      const screenshot = process.env.MR_SCREENSHOT ?? join(dir, "job-page.png");
      mkdirSync(dirname(screenshot), { recursive: true });
      await page.screenshot({ path: screenshot, fullPage: true });
      expect(statSync(screenshot).size).toBeGreaterThan(10_000);

      await page.goto(`${cluster.httpUrl}/workers`);
      const lost = page.locator("tbody tr", { hasText: worker.address });
      await lost.locator(".badge", { hasText: "LOST" }).waitFor();
      await page.locator("#health .badge", { hasText: "SERVING" }).waitFor();
      expect(errors).toEqual([]);
    });

    it("renders a job of 10,000 tasks, every attempt on the timeline", async () => {
      const dir = tempDir();
      const home = join(dir, "home");
      mkdirSync(home, { recursive: true });
      // The job's history, written straight into the driver's database: 9,990 maps and 10 reduces.
      const db = openDb(join(home, "driver.db"));
      db.pragma("synchronous = OFF");
      const workers = [1, 2, 3, 4].map((n) =>
        registerWorker(db, { address: `127.0.0.1:${9000 + n}`, apps: ["wordcount"] }, 1),
      );
      const start = Date.now() - 60_000;
      const { job } = submitJob(
        db,
        {
          app: "wordcount",
          inputs: [{ path: join(dir, "big.txt"), size: 9_990 * 100 }],
          outputDir: join(dir, "out"),
          reducers: 10,
          splitSizeBytes: 100,
          params: {},
        },
        start,
      );
      let clock = start;
      const run = (kind: "MAP" | "REDUCE") => {
        listTasks(db, job.id)
          .filter((task) => task.kind === kind)
          .forEach((task, i) => {
            const attemptId = `a${task.id}`;
            const workerId = workers[i % workers.length]!;
            claimTask(db, { taskId: task.id, generation: 0, attemptId, workerId }, (clock += 1));
            completeAttempt(db, { attemptId, workerId, counters: { MAP_INPUT_BYTES: 100 } }, clock + 20);
          });
      };
      run("MAP");
      run("REDUCE");
      markOutputFinished(db, job.id);
      db.close();
      expect(job.mapsTotal).toBe(9_990);

      cluster = await startCluster({ dir, redisUrl: inject("redisUrl"), workers: 0 });
      browser = await launch(dir);
      const page = await browser.newPage();
      const errors = collectErrors(page);
      await page.goto(`${cluster.httpUrl}/jobs/${job.id}`);
      await page.locator("#quantiles").waitFor({ timeout: 30_000 });
      expect(await page.locator("#timeline rect.attempt").count()).toBe(10_000);
      const timing = await page.evaluate(() => ({
        render: Number(document.body.dataset.renderMs),
        shown: Number(document.body.dataset.shownMs),
      }));
      console.log(
        `10,000-task job page: detail rendered in ${timing.render} ms, on screen ${timing.shown} ms after navigation`,
      );
      expect(timing.render).toBeGreaterThan(0);
      expect(errors).toEqual([]);
    });
  },
);
