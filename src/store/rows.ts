import type { AttemptState, FileRange, JobState, Split, TaskKind, TaskState, WorkerState } from "../types.js";

/** A job as the store returns it. */
export interface JobRecord {
  id: number;
  app: string;
  state: JobState;
  inputs: string[];
  outputDir: string;
  reducers: number;
  splitSizeBytes: number;
  /** The bytes counted for each file when small files were packed into splits. */
  openCostBytes: number;
  params: Record<string, string>;
  mapsTotal: number;
  mapsDone: number;
  reducesDone: number;
  error: string | null;
  submittedAt: number;
  finishedAt: number | null;
  /** The capability a fetch of the job's map output must show; never sent to clients. */
  shuffleKey: string;
  /** Times its tasks ran again: attempts failed or lost, and maps re-run for lost output. */
  retries: number;
  /** 0 to 10: a job of a higher priority has its tasks handed out first. */
  priority: number;
  /** At most this many of its tasks run at once; 0 for no cap. */
  maxRunningTasks: number;
  /** Whether a straggling task may get a backup attempt (off: submitted with --no-speculation). */
  speculation: boolean;
  /** The job has ended and its output was committed or cleaned up (see JobEffects.finishOutput). */
  outputFinished: boolean;
  /** The share of the maps that must have committed before the reduces are released. */
  reduceSlowstart: number;
}

export interface TaskRecord {
  id: number;
  jobId: number;
  /** The job's app, which names the task's queue lane. */
  app: string;
  /** The job's priority, which orders the task in its lane (see queuePriority). */
  jobPriority: number;
  kind: TaskKind;
  index: number;
  state: TaskState;
  generation: number;
  /** The split of a map as stored, JSON [file, start, end] ranges (see parseSplit); null for a reduce. */
  split: string | null;
  attemptId: string | null;
  failedAttempts: number;
  lostAttempts: number;
}

export interface AttemptRecord {
  id: string;
  taskId: number;
  generation: number;
  workerId: number;
  state: AttemptState;
  startedAt: number;
  finishedAt: number | null;
  progress: number;
  error: string | null;
  /** 1 for a backup attempt (speculative execution), started beside the task's holder; else 0. */
  speculative: 0 | 1;
}

export interface WorkerRecord {
  id: number;
  address: string;
  state: WorkerState;
  apps: string[];
  /** Tasks it runs at once. */
  slots: number;
  registeredAt: number;
  lastHeartbeatAt: number;
  /** Until this time (epoch ms) the worker gets no task of any job: several jobs excluded it. */
  excludedUntil: number;
}

export interface EventRecord {
  at: number;
  type: string;
  message: string;
}

export const JOB_COLUMNS = `id, app, state, inputs, output_dir AS outputDir, reducers,
  split_size_bytes AS splitSizeBytes, params, maps_total AS mapsTotal, maps_done AS mapsDone,
  reduces_done AS reducesDone, error, submitted_at AS submittedAt, finished_at AS finishedAt,
  shuffle_key AS shuffleKey, retries, priority, max_running_tasks AS maxRunningTasks, speculation,
  open_cost_bytes AS openCostBytes, output_finished AS outputFinished, reduce_slowstart AS reduceSlowstart`;

export const TASK_COLUMNS = `id, job_id AS jobId, (SELECT app FROM jobs WHERE jobs.id = tasks.job_id) AS app,
  (SELECT priority FROM jobs WHERE jobs.id = tasks.job_id) AS jobPriority, kind, idx AS "index", state, generation, split,
  attempt_id AS attemptId,
  failed_attempts AS failedAttempts, lost_attempts AS lostAttempts`;

export const ATTEMPT_COLUMNS = `id, task_id AS taskId, generation, worker_id AS workerId, state,
  started_at AS startedAt, finished_at AS finishedAt, progress, error, speculative`;

export const WORKER_COLUMNS = `id, address, state, apps, slots, registered_at AS registeredAt,
  last_heartbeat_at AS lastHeartbeatAt, excluded_until AS excludedUntil`;

/** A split as tasks.split stores it: [file, start, end] ranges, compact for thousands of files. */
export function splitJson(split: Split): string {
  return JSON.stringify(split.map(({ file, start, end }) => [file, start, end]));
}

export function parseSplit(json: string): FileRange[] {
  return (JSON.parse(json) as [string, number, number][]).map(([file, start, end]) => ({ file, start, end }));
}

type Json<T, K extends keyof T> = Omit<T, K> & { [P in K]: string };

export function toJob(
  row: Omit<Json<JobRecord, "inputs" | "params">, "speculation" | "outputFinished"> & {
    speculation: 0 | 1;
    outputFinished: 0 | 1;
  },
): JobRecord {
  return {
    ...row,
    speculation: row.speculation === 1,
    outputFinished: row.outputFinished === 1,
    inputs: JSON.parse(row.inputs) as string[],
    params: JSON.parse(row.params) as Record<string, string>,
  };
}

export function toWorker(row: Json<WorkerRecord, "apps">): WorkerRecord {
  return { ...row, apps: JSON.parse(row.apps) as string[] };
}
