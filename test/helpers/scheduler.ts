/** A scheduler core on a real SQLite file in a temp directory, with no network, for unit tests. */
import { join } from "node:path";
import { claimTask, type SubmitRequest } from "../../src/driver/scheduler.js";
import { registerWorker } from "../../src/driver/workerRegistry.js";
import { openDb, type Db } from "../../src/store/db.js";
import { tempDir } from "./tmp.js";

/** A fresh database with one registered worker. */
export function setupScheduler(): { db: Db; dir: string; workerId: number } {
  const dir = tempDir();
  const db = openDb(join(dir, "driver.db"));
  const workerId = registerWorker(db, { address: "127.0.0.1:9001", apps: ["wordcount"] }, 1);
  return { db, dir, workerId };
}

/** A wordcount submit of one 250-byte input in 100-byte splits (3 maps) and 2 reduces. */
export function submitRequest(overrides: Partial<SubmitRequest> = {}): SubmitRequest {
  return {
    app: "wordcount",
    inputs: [{ path: "/data/a.txt", size: 250 }],
    outputDir: "/out/a",
    reducers: 2,
    splitSizeBytes: 100,
    params: {},
    ...overrides,
  };
}

let attempts = 0;
/** Claims a task for `workerId` as the dispatcher would, with a fresh attempt id. */
export function claim(db: Db, taskId: number, workerId: number, generation = 0, now = 10) {
  return claimTask(db, { taskId, generation, attemptId: `att${++attempts}`, workerId }, now);
}
