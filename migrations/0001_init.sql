-- 0001_init: the whole schema of the first release.
-- Expects: an empty database. Creates jobs, tasks, attempts, workers, events and counters.
-- States are the words of src/types.ts; timestamps are ms since the epoch.

CREATE TABLE jobs (
  id               INTEGER PRIMARY KEY,
  app              TEXT    NOT NULL,
  state            TEXT    NOT NULL CHECK (state IN ('RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
  inputs           TEXT    NOT NULL, -- JSON array of absolute paths
  output_dir       TEXT    NOT NULL,
  reducers         INTEGER NOT NULL CHECK (reducers >= 1),
  split_size_bytes INTEGER NOT NULL CHECK (split_size_bytes >= 1),
  params           TEXT    NOT NULL DEFAULT '{}', -- JSON object of strings
  maps_total       INTEGER NOT NULL,
  maps_done        INTEGER NOT NULL DEFAULT 0,
  reduces_done     INTEGER NOT NULL DEFAULT 0,
  error            TEXT,
  submitted_at     INTEGER NOT NULL,
  finished_at      INTEGER
);
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX jobs_by_output_dir ON jobs (output_dir);

CREATE TABLE workers (
  id                INTEGER PRIMARY KEY,
  address           TEXT    NOT NULL,
  state             TEXT    NOT NULL CHECK (state IN ('ALIVE', 'LOST', 'STOPPED')),
  apps              TEXT    NOT NULL DEFAULT '[]', -- JSON array of app names
  registered_at     INTEGER NOT NULL,
  last_heartbeat_at INTEGER NOT NULL
);

CREATE TABLE tasks (
  id              INTEGER PRIMARY KEY,
  job_id          INTEGER NOT NULL REFERENCES jobs (id),
  kind            TEXT    NOT NULL CHECK (kind IN ('MAP', 'REDUCE')),
  idx             INTEGER NOT NULL,
  state           TEXT    NOT NULL
                  CHECK (state IN ('WAITING', 'PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
  generation      INTEGER NOT NULL DEFAULT 0,
  -- the map's split; NULL for a reduce
  file            TEXT,
  start_byte      INTEGER,
  end_byte        INTEGER,
  -- the attempt that holds the lease (RUNNING) or was committed (SUCCEEDED)
  attempt_id      TEXT,
  failed_attempts INTEGER NOT NULL DEFAULT 0,
  lost_attempts   INTEGER NOT NULL DEFAULT 0,
  UNIQUE (job_id, kind, idx)
);
CREATE INDEX tasks_by_state ON tasks (state);

CREATE TABLE attempts (
  id          TEXT    PRIMARY KEY, -- also the BullMQ lock token
  task_id     INTEGER NOT NULL REFERENCES tasks (id),
  generation  INTEGER NOT NULL,
  worker_id   INTEGER NOT NULL REFERENCES workers (id),
  state       TEXT    NOT NULL
              CHECK (state IN ('RUNNING', 'SUCCEEDED', 'FAILED', 'LOST', 'SUPERSEDED', 'KILLED')),
  started_at  INTEGER NOT NULL,
  finished_at INTEGER,
  progress    REAL    NOT NULL DEFAULT 0,
  error       TEXT
);
CREATE INDEX attempts_by_task ON attempts (task_id, started_at);
CREATE INDEX attempts_by_worker ON attempts (worker_id, state);

-- The history feed of a job, as `mr jobs show` prints it.
CREATE TABLE events (
  id      INTEGER PRIMARY KEY,
  job_id  INTEGER NOT NULL REFERENCES jobs (id),
  at      INTEGER NOT NULL,
  type    TEXT    NOT NULL,
  message TEXT    NOT NULL
);
CREATE INDEX events_by_job ON events (job_id, id);

-- Counters of committed attempts only, so a retried attempt never counts twice.
CREATE TABLE counters (
  attempt_id TEXT    NOT NULL REFERENCES attempts (id),
  job_id     INTEGER NOT NULL REFERENCES jobs (id),
  name       TEXT    NOT NULL,
  value      INTEGER NOT NULL,
  PRIMARY KEY (attempt_id, name)
);
CREATE INDEX counters_by_job ON counters (job_id);
