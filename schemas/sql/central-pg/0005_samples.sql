-- Central store, version 5 (PostgreSQL): same tables and meaning as schemas/sql/central/
-- 0006_samples.sql (SQLite): samples, wafers and lots with die coordinates from the agents'
-- run_metadata records, maintained idempotently in the ingest transaction.
CREATE TABLE samples(
  lot_id         text    NOT NULL,
  wafer_id       text    NOT NULL,
  sample_id      text    NOT NULL,
  die            text    NOT NULL,
  die_x          bigint,
  die_y          bigint,
  first_seen_ns  bigint  NOT NULL,
  last_seen_ns   bigint  NOT NULL,
  PRIMARY KEY (lot_id, wafer_id, sample_id, die)
);
CREATE INDEX samples_last_seen ON samples(last_seen_ns);

CREATE TABLE run_samples(
  agent_id    text    NOT NULL,
  run_id      text    NOT NULL,
  lot_id      text    NOT NULL,
  wafer_id    text    NOT NULL,
  sample_id   text    NOT NULL,
  die         text    NOT NULL,
  operator    text    NOT NULL,
  project     text    NOT NULL,
  ts_ns       bigint  NOT NULL,
  PRIMARY KEY (agent_id, run_id)
);
CREATE INDEX run_samples_sample ON run_samples(lot_id, wafer_id, sample_id, die);
