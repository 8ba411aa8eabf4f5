/**
 * The state machines of src/store/lifecycle.ts, walked row by row: every transition in a table
 * works from each of its states, and the store's guards refuse it from every other state.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { insertAttempt, getAttempt } from "../src/store/attempts.js";
import { openDb, type Db } from "../src/store/db.js";
import { createJob, getJob } from "../src/store/jobs.js";
import {
  ATTEMPT_TRANSITIONS,
  JOB_TASK_TRANSITIONS,
  JOB_TRANSITIONS,
  TASK_TRANSITIONS,
  WORKER_TRANSITIONS,
  moveAttempt,
  moveJob,
  moveJobTasks,
  moveTask,
  moveWorker,
  type TaskTransition,
} from "../src/store/lifecycle.js";
import type { TaskRecord } from "../src/store/rows.js";
import { getTask, listTasks } from "../src/store/tasks.js";
import { getWorker, registerWorker } from "../src/store/workers.js";
import { AttemptState, JobState, TaskKind, TaskState, WorkerState } from "../src/types.js";
import { tempDir } from "./helpers/tmp.js";

const TASK_STATES = Object.values(TaskState);
const KINDS = Object.values(TaskKind);

function setup(splits = 1): { db: Db; jobId: number; workerId: number } {
  const db = openDb(join(tempDir(), "driver.db"));
  const workerId = registerWorker(db, { address: "127.0.0.1:9001", apps: [], slots: 1, now: 1 });
  const jobId = createJob(db, {
    app: "wordcount",
    inputs: ["/in"],
    outputDir: "/out",
    reducers: splits,
    splitSizeBytes: 1,
    openCostBytes: 0,
    params: {},
    splits: Array.from({ length: splits }, (_, i) => [{ file: "/in", start: i, end: i + 1 }]),
    now: 1,
  });
  return { db, jobId, workerId };
}

/** The holder a task in `state` has: an attempt while it runs, after it committed or failed it. */
function holderIn(state: TaskState): string | null {
  return state === TaskState.RUNNING || state === TaskState.SUCCEEDED || state === TaskState.FAILED
    ? "holder"
    : null;
}

function placeTask(db: Db, task: TaskRecord, state: TaskState): void {
  db.prepare(
    `UPDATE tasks SET state = ?, attempt_id = ?, generation = 0, failed_attempts = 0, lost_attempts = 0 WHERE id = ?`,
  ).run(state, holderIn(state), task.id);
}

function allows(t: TaskTransition, state: TaskState, kind: TaskKind): boolean {
  return t.from.includes(state) && (t.kind === undefined || t.kind === kind);
}

/** The task as the transition leaves it, from `state`. */
function expectMoved(after: TaskRecord, t: TaskTransition, state: TaskState): void {
  expect(after.state).toBe(t.to);
  expect(after.failedAttempts).toBe(t.charge === "failed" ? 1 : 0);
  expect(after.lostAttempts).toBe(t.charge === "lost" ? 1 : 0);
  expect(after.generation).toBe(t.nextGeneration ? 1 : 0);
  const holder = { new: "newcomer", keep: holderIn(state), clear: null }[t.holder];
  expect(after.attemptId).toBe(holder);
}

describe("task transitions", () => {
  for (const [event, t] of Object.entries(TASK_TRANSITIONS) as [
    keyof typeof TASK_TRANSITIONS,
    TaskTransition,
  ][]) {
    it(`${event}: ${t.from.join(" | ")} → ${t.to}, and refused from every other state`, () => {
      const { db, jobId } = setup();
      for (const kind of KINDS) {
        const task = listTasks(db, jobId).find((candidate) => candidate.kind === kind)!;
        for (const state of TASK_STATES) {
          placeTask(db, task, state);
          const holder = holderIn(state);
          const moved = moveTask(db, event, {
            taskId: task.id,
            holder,
            generation: 0,
            newHolder: "newcomer",
          });
          expect({ kind, state, moved }).toEqual({ kind, state, moved: allows(t, state, kind) });
          if (moved) expectMoved(getTask(db, task.id)!, t, state);
          else expect(getTask(db, task.id)!.state).toBe(state);
        }
      }
    });
  }

  it("are refused to an attempt that does not hold the task, or to an older generation", () => {
    const { db, jobId } = setup();
    const map = listTasks(db, jobId).find((task) => task.kind === TaskKind.MAP)!;
    for (const [event, t] of Object.entries(TASK_TRANSITIONS) as [
      keyof typeof TASK_TRANSITIONS,
      TaskTransition,
    ][]) {
      const state = t.from.find((candidate) => holderIn(candidate) !== null);
      if (state === undefined || !allows(t, state, TaskKind.MAP)) continue;
      placeTask(db, map, state);
      expect(moveTask(db, event, { taskId: map.id, holder: "someone else", newHolder: "n" })).toBe(false);
      expect(moveTask(db, event, { taskId: map.id, holder: "holder", generation: 7, newHolder: "n" })).toBe(
        false,
      );
      expect(getTask(db, map.id)!.state).toBe(state);
    }
  });
});

describe("job-wide task transitions", () => {
  for (const [event, t] of Object.entries(JOB_TASK_TRANSITIONS) as [
    keyof typeof JOB_TASK_TRANSITIONS,
    TaskTransition,
  ][]) {
    it(`${event}: moves exactly the job's ${t.kind ?? ""} tasks in ${t.from.join(" | ")} to ${t.to}`, () => {
      // One task of each kind in each state.
      const { db, jobId } = setup(TASK_STATES.length);
      const tasks = listTasks(db, jobId);
      const placed = new Map<number, TaskState>();
      for (const kind of KINDS) {
        tasks
          .filter((task) => task.kind === kind)
          .forEach((task, i) => {
            placeTask(db, task, TASK_STATES[i]!);
            placed.set(task.id, TASK_STATES[i]!);
          });
      }
      const moved = moveJobTasks(db, jobId, event);
      for (const task of tasks) {
        const before = placed.get(task.id)!;
        const allowed = allows(t, before, task.kind);
        expect(moved.some((candidate) => candidate.id === task.id)).toBe(allowed);
        expect(getTask(db, task.id)!.state).toBe(allowed ? t.to : before);
      }
      // Returned as they now are; one that was RUNNING still names its holder, its entry's token.
      for (const task of moved) expect(task).toEqual(getTask(db, task.id));
      for (const task of moved) expect(task.attemptId).toBe(holderIn(placed.get(task.id)!));
    });
  }
});

describe("attempt transitions", () => {
  for (const [event, t] of Object.entries(ATTEMPT_TRANSITIONS) as [
    keyof typeof ATTEMPT_TRANSITIONS,
    { from: AttemptState; to: AttemptState },
  ][]) {
    it(`${event}: ${t.from} → ${t.to}, and refused from every other state`, () => {
      const { db, jobId, workerId } = setup();
      const taskId = listTasks(db, jobId)[0]!.id;
      for (const state of Object.values(AttemptState)) {
        const id = `${event}-${state}`;
        insertAttempt(db, { id, taskId, generation: 0, workerId, now: 5 });
        db.prepare(`UPDATE attempts SET state = ? WHERE id = ?`).run(state, id);
        const moved = moveAttempt(db, id, event, "why", 9);
        expect({ state, moved }).toEqual({ state, moved: state === t.from });
        const after = getAttempt(db, id)!;
        expect(after.state).toBe(moved ? t.to : state);
        if (moved) expect(after).toMatchObject({ error: "why", finishedAt: 9 });
        if (moved) expect(after.progress).toBe(t.to === AttemptState.SUCCEEDED ? 1 : 0);
      }
    });
  }
});

describe("job and worker transitions", () => {
  for (const [event, t] of Object.entries(JOB_TRANSITIONS) as [
    keyof typeof JOB_TRANSITIONS,
    { from: JobState; to: JobState },
  ][]) {
    it(`job ${event}: ${t.from} → ${t.to}, and refused from every other state`, () => {
      const { db, jobId } = setup();
      for (const state of Object.values(JobState)) {
        db.prepare(`UPDATE jobs SET state = ? WHERE id = ?`).run(state, jobId);
        const moved = moveJob(db, jobId, event, "why", 9);
        expect({ state, moved }).toEqual({ state, moved: state === t.from });
        expect(getJob(db, jobId)!.state).toBe(moved ? t.to : state);
      }
    });
  }

  for (const [event, t] of Object.entries(WORKER_TRANSITIONS) as [
    keyof typeof WORKER_TRANSITIONS,
    { from: WorkerState; to: WorkerState },
  ][]) {
    it(`worker ${event}: ${t.from} → ${t.to}, and refused from every other state`, () => {
      const { db, workerId } = setup();
      for (const state of Object.values(WorkerState)) {
        db.prepare(`UPDATE workers SET state = ? WHERE id = ?`).run(state, workerId);
        const moved = moveWorker(db, workerId, event);
        expect({ state, moved }).toEqual({ state, moved: state === t.from });
        expect(getWorker(db, workerId)!.state).toBe(moved ? t.to : state);
      }
    });
  }
});
