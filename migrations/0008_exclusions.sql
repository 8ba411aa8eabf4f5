-- 0008_exclusions: workers a job no longer hands its tasks to.
-- Expects: schema 7. A row is written when a worker has failed enough of a job's attempts (see
-- src/driver/exclusions.ts); it counts while the job runs, and ends with it.
CREATE TABLE exclusions (
  job_id    INTEGER NOT NULL REFERENCES jobs (id),
  worker_id INTEGER NOT NULL REFERENCES workers (id),
  at        INTEGER NOT NULL,
  PRIMARY KEY (job_id, worker_id)
) WITHOUT ROWID;
CREATE INDEX exclusions_by_worker ON exclusions (worker_id);
