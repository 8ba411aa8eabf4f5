-- 0004_workers_by_state: find ALIVE and silent workers without reading every worker ever seen.
-- Expects: schema 3. Workers are never deleted (attempts name them), so the table grows with
-- every registration; the liveness check and the apps on offer read only ALIVE rows.
CREATE INDEX workers_by_state ON workers (state, last_heartbeat_at);
