import type { Logger } from "pino";
import type { Db } from "../store/db.js";
import { listSilentWorkers } from "../store/workers.js";
import { markWorkerLost, type LostBudget } from "./faults.js";
import type { JobEffects } from "./jobEffects.js";

export interface LivenessOptions extends LostBudget {
  /** A worker silent for this long is LOST, in ms. */
  workerTimeoutMs: number;
}

/**
 * Declares LOST every worker that has not heartbeated for `workerTimeoutMs`, and puts its
 * running tasks straight back in the queue. Checks several times a second.
 */
export class LivenessMonitor {
  private timer: NodeJS.Timeout | undefined;
  private checking = false;

  constructor(
    private readonly db: Db,
    private readonly effects: JobEffects,
    private readonly options: LivenessOptions,
    private readonly log: Logger,
  ) {}

  start(): void {
    // Often enough that detection lags the timeout by a fraction of a heartbeat; the query is cheap.
    const everyMs = Math.max(50, Math.min(250, Math.floor(this.options.workerTimeoutMs / 10)));
    this.timer = setInterval(() => void this.check(), everyMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async check(now = Date.now()): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      for (const worker of listSilentWorkers(this.db, now - this.options.workerTimeoutMs)) {
        const silentMs = now - worker.lastHeartbeatAt;
        const loss = markWorkerLost(this.db, worker.id, this.options, `no heartbeat for ${silentMs} ms`, now);
        if (!loss) continue;
        this.log.warn({ workerId: worker.id, address: worker.address, silentMs }, "worker lost");
        for (const { jobId, task, attemptId } of loss.reassigned) {
          this.log.warn(
            { jobId, taskId: task.id, kind: task.kind, index: task.index, attemptId, workerId: worker.id },
            "reassigning task: its worker was lost",
          );
        }
        for (const map of loss.enqueue) {
          this.log.warn(
            {
              jobId: map.jobId,
              taskId: map.id,
              index: map.index,
              generation: map.generation,
              workerId: worker.id,
            },
            "re-running map: its output was on the lost worker",
          );
        }
        await this.effects.applyLoss(loss);
      }
    } catch (err) {
      this.log.error({ err }, "liveness check failed");
    } finally {
      this.checking = false;
    }
  }
}
