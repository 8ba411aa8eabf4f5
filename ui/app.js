// The web UI of the mr driver: three pages over the JSON API (/api/v1/…), no framework, nothing
// fetched from elsewhere. A job's page follows the job through /api/v1/jobs/{id}/watch
// (Server-Sent Events, the machinery behind `mr jobs wait`).

const STATES = ["running", "succeeded", "failed", "cancelled"];
const ATTEMPT_STATES = ["RUNNING", "SUCCEEDED", "FAILED", "LOST", "SUPERSEDED", "KILLED"];
const SVG = "http://www.w3.org/2000/svg";
/** How often lists refresh, and the least time between two reloads of a job's detail, in ms. */
const REFRESH_MS = 2000;
const DETAIL_EVERY_MS = 1000;
/** Rows shown of a job's attempts that did not succeed, and of its events (the newest). */
const MAX_ROWS = 200;

/** An element with attributes and children; strings become text, never markup. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  return el;
}

async function getJson(path) {
  const res = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error ?? `${res.status} ${res.statusText}`);
  return body;
}

function badge(state) {
  return h("span", { class: `badge s-${state}`, "data-state": state }, state);
}

function formatMs(ms) {
  if (ms === null || ms === undefined) return "-";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(Math.floor(seconds % 60)).padStart(2, "0")}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m`;
}

function since(from, to) {
  if (!from) return "-";
  return formatMs(Math.max(0, (to ? Date.parse(to) : Date.now()) - Date.parse(from)));
}

function formatTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "-";
}

function table(head, rows, numeric = []) {
  return h(
    "table",
    {},
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        head.map((name, i) => h("th", { class: numeric.includes(i) ? "num" : "" }, name)),
      ),
    ),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h(
          "tr",
          {},
          row.map((cell, i) => h("td", { class: numeric.includes(i) ? "num" : "" }, cell)),
        ),
      ),
    ),
  );
}

function show(...children) {
  document.getElementById("main").replaceChildren(...children);
}

function showError(err) {
  show(h("div", { class: "error", role: "alert" }, err.message));
}

// ---------------------------------------------------------------- the jobs page

async function jobsPage() {
  const params = new URLSearchParams(location.search);
  const state = params.get("state") ?? "";
  const app = params.get("app") ?? "";
  const go = (changes) => {
    const next = new URLSearchParams(location.search);
    for (const [name, value] of Object.entries(changes)) {
      if (value) next.set(name, value);
      else next.delete(name);
    }
    location.search = next.toString();
  };
  const stateSelect = h(
    "select",
    { id: "state-filter", onchange: (e) => go({ state: e.target.value, page_token: "" }) },
    h("option", { value: "" }, "every state"),
    STATES.map((s) => h("option", { value: s, selected: s === state }, s)),
  );
  const appInput = h("input", {
    id: "app-filter",
    placeholder: "app",
    value: app,
    onchange: (e) => go({ app: e.target.value.trim(), page_token: "" }),
  });
  const body = h("div");
  show(h("h1", {}, "Jobs"), h("div", { class: "filters" }, stateSelect, appInput), body);
  const load = async () => {
    const query = new URLSearchParams({ limit: "25" });
    for (const name of ["state", "app", "page_token"])
      if (params.get(name)) query.set(name, params.get(name));
    const page = await getJson(`/api/v1/jobs?${query}`);
    const rows = page.jobs.map((job) => [
      h("a", { href: `/jobs/${job.id}` }, String(job.id)),
      job.app,
      badge(job.state),
      `${job.maps.done}/${job.maps.total}`,
      `${job.reduces.done}/${job.reduces.total}`,
      job.retries || "",
      formatTime(job.submittedAt),
      since(job.submittedAt, job.finishedAt),
    ]);
    body.replaceChildren(
      page.jobs.length === 0
        ? h("p", { class: "muted" }, "No jobs. Submit one with mr submit.")
        : table(
            ["ID", "App", "State", "Maps", "Reduces", "Retries", "Submitted", "Duration"],
            rows,
            [0, 3, 4, 5],
          ),
      h(
        "div",
        { class: "pager" },
        h("button", { disabled: !params.get("page_token"), onclick: () => go({ page_token: "" }) }, "Newest"),
        h(
          "button",
          { disabled: !page.nextPageToken, onclick: () => go({ page_token: page.nextPageToken }) },
          "Older",
        ),
      ),
    );
  };
  await load();
  setInterval(() => load().catch(() => {}), REFRESH_MS);
}

// ---------------------------------------------------------------- the workers page

async function workersPage() {
  const body = h("div");
  show(h("h1", {}, "Workers"), body);
  const load = async () => {
    const { workers } = await getJson("/api/v1/workers");
    const rows = workers.map((worker) => [
      String(worker.id),
      worker.address,
      badge(worker.state),
      `${since(worker.lastHeartbeatAt)} ago`,
      String(worker.slots),
      worker.runningAttempts.length === 0 ? "-" : worker.runningAttempts.join(", "),
      worker.apps.join(", "),
      worker.excludedUntil
        ? `all jobs until ${formatTime(worker.excludedUntil)}`
        : worker.excludedByJobs.length > 0
          ? `jobs ${worker.excludedByJobs.join(", ")}`
          : "",
    ]);
    body.replaceChildren(
      workers.length === 0
        ? h("p", { class: "muted" }, "No workers heard from in the last 10 minutes.")
        : table(
            ["ID", "Address", "State", "Last heartbeat", "Slots", "Running attempts", "Apps", "Excluded"],
            rows,
            [0, 4],
          ),
    );
  };
  await load();
  setInterval(() => load().catch(() => {}), REFRESH_MS);
}

// ---------------------------------------------------------------- a job's page

async function jobPage(id) {
  const header = h("div");
  const progress = h("div", { class: "card" });
  const facts = h("div");
  const timeline = h("div");
  const details = h("div");
  show(header, progress, facts, timeline, details);
  let job = null;
  let detail = null;

  const renderSnapshot = () => {
    header.replaceChildren(
      h(
        "div",
        {},
        h("h1", {}, `Job ${job.id}`, h("span", { class: "muted" }, job.app), badge(job.state)),
        job.error ? h("div", { class: "error", role: "alert" }, job.error) : null,
        job.waitingFor ? h("p", { class: "muted" }, `Waiting for ${job.waitingFor}.`) : null,
      ),
    );
    progress.replaceChildren(progressRow("maps", job.maps), progressRow("reduces", job.reduces));
  };

  const renderDetail = () => {
    const started = performance.now();
    facts.replaceChildren(
      h(
        "div",
        { class: "columns" },
        h("div", {}, h("h2", {}, "Job"), jobFacts(detail)),
        h(
          "div",
          {},
          h("h2", {}, "Task durations (committed attempts)"),
          quantilesTable(detail.taskDurationsMs),
        ),
      ),
    );
    timeline.replaceChildren(h("h2", {}, "Attempts by worker"), attemptsTimeline(detail));
    details.replaceChildren(
      h(
        "div",
        { class: "columns" },
        h("div", {}, h("h2", {}, "Counters"), countersTable(detail.counters)),
        h("div", {}, h("h2", {}, "Attempts that did not succeed"), unsuccessfulTable(detail)),
      ),
      h("h2", {}, "Events"),
      eventsTable(detail.events),
    );
    // For the browser test: how long this render took, and when it was done since the navigation.
    document.body.dataset.renderMs = String(Math.round(performance.now() - started));
    document.body.dataset.shownMs = String(Math.round(performance.now()));
  };

  // The detail (every task and attempt) is reloaded at most every DETAIL_EVERY_MS, and only when
  // a snapshot says something moved; the snapshot itself shows at once.
  let loadedAt = 0;
  let reload = null;
  const loadDetail = async () => {
    loadedAt = Date.now();
    detail = await getJson(`/api/v1/jobs/${id}`);
    job = detail;
    renderSnapshot();
    renderDetail();
  };
  const scheduleDetail = () => {
    if (reload) return;
    const wait = Math.max(0, loadedAt + DETAIL_EVERY_MS - Date.now());
    reload = setTimeout(() => {
      reload = null;
      loadDetail().catch(() => {});
    }, wait);
  };

  try {
    await loadDetail();
  } catch (err) {
    showError(err);
    return;
  }
  if (job.state !== "RUNNING") return;
  const events = new EventSource(`/api/v1/jobs/${id}/watch`);
  events.addEventListener("job", (event) => {
    const snapshot = JSON.parse(event.data);
    job = { ...job, ...snapshot };
    renderSnapshot();
    scheduleDetail();
  });
  events.addEventListener("end", () => {
    events.close();
    clearTimeout(reload);
    reload = null;
    loadDetail().catch(() => {});
  });
}

function progressRow(name, counts) {
  const share = counts.total === 0 ? 0 : counts.progress / counts.total;
  const fill = h("div");
  fill.style.width = `${(share * 100).toFixed(1)}%`; // through the CSSOM: the page allows no inline styles
  return h(
    "div",
    {
      class: "progress-row",
      id: `${name}-progress`,
      "data-progress": counts.progress,
      "data-done": counts.done,
    },
    h("span", {}, name),
    h("div", { class: "bar" }, fill),
    h("span", { class: "num" }, `${counts.done}/${counts.total}`),
  );
}

function jobFacts(job) {
  const rows = [
    ["output", job.output],
    ["inputs", job.inputs.length === 1 ? job.inputs[0] : `${job.inputs.length} files`],
    ["reduces", String(job.reducers)],
    ["submitted", formatTime(job.submittedAt)],
    ["ran", since(job.submittedAt, job.finishedAt)],
    ["retries", String(job.retries)],
    ["speculation", job.speculation ? "on" : "off"],
  ];
  if (Object.keys(job.params).length > 0) {
    rows.push([
      "params",
      Object.entries(job.params)
        .map(([k, v]) => `${k}=${v}`)
        .join(" "),
    ]);
  }
  return h(
    "dl",
    { class: "facts card" },
    rows.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]),
  );
}

function quantilesTable(durations) {
  const row = (phase, q) =>
    q
      ? [phase, String(q.tasks), ...[q.min, q.p25, q.median, q.p75, q.max].map(formatMs)]
      : [phase, "0", "-", "-", "-", "-", "-"];
  const el = table(
    ["Phase", "Tasks", "Min", "25th", "Median", "75th", "Max"],
    [row("map", durations.map), row("reduce", durations.reduce)],
    [1, 2, 3, 4, 5, 6],
  );
  el.id = "quantiles";
  return el;
}

function countersTable(counters) {
  const names = Object.keys(counters);
  if (names.length === 0)
    return h("p", { class: "muted" }, "None yet: counters are saved as attempts commit.");
  return table(
    ["Name", "Value"],
    names.map((name) => [name, BigInt(counters[name]).toLocaleString()]),
    [1],
  );
}

function unsuccessfulTable(job) {
  const rows = [];
  for (const task of job.tasks) {
    for (const attempt of task.attempts) {
      if (attempt.state === "SUCCEEDED" || attempt.state === "RUNNING") continue;
      rows.push([
        `${task.kind === "MAP" ? "map" : "reduce"} ${task.index}`,
        attempt.id,
        String(attempt.worker),
        badge(attempt.state),
        h("span", { class: "wrap" }, attempt.error ?? ""),
      ]);
    }
  }
  if (rows.length === 0) return h("p", { class: "muted" }, "None: every attempt so far succeeded or runs.");
  const shown = table(["Task", "Attempt", "Worker", "State", "Error"], rows.slice(0, MAX_ROWS));
  return rows.length > MAX_ROWS
    ? h("div", {}, shown, h("p", { class: "muted" }, `${rows.length} in all`))
    : shown;
}

function eventsTable(events) {
  const newest = events.slice(-MAX_ROWS).reverse();
  const el = table(
    ["At", "Type", "Message"],
    newest.map((event) => [formatTime(event.at), event.type, h("span", { class: "wrap" }, event.message)]),
  );
  return events.length > MAX_ROWS
    ? h(
        "div",
        {},
        el,
        h(
          "p",
          { class: "muted" },
          `The newest ${MAX_ROWS} of ${events.length}; mr jobs show --all lists each.`,
        ),
      )
    : el;
}

/**
 * Every attempt as a bar on its worker's lane, from its start to its end (or now), coloured by
 * its state. Attempts that overlap on one worker (its slots) take rows of the lane.
 */
function attemptsTimeline(job) {
  const start = Date.parse(job.submittedAt);
  const end = job.finishedAt ? Date.parse(job.finishedAt) : Date.now();
  const byWorker = new Map();
  for (const task of job.tasks) {
    for (const attempt of task.attempts) {
      const from = Date.parse(attempt.startedAt);
      const to = attempt.finishedAt ? Date.parse(attempt.finishedAt) : end;
      const list = byWorker.get(attempt.worker) ?? [];
      list.push({ task, attempt, from, to });
      byWorker.set(attempt.worker, list);
    }
  }
  const legend = h(
    "div",
    { class: "legend" },
    ATTEMPT_STATES.map((state) => h("span", {}, h("i", { class: `s-${state}` }), state)),
  );
  if (byWorker.size === 0) return h("div", {}, legend, h("p", { class: "muted" }, "No attempts yet."));

  const labelWidth = 90;
  const width = Math.max(600, (document.getElementById("main").clientWidth || 1000) - 4);
  const plotWidth = width - labelWidth - 10;
  const span = Math.max(1, end - start);
  const x = (t) => labelWidth + ((t - start) / span) * plotWidth;
  const rowHeight = 12;
  const axisHeight = 18;
  const chart = svg("svg", {
    id: "timeline",
    width,
    role: "img",
    "aria-label": "attempts by worker over time",
  });
  const lanes = svg("g");
  const bars = svg("g");
  let y = axisHeight;
  const workers = [...byWorker.keys()].sort((a, b) => a - b);
  workers.forEach((worker, laneIndex) => {
    // Interval partitioning: each attempt goes to the first row free at its start.
    const rowsEnd = [];
    const items = byWorker.get(worker).sort((a, b) => a.from - b.from);
    for (const item of items) {
      let row = rowsEnd.findIndex((rowEnd) => rowEnd <= item.from);
      if (row === -1) row = rowsEnd.push(0) - 1;
      rowsEnd[row] = item.to;
      item.row = row;
    }
    const laneHeight = Math.max(1, rowsEnd.length) * rowHeight + 6;
    lanes.append(
      svg("rect", { class: `lane${laneIndex % 2 ? " odd" : ""}`, x: 0, y, width, height: laneHeight }),
      Object.assign(svg("text", { class: "lane-label", x: 6, y: y + laneHeight / 2 + 4 }), {
        textContent: `worker ${worker}`,
      }),
    );
    for (const { task, attempt, from, to, row } of items) {
      const bar = svg("rect", {
        class: `attempt s-${attempt.state}`,
        "data-state": attempt.state,
        "data-worker": worker,
        x: x(from).toFixed(1),
        y: y + 3 + row * rowHeight,
        width: Math.max(1.5, x(to) - x(from)).toFixed(1),
        height: rowHeight - 2,
        rx: 1,
      });
      const title = svg("title");
      title.textContent = `${task.kind === "MAP" ? "map" : "reduce"} ${task.index} · ${attempt.id}${attempt.speculative ? " (backup)" : ""} · ${attempt.state} · ${formatMs(to - from)}`;
      bar.append(title);
      bars.append(bar);
    }
    y += laneHeight;
  });
  const axis = svg("g");
  for (let i = 0; i <= 5; i++) {
    const t = start + (span * i) / 5;
    axis.append(
      svg("line", { class: "tick-line", x1: x(t), x2: x(t), y1: axisHeight - 4, y2: y }),
      Object.assign(svg("text", { class: "tick", x: x(t) + 2, y: 12 }), { textContent: formatMs(t - start) }),
    );
  }
  chart.setAttribute("height", String(y + 2));
  chart.append(lanes, axis, bars);
  return h("div", {}, legend, h("div", { class: "timeline" }, chart));
}

// ---------------------------------------------------------------- every page

async function showHealth() {
  const el = document.getElementById("health");
  try {
    const res = await fetch("/healthz");
    const { status } = await res.json();
    el.replaceChildren("driver ", badge(status));
  } catch {
    el.replaceChildren("driver ", badge("UNREACHABLE"));
  }
}

function route() {
  const path = location.pathname.replace(/\/+$/, "") || "/";
  const job = /^\/jobs\/(\d+)$/.exec(path);
  const page = path === "/workers" ? "workers" : "jobs";
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === page && !job);
  }
  if (job) {
    document.title = `mr · job ${job[1]}`;
    return jobPage(job[1]);
  }
  document.title = `mr · ${page}`;
  return page === "workers" ? workersPage() : jobsPage();
}

void showHealth();
setInterval(showHealth, 5000);
route().catch(showError);
