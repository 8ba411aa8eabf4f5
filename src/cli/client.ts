import type * as pb from "../gen/mapreduce.js";
import { JobServiceClient } from "../gen/mapreduce.js";
import { CHANNEL_OPTIONS, callUnary, credentials } from "../grpc.js";

const CALL_TIMEOUT_MS = 15_000;

/** A JobService client whose unary methods return promises. */
export class DriverClient {
  readonly raw: JobServiceClient;

  constructor(readonly address: string) {
    this.raw = new JobServiceClient(address, credentials.createInsecure(), CHANNEL_OPTIONS);
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
