-- 0014_output_uploads: the uploads of reduces that write to object storage.
-- Expects: schema 13. A reduce attempt whose output is s3:// uploads its part as a multipart
-- upload that it does not complete, and reports it when it completes. Committing the attempt
-- records the upload here, in the same transaction; committing the job completes the recorded
-- uploads, and forgets them once its output is finished. A partition has one committed upload
-- at most; one that an attempt replaced stays, uncommitted, until it is aborted.
CREATE TABLE output_uploads (
  upload_id TEXT PRIMARY KEY,
  job_id INTEGER NOT NULL REFERENCES jobs (id),
  partition INTEGER NOT NULL CHECK (partition >= 0),
  attempt_id TEXT NOT NULL,
  etags TEXT NOT NULL CHECK (json_valid(etags)),
  committed INTEGER NOT NULL CHECK (committed IN (0, 1)),
  completed INTEGER NOT NULL DEFAULT 0 CHECK (completed IN (0, 1))
);
CREATE UNIQUE INDEX output_uploads_committed ON output_uploads (job_id, partition) WHERE committed = 1;
