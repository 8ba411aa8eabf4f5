import { rmSync } from "node:fs";
import type { MapOutput } from "../mr/mapTask.js";

/** Whose output it is: the job, and the shuffle key a fetch of it must show. */
export interface OutputOwner {
  jobId: number;
  shuffleKey: string;
}

export type HeldOutput = MapOutput & OutputOwner;
import { clearAttemptFiles, mapOutputPath } from "./dataDir.js";

/** The largest map output kept in memory: a writer's whole buffer. */
const MAX_OUTPUT_IN_MEMORY_BYTES = 1 << 20;

/**
 * The map outputs a worker holds, by attempt id. A small output stays in memory, within a budget
 * for them all; the rest are files in the data directory. Memory loses nothing here: a worker
 * drops every output when it starts or registers again anyway. Outputs go once their job ends.
 */
export class MapOutputs {
  private readonly outputs = new Map<string, HeldOutput>();
  private bytesInMemory = 0;
  /** What each running map may keep in memory, from its placement until it is added or discarded. */
  private readonly reserved = new Map<string, number>();
  private bytesReserved = 0;

  constructor(
    private readonly dataDir: string,
    private readonly memoryBudgetBytes: number,
  ) {}

  /**
   * Where a map attempt writes its output, and how much of it may stay in memory. That much is
   * set aside until the output is added or discarded, so that maps running at once in several
   * slots stay within the budget together.
   */
  placeFor(attemptId: string): { path: string; memoryBytes: number } {
    this.release(attemptId);
    const left = Math.max(0, this.memoryBudgetBytes - this.bytesInMemory - this.bytesReserved);
    const memoryBytes = Math.min(MAX_OUTPUT_IN_MEMORY_BYTES, left);
    this.reserved.set(attemptId, memoryBytes);
    this.bytesReserved += memoryBytes;
    return { path: mapOutputPath(this.dataDir, attemptId), memoryBytes };
  }

  add(attemptId: string, owner: OutputOwner, output: MapOutput): void {
    this.release(attemptId);
    this.outputs.set(attemptId, { ...output, ...owner });
    this.bytesInMemory += output.data?.length ?? 0;
  }

  /** The jobs this worker holds output of. */
  jobIds(): number[] {
    return [...new Set([...this.outputs.values()].map(({ jobId }) => jobId))];
  }

  /** Drops the output of every attempt of these jobs; returns those attempts. */
  discardJobs(jobIds: readonly number[]): string[] {
    const ended = new Set(jobIds);
    const attemptIds = [...this.outputs].filter(([, { jobId }]) => ended.has(jobId)).map(([id]) => id);
    for (const attemptId of attemptIds) this.discard(attemptId);
    return attemptIds;
  }

  get(attemptId: string): HeldOutput | undefined {
    return this.outputs.get(attemptId);
  }

  /** Drops an attempt's output, from memory or from disk. */
  discard(attemptId: string): void {
    this.release(attemptId);
    const output = this.outputs.get(attemptId);
    this.outputs.delete(attemptId);
    this.bytesInMemory -= output?.data?.length ?? 0;
    if (output?.data === undefined) rmSync(mapOutputPath(this.dataDir, attemptId), { force: true });
  }

  /** Drops every output, and every attempt's file in the data directory. */
  discardAll(): void {
    this.outputs.clear();
    this.bytesInMemory = 0;
    this.reserved.clear();
    this.bytesReserved = 0;
    clearAttemptFiles(this.dataDir);
  }

  private release(attemptId: string): void {
    this.bytesReserved -= this.reserved.get(attemptId) ?? 0;
    this.reserved.delete(attemptId);
  }
}
