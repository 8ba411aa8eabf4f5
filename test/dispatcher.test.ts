/** The dispatcher: queue entries claimed for polling workers, over an in-memory queue and real SQLite. */
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { Dispatcher } from "../src/driver/dispatcher.js";
import { cancelJob, submitJob } from "../src/driver/scheduler.js";
import { GroupCommit } from "../src/store/groupCommit.js";
import { getTask } from "../src/store/tasks.js";
import { FakeQueue } from "./helpers/fakeQueue.js";
import { setupScheduler, submitRequest } from "./helpers/scheduler.js";

function setup(pollWaitMs = 2000) {
  const { db, workerId } = setupScheduler();
  const queue = new FakeQueue();
  const dispatcher = new Dispatcher(new GroupCommit(db), db, queue, pollWaitMs, pino({ level: "silent" }));
  return { db, workerId, queue, dispatcher };
}

describe("the dispatcher", () => {
  it("claims the next queued task for the polling worker, under the attempt id that locks its entry", async () => {
    const { db, workerId, queue, dispatcher } = setup();
    const { enqueue } = submitJob(db, submitRequest(), 1);
    await queue.enqueue(enqueue);
    const [assignment] = await dispatcher.poll(workerId, ["wordcount"], 1, () => false);
    if (assignment === undefined) throw new Error("no task");
    expect(assignment.task.id).toBe(enqueue[0]!.id);
    expect(getTask(db, assignment.task.id)).toMatchObject({
      state: "RUNNING",
      attemptId: assignment.attemptId,
    });
    expect(queue.held.get("j1-m0-g0")!.token).toBe(assignment.attemptId);
  });

  it("lets go of a stale entry for good and hands out the next one", async () => {
    const { db, workerId, queue, dispatcher } = setup();
    const first = submitJob(db, submitRequest({ outputDir: "/out/1" }), 1);
    const second = submitJob(db, submitRequest({ outputDir: "/out/2" }), 1);
    await queue.enqueue([...first.enqueue, ...second.enqueue]);
    cancelJob(db, first.job.id, 2); // its three entries are stale now
    const assignments = await dispatcher.claimNow(workerId, ["wordcount"], 1);
    expect(assignments.map(({ job }) => job.id)).toEqual([second.job.id]);
    expect(queue.released).toEqual(["gone j1-m0-g0", "gone j1-m1-g0", "gone j1-m2-g0"]);
  });

  it("puts an entry back at the head of its lane when the claim's transaction rolled back", async () => {
    const { db, queue, dispatcher } = setup();
    const { enqueue } = submitJob(db, submitRequest(), 1);
    await queue.enqueue(enqueue);
    const [fetched] = await dispatcher.fetchSome(["wordcount"], 1);
    if (fetched === undefined) throw new Error("nothing fetched");
    expect(await dispatcher.settle(fetched, 1, "rolled back")).toBe(false);
    expect(queue.released).toEqual(["back j1-m0-g0"]);
    expect(queue.lanes.get("wordcount")![0]!.queueJobId).toBe("j1-m0-g0");
  });

  it("holds a poll with nothing to take until work is enqueued and it is woken", async () => {
    const { db, workerId, queue, dispatcher } = setup(60_000);
    const polled = dispatcher.poll(workerId, ["wordcount"], 1, () => false);
    const { enqueue } = submitJob(db, submitRequest(), 1);
    await queue.enqueue(enqueue);
    dispatcher.wake();
    expect((await polled).map(({ task }) => task.id)).toEqual([enqueue[0]!.id]);
  });

  it("answers none once the caller gives up", async () => {
    const { workerId, dispatcher } = setup(60_000);
    let cancelled = false;
    const polled = dispatcher.poll(workerId, ["wordcount"], 1, () => cancelled);
    cancelled = true;
    dispatcher.wake();
    expect(await polled).toEqual([]);
  });

  it("claims up to as many tasks as asked for in one poll, and as many as there are", async () => {
    const { db, workerId, queue, dispatcher } = setup();
    const { enqueue } = submitJob(db, submitRequest(), 1); // three maps
    await queue.enqueue(enqueue);
    const two = await dispatcher.poll(workerId, ["wordcount"], 2, () => false);
    expect(two.map(({ task }) => task.index)).toEqual([0, 1]);
    expect(new Set(two.map(({ attemptId }) => attemptId)).size).toBe(2);
    const rest = await dispatcher.poll(workerId, ["wordcount"], 5, () => false);
    expect(rest.map(({ task }) => task.index)).toEqual([2]);
    for (const { task, attemptId } of [...two, ...rest]) {
      expect(getTask(db, task.id)).toMatchObject({ state: "RUNNING", attemptId });
    }
  });

  it("claims no more of a job's tasks in one poll than its --max-running-tasks, and puts the rest back in place", async () => {
    const { db, workerId, queue, dispatcher } = setup();
    const { enqueue } = submitJob(db, submitRequest({ maxRunningTasks: 1 }), 1);
    await queue.enqueue(enqueue);
    const claimed = await dispatcher.poll(workerId, ["wordcount"], 3, () => false);
    expect(claimed.map(({ task }) => task.index)).toEqual([0]);
    expect(queue.released).toEqual(["back j1-m2-g0", "back j1-m1-g0"]);
    expect(queue.lanes.get("wordcount")!.map(({ queueJobId }) => queueJobId)).toEqual([
      "j1-m1-g0",
      "j1-m2-g0",
    ]);
  });
});
