/**
 * The thread a worker runs app code in: one per task slot, one task at a time. The worker's
 * main thread keeps heartbeating, serving map output and fetching for reduces whatever the app
 * does here; an app that never returns costs this thread, which the main thread ends.
 *
 * Messages in: a ThreadTask, or `{ abort: id }`. Messages out: a ThreadResult. Progress goes
 * through a shared Float64Array the main thread reads when a heartbeat asks.
 */
import { parentPort, workerData } from "node:worker_threads";
import { Progress } from "../mr/context.js";
import { runMapTask } from "../mr/mapTask.js";
import { runReduceTask } from "../mr/reduceTask.js";
import { loadApps } from "./apps.js";
import type { ThreadResult, ThreadTask } from "./taskThreads.js";

/** How often the shared progress is brought up to date, in ms. */
const PROGRESS_EVERY_MS = 200;

const port = parentPort!;
const apps = await loadApps((workerData as { appsDir?: string }).appsDir);
const running = new Map<number, AbortController>();

port.on("message", (message: ThreadTask | { abort: number }) => {
  if ("abort" in message) {
    running.get(message.abort)?.abort();
    return;
  }
  void run(message).then(({ result, transfer }) => port.postMessage(result, transfer));
});

async function run(task: ThreadTask): Promise<{ result: ThreadResult; transfer: ArrayBuffer[] }> {
  const controller = new AbortController();
  running.set(task.id, controller);
  const progress = new Progress();
  const shared = new Float64Array(task.progress);
  const timer = setInterval(() => (shared[0] = progress.value), PROGRESS_EVERY_MS);
  try {
    const app = apps[task.app];
    if (!app) throw new Error(`this worker's task thread has no app ${JSON.stringify(task.app)}`);
    const common = { app, params: task.params, tunables: task.tunables, signal: controller.signal, progress };
    if (task.kind === "map") {
      const { counters, output } = await runMapTask({ ...common, ...task.map });
      // Its own copy, handed over whole rather than cloned.
      const data = output.data === undefined ? undefined : new Uint8Array(output.data).buffer;
      return {
        result: { id: task.id, counters, map: { data, path: output.path, partitions: output.partitions } },
        transfer: data === undefined ? [] : [data],
      };
    }
    const counters = await runReduceTask({ ...common, ...task.reduce });
    return { result: { id: task.id, counters }, transfer: [] };
  } catch (err) {
    const { name, message } = err instanceof Error ? err : new Error(String(err));
    return { result: { id: task.id, error: { name, message } }, transfer: [] };
  } finally {
    clearInterval(timer);
    shared[0] = progress.value;
    running.delete(task.id);
  }
}
