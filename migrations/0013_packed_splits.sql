-- 0013_packed_splits: a map's split may pack several small files.
-- Expects: schema 12. tasks.split holds a map's split as a JSON array of [file, start, end]
-- ranges, read in order (NULL for a reduce); it replaces the one range in tasks.file,
-- tasks.start_byte and tasks.end_byte, which every existing map keeps as a split of one range.
-- jobs.open_cost_bytes is what the job counted for each file it packed (0 for the jobs before).
-- workers.slots is how many tasks a worker runs at once (1 for the workers before): packing
-- leaves at least as many maps as the live workers have slots.
ALTER TABLE tasks ADD COLUMN split TEXT;
UPDATE tasks SET split = json_array(json_array(file, start_byte, end_byte)) WHERE kind = 'MAP';
ALTER TABLE tasks DROP COLUMN file;
ALTER TABLE tasks DROP COLUMN start_byte;
ALTER TABLE tasks DROP COLUMN end_byte;
ALTER TABLE jobs ADD COLUMN open_cost_bytes INTEGER NOT NULL DEFAULT 0 CHECK (open_cost_bytes >= 0);
ALTER TABLE workers ADD COLUMN slots INTEGER NOT NULL DEFAULT 1 CHECK (slots >= 1);
