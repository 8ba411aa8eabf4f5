-- 0009_max_running_tasks: a cap on a job's share of the workers.
-- Expects: schema 8. 0, the default, is no cap; N lets at most N of the job's tasks run at once,
-- as Hadoop's mapreduce.job.running.map.limit does.
ALTER TABLE jobs ADD COLUMN max_running_tasks INTEGER NOT NULL DEFAULT 0 CHECK (max_running_tasks >= 0);
