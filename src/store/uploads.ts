/** The uploads of reduces that write to object storage (see mr/s3Output.ts). */
import type { CommittedUpload } from "../mr/s3Output.js";
import type { Db } from "./db.js";
import { prepared } from "./prepared.js";

/** An upload as recorded: a partition's committed one, or one that a later commit replaced. */
export interface RecordedUpload extends CommittedUpload {
  committed: boolean;
}

/**
 * recordUpload. Expects: the attempt being committed, in the same transaction. Makes its
 * upload the partition's committed one; the one it replaces stays, to be aborted.
 */
export function recordUpload(
  db: Db,
  upload: { jobId: number; partition: number; attemptId: string; uploadId: string; etags: string[] },
): void {
  prepared(
    db,
    `UPDATE output_uploads SET committed = 0 WHERE job_id = ? AND partition = ? AND committed = 1`,
  ).run(upload.jobId, upload.partition);
  prepared(
    db,
    `INSERT INTO output_uploads (upload_id, job_id, partition, attempt_id, etags, committed)
     VALUES (?, ?, ?, ?, ?, 1)`,
  ).run(upload.uploadId, upload.jobId, upload.partition, upload.attemptId, JSON.stringify(upload.etags));
}

/** Every upload recorded for the job, committed or not, by partition. */
export function listUploads(db: Db, jobId: number): RecordedUpload[] {
  return prepared<
    [number],
    { partition: number; uploadId: string; etags: string; committed: number; completed: number }
  >(
    db,
    `SELECT partition, upload_id AS uploadId, etags, committed, completed FROM output_uploads
     WHERE job_id = ? ORDER BY partition`,
  )
    .all(jobId)
    .map((row) => ({
      ...row,
      etags: JSON.parse(row.etags) as string[],
      committed: row.committed === 1,
      completed: row.completed === 1,
    }));
}

/** markUploadCompleted. The partition's committed upload is complete: its part is in place. */
export function markUploadCompleted(db: Db, jobId: number, partition: number): void {
  prepared(
    db,
    `UPDATE output_uploads SET completed = 1 WHERE job_id = ? AND partition = ? AND committed = 1`,
  ).run(jobId, partition);
}

/** forgetUploads. Expects: the job's output finished. Its uploads are completed or aborted. */
export function forgetUploads(db: Db, jobId: number): void {
  prepared(db, `DELETE FROM output_uploads WHERE job_id = ?`).run(jobId);
}
