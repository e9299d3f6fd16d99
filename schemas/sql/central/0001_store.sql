-- Central store, version 1 (SQLite). u64 fields (store_epoch) are stored as the signed 64-bit
-- integer with the same bits; the API converts back.
CREATE TABLE agents(
  agent_id       TEXT PRIMARY KEY,
  site           TEXT    NOT NULL,
  first_seen_ns  INTEGER NOT NULL,
  last_batch_ns  INTEGER,
  last_ack_ns    INTEGER,
  records        INTEGER NOT NULL DEFAULT 0,   -- distinct records stored
  batches        INTEGER NOT NULL DEFAULT 0,   -- batches accepted (including redeliveries)
  duplicates     INTEGER NOT NULL DEFAULT 0    -- records received again and ignored
) WITHOUT ROWID;

-- One row per record of every class; the key makes redelivery harmless.
CREATE TABLE records(
  agent_id     TEXT    NOT NULL,
  store_epoch  INTEGER NOT NULL,
  record_seq   INTEGER NOT NULL,
  class        INTEGER NOT NULL,
  ts_ns        INTEGER NOT NULL,
  instrument   TEXT    NOT NULL,
  channel      TEXT    NOT NULL,
  unit         TEXT    NOT NULL,
  quality      INTEGER NOT NULL,
  value_real   REAL,                 -- double and decimal values (decimal converted exactly-rounded)
  value_int    INTEGER,              -- exact 64-bit integers
  value_text   TEXT,                 -- text values
  value_repr   TEXT,                 -- decimal exactly as reported, e.g. 1.234500E-03
  run_id       TEXT,
  received_ns  INTEGER NOT NULL,
  PRIMARY KEY (agent_id, store_epoch, record_seq)
) WITHOUT ROWID;
CREATE INDEX records_instrument_ts ON records(instrument, ts_ns);
CREATE INDEX records_agent_ts ON records(agent_id, ts_ns);

-- Batch ledger: one row per accepted batch delivery.
CREATE TABLE batches(
  id            INTEGER PRIMARY KEY,
  agent_id      TEXT    NOT NULL,
  store_epoch   INTEGER NOT NULL,
  batch_id      INTEGER NOT NULL,
  first_seq     INTEGER NOT NULL,
  last_seq      INTEGER NOT NULL,
  records       INTEGER NOT NULL,
  new_records   INTEGER NOT NULL,
  checksum      BLOB    NOT NULL,
  signature     BLOB,
  received_ns   INTEGER NOT NULL,
  instance      TEXT    NOT NULL
);
CREATE INDEX batches_agent ON batches(agent_id, store_epoch, first_seq);

-- Frames that failed validation, kept with their reason (payload capped) for inspection.
CREATE TABLE quarantine(
  id           INTEGER PRIMARY KEY,
  received_ns  INTEGER NOT NULL,
  topic        TEXT    NOT NULL,
  agent_id     TEXT,
  reason       TEXT    NOT NULL,
  bytes        INTEGER NOT NULL,     -- size of the frame as received
  payload      BLOB    NOT NULL      -- first bytes of the frame
);
