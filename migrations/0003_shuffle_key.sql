-- 0003_shuffle_key: each job has a shuffle key, a random capability its tasks carry.
-- Expects: schema 2. A worker serves a job's map output only to a fetch that shows the job's key,
-- so a worker that was given no task of a job cannot read its map output. Jobs from before get
-- a key of their own here.
ALTER TABLE jobs ADD COLUMN shuffle_key TEXT NOT NULL DEFAULT '';
UPDATE jobs SET shuffle_key = lower(hex(randomblob(16)));
