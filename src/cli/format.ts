/** How jobs, tasks and workers look on the screen and in --json. */
import Table from "cli-table3";
import { DEFAULT_REDUCE_SLOWSTART } from "../config.js";
import type * as pb from "../gen/mapreduce.js";
import { taskDurations, type DurationQuantiles } from "../json.js";

export function formatTime(ms: number): string {
  if (ms === 0) return "-";
  return new Date(ms)
    .toISOString()
    .replace("T", " ")
    .replace(/\.\d+Z$/, "Z");
}

export function formatDuration(fromMs: number, toMs: number): string {
  if (fromMs === 0) return "-";
  return formatMs(Math.max(0, (toMs || Date.now()) - fromMs));
}

/** `42ms`, `1.4s`, `3m05s`, `2h10m`. */
export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const seconds = ms / 1000;
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

export function table(head: string[], rows: (string | number)[][]): string {
  const t = new Table({ head, style: { head: [], border: [], compact: true } });
  t.push(...rows.map((row) => row.map(String)));
  return t.toString();
}

/** Jobs, a row each; RETRIES is blank for a job whose every task ran once. */
export function jobsTable(jobs: pb.Job[]): string {
  return table(
    ["ID", "APP", "STATE", "RETRIES", "MAPS", "REDUCES", "OUTPUT", "SUBMITTED", "DURATION"],
    jobs.map((job) => [
      job.id,
      job.app,
      job.state,
      job.retries === 0 ? "" : job.retries,
      `${job.mapsDone}/${job.mapsTotal}`,
      `${job.reducesDone}/${job.reducesTotal}`,
      job.outputDir,
      formatTime(job.submittedAtMs),
      formatDuration(job.submittedAtMs, job.finishedAtMs),
    ]),
  );
}

/** Events as `mr jobs show` prints them: a run of one happening to many tasks on one line. */
export interface EventGroup {
  atMs: number;
  type: string;
  message: string;
  /** The tasks the run names, in order; empty for an event of the job as a whole. */
  tasks: string[];
}

const TASK_PREFIX = /^((?:map|reduce) \d+)(?=[: ])/;

/**
 * Groups each run of consecutive events of one type whose messages differ only in the task
 * they name, its attempt ids and its counts (a lost worker's 45 maps, say), into one line:
 * `45 maps (0, 1, 2, …, 44): <the message of the first>`.
 */
export function groupEvents(events: readonly pb.Event[]): EventGroup[] {
  const groups: (EventGroup & { key: string })[] = [];
  for (const event of events) {
    const task = TASK_PREFIX.exec(event.message)?.[1];
    const key = `${event.type}\0${event.message
      .replace(TASK_PREFIX, "")
      .replace(/\ba[0-9a-f]{16}\b/g, "…")
      .replace(/\d+ of (\d+)/g, "# of $1")
      .replace(/generation \d+/g, "generation #")}`;
    const last = groups.at(-1);
    if (task !== undefined && last !== undefined && last.key === key && last.tasks.length > 0) {
      last.tasks.push(task);
      continue;
    }
    groups.push({
      key,
      atMs: event.atMs,
      type: event.type,
      message: event.message,
      tasks: task ? [task] : [],
    });
  }
  return groups.map(({ key: _, ...group }) => group);
}

function formatEventGroup(group: EventGroup): string {
  let message = group.message;
  if (group.tasks.length > 1) {
    // `45 maps (0, 1, 2, …, 44)`, or `3 tasks (map 0, reduce 1, …)` for both kinds.
    const kinds = new Set(group.tasks.map((task) => task.split(" ")[0]));
    const names = kinds.size === 1 ? group.tasks.map((task) => task.split(" ")[1]!) : group.tasks;
    const shown = names.length <= 4 ? names : [...names.slice(0, 3), "…", names.at(-1)!];
    const what = kinds.size === 1 ? `${[...kinds][0]}s` : "tasks";
    message = `${group.tasks.length} ${what} (${shown.join(", ")})${message.replace(TASK_PREFIX, "")}`;
  }
  return `  ${formatTime(group.atMs)}  ${group.type.padEnd(18)} ${message}`;
}

/** A job's history for a person; `all` lists every event on its own line. */
/** When a job's reduces start, in words: `--reduce-slowstart` as a person reads it. */
function slowstartText(share: number): string {
  return share >= 1
    ? "reduces start once every map has committed (--reduce-slowstart 1)"
    : `reduces start once ${+(share * 100).toFixed(1)}% of the maps have committed (--reduce-slowstart ${share})`;
}

export function jobDetailText(detail: pb.JobDetail, all = false): string {
  const job = detail.job!;
  const lines = [
    `job ${job.id}: ${job.app}, ${job.state}`,
    `  output    ${job.outputDir}${job.state !== "RUNNING" && !job.outputFinished ? " (not committed yet: the driver is at it)" : ""}`,
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
  if (job.retries > 0) lines.push(`  retries   ${job.retries} (tasks that ran again: see Events)`);
  if (job.priority > 0) lines.push(`  priority  ${job.priority}`);
  if (job.maxRunningTasks > 0) lines.push(`  at most   ${job.maxRunningTasks} tasks at once`);
  if (!job.speculation) lines.push(`  no backup attempts of stragglers (--no-speculation)`);
  if (job.reduceSlowstart !== DEFAULT_REDUCE_SLOWSTART)
    lines.push(`  shuffle   ${slowstartText(job.reduceSlowstart)}`);
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
  const durations = taskDurations(detail);
  if (durations.map || durations.reduce) {
    const row = (kind: string, q: DurationQuantiles | null) =>
      q
        ? [kind, q.tasks, ...[q.min, q.p25, q.median, q.p75, q.max].map(formatMs)]
        : [kind, 0, "-", "-", "-", "-", "-"];
    lines.push(
      "",
      "Task durations (committed attempts)",
      table(
        ["PHASE", "TASKS", "MIN", "P25", "MEDIAN", "P75", "MAX"],
        [row("map", durations.map), row("reduce", durations.reduce)],
      ),
    );
  }
  const rows = detail.tasks.flatMap((task) => {
    const name = `${task.kind === "MAP" ? "m" : "r"}${task.index}${task.generation > 0 ? ` (g${task.generation})` : ""}`;
    if (task.attempts.length === 0) return [[name, task.state, "-", "-", "-", "-", "-", ""]];
    return task.attempts.map((attempt, i) => [
      i === 0 ? name : "",
      i === 0 ? task.state : "",
      attempt.speculative ? `${attempt.id} (backup)` : attempt.id,
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
  const groups = all ? detail.events.map((event) => ({ ...event, tasks: [] })) : groupEvents(detail.events);
  for (const group of groups) lines.push(formatEventGroup(group));
  if (groups.length < detail.events.length) {
    lines.push(`  (${detail.events.length} events in all; mr jobs show ${detail.job!.id} --all lists each)`);
  }
  return lines.join("\n");
}

export function workersTable(workers: pb.Worker[]): string {
  return table(
    ["ID", "ADDRESS", "STATE", "LAST HEARTBEAT", "SLOTS", "RUNNING", "APPS", "EXCLUDED"],
    workers.map((worker) => [
      worker.id,
      worker.address,
      worker.state,
      formatTime(worker.lastHeartbeatMs),
      worker.slots,
      worker.runningAttempts.join(", ") || "-",
      worker.apps.join(", "),
      formatExclusion(worker),
    ]),
  );
}

/** `all jobs until 2026-12-02 17:20:00Z`, or `jobs 3, 4`, or nothing. */
function formatExclusion(worker: pb.Worker): string {
  if (worker.excludedUntilMs > 0) return `all jobs until ${formatTime(worker.excludedUntilMs)}`;
  return worker.excludedByJobs.length > 0 ? `jobs ${worker.excludedByJobs.join(", ")}` : "";
}
