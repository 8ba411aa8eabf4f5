/** How `mr` prints jobs for a person: grouped events. */
import { describe, expect, it } from "vitest";
import { groupEvents, jobDetailText } from "../src/cli/format.js";
import { Job } from "../src/gen/mapreduce.js";

const event = (type: string, message: string, atMs = 1000) => ({ atMs, type, message });

describe("the events of mr jobs show", () => {
  it("put a run of one happening to many tasks on one line, and nothing else together", () => {
    const why = "its output was on worker 2 (127.0.0.1:7001), which was lost";
    const groups = groupEvents([
      event("submitted", "3 maps, 1 reduces"),
      ...[0, 1, 2].map((m) => event("map-rerun", `map ${m}: ${why}; runs again (generation 1)`)),
      event(
        "map-rerun",
        `map 3: its output was on worker 3 (127.0.0.1:7002), which was lost; runs again (generation 1)`,
      ),
      event("task-retried", "reduce 0 failed (attempt 1 of 4): boom"),
      event("task-retried", "reduce 1 failed (attempt 2 of 4): boom"),
      event(
        "worker-lost",
        "map 4: worker 2 lost attempt a0123456789abcdef; back in the queue (1 of 20 losses)",
      ),
    ]);
    expect(groups.map((group) => [group.type, group.tasks])).toEqual([
      ["submitted", []],
      ["map-rerun", ["map 0", "map 1", "map 2"]],
      ["map-rerun", ["map 3"]], // another worker: another line
      ["task-retried", ["reduce 0", "reduce 1"]],
      ["worker-lost", ["map 4"]],
    ]);
    expect(groups[1]!.message).toBe(`map 0: ${why}; runs again (generation 1)`);
  });

  it("name a run's tasks by kind and index, the middle of a long run left out", () => {
    const detail = {
      job: Job.fromPartial({
        id: 7,
        app: "wordcount",
        state: "SUCCEEDED",
        inputs: ["/i"],
        submittedAtMs: 1000,
      }),
      tasks: [],
      counters: [],
      events: [0, 1, 2, 3, 4].map((m) =>
        event("map-rerun", `map ${m * 2}: output lost; runs again (generation 1)`),
      ),
    };
    const text = jobDetailText(detail);
    expect(text).toContain(
      "map-rerun          5 maps (0, 2, 4, …, 8): output lost; runs again (generation 1)",
    );
    expect(text).toContain("(5 events in all; mr jobs show 7 --all lists each)");
    expect(jobDetailText(detail, true).match(/map-rerun/g)).toHaveLength(5);
  });

  it("says when the reduces start, unless at the default share of the maps", () => {
    const shown = (reduceSlowstart: number) =>
      jobDetailText({
        job: Job.fromPartial({ id: 8, app: "wordcount", state: "RUNNING", inputs: ["/i"], reduceSlowstart }),
        tasks: [],
        counters: [],
        events: [],
      });
    expect(shown(1)).toContain(
      "  shuffle   reduces start once every map has committed (--reduce-slowstart 1)\n",
    );
    expect(shown(0.25)).toContain(
      "  shuffle   reduces start once 25% of the maps have committed (--reduce-slowstart 0.25)",
    );
    expect(shown(0.05)).not.toContain("--reduce-slowstart");
  });
});
