-- Records central rejected permanently (e.g. a frame it cannot read) after several attempts: kept
-- here, still counted as held, until `semilab-agent queue dead-letters --retry` moves them back.
CREATE TABLE dead_letter(
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
  reason     TEXT    NOT NULL,
  attempts   INTEGER NOT NULL,
  moved_ns   INTEGER NOT NULL
);
