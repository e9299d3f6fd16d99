-- Central store, version 2 (PostgreSQL): same tables and meaning as schemas/sql/central/
-- 0003_data_model.sql (SQLite), maintained by the merge statement of pg_store.
CREATE TABLE instruments(
  agent_id            text    NOT NULL,
  instrument          text    NOT NULL,
  first_seen_ns       bigint  NOT NULL,
  last_seen_ns        bigint  NOT NULL,
  records             bigint  NOT NULL DEFAULT 0,
  identity            text,
  calibration_due_ns  bigint,
  PRIMARY KEY (agent_id, instrument)
);

CREATE TABLE runs(
  agent_id       text    NOT NULL,
  run_id         text    NOT NULL,
  instrument     text    NOT NULL,
  first_ts_ns    bigint  NOT NULL,
  last_ts_ns     bigint  NOT NULL,
  records        bigint  NOT NULL DEFAULT 0,
  results        bigint  NOT NULL DEFAULT 0,
  PRIMARY KEY (agent_id, run_id)
);
CREATE INDEX runs_instrument_ts ON runs(instrument, first_ts_ns);

CREATE TABLE instrument_minutes(
  agent_id    text    NOT NULL,
  instrument  text    NOT NULL,
  minute      bigint  NOT NULL,
  PRIMARY KEY (agent_id, instrument, minute)
);

CREATE TABLE daily_summaries(
  agent_id        text    NOT NULL,
  instrument      text    NOT NULL,
  day             bigint  NOT NULL,
  measurements    bigint  NOT NULL DEFAULT 0,
  results         bigint  NOT NULL DEFAULT 0,
  events          bigint  NOT NULL DEFAULT 0,
  runs            bigint  NOT NULL DEFAULT 0,
  active_minutes  bigint  NOT NULL DEFAULT 0,
  PRIMARY KEY (agent_id, instrument, day)
);
CREATE INDEX daily_day ON daily_summaries(day);

-- No new index on records (see the SQLite migration).
