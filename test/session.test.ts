/** The worker's session (src/worker/session.ts) against a fake driver: registration, loss, drain. */
import { status } from "@grpc/grpc-js";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import type * as pb from "../src/gen/mapreduce.js";
import type { DriverCalls } from "../src/worker/driverCalls.js";
import { WorkerSession, type SessionHooks } from "../src/worker/session.js";

/** An error as a gRPC call rejects with it. */
function grpcError(code: status, details: string): Error & { code: status } {
  return Object.assign(new Error(details), { code });
}

/** A driver that answers from memory; a worker id it has declared lost is refused. */
class FakeDriver implements DriverCalls {
  private nextId = 1;
  unreachable = false;
  readonly lost = new Set<number>();
  readonly registrations: pb.RegisterWorkerRequest[] = [];
  readonly heartbeats: pb.HeartbeatRequest[] = [];
  readonly deregistrations: pb.DeregisterWorkerRequest[] = [];
  abortNext: string[] = [];

  async registerWorker(request: pb.RegisterWorkerRequest): Promise<pb.RegisterWorkerResponse> {
    await Promise.resolve();
    if (this.unreachable) throw grpcError(status.UNAVAILABLE, "connection refused");
    this.registrations.push(request);
    return { workerId: this.nextId++, heartbeatMs: 10, inputRoots: [], outputRoots: [] };
  }

  async pollTask(): Promise<pb.PollTaskResponse> {
    return { tasks: [] };
  }

  async heartbeat(request: pb.HeartbeatRequest): Promise<pb.HeartbeatResponse> {
    await Promise.resolve();
    this.heartbeats.push(request);
    if (this.lost.has(request.workerId)) throw grpcError(status.FAILED_PRECONDITION, "register again");
    const abortAttemptIds = this.abortNext;
    this.abortNext = [];
    return { abortAttemptIds, endedJobIds: request.outputJobIds.filter((jobId) => jobId === 99) };
  }

  async completeTask(): Promise<pb.CompleteTaskResponse> {
    return { tasks: [], refused: [] };
  }

  async failTask(): Promise<pb.FailTaskResponse> {
    return {};
  }

  async deregisterWorker(request: pb.DeregisterWorkerRequest): Promise<pb.DeregisterWorkerResponse> {
    this.deregistrations.push(request);
    return {};
  }

  async awaitMapOutputs(): Promise<pb.AwaitMapOutputsResponse> {
    return { mapOutputs: [] };
  }

  close(): void {}
}

/** Hooks that record what the session told the slots. */
function recordingHooks(): SessionHooks & { told: string[] } {
  const told: string[] = [];
  return {
    told,
    attempts: () => [{ attemptId: "a1", progress: 0.5 }],
    outputJobIds: () => [7, 99],
    abort: (attemptIds) => told.push(`abort ${attemptIds.join(",")}`),
    jobsEnded: (jobIds) => told.push(`ended ${jobIds.join(",")}`),
    lost: () => told.push("lost"),
  };
}

const log = pino({ level: "silent" });
const member = { address: "127.0.0.1:9001", apps: ["wordcount"], slots: 1, driver: "127.0.0.1:50051" };
let session: WorkerSession | undefined;
afterEach(async () => {
  session?.giveUp();
  await session?.deregister("test over");
  session = undefined;
});

describe("the worker session", () => {
  it("registers, waiting out a driver that is not up yet, then heartbeats with what the slots run", async () => {
    const driver = new FakeDriver();
    driver.unreachable = true;
    const hooks = recordingHooks();
    session = new WorkerSession(driver, member, hooks, log);
    expect(session.state).toBe("STARTING");
    const started = session.start();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(driver.registrations).toEqual([]);
    driver.unreachable = false;
    await started;
    expect(session.state).toBe("REGISTERED");
    expect(session.workerId).toBe(1);
    expect(driver.registrations).toEqual([{ address: member.address, apps: member.apps, slots: 1 }]);
    driver.abortNext = ["a1"];
    await expect.poll(() => hooks.told.includes("abort a1")).toBe(true);
    expect(hooks.told[0]).toBe("ended 99"); // of the jobs it holds output of, those that ended
    expect(driver.heartbeats[0]).toEqual({
      workerId: 1,
      attempts: [{ attemptId: "a1", progress: 0.5 }],
      outputJobIds: [7, 99],
    });
  });

  it("when declared lost, drops everything once and registers again, however many calls find out", async () => {
    const driver = new FakeDriver();
    const hooks = recordingHooks();
    session = new WorkerSession(driver, member, hooks, log);
    await session.start();
    driver.lost.add(1);
    const refused = grpcError(status.FAILED_PRECONDITION, "worker 1 is not registered with this driver");
    // Two slots find out at once, and the heartbeat too.
    await Promise.all([session.recover(refused, 1, "poll"), session.recover(refused, 1, "poll")]);
    await expect.poll(() => session!.workerId).toBe(2);
    expect(session.state).toBe("REGISTERED");
    expect(driver.registrations).toHaveLength(2);
    expect(hooks.told.filter((what) => what === "lost")).toEqual(["lost"]);
    // A slot that still held the old id learns nothing new.
    await session.recover(refused, 1, "poll");
    expect(driver.registrations).toHaveLength(2);
  });

  it("drains, then deregisters once under its id, and is STOPPED", async () => {
    const driver = new FakeDriver();
    session = new WorkerSession(driver, member, recordingHooks(), log);
    await session.start();
    session.drain();
    expect(session.state).toBe("DRAINING");
    expect(session.draining).toBe(true);
    await session.deregister("SIGTERM");
    expect(session.state).toBe("STOPPED");
    expect(driver.deregistrations).toEqual([{ workerId: 1, reason: "SIGTERM" }]);
    const beats = driver.heartbeats.length;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(driver.heartbeats).toHaveLength(beats); // no heartbeat after it stopped
  });

  it("stops retrying a call once it gives up on the driver", async () => {
    const driver = new FakeDriver();
    session = new WorkerSession(driver, member, recordingHooks(), log);
    await session.start();
    let tries = 0;
    const retried = session.retry("CompleteTask", async () => {
      tries++;
      throw grpcError(status.UNAVAILABLE, "connection refused");
    });
    await expect.poll(() => tries).toBeGreaterThan(1);
    session.giveUp();
    await expect(retried).rejects.toMatchObject({ code: status.UNAVAILABLE });
  });
});
