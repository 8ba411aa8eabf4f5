-- 0005_driver_lease: one driver at a time per database.
-- Expects: schema 4. The single row names the driver that holds the database and when it last
-- renewed its hold; a driver renews it every few seconds and stops if another has taken it.
CREATE TABLE driver_lease (
  id          INTEGER PRIMARY KEY CHECK (id = 1),
  holder      TEXT    NOT NULL,  -- a random id of this driver's run
  pid         INTEGER NOT NULL,
  host        TEXT    NOT NULL,  -- os.hostname() of the driver's host
  address     TEXT    NOT NULL,  -- where it listens
  started_at  INTEGER NOT NULL,  -- epoch ms
  renewed_at  INTEGER NOT NULL   -- epoch ms
);
