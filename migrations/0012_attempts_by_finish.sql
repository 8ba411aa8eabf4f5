-- 0012_attempts_by_finish: attempts by the time they ended.
-- Expects: schema 11. The driver's metrics count attempts as they end: those that ended since
-- the last scrape are found through this index, not by a scan of every attempt.
CREATE INDEX attempts_by_finish ON attempts (finished_at);
