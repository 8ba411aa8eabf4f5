/** A TaskQueue in memory, for unit tests of what sits on top of the queue. */
import {
  queueJobId,
  type QueueEntry,
  type QueuedTask,
  type Release,
  type TaskQueue,
} from "../../src/driver/queue.js";

type Entry = QueueEntry;

export class FakeQueue implements TaskQueue {
  connected = true;
  /** Waiting entries, by app lane, in order. */
  readonly lanes = new Map<string, Entry[]>();
  /** Entries handed out, by queue id, with their token. */
  readonly held = new Map<string, Entry & { token: string }>();
  /** Every release, in order: `<outcome> <queue id>`. */
  readonly released: string[] = [];
  /** Makes the next enqueue fail with this error. */
  failEnqueue: Error | undefined;
  enqueueCalls = 0;

  isConnected(): boolean {
    return this.connected;
  }

  reachable(): Promise<boolean> {
    return Promise.resolve(this.connected);
  }

  async enqueue(tasks: readonly QueuedTask[]): Promise<void> {
    await Promise.resolve();
    this.enqueueCalls++;
    if (this.failEnqueue) throw this.failEnqueue;
    for (const task of tasks) {
      const id = queueJobId(task);
      const lane = this.lane(task.app);
      if (this.held.has(id) || lane.some((entry) => entry.queueJobId === id)) continue;
      lane.push({
        queueJobId: id,
        taskId: task.id,
        generation: task.generation,
        app: task.app,
        readyAt: Date.now(),
      });
    }
  }

  async fetch(token: string, apps: readonly string[]): Promise<QueueEntry | null> {
    await Promise.resolve();
    for (const app of apps) {
      const entry = this.lane(app).shift();
      if (!entry) continue;
      this.held.set(entry.queueJobId, { ...entry, token });
      return { ...entry };
    }
    return null;
  }

  async release(held: QueuedTask | QueueEntry, outcome: Release): Promise<void> {
    await Promise.resolve();
    const id = "queueJobId" in held ? held.queueJobId : queueJobId(held);
    this.released.push(`${outcome.as} ${id}`);
    const entry = this.held.get(id);
    this.held.delete(id);
    if (outcome.as === "back" && entry) this.lane(entry.app).unshift(entry);
    if (outcome.as === "gone") {
      for (const lane of this.lanes.values()) {
        const at = lane.findIndex((waiting) => waiting.queueJobId === id);
        if (at !== -1) lane.splice(at, 1);
      }
    }
  }

  async extend(): Promise<string[]> {
    return [];
  }

  async missing<T extends QueuedTask>(tasks: readonly T[]): Promise<T[]> {
    const known = new Set([...this.held.keys(), ...[...this.lanes.values()].flat().map((e) => e.queueJobId)]);
    return tasks.filter((task) => !known.has(queueJobId(task)));
  }

  private lane(app: string): Entry[] {
    let lane = this.lanes.get(app);
    if (!lane) this.lanes.set(app, (lane = []));
    return lane;
  }
}
