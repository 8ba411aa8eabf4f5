import { readTokenFile, withToken } from "../auth.js";
import { driverAddress } from "../config.js";
import type * as pb from "../gen/mapreduce.js";
import { JobServiceClient } from "../gen/mapreduce.js";
import { CHANNEL_OPTIONS, callUnary, credentials } from "../grpc.js";

const CALL_TIMEOUT_MS = 15_000;

/** A JobService client whose unary methods return promises. */
export class DriverClient {
  readonly raw: JobServiceClient;

  /** `token`: the client secret, sent with every call. */
  constructor(
    readonly address: string,
    token?: string,
  ) {
    this.raw = new JobServiceClient(address, credentials.createInsecure(), withToken(CHANNEL_OPTIONS, token));
  }

  submitJob(request: pb.SubmitJobRequest): Promise<pb.Job> {
    return callUnary(this.raw.submitJob.bind(this.raw), request, CALL_TIMEOUT_MS);
  }

  getJob(jobId: number): Promise<pb.JobDetail> {
    return callUnary(this.raw.getJob.bind(this.raw), { jobId }, CALL_TIMEOUT_MS);
  }

  listJobs(request: pb.ListJobsRequest): Promise<pb.ListJobsResponse> {
    return callUnary(this.raw.listJobs.bind(this.raw), request, CALL_TIMEOUT_MS);
  }

  cancelJob(jobId: number): Promise<pb.Job> {
    return callUnary(this.raw.cancelJob.bind(this.raw), { jobId }, CALL_TIMEOUT_MS);
  }

  listWorkers(): Promise<pb.ListWorkersResponse> {
    return callUnary(this.raw.listWorkers.bind(this.raw), {}, CALL_TIMEOUT_MS);
  }

  close(): void {
    this.raw.close();
  }
}

/** The `--token-file` option of every command that calls the driver. */
export const TOKEN_FILE_OPTION = [
  "--token-file <file>",
  "a file holding the client secret (default $MR_TOKEN_FILE; none if unset)",
] as const;

/** A client of the driver that `--driver` or MR_DRIVER names, with the secret of `--token-file` or MR_TOKEN_FILE. */
export function connectDriver(
  flags: { driver?: string; tokenFile?: string },
  env: NodeJS.ProcessEnv,
): DriverClient {
  const tokenFile = flags.tokenFile ?? env.MR_TOKEN_FILE;
  const flag = flags.tokenFile === undefined ? "MR_TOKEN_FILE" : "--token-file";
  const token = tokenFile === undefined ? undefined : readTokenFile(tokenFile, flag);
  return new DriverClient(driverAddress(flags.driver, env), token);
}
