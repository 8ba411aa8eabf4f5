import type { TaskRecord } from "../../src/store/rows.js";

/** A PENDING map task of job 1, for tests of the queue side that need only its record. */
export function task(id: number, generation = 0, app = "wordcount"): TaskRecord {
  return {
    id,
    jobId: 1,
    app,
    jobPriority: 0,
    kind: "MAP",
    index: id,
    state: "PENDING",
    generation,
    split: '[["f",0,1]]',
    attemptId: null,
    failedAttempts: 0,
    lostAttempts: 0,
  };
}
