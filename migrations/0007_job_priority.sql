-- 0007_job_priority: jobs that go first.
-- Expects: schema 6. A job's priority, from 0 (the default) to 10, orders its tasks in the queue
-- before their rank in the job does (see queuePriority in src/driver/queue.ts).
ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 10);
