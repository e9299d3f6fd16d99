-- Central store, version 1 (PostgreSQL). Same tables and meaning as schemas/sql/central (SQLite,
-- versions 1 and 2 together). u64 fields (store_epoch, record_seq, batch_id) are stored as the
-- signed 64-bit integer with the same bits; the program converts back.
CREATE TABLE agents(
  agent_id       text    PRIMARY KEY,
  site           text    NOT NULL,
  first_seen_ns  bigint  NOT NULL,
  last_batch_ns  bigint,
  last_ack_ns    bigint,
  records        bigint  NOT NULL DEFAULT 0,   -- distinct records stored
  batches        bigint  NOT NULL DEFAULT 0,   -- batches accepted (including redeliveries)
  duplicates     bigint  NOT NULL DEFAULT 0,   -- records received again and ignored
  bytes          bigint  NOT NULL DEFAULT 0    -- frame bytes as received
);

-- One row per record of every class; the key makes redelivery harmless.
CREATE TABLE records(
  agent_id     text             NOT NULL,
  store_epoch  bigint           NOT NULL,
  record_seq   bigint           NOT NULL,
  class        smallint         NOT NULL,
  ts_ns        bigint           NOT NULL,
  instrument   text             NOT NULL,
  channel      text             NOT NULL,
  unit         text             NOT NULL,
  quality      integer          NOT NULL,
  value_real   double precision,           -- double and decimal values
  value_int    bigint,                     -- exact 64-bit integers
  value_text   text,                       -- text values
  value_repr   text,                       -- decimal exactly as reported
  run_id       text,
  received_ns  bigint           NOT NULL,
  PRIMARY KEY (agent_id, store_epoch, record_seq)
);
CREATE INDEX records_instrument_ts ON records(instrument, ts_ns);
CREATE INDEX records_agent_ts ON records(agent_id, ts_ns);

-- Batch ledger: one row per accepted batch delivery (every instance writes here).
CREATE TABLE batches(
  id            bigserial PRIMARY KEY,
  agent_id      text    NOT NULL,
  store_epoch   bigint  NOT NULL,
  batch_id      bigint  NOT NULL,
  first_seq     bigint  NOT NULL,
  last_seq      bigint  NOT NULL,
  records       bigint  NOT NULL,
  new_records   bigint  NOT NULL,
  checksum      bytea   NOT NULL,
  signature     bytea,
  received_ns   bigint  NOT NULL,
  instance      text    NOT NULL,
  bytes         bigint  NOT NULL DEFAULT 0
);
CREATE INDEX batches_agent ON batches(agent_id, store_epoch, first_seq);

-- Frames that failed validation, kept with their reason (payload capped) for inspection.
CREATE TABLE quarantine(
  id           bigserial PRIMARY KEY,
  received_ns  bigint  NOT NULL,
  topic        text    NOT NULL,
  agent_id     text,
  reason       text    NOT NULL,
  bytes        bigint  NOT NULL,
  payload      bytea   NOT NULL
);
