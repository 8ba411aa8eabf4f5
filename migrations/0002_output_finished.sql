-- 0002_output_finished: ended jobs remember whether their output directory was finished.
-- Expects: schema 1. A job's end and its output's (`_SUCCESS`, or `_temporary` removed) are two
-- steps: output_finished is 0 from the first until the second is done, so that a driver that
-- stopped between them finishes the output when it starts again.
ALTER TABLE jobs ADD COLUMN output_finished INTEGER NOT NULL DEFAULT 1 CHECK (output_finished IN (0, 1));
CREATE INDEX jobs_with_output_to_finish ON jobs (id) WHERE output_finished = 0;
