-- Agent outbox, version 1. Every record is written here before anything else happens to it.
-- Record identity: (agent_id, store_epoch, seq); store_epoch lives in meta and is created with
-- the database. AUTOINCREMENT guarantees a seq is never reused, even after deletes.
CREATE TABLE meta(
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

-- Persisted accounting: produced = acked + held + dropped, held = COUNT(*) FROM outbox.
CREATE TABLE counters(
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters(name, value) VALUES ('produced', 0), ('acked', 0), ('dropped', 0);

CREATE TABLE outbox(
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  class      INTEGER NOT NULL,            -- 0 event, 1 run_result, 2 telemetry, 3 blob
  ts_ns      INTEGER NOT NULL,            -- UTC ns
  instrument TEXT    NOT NULL,
  channel    TEXT    NOT NULL,
  unit       TEXT    NOT NULL,
  quality    INTEGER NOT NULL DEFAULT 0,
  vkind      INTEGER NOT NULL,            -- 0 double, 1 int64, 2 decimal, 3 text
  vnum,                                   -- REAL (double) or INTEGER (int64, decimal mantissa)
  vexp       INTEGER,                     -- decimal exponent
  vtext      TEXT,                        -- text value
  run_id     TEXT,
  bytes      INTEGER NOT NULL             -- stored size estimate, for status and quota
);
-- Sync reads the oldest unsent records of the highest-priority class first.
CREATE INDEX outbox_class_seq ON outbox(class, seq);
