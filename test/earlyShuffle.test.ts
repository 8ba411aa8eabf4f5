/** The early shuffle's rules in the scheduler core (shuffle.ts), on a real SQLite file and no network. */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { markWorkerLost } from "../src/driver/faults.js";
import {
  claimTask,
  completeAttempt,
  earlyReduceRoom,
  submitJob,
  type SubmitRequest,
} from "../src/driver/scheduler.js";
import { peekMapOutputs, reportHeldOutputs } from "../src/driver/shuffle.js";
import { registerWorker } from "../src/driver/workerRegistry.js";
import { FailedPreconditionError, InvalidArgumentError } from "../src/errors.js";
import { firstNotHeld, heldBitmap } from "../src/heldMaps.js";
import { getAttempt } from "../src/store/attempts.js";
import { openDb, type Db } from "../src/store/db.js";
import { listEvents } from "../src/store/events.js";
import { getJob } from "../src/store/jobs.js";
import { MAP_OUTPUTS_SQL, getTask, listMapOutputs, listTasks } from "../src/store/tasks.js";
import type { TaskRecord } from "../src/store/rows.js";
import { tempDir } from "./helpers/tmp.js";

let attempts = 0;
function claim(db: Db, task: TaskRecord, workerId: number) {
  const current = getTask(db, task.id)!;
  const claimed = { taskId: task.id, generation: current.generation, attemptId: `e${++attempts}`, workerId };
  return claimTask(db, claimed, 10)!;
}

/** Runs a map to its commit on `workerId` (claiming it first unless it runs); returns what the commit released. */
function commitMap(db: Db, map: TaskRecord, workerId: number): TaskRecord[] {
  const current = getTask(db, map.id)!;
  const attemptId = current.state === "RUNNING" ? current.attemptId! : claim(db, map, workerId).attemptId;
  const holder = getAttempt(db, attemptId)!.workerId;
  return completeAttempt(db, { attemptId, workerId: holder, counters: {} }, 20).enqueue;
}

/** Claims every map, as when the job's maps all run at once and none waits for a slot. */
function runAll(db: Db, maps: TaskRecord[], workers: number[]): void {
  maps.forEach((map, i) => claim(db, map, workers[i % workers.length]!));
}

/** `workers` single-slot workers, and a job of `maps` maps and `reducers` reduces. */
function setup(workers: number, maps: number, reducers: number, overrides: Partial<SubmitRequest> = {}) {
  const db = openDb(join(tempDir(), "driver.db"));
  const ids = Array.from({ length: workers }, (_, i) =>
    registerWorker(db, { address: `127.0.0.1:${9001 + i}`, apps: ["wordcount"] }, 1),
  );
  const { job, enqueue } = submitJob(
    db,
    {
      app: "wordcount",
      inputs: [{ path: "/in", size: maps * 100 }],
      outputDir: "/out",
      reducers,
      splitSizeBytes: 100,
      params: {},
      ...overrides,
    },
    1,
  );
  expect(job.mapsTotal).toBe(maps);
  return { db, workers: ids, job, maps: enqueue };
}

const reduceStates = (db: Db, jobId: number) =>
  listTasks(db, jobId)
    .filter((task) => task.kind === "REDUCE")
    .map((task) => task.state);

describe("early reduces", () => {
  it("are released at the job's slowstart, within half the live slots, and the rest once every map has committed", () => {
    const { db, workers, job, maps } = setup(4, 4, 3, { reduceSlowstart: 0.5 });
    expect(getJob(db, job.id)!.reduceSlowstart).toBe(0.5);
    expect(commitMap(db, maps[0]!, workers[0]!)).toEqual([]); // 1 of 4: under the slowstart
    // 2 of 4: released, but only 2 of the 3, half of the 4 slots.
    expect(commitMap(db, maps[1]!, workers[1]!).map((task) => task.index)).toEqual([0, 1]);
    expect(reduceStates(db, job.id)).toEqual(["PENDING", "PENDING", "WAITING"]);
    expect(commitMap(db, maps[2]!, workers[2]!)).toEqual([]); // the share is taken
    expect(commitMap(db, maps[3]!, workers[3]!).map((task) => task.index)).toEqual([2]);
    expect(listEvents(db, job.id).map(({ type }) => type)).toEqual([
      "submitted",
      "reduces-released",
      "maps-done",
    ]);
    expect(listEvents(db, job.id)[1]!.message).toMatch(
      /^2 of 4 maps succeeded \(slowstart 0\.5\): reduce 0, reduce 1 start fetching/,
    );
  });

  it("default to a slowstart of 0.05, and are never released early on a single slot", () => {
    const one = setup(1, 3, 1);
    expect(getJob(one.db, one.job.id)!.reduceSlowstart).toBe(0.05);
    expect(commitMap(one.db, one.maps[0]!, one.workers[0]!)).toEqual([]);
    expect(commitMap(one.db, one.maps[1]!, one.workers[0]!)).toEqual([]);
    expect(commitMap(one.db, one.maps[2]!, one.workers[0]!)).toHaveLength(1);
    const two = setup(2, 3, 1);
    runAll(two.db, two.maps, two.workers);
    expect(commitMap(two.db, two.maps[0]!, two.workers[0]!)).toHaveLength(1); // the first map
  });

  it("ramp up with the share of the maps done while maps wait for slots, to half the slots", () => {
    // 8 slots, 10 maps, 4 reduces; maps wait in the queue throughout.
    const { db, workers, job, maps } = setup(8, 10, 4);
    const released = (i: number) => commitMap(db, maps[i]!, workers[0]!).length;
    // 1 of 10 done: a tenth of 8 slots is none; 2 of 10: one; 4 of 10: three in all; 5: four.
    expect([0, 1, 2, 3, 4].map(released)).toEqual([0, 1, 1, 1, 1]);
    expect(reduceStates(db, job.id)).toEqual(["PENDING", "PENDING", "PENDING", "PENDING"]);
  });

  it("hold at most half the slots of the workers that offer the app, and of the job's --max-running-tasks", () => {
    // 4 slots, but only 2 offer the app: 1 early reduce.
    const { db, workers, job, maps } = setup(2, 3, 2);
    registerWorker(db, { address: "127.0.0.1:9201", apps: ["grep"], slots: 2 }, 1);
    runAll(db, maps, workers);
    expect(commitMap(db, maps[0]!, workers[0]!).map((task) => task.index)).toEqual([0]);
    expect(commitMap(db, maps[1]!, workers[0]!)).toEqual([]);
    expect(reduceStates(db, job.id)).toEqual(["PENDING", "WAITING"]);
    // 8 slots, and a job that runs at most 2 tasks at once: 1 early reduce.
    const capped = setup(8, 3, 3, { maxRunningTasks: 2 });
    runAll(capped.db, capped.maps, capped.workers);
    expect(commitMap(capped.db, capped.maps[0]!, capped.workers[0]!)).toHaveLength(1);
    expect(commitMap(capped.db, capped.maps[1]!, capped.workers[0]!)).toEqual([]);
    // A cap of 1 leaves none: the one task it runs is a map's.
    const one = setup(8, 2, 1, { maxRunningTasks: 1 });
    runAll(one.db, one.maps, one.workers);
    expect(commitMap(one.db, one.maps[0]!, one.workers[0]!)).toEqual([]);
  });

  it("get the outputs committed so far, then each one they lack as it commits, and say what they hold", () => {
    const { db, workers, job, maps } = setup(2, 3, 1);
    const [w1, w2] = workers as [number, number];
    runAll(db, maps, [w1]);
    const [reduce] = commitMap(db, maps[0]!, w1);
    const reducing = claim(db, reduce!, w2);
    expect(reducing.mapOutputs.map(({ mapIndex }) => mapIndex)).toEqual([0]);
    const report = { attemptId: reducing.attemptId, workerId: w2, held: heldBitmap(3, [0]), unreachable: [] };
    expect(reportHeldOutputs(db, report, 30).outputs).toEqual([]);
    commitMap(db, maps[1]!, w1);
    commitMap(db, maps[2]!, w1);
    const news = reportHeldOutputs(db, report, 31);
    expect(news.outputs.map(({ mapIndex }) => mapIndex)).toEqual([1, 2]);
    expect(news.holdsAll).toBe(false);
    expect(reportHeldOutputs(db, { ...report, held: heldBitmap(3, [0, 1, 2]) }, 31)).toMatchObject({
      outputs: [],
      holdsAll: true,
    });
    expect(getAttempt(db, reducing.attemptId)!.state).toBe("RUNNING");
    expect(() => reportHeldOutputs(db, { ...report, held: new Uint8Array(2) }, 32)).toThrow(
      InvalidArgumentError,
    );
    expect(() => reportHeldOutputs(db, { ...report, workerId: w1 }, 32)).toThrow(FailedPreconditionError);
    expect(getJob(db, job.id)!.mapsDone).toBe(3);
  });
});

describe("the outputs a reduce lacks", () => {
  it("are read from the first map it lacks on, by the job's map index, not from every committed map", () => {
    const { db, workers, job, maps } = setup(2, 20, 1);
    const [w1, w2] = workers as [number, number];
    runAll(db, maps, [w1]);
    const [reduce] = commitMap(db, maps[0]!, w1);
    for (const map of maps.slice(1)) commitMap(db, map, w1);
    const reducing = claim(db, reduce!, w2);
    // It holds maps 0 to 9 but 3, and 12.
    const held = heldBitmap(20, [0, 1, 2, 4, 5, 6, 7, 8, 9, 12]);
    expect(firstNotHeld(held, 20)).toBe(3);
    expect(
      firstNotHeld(
        heldBitmap(
          20,
          Array.from({ length: 20 }, (_, m) => m),
        ),
        20,
      ),
    ).toBe(20);
    expect(firstNotHeld(heldBitmap(20, [...Array.from({ length: 16 }, (_, m) => m), 17]), 20)).toBe(16);
    const report = { attemptId: reducing.attemptId, workerId: w2, held, unreachable: [] };
    expect(reportHeldOutputs(db, report, 30).outputs.map(({ mapIndex }) => mapIndex)).toEqual([
      3, 10, 11, 13, 14, 15, 16, 17, 18, 19,
    ]);
    expect(listMapOutputs(db, job.id, 15).map(({ mapIndex }) => mapIndex)).toEqual([15, 16, 17, 18, 19]);
    const plan = db.prepare(`EXPLAIN QUERY PLAN ${MAP_OUTPUTS_SQL}`).all(job.id, 3) as { detail: string }[];
    expect(plan.map((row) => row.detail).join("\n")).toMatch(/\(job_id=\? AND kind=\? AND idx>\?\)/);
  });
});

describe("a lost map output", () => {
  /** Three maps on w1, the reduce on w2 holding maps 0 and 1. */
  function reduceHolding() {
    const { db, workers, job, maps } = setup(3, 3, 1);
    const [w1, w2] = workers as [number, number];
    const [reduce] = commitMap(db, maps[0]!, w1);
    commitMap(db, maps[1]!, w1);
    const reducing = claim(db, reduce!, w2);
    const report = {
      attemptId: reducing.attemptId,
      workerId: w2,
      held: heldBitmap(3, [0, 1]),
      unreachable: [],
    };
    reportHeldOutputs(db, report, 30);
    return { db, w1, w2, job, maps, reduce: reduce!, reducing, report };
  }

  it("does not run again when every unfinished reduce holds it; only the maps some reduce lacks do", () => {
    const { db, w1, job, maps } = reduceHolding();
    commitMap(db, maps[2]!, w1); // committed, not yet fetched
    const loss = markWorkerLost(db, w1, { maxLostAttempts: 20 }, "gone", 40)!;
    expect(loss.enqueue.map((task) => task.index)).toEqual([2]);
    expect(listTasks(db, job.id).map((task) => task.state)).toEqual([
      "SUCCEEDED",
      "SUCCEEDED",
      "PENDING",
      "RUNNING",
    ]);
    expect(getJob(db, job.id)!.mapsDone).toBe(2);
    const events = listEvents(db, job.id);
    expect(events.filter(({ type }) => type === "map-output-lost").map(({ message }) => message)).toEqual([
      expect.stringMatching(
        /^map 0: .*; every unfinished reduce holds it already, so it does not run again$/,
      ),
      expect.stringMatching(/^map 1: /),
    ]);
    expect(events.filter(({ type }) => type === "map-rerun")).toHaveLength(1);
  });

  it("is seen by a look that only reads, which leaves a needed change to the report", () => {
    const { db, w1, w2, maps, reduce, report } = reduceHolding();
    commitMap(db, maps[2]!, w1);
    expect(peekMapOutputs(db, report)!.outputs.map(({ mapIndex }) => mapIndex)).toEqual([2]);
    markWorkerLost(db, w1, { maxLostAttempts: 20 }, "gone", 40); // maps 0 and 1 held: not run again
    expect(peekMapOutputs(db, report)).toEqual({ outputs: [], holdsAll: false });
    // A new attempt that holds nothing must make them run again: that is the report's to do.
    markWorkerLost(db, w2, { maxLostAttempts: 20 }, "gone", 41);
    const w3 = registerWorker(db, { address: "127.0.0.1:9100", apps: ["wordcount"] }, 42);
    const again = claim(db, reduce, w3);
    expect(peekMapOutputs(db, { attemptId: again.attemptId, held: heldBitmap(3, []) })).toBeNull();
    expect(peekMapOutputs(db, report)).toBeNull(); // an attempt that no longer runs
  });

  it("runs again when a later attempt of the reduce lacks it", () => {
    const { db, w1, w2, job, maps, reduce } = reduceHolding();
    markWorkerLost(db, w1, { maxLostAttempts: 20 }, "gone", 40);
    // The reduce's worker goes too: its next attempt holds nothing.
    markWorkerLost(db, w2, { maxLostAttempts: 20 }, "gone", 41);
    const w3 = registerWorker(db, { address: "127.0.0.1:9100", apps: ["wordcount"] }, 42);
    const again = claim(db, reduce, w3);
    expect(again.mapOutputs).toEqual([]);
    const news = reportHeldOutputs(
      db,
      { attemptId: again.attemptId, workerId: w3, held: heldBitmap(3, []), unreachable: [] },
      43,
    );
    expect(news.enqueue.map((task) => [task.index, task.generation])).toEqual([
      [0, 1],
      [1, 1],
    ]);
    expect(getJob(db, job.id)!.mapsDone).toBe(0);
    commitMap(db, maps[0]!, w3);
    expect(
      reportHeldOutputs(
        db,
        { attemptId: again.attemptId, workerId: w3, held: heldBitmap(3, []), unreachable: [] },
        44,
      ).outputs.map(({ mapIndex, address }) => [mapIndex, address]),
    ).toEqual([[0, "127.0.0.1:9100"]]);
  });

  it("that a reduce could not fetch runs again, and the reduce goes on, charged nothing", () => {
    const { db, w1, job, maps, reducing, report } = reduceHolding();
    commitMap(db, maps[2]!, w1);
    const map2 = getTask(db, maps[2]!.id)!;
    const news = reportHeldOutputs(
      db,
      { ...report, unreachable: [{ mapIndex: 2, attemptId: map2.attemptId! }] },
      50,
    );
    expect(news.enqueue.map((task) => [task.index, task.generation])).toEqual([[2, 1]]);
    expect(getAttempt(db, map2.attemptId!)!.state).toBe("LOST");
    expect(getAttempt(db, reducing.attemptId)!.state).toBe("RUNNING");
    expect(getTask(db, reducing.task.id)).toMatchObject({ state: "RUNNING", lostAttempts: 0 });
    // The same report again changes nothing more.
    const again = reportHeldOutputs(
      db,
      { ...report, unreachable: [{ mapIndex: 2, attemptId: map2.attemptId! }] },
      51,
    );
    expect(again.enqueue).toEqual([]);
    expect(getJob(db, job.id)!.mapsDone).toBe(2);
  });
});

describe("a reduce started early", () => {
  it("gives its slot back while its job's maps wait and early reduces hold more than half the slots", () => {
    const { db, workers, job, maps } = setup(2, 2, 1);
    const [w1, w2] = workers as [number, number];
    const [reduce] = commitMap(db, maps[0]!, w1); // 1 of 2 done: a half of 2 slots
    const reducing = claim(db, reduce!, w2);
    const report = { attemptId: reducing.attemptId, workerId: w2, held: heldBitmap(2, [0]), unreachable: [] };
    expect(reportHeldOutputs(db, report, 30).preempted).toBe(false);
    // w1 dies: one slot left, and map 1 waits for it (map 0 is held, so it stays).
    markWorkerLost(db, w1, { maxLostAttempts: 20 }, "gone", 40);
    const news = reportHeldOutputs(db, report, 41);
    expect(news.preempted).toBe(true);
    expect(news.drop.map((task) => [task.id, task.attemptId])).toEqual([[reduce!.id, reducing.attemptId]]);
    expect(getAttempt(db, reducing.attemptId)).toMatchObject({
      state: "KILLED",
      error: "preempted: its job's maps wait for a slot",
    });
    expect(getTask(db, reduce!.id)).toMatchObject({ state: "WAITING", attemptId: null, lostAttempts: 0 });
    expect(listEvents(db, job.id).at(-1)!.type).toBe("reduce-preempted");
    // The map runs on the slot left, and releases the reduce again.
    expect(commitMap(db, maps[1]!, w2).map((task) => task.id)).toEqual([reduce!.id]);
  });

  it("keeps its slot while any map of its job runs: the map phase moves, and what it fetched stays", () => {
    const { db, workers, job, maps } = setup(4, 4, 2);
    const [w1, w2] = workers as [number, number];
    runAll(db, maps, workers);
    const reduces = commitMap(db, maps[0]!, w1); // none waits: half of 4 slots, both reduces
    const [reducing] = reduces.map((reduce) => claim(db, reduce, w1));
    const report = {
      attemptId: reducing!.attemptId,
      workerId: w1,
      held: heldBitmap(4, [0]),
      unreachable: [],
    };
    // w2 dies: map 1 waits again, and two early reduces hold more than half of the 3 slots left.
    markWorkerLost(db, w2, { maxLostAttempts: 20 }, "gone", 40);
    expect(earlyReduceRoom(db, getJob(db, job.id)!)).toBeLessThan(0);
    // Maps 2 and 3 still run, so the reduce keeps its slot.
    expect(reportHeldOutputs(db, report, 41).preempted).toBe(false);
    expect(getAttempt(db, reducing!.attemptId)!.state).toBe("RUNNING");
  });
});
