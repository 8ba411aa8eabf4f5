-- 0010_worker_excluded_until: a worker that several jobs excluded gets no task of any job for a while.
-- Expects: schema 9. Epoch ms; 0, the default, or a time past, for a worker that may take tasks.
ALTER TABLE workers ADD COLUMN excluded_until INTEGER NOT NULL DEFAULT 0;
