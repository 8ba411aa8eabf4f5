/** The scheduler core: a job's life from submit to its end, on a real SQLite file and no network. */
import { describe, expect, it } from "vitest";
import { cancelJob, completeAttempt, failAttempt, submitJob } from "../src/driver/scheduler.js";
import { heartbeat, registerWorker } from "../src/driver/workerRegistry.js";
import { FailedPreconditionError, InvalidArgumentError } from "../src/errors.js";
import { getAttempt } from "../src/store/attempts.js";
import { jobCounters } from "../src/store/counters.js";
import { listEvents } from "../src/store/events.js";
import { getJob } from "../src/store/jobs.js";
import { parseSplit } from "../src/store/rows.js";
import { getTask, listTasks } from "../src/store/tasks.js";
import { claim, setupScheduler as setup, submitRequest as request } from "./helpers/scheduler.js";

describe("the scheduler", () => {
  it("runs a job through maps, then reduces, to SUCCEEDED", () => {
    const { db, workerId } = setup();
    const { job, enqueue } = submitJob(db, request(), 1);
    expect(job).toMatchObject({ state: "RUNNING", mapsTotal: 3, reducers: 2 });
    expect(enqueue.map((task) => task.kind)).toEqual(["MAP", "MAP", "MAP"]);
    expect(
      listTasks(db, job.id)
        .filter((task) => task.kind === "REDUCE")
        .map((task) => task.state),
    ).toEqual(["WAITING", "WAITING"]);

    for (const [i, task] of enqueue.entries()) {
      const assignment = claim(db, task.id, workerId)!;
      expect(assignment.task.state).toBe("RUNNING");
      const done = completeAttempt(
        db,
        { attemptId: assignment.attemptId, workerId, counters: { MAP_INPUT_RECORDS: 10 } },
        20,
      );
      expect(done.enqueue.length).toBe(i === 2 ? 2 : 0); // the last map releases both reduces
    }
    const reduces = listTasks(db, job.id).filter((task) => task.kind === "REDUCE");
    const assignment = claim(db, reduces[0]!.id, workerId)!;
    expect(assignment.mapOutputs.map((output) => output.address)).toEqual(Array(3).fill("127.0.0.1:9001"));
    expect(
      completeAttempt(db, { attemptId: assignment.attemptId, workerId, counters: {} }, 30).jobSucceeded,
    ).toBe(false);
    const last = claim(db, reduces[1]!.id, workerId)!;
    expect(completeAttempt(db, { attemptId: last.attemptId, workerId, counters: {} }, 40).jobSucceeded).toBe(
      true,
    );
    expect(getJob(db, job.id)).toMatchObject({
      state: "SUCCEEDED",
      mapsDone: 3,
      reducesDone: 2,
      finishedAt: 40,
    });
    expect(jobCounters(db, job.id)).toEqual({ MAP_INPUT_RECORDS: 30 });
    expect(listEvents(db, job.id).map((event) => event.type)).toEqual([
      "submitted",
      "maps-done",
      "succeeded",
    ]);
  });

  it("makes a job with no input bytes runnable at its reduces", () => {
    const { db } = setup();
    const { job, enqueue } = submitJob(db, request({ inputs: [{ path: "/data/empty", size: 0 }] }), 1);
    expect(job.mapsTotal).toBe(0);
    expect(enqueue.map((task) => task.kind)).toEqual(["REDUCE", "REDUCE"]);
  });

  it("packs small files into maps, leaving as many maps as the live workers have slots", () => {
    const { db } = setup(); // one worker of one slot
    const inputs = Array.from({ length: 8 }, (_, i) => ({ path: `/data/f${i}`, size: 10 }));
    const packed = (outputDir: string) =>
      submitJob(db, request({ inputs, outputDir, splitSizeBytes: 1000, openCostBytes: 10 }), 1).job;
    // 160 bytes of cost, far under the split size: one map for the one slot.
    expect(packed("/out/one-slot").mapsTotal).toBe(1);
    registerWorker(db, { address: "127.0.0.1:9002", apps: ["wordcount"], slots: 3 }, 1);
    const job = packed("/out/four-slots"); // 40 each: 2 files a map
    expect(job).toMatchObject({ mapsTotal: 4, openCostBytes: 10 });
    const maps = listTasks(db, job.id).filter((task) => task.kind === "MAP");
    expect(maps.map((task) => parseSplit(task.split!).map(({ file }) => file))).toEqual([
      ["/data/f0", "/data/f1"],
      ["/data/f2", "/data/f3"],
      ["/data/f4", "/data/f5"],
      ["/data/f6", "/data/f7"],
    ]);
    expect(listEvents(db, job.id)[0]!.message).toBe("wordcount: 4 maps over 8 inputs, 2 reduces");
  });

  it("refuses an output directory that a running or succeeded job owns", () => {
    const { db } = setup();
    submitJob(db, request(), 1);
    expect(() => submitJob(db, request(), 2)).toThrow(InvalidArgumentError);
    expect(() => submitJob(db, request(), 2)).toThrow(/belongs to job 1, which is RUNNING/);
  });

  it("hands a task whose lease expired to a new attempt, and refuses the old one's report", () => {
    const { db, workerId } = setup();
    const other = registerWorker(db, { address: "127.0.0.1:9002", apps: [] }, 1);
    const { enqueue } = submitJob(db, request(), 1);
    const first = claim(db, enqueue[0]!.id, workerId)!;
    const second = claim(db, enqueue[0]!.id, other)!; // the queue handed the same entry out again
    expect(getAttempt(db, first.attemptId)!.state).toBe("SUPERSEDED");
    expect(() => completeAttempt(db, { attemptId: first.attemptId, workerId, counters: {} }, 5)).toThrow(
      /no longer holds map 0 \(the attempt is SUPERSEDED/,
    );
    expect(() =>
      failAttempt(
        db,
        { attemptId: first.attemptId, workerId, error: "x" },
        { maxAttempts: 4, maxFailuresPerWorker: 0, excludeForMs: 1 },
        5,
      ),
    ).toThrow(FailedPreconditionError);
    const beat = heartbeat(db, { workerId, attempts: [{ attemptId: first.attemptId, progress: 0.5 }] }, 6);
    expect(beat).toEqual({ keep: [], abort: [first.attemptId] });
    completeAttempt(db, { attemptId: second.attemptId, workerId: other, counters: { N: 1 } }, 7);
    expect(getTask(db, enqueue[0]!.id)).toMatchObject({ state: "SUCCEEDED", attemptId: second.attemptId });
  });

  it("refuses a report from a worker that does not own the attempt", () => {
    const { db, workerId } = setup();
    const other = registerWorker(db, { address: "127.0.0.1:9002", apps: [] }, 1);
    const { enqueue } = submitJob(db, request(), 1);
    const assignment = claim(db, enqueue[0]!.id, workerId)!;
    expect(() =>
      completeAttempt(db, { attemptId: assignment.attemptId, workerId: other, counters: {} }, 5),
    ).toThrow(/belongs to worker/);
    expect(getTask(db, enqueue[0]!.id)!.state).toBe("RUNNING");
  });

  it("treats a repeated completion as the same result, counting it once", () => {
    const { db, workerId } = setup();
    const { job, enqueue } = submitJob(db, request(), 1);
    const assignment = claim(db, enqueue[0]!.id, workerId)!;
    const report = { attemptId: assignment.attemptId, workerId, counters: { MAP_OUTPUT_RECORDS: 5 } };
    expect(completeAttempt(db, report, 5).duplicate).toBe(false);
    expect(completeAttempt(db, report, 6).duplicate).toBe(true);
    expect(getJob(db, job.id)!.mapsDone).toBe(1);
    expect(jobCounters(db, job.id)).toEqual({ MAP_OUTPUT_RECORDS: 5 });
  });

  it("retries a failed task until maxAttempts, then fails the task and the job with the last error", () => {
    const { db, workerId } = setup();
    const { job, enqueue } = submitJob(db, request(), 1);
    const taskId = enqueue[0]!.id;
    for (let i = 1; i <= 3; i++) {
      const assignment = claim(db, taskId, workerId)!;
      const failure = failAttempt(
        db,
        { attemptId: assignment.attemptId, workerId, error: `boom ${i}` },
        { maxAttempts: 3, maxFailuresPerWorker: 0, excludeForMs: 1 },
        5,
      );
      expect(failure.retry).toBe(i < 3);
      expect(getTask(db, taskId)!.state).toBe(i < 3 ? "PENDING" : "FAILED");
      if (i === 3) expect(failure.drop.map((task) => task.index)).toEqual([1, 2, 0, 1]); // maps 1, 2 and both reduces
    }
    expect(getJob(db, job.id)).toMatchObject({
      state: "FAILED",
      error: "map 0 failed 3 times; last error: boom 3",
    });
    expect(listTasks(db, job.id).map((task) => task.state)).toEqual([
      "FAILED",
      "FAILED",
      "FAILED",
      "FAILED",
      "FAILED",
    ]);
    expect(claim(db, enqueue[1]!.id, workerId)).toBeNull(); // a stale queue entry
  });

  it("fails the task and its job at the first unrecoverable failure, with attempts left", () => {
    const { db, workerId } = setup();
    const { job, enqueue } = submitJob(db, request(), 1);
    const taskId = enqueue[0]!.id;
    const assignment = claim(db, taskId, workerId)!;
    const failure = failAttempt(
      db,
      { attemptId: assignment.attemptId, workerId, error: "bad schema", unrecoverable: true },
      { maxAttempts: 3, maxFailuresPerWorker: 0, excludeForMs: 1 },
      5,
    );
    expect(failure.retry).toBe(false);
    expect(getTask(db, taskId)).toMatchObject({ state: "FAILED", failedAttempts: 1 });
    expect(getJob(db, job.id)).toMatchObject({
      state: "FAILED",
      error: "map 0 failed with an unrecoverable error, not retried: bad schema",
    });
  });

  it("cancels a running job: its tasks end and its running attempts are told to abort", () => {
    const { db, workerId } = setup();
    const { job, enqueue } = submitJob(db, request(), 1);
    const running = claim(db, enqueue[0]!.id, workerId)!;
    const cancelled = cancelJob(db, job.id, 9);
    expect(cancelled.job.state).toBe("CANCELLED");
    expect(cancelled.drop).toHaveLength(5);
    // The task that ran still names the attempt that holds its queue entry's lock.
    expect(cancelled.drop.find((task) => task.id === enqueue[0]!.id)).toMatchObject({
      state: "CANCELLED",
      attemptId: running.attemptId,
    });
    expect(getAttempt(db, running.attemptId)!.state).toBe("KILLED");
    expect(
      heartbeat(db, { workerId, attempts: [{ attemptId: running.attemptId, progress: 0 }] }, 10).abort,
    ).toEqual([running.attemptId]);
    expect(() => completeAttempt(db, { attemptId: running.attemptId, workerId, counters: {} }, 11)).toThrow(
      FailedPreconditionError,
    );
    expect(() => cancelJob(db, job.id, 12)).toThrow(/already CANCELLED/);
  });

  it("rolls back a reduce's completion whose output cannot be committed; a map's output stays on its worker", () => {
    const { db, workerId } = setup();
    const { enqueue } = submitJob(db, request(), 1);
    const commitOutput = () => {
      throw new Error("no output");
    };
    const reduces = enqueue.flatMap((map) => {
      const { attemptId } = claim(db, map.id, workerId)!;
      return completeAttempt(db, { attemptId, workerId, counters: {}, commitOutput }, 5).enqueue;
    });
    const assignment = claim(db, reduces[0]!.id, workerId)!;
    expect(() =>
      completeAttempt(db, { attemptId: assignment.attemptId, workerId, counters: {}, commitOutput }, 5),
    ).toThrow("no output");
    expect(getTask(db, reduces[0]!.id)).toMatchObject({ state: "RUNNING", attemptId: assignment.attemptId });
    expect(getAttempt(db, assignment.attemptId)!.state).toBe("RUNNING");
  });

  it("asks an unknown or lost worker to register again", () => {
    const { db } = setup();
    expect(() => heartbeat(db, { workerId: 999, attempts: [] }, 5)).toThrow(/register again/);
  });
});
