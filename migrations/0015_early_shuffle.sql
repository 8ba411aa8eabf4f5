-- 0015_early_shuffle: reduces start before the last map commits, and say what they hold.
-- Expects: schema 14. jobs.reduce_slowstart is the share of the maps that must have committed
-- before the job's reduces are released (1 for the jobs before: all of them, as they ran).
-- attempts.held_maps is, for a running reduce attempt, the bitmap of the map outputs it has
-- fetched (bit m of byte m / 8), as of its last AwaitMapOutputs; NULL for one that has said
-- nothing. A lost map output whose every unfinished reduce holds it is not run again.
ALTER TABLE jobs ADD COLUMN reduce_slowstart REAL NOT NULL DEFAULT 1
  CHECK (reduce_slowstart >= 0 AND reduce_slowstart <= 1);
ALTER TABLE attempts ADD COLUMN held_maps BLOB;
