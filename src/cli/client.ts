import { makeGenericClientConstructor, type Client } from "@grpc/grpc-js";
import type { Command } from "commander";
import { service as healthService } from "grpc-health-check";
import { readTokenFile, withToken } from "../auth.js";
import { driverAddress } from "../config.js";
import type * as pb from "../gen/mapreduce.js";
import { JobServiceClient } from "../gen/mapreduce.js";
import { CHANNEL_OPTIONS, callUnary, type UnaryMethod } from "../grpc.js";
import { channelCredentials, readTls, tlsFiles, type Tls } from "../tls.js";

const CALL_TIMEOUT_MS = 15_000;

/** A client of grpc.health.v1.Health, as grpc-health-check defines the service. */
const HealthClient = makeGenericClientConstructor(healthService, "grpc.health.v1.Health");
/** The serving statuses of grpc.health.v1, by number, for a reply that carries one. */
const SERVING_STATUS = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/** The fields of a submit that DriverClient.submitJob fills in when they are left out. */
type SubmitDefaults = "overwrite" | "priority" | "maxRunningTasks" | "noSpeculation";

/** A JobService client whose unary methods return promises. */
export class DriverClient {
  readonly raw: JobServiceClient;
  private readonly health: Client;

  /** `token`: the client secret, sent with every call; `tls`: TLS to the driver. */
  constructor(
    readonly address: string,
    token?: string,
    tls?: Tls,
  ) {
    this.raw = new JobServiceClient(address, channelCredentials(tls), withToken(CHANNEL_OPTIONS, token));
    // On the same channel as the JobService client.
    this.health = new HealthClient(address, channelCredentials(tls), {
      channelOverride: this.raw.getChannel(),
    });
  }

  /** The driver's health, as grpc.health.v1 says it: SERVING, or NOT_SERVING while it cannot work. */
  async checkHealth(): Promise<string> {
    const check = (
      this.health as unknown as { check: UnaryMethod<{ service: string }, { status: string | number }> }
    ).check;
    const reply = await callUnary(check.bind(this.health), { service: "" }, CALL_TIMEOUT_MS);
    return typeof reply.status === "number"
      ? (SERVING_STATUS[reply.status] ?? String(reply.status))
      : reply.status;
  }

  /**
   * Submits a job; `overwrite` is off, `priority` 0, `maxRunningTasks` 0 (no cap) and
   * speculation on, unless asked for.
   */
  submitJob(
    request: Omit<pb.SubmitJobRequest, SubmitDefaults> & Partial<Pick<pb.SubmitJobRequest, SubmitDefaults>>,
  ): Promise<pb.Job> {
    return callUnary(
      this.raw.submitJob.bind(this.raw),
      { overwrite: false, priority: 0, maxRunningTasks: 0, noSpeculation: false, ...request },
      CALL_TIMEOUT_MS,
    );
  }

  getJob(jobId: number): Promise<pb.JobDetail> {
    return callUnary(this.raw.getJob.bind(this.raw), { jobId }, CALL_TIMEOUT_MS);
  }

  listJobs(request: Partial<pb.ListJobsRequest> = {}): Promise<pb.ListJobsResponse> {
    return callUnary(
      this.raw.listJobs.bind(this.raw),
      { state: "", app: "", limit: 0, pageToken: "", ...request },
      CALL_TIMEOUT_MS,
    );
  }

  cancelJob(jobId: number): Promise<pb.Job> {
    return callUnary(this.raw.cancelJob.bind(this.raw), { jobId }, CALL_TIMEOUT_MS);
  }

  /** One page of workers: by default the first 100 that are ALIVE or left lately. */
  listWorkers(request: Partial<pb.ListWorkersRequest> = {}): Promise<pb.ListWorkersResponse> {
    return callUnary(
      this.raw.listWorkers.bind(this.raw),
      { all: false, limit: 0, pageToken: "", ...request },
      CALL_TIMEOUT_MS,
    );
  }

  close(): void {
    this.raw.close(); // and the channel the health client shares
  }
}

/** The flags of every command that calls the driver. */
export interface DriverFlags {
  driver?: string;
  tokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
}

/** Adds the flags of a command that calls the driver: where it is, the secret, and TLS. */
export function addDriverOptions(command: Command): Command {
  return command
    .option("--driver <host:port>", "the driver (default $MR_DRIVER or 127.0.0.1:50051)")
    .option("--token-file <file>", "a file holding the client secret (default $MR_TOKEN_FILE; none if unset)")
    .option(
      "--tls-ca <file>",
      "speak TLS, trusting the driver's certificate if this CA signed it (default $MR_TLS_CA)",
    )
    .option(
      "--tls-cert <file>",
      "this client's certificate, for a driver that asks for one (default $MR_TLS_CERT)",
    )
    .option("--tls-key <file>", "the key of --tls-cert (default $MR_TLS_KEY)");
}

/**
 * A client of the driver that `--driver` or MR_DRIVER names, with the secret of `--token-file`
 * or MR_TOKEN_FILE, over TLS if the flags or MR_TLS_* give it.
 */
export function connectDriver(flags: DriverFlags, env: NodeJS.ProcessEnv): DriverClient {
  const tokenFile = flags.tokenFile ?? env.MR_TOKEN_FILE;
  const flag = flags.tokenFile === undefined ? "MR_TOKEN_FILE" : "--token-file";
  const token = tokenFile === undefined ? undefined : readTokenFile(tokenFile, flag);
  const tls = readTls(tlsFiles({ cert: flags.tlsCert, key: flags.tlsKey, ca: flags.tlsCa }, env));
  return new DriverClient(driverAddress(flags.driver, env), token, tls);
}
