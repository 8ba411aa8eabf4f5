/** How `mr` prints jobs for a person: grouped events. */
import { describe, expect, it } from "vitest";
import { groupEvents } from "../src/cli/format.js";

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
});
