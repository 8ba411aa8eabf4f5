/** The fault rules of the scheduler core, on a real SQLite file and no network. */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { markWorkerLost, releaseOrphans, reportFetchFailure } from "../src/driver/faults.js";
import { claimTask, completeAttempt, submitJob } from "../src/driver/scheduler.js";
import { heartbeat, registerWorker } from "../src/driver/workerRegistry.js";
import { getAttempt } from "../src/store/attempts.js";
import { openDb, type Db } from "../src/store/db.js";
import { listEvents } from "../src/store/events.js";
import { getJob } from "../src/store/jobs.js";
import { getTask, listTasks } from "../src/store/tasks.js";
import { heldBitmap } from "../src/heldMaps.js";
import { reportHeldOutputs } from "../src/driver/shuffle.js";
import { tempDir } from "./helpers/tmp.js";

let attempts = 0;
function claim(db: Db, taskId: number, workerId: number, generation = 0) {
  return claimTask(db, { taskId, generation, attemptId: `a${++attempts}`, workerId }, 10)!;
}

function setup() {
  const db = openDb(join(tempDir(), "driver.db"));
  const w1 = registerWorker(db, { address: "127.0.0.1:9001", apps: [] }, 1);
  const w2 = registerWorker(db, { address: "127.0.0.1:9002", apps: [] }, 1);
  const { job, enqueue: maps } = submitJob(
    db,
    {
      app: "wordcount",
      inputs: [{ path: "/in", size: 200 }],
      outputDir: "/out",
      reducers: 1,
      splitSizeBytes: 100,
      params: {},
      reduceSlowstart: 1, // the reduce starts once both maps have committed
    },
    1,
  );
  return { db, w1, w2, job, maps };
}

describe("a lost worker", () => {
  it("puts its running attempts straight back in the queue, without using their retry budget", () => {
    const { db, w1, maps } = setup();
    const running = claim(db, maps[0]!.id, w1);
    const loss = markWorkerLost(db, w1, { maxLostAttempts: 20 }, "no heartbeat for 5000 ms", 100)!;
    expect(loss.requeue).toEqual([
      { task: expect.objectContaining({ id: maps[0]!.id }), token: running.attemptId },
    ]);
    expect(getAttempt(db, running.attemptId)).toMatchObject({
      state: "LOST",
      error: expect.stringMatching(/no heartbeat/),
    });
    expect(getTask(db, maps[0]!.id)).toMatchObject({
      state: "PENDING",
      lostAttempts: 1,
      failedAttempts: 0,
      attemptId: null,
    });
    expect(markWorkerLost(db, w1, { maxLostAttempts: 20 }, "again", 101)).toBeNull();
    expect(() => heartbeat(db, { workerId: w1, attempts: [] }, 102)).toThrow(/register again/);
    expect(() =>
      completeAttempt(db, { attemptId: running.attemptId, workerId: w1, counters: {} }, 103),
    ).toThrow(/no longer holds map 0 \(the attempt is LOST/);
  });

  it("fails the task and its job once it has been lost maxLostAttempts times", () => {
    const { db, maps, job } = setup();
    for (let i = 1; i <= 3; i++) {
      const worker = registerWorker(db, { address: `127.0.0.1:${9100 + i}`, apps: [] }, 1);
      claim(db, maps[0]!.id, worker);
      const loss = markWorkerLost(db, worker, { maxLostAttempts: 3 }, "gone", 100 + i)!;
      expect(loss.requeue).toHaveLength(i < 3 ? 1 : 0);
    }
    expect(getJob(db, job.id)).toMatchObject({
      state: "FAILED",
      error: "map 0: worker lost 3 times while running this task; the app may be killing its worker",
    });
  });

  it("makes the maps whose output it held run again under a new generation, for the reduces that lack it", () => {
    const { db, w1, w2, maps, job } = setup();
    const first = claim(db, maps[0]!.id, w1);
    completeAttempt(db, { attemptId: first.attemptId, workerId: w1, counters: { MAP_INPUT_RECORDS: 3 } }, 20);
    const second = claim(db, maps[1]!.id, w2);
    const done = completeAttempt(
      db,
      { attemptId: second.attemptId, workerId: w2, counters: { MAP_INPUT_RECORDS: 4 } },
      21,
    );
    const reduce = done.enqueue[0]!;
    expect(reduce.state).toBe("PENDING");

    const loss = markWorkerLost(db, w1, { maxLostAttempts: 20 }, "gone", 30)!;
    expect(loss.enqueue.map((task) => [task.index, task.generation])).toEqual([[0, 1]]);
    expect(getAttempt(db, first.attemptId)!.state).toBe("LOST");
    expect(getJob(db, job.id)!.mapsDone).toBe(1);
    // The reduce starts with the output that is there, and learns of the other as it commits.
    const reducing = claim(db, reduce.id, w2);
    expect(reducing.mapOutputs).toEqual([
      { mapIndex: 1, attemptId: second.attemptId, address: "127.0.0.1:9002" },
    ]);
    // An entry of the old generation is stale.
    expect(
      claimTask(db, { taskId: maps[0]!.id, generation: 0, attemptId: "old", workerId: w2 }, 32),
    ).toBeNull();
    const rerun = claim(db, maps[0]!.id, w2, 1);
    completeAttempt(db, { attemptId: rerun.attemptId, workerId: w2, counters: { MAP_INPUT_RECORDS: 3 } }, 33);
    const news = reportHeldOutputs(
      db,
      { attemptId: reducing.attemptId, workerId: w2, held: heldBitmap(2, [1]), unreachable: [] },
      34,
    );
    expect(news.outputs).toEqual([{ mapIndex: 0, attemptId: rerun.attemptId, address: "127.0.0.1:9002" }]);
  });
});

describe("a reduce that cannot fetch a map's output", () => {
  /** Both maps committed on w1, and the reduce claimed on w2. */
  function reduceClaimed() {
    const { db, w1, w2, maps, job } = setup();
    const outputs = maps.map((map) => {
      const attempt = claim(db, map.id, w1);
      return completeAttempt(db, { attemptId: attempt.attemptId, workerId: w1, counters: {} }, 20);
    });
    const reduce = outputs[1]!.enqueue[0]!;
    return { db, w2, job, reduce, reducing: claim(db, reduce.id, w2) };
  }

  it("waits, charged to its losses, while that map runs again; a second report of the same loss changes nothing more", () => {
    const { db, w2, job, reduce, reducing } = reduceClaimed();
    const lostMap = reducing.mapOutputs[0]!;
    const outcome = reportFetchFailure(
      db,
      {
        attemptId: reducing.attemptId,
        workerId: w2,
        error: "connection refused",
        mapIndex: 0,
        mapAttemptId: lostMap.attemptId,
      },
      { maxLostAttempts: 20 },
      40,
    );
    expect(outcome.enqueue.map((task) => [task.kind, task.index, task.generation])).toEqual([["MAP", 0, 1]]);
    expect(outcome.drop.map((task) => task.id)).toEqual([reduce.id]);
    expect(getTask(db, reduce.id)).toMatchObject({ state: "WAITING", failedAttempts: 0, lostAttempts: 1 });
    expect(getAttempt(db, reducing.attemptId)).toMatchObject({
      state: "KILLED",
      error: "fetch failed: connection refused",
    });
    expect(getAttempt(db, lostMap.attemptId)!.state).toBe("LOST");
    expect(getJob(db, job.id)!.mapsDone).toBe(1);
    expect(listTasks(db, job.id).map((task) => task.state)).toEqual(["PENDING", "SUCCEEDED", "WAITING"]);
    expect(() =>
      reportFetchFailure(
        db,
        {
          attemptId: reducing.attemptId,
          workerId: w2,
          error: "x",
          mapIndex: 0,
          mapAttemptId: lostMap.attemptId,
        },
        { maxLostAttempts: 20 },
        41,
      ),
    ).toThrow(/no longer holds reduce 0/);
  });

  it("fails, with its job, once its fetch failures have used up its losses, naming the map", () => {
    const { db, w2, job, reduce, reducing } = reduceClaimed();
    const outcome = reportFetchFailure(
      db,
      {
        attemptId: reducing.attemptId,
        workerId: w2,
        error: "no route to host",
        mapIndex: 1,
        mapAttemptId: reducing.mapOutputs[1]!.attemptId,
      },
      { maxLostAttempts: 1 },
      40,
    );
    expect(outcome.enqueue).toEqual([]);
    expect(getTask(db, reduce.id)).toMatchObject({ state: "FAILED", lostAttempts: 1 });
    expect(getAttempt(db, reducing.attemptId)!.state).toBe("FAILED");
    expect(getJob(db, job.id)).toMatchObject({
      state: "FAILED",
      error: expect.stringContaining(
        `could not fetch map output 1 times; the last: map 1 (attempt ${reducing.mapOutputs[1]!.attemptId}): no route to host`,
      ) as string,
    });
  });
});

describe("an attempt that never reached its worker", () => {
  it("is LOST once the worker's heartbeats have left it out for the grace period; others stay", () => {
    const { db, w1, job, maps } = setup();
    const orphan = claim(db, maps[0]!.id, w1); // claimed at 10; the reply never arrived
    const running = claim(db, maps[1]!.id, w1);
    const budget = { maxLostAttempts: 20 };
    const reported = new Set([running.attemptId]);
    expect(releaseOrphans(db, w1, reported, budget, 5000, 4000).reassigned).toEqual([]);
    const loss = releaseOrphans(db, w1, reported, budget, 5000, 5011);
    expect(loss.requeue).toEqual([
      { task: expect.objectContaining({ id: maps[0]!.id }), token: orphan.attemptId },
    ]);
    expect(loss.jobs.map((j) => j.id)).toEqual([job.id]);
    expect(getAttempt(db, orphan.attemptId)).toMatchObject({
      state: "LOST",
      error: expect.stringMatching(/never arrived/),
    });
    expect(getTask(db, maps[0]!.id)).toMatchObject({ state: "PENDING", lostAttempts: 1, attemptId: null });
    expect(getTask(db, maps[1]!.id)).toMatchObject({ state: "RUNNING", attemptId: running.attemptId });
    expect(listEvents(db, job.id).map((event) => event.type)).toContain("attempt-orphaned");
    expect(releaseOrphans(db, w1, reported, budget, 5000, 9000).reassigned).toEqual([]);
  });
});
