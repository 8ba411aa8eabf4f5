import { rmSync } from "node:fs";
import type { MapOutput } from "../mr/mapTask.js";
import { clearAttemptDirs, mapOutputPath } from "./dataDir.js";

/** The largest map output kept in memory: a writer's whole buffer. */
const MAX_OUTPUT_IN_MEMORY_BYTES = 1 << 20;

/**
 * The map outputs a worker holds, by attempt id. A small output stays in memory, within a budget
 * for them all; the rest are files in the data directory. Memory loses nothing here: a worker
 * drops every output when it starts or registers again anyway.
 */
export class MapOutputs {
  private readonly outputs = new Map<string, MapOutput>();
  private bytesInMemory = 0;

  constructor(
    private readonly dataDir: string,
    private readonly memoryBudgetBytes: number,
  ) {}

  /** Where a map attempt writes its output, and how much of it may stay in memory. */
  placeFor(attemptId: string): { path: string; memoryBytes: number } {
    const left = Math.max(0, this.memoryBudgetBytes - this.bytesInMemory);
    return {
      path: mapOutputPath(this.dataDir, attemptId),
      memoryBytes: Math.min(MAX_OUTPUT_IN_MEMORY_BYTES, left),
    };
  }

  add(attemptId: string, output: MapOutput): void {
    this.outputs.set(attemptId, output);
    this.bytesInMemory += output.data?.length ?? 0;
  }

  get(attemptId: string): MapOutput | undefined {
    return this.outputs.get(attemptId);
  }

  /** Drops an attempt's output, from memory or from disk. */
  discard(attemptId: string): void {
    const output = this.outputs.get(attemptId);
    this.outputs.delete(attemptId);
    this.bytesInMemory -= output?.data?.length ?? 0;
    if (output?.data === undefined) rmSync(mapOutputPath(this.dataDir, attemptId), { force: true });
  }

  /** Drops every output, and every attempt's file in the data directory. */
  discardAll(): void {
    this.outputs.clear();
    this.bytesInMemory = 0;
    clearAttemptDirs(this.dataDir);
  }
}
