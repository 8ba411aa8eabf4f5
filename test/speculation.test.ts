/**
 * Speculative execution in the scheduler core, on a real SQLite file and no network: which
 * tasks are stragglers, and what becomes of a task, its attempts, its counters and its queue
 * entry when a holder and its backup race.
 */
import { describe, expect, it } from "vitest";
import { markWorkerLost, reportFetchFailure, stopWorker } from "../src/driver/faults.js";
import { cancelJob, completeAttempt, failAttempt, submitJob } from "../src/driver/scheduler.js";
import {
  findStragglers,
  MAX_BACKUPS_PER_TASK,
  startBackup,
  type SpeculationPolicy,
} from "../src/driver/speculation.js";
import { heartbeat, registerWorker } from "../src/driver/workerRegistry.js";
import { FailedPreconditionError } from "../src/errors.js";
import { getAttempt } from "../src/store/attempts.js";
import { jobCounters } from "../src/store/counters.js";
import type { Db } from "../src/store/db.js";
import { listEvents } from "../src/store/events.js";
import { getJob } from "../src/store/jobs.js";
import { moveTask } from "../src/store/lifecycle.js";
import { getTask, listTasks } from "../src/store/tasks.js";
import { claim, setupScheduler, submitRequest } from "./helpers/scheduler.js";

const POLICY: SpeculationPolicy = {
  speculation: true,
  speculationQuantile: 0.75,
  speculationMultiplier: 1.5,
  speculationMinRuntimeMs: 1000,
};
const RETRY = { maxAttempts: 4, maxFailuresPerWorker: 0, excludeForMs: 1000 };
const LOST = { maxLostAttempts: 20 };

/**
 * A job of 4 maps (and 1 reduce) on worker 1: maps 0 to 2 committed after 2 s each, map 3 still
 * running since t = 0 on worker 1. Worker 2 is idle.
 */
function straggling(options: { speculation?: boolean; maps?: number; committed?: number } = {}) {
  const { db, workerId: slow } = setupScheduler();
  const idle = registerWorker(db, { address: "127.0.0.1:9002", apps: ["wordcount"] }, 1);
  const maps = options.maps ?? 4;
  const { job, enqueue } = submitJob(
    db,
    submitRequest({
      inputs: [{ path: "/data/a.txt", size: maps * 100 }],
      reducers: 1,
      speculation: options.speculation,
    }),
    0,
  );
  const holders = enqueue.map((task) => claim(db, task.id, slow, 0, 0)!);
  for (const holder of holders.slice(0, options.committed ?? maps - 1)) {
    completeAttempt(
      db,
      { attemptId: holder.attemptId, workerId: slow, counters: { MAP_INPUT_RECORDS: 1 } },
      2000,
    );
  }
  const last = holders.at(-1)!;
  return { db, job, slow, idle, holder: last.attemptId, taskId: last.task.id };
}

function backupOf(db: Db, now: number, workerId: number, attemptId = "backup1") {
  const [found] = findStragglers(db, POLICY, now);
  return found && startBackup(db, found, { attemptId, workerId }, now);
}

describe("finding stragglers", () => {
  it("names a task running past 1.5 × its phase's median once 75% of the phase has committed", () => {
    const { db, job, taskId, holder, slow } = straggling();
    expect(findStragglers(db, POLICY, 2999)).toEqual([]); // 2999 ms: not past 1.5 × 2000
    expect(findStragglers(db, POLICY, 3001)).toEqual([
      expect.objectContaining({
        jobId: job.id,
        taskId,
        holder,
        holderWorkerId: slow,
        medianMs: 2000,
        estimatedMs: 3001,
      }),
    ]);
  });

  it("names sooner a task whose rate of progress says it will run past 1.5 × the median", () => {
    const slowRate = straggling();
    // At 1.2 s, its report at 1 s said 25%: 4 s in all, past 3 s.
    heartbeat(
      slowRate.db,
      { workerId: slowRate.slow, attempts: [{ attemptId: slowRate.holder, progress: 0.25 }] },
      1000,
    );
    expect(findStragglers(slowRate.db, POLICY, 1200)).toEqual([
      expect.objectContaining({ taskId: slowRate.taskId, estimatedMs: 4000 }),
    ]);
    // 50% at 1 s: 2 s in all, a task like the others.
    const onTime = straggling();
    heartbeat(
      onTime.db,
      { workerId: onTime.slow, attempts: [{ attemptId: onTime.holder, progress: 0.5 }] },
      1000,
    );
    expect(findStragglers(onTime.db, POLICY, 1200)).toEqual([]);
    // A report from its first moments (0.2 s, under a quarter of the minimum runtime) is not trusted.
    const early = straggling();
    heartbeat(
      early.db,
      { workerId: early.slow, attempts: [{ attemptId: early.holder, progress: 0.01 }] },
      200,
    );
    expect(findStragglers(early.db, POLICY, 1200)).toEqual([]);
  });

  it("waits for the quantile of the phase, and for the minimum runtime", () => {
    expect(findStragglers(straggling({ committed: 2 }).db, POLICY, 60_000)).toEqual([]); // 2 of 4 < 3
    const { db } = straggling();
    expect(findStragglers(db, { ...POLICY, speculationMinRuntimeMs: 10_000 }, 9999)).toEqual([]);
    expect(findStragglers(db, { ...POLICY, speculationMinRuntimeMs: 10_000 }, 10_001)).toHaveLength(1);
  });

  it("never names a task of a job submitted with --no-speculation, nor any when the driver turns it off", () => {
    expect(findStragglers(straggling({ speculation: false }).db, POLICY, 60_000)).toEqual([]);
    expect(findStragglers(straggling().db, { ...POLICY, speculation: false }, 60_000)).toEqual([]);
    expect(getJob(straggling({ speculation: false }).db, 1)!.speculation).toBe(false);
  });

  it("starts one backup at a time, on another worker than the holder's, and at most two in a generation", () => {
    const { db, slow, idle, taskId } = straggling();
    const [found] = findStragglers(db, POLICY, 5000);
    expect(startBackup(db, found!, { attemptId: "b-same", workerId: slow }, 5000)).toBeUndefined();
    const backup = startBackup(db, found!, { attemptId: "b1", workerId: idle }, 5000)!;
    expect(backup.task.id).toBe(taskId);
    expect(getAttempt(db, "b1")).toMatchObject({ state: "RUNNING", speculative: 1, workerId: idle });
    expect(getTask(db, taskId)!.attemptId).not.toBe("b1"); // the holder keeps the task and its lease
    expect(findStragglers(db, POLICY, 5000)).toEqual([]); // one backup runs already
    expect(startBackup(db, found!, { attemptId: "b2", workerId: idle }, 5000)).toBeUndefined();
    expect(listEvents(db, 1).at(-1)).toMatchObject({ type: "speculated" });
    expect(listEvents(db, 1).at(-1)!.message).toMatch(
      /map 3: attempt \S+ on worker 1 has run 5\.0 s and will take 5\.0 s at its rate, against a median of 2\.0 s over 3 committed; backup attempt b1 starts on worker 2/,
    );

    failAttempt(db, { attemptId: "b1", workerId: idle, error: "boom" }, RETRY, 6000);
    expect(backupOf(db, 7000, idle, "b2")).toBeDefined(); // the second and last
    failAttempt(db, { attemptId: "b2", workerId: idle, error: "boom" }, RETRY, 8000);
    expect(MAX_BACKUPS_PER_TASK).toBe(2);
    expect(findStragglers(db, POLICY, 9000)).toEqual([]);
  });
});

describe("a holder and its backup", () => {
  it("the backup commits first: the task is the backup's, the holder KILLED, counters counted once", () => {
    const { db, job, slow, idle, holder, taskId } = straggling();
    backupOf(db, 5000, idle);
    const done = completeAttempt(
      db,
      { attemptId: "backup1", workerId: idle, counters: { MAP_INPUT_RECORDS: 1 } },
      6000,
    );
    expect(done.leaseToken).toBe(holder); // the holder's lock completes the queue entry
    expect(done.drop).toEqual([]);
    expect(getTask(db, taskId)).toMatchObject({ state: "SUCCEEDED", attemptId: "backup1" });
    expect(getAttempt(db, "backup1")!.state).toBe("SUCCEEDED");
    expect(getAttempt(db, holder)).toMatchObject({
      state: "KILLED",
      error: "backup attempt backup1 on worker 2 committed map 3 first",
    });
    expect(() =>
      completeAttempt(db, { attemptId: holder, workerId: slow, counters: { MAP_INPUT_RECORDS: 1 } }, 7000),
    ).toThrow(FailedPreconditionError);
    expect(getJob(db, job.id)).toMatchObject({ mapsDone: 4, retries: 0 });
    expect(jobCounters(db, job.id)).toEqual({ MAP_INPUT_RECORDS: 4 });
    expect(listEvents(db, job.id).map((event) => event.message)).toContainEqual(
      `map 3: backup attempt backup1 on worker 2 committed first; attempt ${holder} on worker 1 is KILLED`,
    );
    // The holder's worker is told at its next heartbeat.
    expect(
      heartbeat(db, { workerId: slow, attempts: [{ attemptId: holder, progress: 0.9 }] }, 7000).abort,
    ).toEqual([holder]);
  });

  it("the holder commits first: its backup is KILLED, and its report refused", () => {
    const { db, job, slow, idle, holder } = straggling();
    backupOf(db, 5000, idle);
    const beat = heartbeat(db, { workerId: idle, attempts: [{ attemptId: "backup1", progress: 0.5 }] }, 5500);
    expect(beat).toEqual({ keep: [], abort: [] }); // runs on, without a lease to extend
    expect(getAttempt(db, "backup1")!.progress).toBe(0.5);
    const done = completeAttempt(
      db,
      { attemptId: holder, workerId: slow, counters: { MAP_INPUT_RECORDS: 1 } },
      6000,
    );
    expect(done.leaseToken).toBe(holder);
    expect(getAttempt(db, "backup1")).toMatchObject({
      state: "KILLED",
      error: `attempt ${holder} on worker 1 committed map 3 first`,
    });
    expect(() =>
      completeAttempt(db, { attemptId: "backup1", workerId: idle, counters: { MAP_INPUT_RECORDS: 1 } }, 7000),
    ).toThrow(FailedPreconditionError);
    expect(jobCounters(db, job.id)).toEqual({ MAP_INPUT_RECORDS: 4 });
  });

  it("a backup that commits a task waiting in the queue (its holder lost) drops the queue entry", () => {
    const { db, job, slow, idle, taskId } = straggling();
    backupOf(db, 5000, idle);
    markWorkerLost(db, slow, LOST, "silent", 5500);
    expect(getTask(db, taskId)).toMatchObject({ state: "PENDING", attemptId: null, lostAttempts: 1 });
    const done = completeAttempt(db, { attemptId: "backup1", workerId: idle, counters: {} }, 6000);
    expect(done.leaseToken).toBeNull();
    expect(done.drop.map((task) => task.id)).toEqual([taskId]);
    expect(getTask(db, taskId)).toMatchObject({ state: "SUCCEEDED", attemptId: "backup1" });
    // The three maps committed on the lost worker run again; the backup's counts.
    expect(getJob(db, job.id)!.mapsDone).toBe(1);
  });

  it("a backup's failure, loss or stop charges the task nothing, and the holder goes on", () => {
    const { db, slow, idle, holder, taskId } = straggling();
    backupOf(db, 5000, idle);
    const failure = failAttempt(
      db,
      { attemptId: "backup1", workerId: idle, error: "disk full" },
      RETRY,
      5500,
    );
    expect(failure.leaseToken).toBeNull(); // a backup holds no queue entry
    expect(getTask(db, taskId)).toMatchObject({ state: "RUNNING", attemptId: holder, failedAttempts: 0 });
    expect(listEvents(db, 1).at(-1)!.message).toMatch(
      /backup attempt backup1 failed on worker 2, charging the task nothing: disk full/,
    );

    backupOf(db, 6000, idle, "backup2");
    markWorkerLost(db, idle, LOST, "silent", 6500);
    expect(getAttempt(db, "backup2")!.state).toBe("LOST");
    expect(getTask(db, taskId)).toMatchObject({ state: "RUNNING", attemptId: holder, lostAttempts: 0 });
    expect(getJob(db, 1)!.retries).toBe(0);
    expect(listEvents(db, 1).at(-1)!.message).toMatch(/backup attempt backup2 on worker 2 ended/);
    expect(
      heartbeat(db, { workerId: slow, attempts: [{ attemptId: holder, progress: 0.5 }] }, 7000).keep,
    ).toHaveLength(1);
  });

  it("a stopping worker's backup is KILLED, the holder untouched", () => {
    const { db, idle, holder, taskId } = straggling();
    backupOf(db, 5000, idle);
    stopWorker(db, idle, "SIGTERM", 5500);
    expect(getAttempt(db, "backup1")!.state).toBe("KILLED");
    expect(getTask(db, taskId)).toMatchObject({ state: "RUNNING", attemptId: holder });
  });

  it("a cancelled job kills both", () => {
    const { db, job, idle, holder } = straggling();
    backupOf(db, 5000, idle);
    cancelJob(db, job.id, 6000);
    expect(getAttempt(db, holder)!.state).toBe("KILLED");
    expect(getAttempt(db, "backup1")!.state).toBe("KILLED");
  });

  it("a reduce's backup that cannot fetch ends alone: the holder and the map are untouched", () => {
    const { db, job, slow, idle } = straggling({ maps: 1, committed: 1 });
    // One map committed: the reduce runs. Make it a phase of 4 reduces, 3 committed.
    const reduce = listTasks(db, job.id).find((task) => task.kind === "REDUCE")!;
    const holder = claim(db, reduce.id, slow, 0, 0)!;
    db.prepare(`UPDATE jobs SET reducers = 4, reduces_done = 3 WHERE id = ?`).run(job.id);
    insertCommittedReduces(db, job.id, slow);
    const backup = backupOf(db, 5000, idle)!;
    expect(backup.mapOutputs).toHaveLength(1);
    const map = listTasks(db, job.id).find((task) => task.kind === "MAP")!;
    reportFetchFailure(
      db,
      {
        attemptId: "backup1",
        workerId: idle,
        error: "unreachable",
        mapIndex: 0,
        mapAttemptId: map.attemptId!,
      },
      LOST,
      5500,
    );
    expect(getAttempt(db, "backup1")!.state).toBe("KILLED");
    expect(getTask(db, reduce.id)).toMatchObject({
      state: "RUNNING",
      attemptId: holder.attemptId,
      lostAttempts: 0,
    });
    expect(getTask(db, map.id)).toMatchObject({ state: "SUCCEEDED", generation: 0 });
  });
});

/** Three more committed reduces of the job, of 2 s each, for the median. */
function insertCommittedReduces(db: Db, jobId: number, workerId: number): void {
  for (let r = 1; r <= 3; r++) {
    db.prepare(
      `INSERT INTO tasks (job_id, kind, idx, state, attempt_id) VALUES (?, 'REDUCE', ?, 'RUNNING', ?)`,
    ).run(jobId, r, `r${r}`);
    db.prepare(
      `INSERT INTO attempts (id, task_id, generation, worker_id, state, started_at, finished_at)
       VALUES (?, (SELECT id FROM tasks WHERE job_id = ? AND kind = 'REDUCE' AND idx = ?), 0, ?, 'SUCCEEDED', 0, 2000)`,
    ).run(`r${r}`, jobId, r, workerId);
    const task = listTasks(db, jobId).find((t) => t.kind === "REDUCE" && t.index === r)!;
    moveTask(db, "commit", { taskId: task.id, holder: `r${r}` });
  }
}
