/**
 * The task threads of a worker (see taskThread.ts), as the main thread uses them: a task goes to
 * a free thread; its progress is read from memory the two share; an abort is passed on; and a
 * task that makes no progress for `taskTimeoutMs` fails, naming the cause, while its thread is
 * ended and replaced. A blocked app thus fails its attempt, never its worker.
 */
import { Worker } from "node:worker_threads";
import { Progress } from "../mr/context.js";
import type { TaskPool } from "../mr/local.js";
import type { MapOutput, MapTaskOptions } from "../mr/mapTask.js";
import type { Ranges } from "../mr/mapOutputBuffer.js";
import type { ReduceTaskOptions } from "../mr/reduceTask.js";
import type { EngineTunables } from "../mr/tunables.js";
import type { Counters } from "../types.js";

/** The thread's module, built: dist/worker/taskThread.js, from src/ (tests) as from dist/. */
const THREAD_MODULE = new URL("../../dist/worker/taskThread.js", import.meta.url);
/** How often a running task's progress is checked for the timeout, in ms. */
const WATCH_EVERY_MS = 1000;
/** How long an aborted task has to end before its thread is ended, in ms. */
const ABORT_GRACE_MS = 2000;

/** A task as the worker hands it to a thread. */
export type TaskRequest = {
  app: string;
  params: Record<string, string>;
  tunables: Readonly<EngineTunables>;
} & (
  | {
      kind: "map";
      map: Pick<MapTaskOptions, "split" | "reducers" | "path" | "spillDir" | "memoryBytes" | "s3">;
    }
  | { kind: "reduce"; reduce: Pick<ReduceTaskOptions, "inputs" | "outputPath" | "workDir"> }
);

/** A task as the thread gets it. */
export type ThreadTask = TaskRequest & {
  id: number;
  /** A SharedArrayBuffer of one Float64: the task's progress, 0 to 1. */
  progress: SharedArrayBuffer;
};

export interface ThreadResult {
  id: number;
  counters?: Counters;
  map?: { data: ArrayBuffer | undefined; path: string; partitions: Ranges };
  error?: { name: string; message: string };
}

/** An attempt made no progress for too long; it fails (and may be retried), its worker lives on. */
export class TaskTimeoutError extends Error {
  constructor(ms: number) {
    super(
      `the attempt made no progress for ${ms} ms and was stopped (the worker's --task-timeout): its app may be stuck, as in a regular expression that backtracks`,
    );
    this.name = "TaskTimeoutError";
  }
}

export class TaskThreads {
  private readonly idle: Worker[] = [];
  private readonly all = new Set<Worker>();
  private nextId = 1;
  private closed = false;

  constructor(private readonly options: { appsDir: string | undefined; taskTimeoutMs: number }) {}

  /** Runs a task on a thread; resolves with its result, or rejects with its error. */
  async run(request: TaskRequest, signal: AbortSignal, progress: Progress): Promise<ThreadResult> {
    const id = this.nextId++;
    const shared = new SharedArrayBuffer(Float64Array.BYTES_PER_ELEMENT);
    const seen = new Float64Array(shared);
    seen[0] = progress.value; // a reduce's fetch counts for the first half
    progress.phase(0, 1, () => seen[0]!);
    const thread = this.take();
    let ended = false;
    try {
      return await new Promise<ThreadResult>((resolve, reject) => {
        let last = -1;
        let lastMovedAt = Date.now();
        let grace: NodeJS.Timeout | undefined;
        /** Gives up on the task: its thread is ended once this run returns. */
        const stop = (reason: Error): void => {
          done();
          ended = true;
          reject(reason);
        };
        const watch = setInterval(() => {
          if (seen[0] !== last) {
            last = seen[0]!;
            lastMovedAt = Date.now();
          } else if (Date.now() - lastMovedAt >= this.options.taskTimeoutMs) {
            stop(new TaskTimeoutError(this.options.taskTimeoutMs));
          }
        }, WATCH_EVERY_MS);
        const onAbort = (): void => {
          thread.postMessage({ abort: id });
          grace = setTimeout(
            () => stop(new Error("aborted, and its app did not stop in time")),
            ABORT_GRACE_MS,
          );
        };
        signal.addEventListener("abort", onAbort, { once: true });
        const onMessage = (result: ThreadResult): void => {
          if (result.id !== id) return;
          done();
          if (result.error)
            reject(Object.assign(new Error(result.error.message), { name: result.error.name }));
          else resolve(result);
        };
        const onError = (err: Error): void => stop(new Error(`the task thread failed: ${err.message}`));
        const onExit = (): void => stop(new Error("the task thread exited"));
        const done = (): void => {
          clearInterval(watch);
          clearTimeout(grace);
          signal.removeEventListener("abort", onAbort);
          thread.off("message", onMessage);
          thread.off("error", onError);
          thread.off("exit", onExit);
        };
        thread.on("message", onMessage);
        thread.on("error", onError);
        thread.on("exit", onExit);
        // A reduce's inputs held in memory move to the thread rather than being copied.
        const moved =
          request.kind === "reduce"
            ? request.reduce.inputs.flatMap((input) =>
                "data" in input ? [input.data.buffer as ArrayBuffer] : [],
              )
            : [];
        thread.postMessage({ ...request, id, progress: shared } satisfies ThreadTask, moved);
        if (signal.aborted) onAbort();
      });
    } finally {
      // A thread whose task ended badly may still be running app code: end it, and start afresh.
      if (ended) void this.end(thread);
      else this.idle.push(thread);
    }
  }

  /** Starts `count` threads ahead of the first tasks, so that none waits for a thread to load. */
  warm(count: number): void {
    while (this.idle.length < count) {
      const thread = this.spawn();
      this.all.add(thread);
      this.idle.push(thread);
    }
  }

  /** Ends every thread. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.all].map((thread) => this.end(thread)));
  }

  private take(): Worker {
    if (this.closed) throw new Error("the worker is stopping");
    const thread = this.idle.pop() ?? this.spawn();
    this.all.add(thread);
    return thread;
  }

  private spawn(): Worker {
    const thread = new Worker(THREAD_MODULE, { workerData: { appsDir: this.options.appsDir } });
    thread.unref(); // the worker's servers keep it alive, not its idle threads
    return thread;
  }

  private async end(thread: Worker): Promise<void> {
    this.all.delete(thread);
    const at = this.idle.indexOf(thread);
    if (at >= 0) this.idle.splice(at, 1);
    await thread.terminate();
  }
}

/** A map's output as its thread handed it over, as a MapOutput: its bytes, if any, as a Buffer (not copied). */
export function mapOutputOf(map: NonNullable<ThreadResult["map"]>): MapOutput {
  return { ...map, data: map.data === undefined ? undefined : Buffer.from(map.data) };
}

/**
 * The threads as a local job's pool (see mr/local.ts): `slots` tasks of app `app` at once, each on
 * a thread of its own, as on a worker. The caller closes the threads.
 */
export function threadPool(
  threads: TaskThreads,
  slots: number,
  task: { app: string; params: Record<string, string>; tunables: Readonly<EngineTunables> },
): TaskPool {
  threads.warm(slots);
  return {
    slots,
    async map(map, signal) {
      const { counters, map: output } = await threads.run(
        { ...task, kind: "map", map },
        signal,
        new Progress(),
      );
      return { counters: counters!, output: mapOutputOf(output!) };
    },
    async reduce(reduce, signal) {
      const { counters } = await threads.run({ ...task, kind: "reduce", reduce }, signal, new Progress());
      return counters!;
    },
  };
}
