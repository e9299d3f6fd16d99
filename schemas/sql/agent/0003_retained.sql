-- Acked records kept for a retention window after central's ack (outbox_options::retention), so
-- that central can ask for a replay after restoring a backup. Not part of `held`: these records
-- are acked; counters "retained" and "retained_bytes" track them. Pruned by age (acked_ns) and
-- by size (oldest seq first) in the writer's transactions.
CREATE TABLE retained(
  seq        INTEGER PRIMARY KEY,
  class      INTEGER NOT NULL,
  ts_ns      INTEGER NOT NULL,
  instrument TEXT    NOT NULL,
  channel    TEXT    NOT NULL,
  unit       TEXT    NOT NULL,
  quality    INTEGER NOT NULL DEFAULT 0,
  vkind      INTEGER NOT NULL,
  vnum,
  vexp       INTEGER,
  vtext      TEXT,
  run_id     TEXT,
  bytes      INTEGER NOT NULL,
  acked_ns   INTEGER NOT NULL
);
CREATE INDEX retained_acked ON retained(acked_ns);
