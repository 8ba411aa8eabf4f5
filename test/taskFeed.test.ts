/** The task feed: how a worker's slots share their calls to the driver, over a fake driver. */
import { describe, expect, it } from "vitest";
import type { Completion, TaskAssignment } from "../src/gen/mapreduce.js";
import { TaskFeed, type FeedCalls } from "../src/worker/taskFeed.js";

/** A driver the test answers by hand: each call waits in `polls` or `reports` until it does. */
class FakeCalls implements FeedCalls {
  readonly polls: { max: number; answer: (tasks: TaskAssignment[]) => void }[] = [];
  readonly reports: {
    completions: Completion[];
    next: number;
    answer: (reply: { tasks: TaskAssignment[]; refused: string[] }) => void;
  }[] = [];

  poll(max: number): Promise<TaskAssignment[]> {
    return new Promise((answer) => this.polls.push({ max, answer }));
  }

  complete(completions: Completion[], next: number) {
    return new Promise<{ tasks: TaskAssignment[]; refused: string[] }>((answer) =>
      this.reports.push({ completions, next, answer }),
    );
  }
}

let ids = 0;
function task(): TaskAssignment {
  return { attemptId: `a${++ids}` } as TaskAssignment;
}

function done(attemptId: string): Completion {
  return { attemptId, counters: [] };
}

/** Lets the feed's deferred calls go out (they wait for the end of the event loop's turn). */
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 5));

describe("the task feed", () => {
  it("has the slots that wait share one poll for as many tasks as they are", async () => {
    const calls = new FakeCalls();
    const feed = new TaskFeed(calls);
    const taken = [feed.take(), feed.take(), feed.take()];
    await settle();
    expect(calls.polls.map(({ max }) => max)).toEqual([3]);
    const [a, b] = [task(), task()];
    calls.polls[0]!.answer([a, b]);
    expect(await taken[0]).toBe(a);
    expect(await taken[1]).toBe(b);
    await settle();
    // The one left without a task polls again, for itself.
    expect(calls.polls.map(({ max }) => max)).toEqual([3, 1]);
  });

  it("sends the reports of one turn in one call, asking a task for each reporter", async () => {
    const calls = new FakeCalls();
    const feed = new TaskFeed(calls);
    const refusals = [feed.complete(done("x")), feed.complete(done("y"))];
    await settle();
    expect(calls.reports).toHaveLength(1);
    expect(calls.reports[0]!.completions.map(({ attemptId }) => attemptId)).toEqual(["x", "y"]);
    expect(calls.reports[0]!.next).toBe(2);
    const next = task();
    calls.reports[0]!.answer({ tasks: [next], refused: ["", "y is not the attempt of its task"] });
    expect(await Promise.all(refusals)).toEqual(["", "y is not the attempt of its task"]);
    // The reply's task is kept for the next slot to take; the other slot polls.
    expect(await feed.take()).toBe(next);
    void feed.take();
    await settle();
    expect(calls.polls.map(({ max }) => max)).toEqual([1]);
  });

  it("sends the reports of a later turn at once, without waiting for the call on its way", async () => {
    const calls = new FakeCalls();
    const feed = new TaskFeed(calls);
    const first = feed.complete(done("x"));
    await settle();
    const later = [feed.complete(done("y")), feed.complete(done("z"))];
    await settle();
    expect(calls.reports.map(({ completions }) => completions.map(({ attemptId }) => attemptId))).toEqual([
      ["x"],
      ["y", "z"],
    ]);
    // Each call asks a task for each of its own reporters, whatever the one on its way asked.
    expect(calls.reports.map(({ next }) => next)).toEqual([1, 2]);
    calls.reports[1]!.answer({ tasks: [], refused: ["", ""] });
    expect(await Promise.all(later)).toEqual(["", ""]);
    calls.reports[0]!.answer({ tasks: [], refused: [""] });
    expect(await first).toBe("");
  });

  it("fails every report of a call that failed", async () => {
    const calls = new FakeCalls();
    const feed = new TaskFeed(calls);
    const reports = [feed.complete(done("x")), feed.complete(done("y"))].map((report) =>
      report.catch((err: unknown) => err),
    );
    await settle();
    calls.reports[0]!.answer(Promise.reject(new Error("driver gone")) as never);
    for (const outcome of await Promise.all(reports))
      expect(outcome).toMatchObject({ message: "driver gone" });
  });

  it("draining, asks for no task, and lets the waiting slots go once no call may bring one", async () => {
    const calls = new FakeCalls();
    const feed = new TaskFeed(calls);
    const waiting = feed.take();
    await settle();
    const report = feed.complete(done("x"));
    await settle();
    expect(calls.reports[0]!.next).toBe(1);
    feed.drain();
    let released = false;
    void waiting.then(() => (released = true));
    await settle();
    expect(released).toBe(false); // the poll and the report on their way may still bring tasks
    calls.polls[0]!.answer([]);
    const handed = task();
    calls.reports[0]!.answer({ tasks: [handed], refused: [""] });
    await report;
    // A task handed over is run even when draining.
    expect(await waiting).toBe(handed);
    expect(await feed.take()).toBeUndefined();
    const last = feed.complete(done("y"));
    await settle();
    expect(calls.reports[1]!.next).toBe(0);
    calls.reports[1]!.answer({ tasks: [], refused: [""] });
    expect(await last).toBe("");
    expect(calls.polls).toHaveLength(1);
  });
});
