/** How jobs, tasks and workers look on the screen and in --json. */
import Table from "cli-table3";
import type * as pb from "../gen/mapreduce.js";

export function formatTime(ms: number): string {
  if (ms === 0) return "-";
  return new Date(ms)
    .toISOString()
    .replace("T", " ")
    .replace(/\.\d+Z$/, "Z");
}

export function formatDuration(fromMs: number, toMs: number): string {
  if (fromMs === 0) return "-";
  const seconds = Math.max(0, (toMs || Date.now()) - fromMs) / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(Math.floor(seconds % 60)).padStart(2, "0")}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m`;
}

/** `3/10`, and `3/10 (4.6)` while running attempts add to what is done. */
function formatCount(done: number, progress: number, total: number): string {
  const partial = progress - done >= 0.05 ? ` (${progress.toFixed(1)})` : "";
  return `${done}/${total}${partial}`;
}

/** An attempt's state, with how far it has got while it runs: `RUNNING 42%`. */
function formatAttemptState(attempt: pb.Attempt): string {
  return attempt.state === "RUNNING" ? `RUNNING ${Math.floor(attempt.progress * 100)}%` : attempt.state;
}

function isoOrNull(ms: number): string | null {
  return ms === 0 ? null : new Date(ms).toISOString();
}

export function table(head: string[], rows: (string | number)[][]): string {
  const t = new Table({ head, style: { head: [], border: [], compact: true } });
  t.push(...rows.map((row) => row.map(String)));
  return t.toString();
}

export function jobJson(job: pb.Job) {
  return {
    id: job.id,
    state: job.state,
    app: job.app,
    inputs: job.inputs,
    output: job.outputDir,
    reducers: job.reducers,
    splitSizeBytes: job.splitSizeBytes,
    params: job.params,
    maps: { done: job.mapsDone, progress: job.mapsProgress, total: job.mapsTotal },
    reduces: { done: job.reducesDone, progress: job.reducesProgress, total: job.reducesTotal },
    submittedAt: isoOrNull(job.submittedAtMs),
    finishedAt: isoOrNull(job.finishedAtMs),
    error: job.error || null,
    waitingFor: job.waitingFor || null,
  };
}

export function jobDetailJson(detail: pb.JobDetail) {
  return {
    ...jobJson(detail.job!),
    tasks: detail.tasks.map((task) => ({
      id: task.id,
      kind: task.kind,
      index: task.index,
      state: task.state,
      generation: task.generation,
      attempts: task.attempts.map((attempt) => ({
        id: attempt.id,
        worker: attempt.workerId,
        state: attempt.state,
        startedAt: isoOrNull(attempt.startedAtMs),
        finishedAt: isoOrNull(attempt.finishedAtMs),
        progress: attempt.progress,
        error: attempt.error || null,
      })),
    })),
    // As protobuf's JSON mapping writes 64-bit integers: decimal strings.
    counters: Object.fromEntries(detail.counters.map(({ name, value }) => [name, value])),
    events: detail.events.map((event) => ({
      at: new Date(event.atMs).toISOString(),
      type: event.type,
      message: event.message,
    })),
  };
}

export function jobsTable(jobs: pb.Job[]): string {
  return table(
    ["ID", "APP", "STATE", "MAPS", "REDUCES", "SUBMITTED", "DURATION"],
    jobs.map((job) => [
      job.id,
      job.app,
      job.state,
      `${job.mapsDone}/${job.mapsTotal}`,
      `${job.reducesDone}/${job.reducesTotal}`,
      formatTime(job.submittedAtMs),
      formatDuration(job.submittedAtMs, job.finishedAtMs),
    ]),
  );
}

export function jobDetailText(detail: pb.JobDetail): string {
  const job = detail.job!;
  const lines = [
    `job ${job.id}: ${job.app}, ${job.state}`,
    `  output    ${job.outputDir}`,
    `  inputs    ${job.inputs.length === 1 ? job.inputs[0] : `${job.inputs.length} files`}`,
    `  maps      ${formatCount(job.mapsDone, job.mapsProgress, job.mapsTotal)}`,
    `  reduces   ${formatCount(job.reducesDone, job.reducesProgress, job.reducesTotal)}`,
    `  submitted ${formatTime(job.submittedAtMs)}, ran ${formatDuration(job.submittedAtMs, job.finishedAtMs)}`,
  ];
  if (Object.keys(job.params).length > 0) {
    lines.push(
      `  params    ${Object.entries(job.params)
        .map(([k, v]) => `${k}=${v}`)
        .join(" ")}`,
    );
  }
  if (job.error) lines.push(`  error     ${job.error}`);
  if (job.waitingFor) lines.push(`  waiting   for ${job.waitingFor}`);
  if (detail.counters.length > 0) {
    lines.push(
      "",
      "Counters",
      table(
        ["NAME", "VALUE"],
        detail.counters.map(({ name, value }) => [name, value]),
      ),
    );
  }
  const rows = detail.tasks.flatMap((task) => {
    const name = `${task.kind === "MAP" ? "m" : "r"}${task.index}${task.generation > 0 ? ` (g${task.generation})` : ""}`;
    if (task.attempts.length === 0) return [[name, task.state, "-", "-", "-", "-", "-", ""]];
    return task.attempts.map((attempt, i) => [
      i === 0 ? name : "",
      i === 0 ? task.state : "",
      attempt.id,
      attempt.workerId,
      formatAttemptState(attempt),
      formatTime(attempt.startedAtMs),
      formatDuration(attempt.startedAtMs, attempt.finishedAtMs),
      attempt.error,
    ]);
  });
  lines.push(
    "",
    "Tasks",
    table(["TASK", "STATE", "ATTEMPT", "WORKER", "ATTEMPT STATE", "STARTED", "TOOK", "ERROR"], rows),
  );
  lines.push("", "Events");
  for (const event of detail.events)
    lines.push(`  ${formatTime(event.atMs)}  ${event.type.padEnd(18)} ${event.message}`);
  return lines.join("\n");
}

export function workersTable(workers: pb.Worker[]): string {
  return table(
    ["ID", "ADDRESS", "STATE", "LAST HEARTBEAT", "RUNNING", "APPS"],
    workers.map((worker) => [
      worker.id,
      worker.address,
      worker.state,
      formatTime(worker.lastHeartbeatMs),
      worker.runningAttempts.join(", ") || "-",
      worker.apps.join(", "),
    ]),
  );
}

export function workerJson(worker: pb.Worker) {
  return {
    id: worker.id,
    address: worker.address,
    state: worker.state,
    registeredAt: isoOrNull(worker.registeredAtMs),
    lastHeartbeatAt: isoOrNull(worker.lastHeartbeatMs),
    runningAttempts: worker.runningAttempts,
    apps: worker.apps,
  };
}
