/**
 * The calls a worker makes to the driver's TaskService, as one interface: the session and the
 * task slots speak to the driver only through it, so tests can hand them a fake driver.
 */
import { withToken } from "../auth.js";
import type * as pb from "../gen/mapreduce.js";
import { TaskServiceClient } from "../gen/mapreduce.js";
import { CHANNEL_OPTIONS, callUnary, type UnaryMethod } from "../grpc.js";
import { channelCredentials, type Tls } from "../tls.js";

export interface DriverCalls {
  registerWorker(request: pb.RegisterWorkerRequest): Promise<pb.RegisterWorkerResponse>;
  /** A long poll; aborting `signal` cancels it. */
  pollTask(request: pb.PollTaskRequest, signal: AbortSignal): Promise<pb.PollTaskResponse>;
  heartbeat(request: pb.HeartbeatRequest): Promise<pb.HeartbeatResponse>;
  completeTask(request: pb.CompleteTaskRequest): Promise<pb.CompleteTaskResponse>;
  failTask(request: pb.FailTaskRequest): Promise<pb.FailTaskResponse>;
  deregisterWorker(request: pb.DeregisterWorkerRequest): Promise<pb.DeregisterWorkerResponse>;
  /** A reduce's long poll for the map outputs it lacks; aborting `signal` cancels it. */
  awaitMapOutputs(
    request: pb.AwaitMapOutputsRequest,
    signal: AbortSignal,
  ): Promise<pb.AwaitMapOutputsResponse>;
  close(): void;
}

/** One call to the driver, in ms. */
export const CALL_TIMEOUT_MS = 10_000;
/** Longer than the driver's long poll, so the driver answers first. */
const POLL_TIMEOUT_MS = 30_000;

/** DriverCalls over gRPC to the driver at `address`, with the worker secret and TLS if given. */
export function grpcDriverCalls(
  address: string,
  token: string | undefined,
  tls: Tls | undefined,
): DriverCalls {
  const client = new TaskServiceClient(address, channelCredentials(tls), withToken(CHANNEL_OPTIONS, token));
  /** A long poll, cancelled when `signal` aborts. */
  const longPoll = async <Req, Res>(
    method: UnaryMethod<Req, Res>,
    request: Req,
    signal: AbortSignal,
  ): Promise<Res> => {
    let cancel: (() => void) | undefined;
    try {
      return await callUnary(method, request, POLL_TIMEOUT_MS, (call) => {
        cancel = () => call.cancel();
        signal.addEventListener("abort", cancel, { once: true });
        if (signal.aborted) call.cancel();
      });
    } finally {
      if (cancel) signal.removeEventListener("abort", cancel);
    }
  };
  return {
    registerWorker: (request) => callUnary(client.registerWorker.bind(client), request, CALL_TIMEOUT_MS),
    pollTask: (request, signal) => longPoll(client.pollTask.bind(client), request, signal),
    heartbeat: (request) => callUnary(client.heartbeat.bind(client), request, CALL_TIMEOUT_MS),
    completeTask: (request) => callUnary(client.completeTask.bind(client), request, CALL_TIMEOUT_MS),
    failTask: (request) => callUnary(client.failTask.bind(client), request, CALL_TIMEOUT_MS),
    deregisterWorker: (request) => callUnary(client.deregisterWorker.bind(client), request, CALL_TIMEOUT_MS),
    awaitMapOutputs: (request, signal) => longPoll(client.awaitMapOutputs.bind(client), request, signal),
    close: () => client.close(),
  };
}
