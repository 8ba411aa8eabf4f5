-- 0006_job_retries: how many times a job's tasks ran again, for `mr jobs list` to mark.
-- Expects: schema 5. Counted as they happen from now on: each failed or lost attempt charged
-- to its task, and each map run again because its output was lost. Jobs from before count the
-- charged attempts their tasks recorded.
ALTER TABLE jobs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
UPDATE jobs SET retries =
  (SELECT coalesce(sum(failed_attempts + lost_attempts), 0) FROM tasks WHERE tasks.job_id = jobs.id);
