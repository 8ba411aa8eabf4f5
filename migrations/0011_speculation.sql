-- 0011_speculation: backup attempts (speculative execution), and the jobs that allow them.
-- Expects: schema 10. attempts.speculative is 1 for a backup attempt, started beside the attempt
-- that holds a task running well past its phase's typical time; attempts.progress_at is when
-- its progress was last reported (NULL: never), so that its rate can be told; jobs.speculation
-- is 0 for a job submitted with --no-speculation (its app must not run twice at once), 1 otherwise.
ALTER TABLE attempts ADD COLUMN speculative INTEGER NOT NULL DEFAULT 0 CHECK (speculative IN (0, 1));
ALTER TABLE attempts ADD COLUMN progress_at INTEGER;
ALTER TABLE jobs ADD COLUMN speculation INTEGER NOT NULL DEFAULT 1 CHECK (speculation IN (0, 1));
