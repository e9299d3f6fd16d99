-- Central store, version 3: the data model derived from the records as they arrive, maintained
-- incrementally in the ingest transaction (only newly stored records count, never redeliveries).
-- The wire carries per record: class, instrument id, channel, unit, value, quality, run id
-- (schemas/WIRE.md). Instrument identity and calibration dates, sample/wafer/lot/die ids and
-- result uncertainty/method version do not travel yet; their columns stay NULL until they do.

-- Instruments as seen per agent (an instrument id is unique within its agent's configuration).
CREATE TABLE instruments(
  agent_id            TEXT    NOT NULL,
  instrument          TEXT    NOT NULL,
  first_seen_ns       INTEGER NOT NULL,   -- earliest record timestamp
  last_seen_ns        INTEGER NOT NULL,   -- latest record timestamp
  records             INTEGER NOT NULL DEFAULT 0,
  identity            TEXT,               -- *IDN? reply (not on the wire yet)
  calibration_due_ns  INTEGER,            -- (not on the wire yet)
  PRIMARY KEY (agent_id, instrument)
) WITHOUT ROWID;

-- Runs: records carrying a run id, grouped.
CREATE TABLE runs(
  agent_id       TEXT    NOT NULL,
  run_id         TEXT    NOT NULL,
  instrument     TEXT    NOT NULL,        -- instrument of the first record seen
  first_ts_ns    INTEGER NOT NULL,
  last_ts_ns     INTEGER NOT NULL,
  records        INTEGER NOT NULL DEFAULT 0,
  results        INTEGER NOT NULL DEFAULT 0,  -- records of class run_result
  PRIMARY KEY (agent_id, run_id)
) WITHOUT ROWID;
CREATE INDEX runs_instrument_ts ON runs(instrument, first_ts_ns);

-- Minutes with at least one record per instrument: utilisation = active minutes / 1440.
CREATE TABLE instrument_minutes(
  agent_id    TEXT    NOT NULL,
  instrument  TEXT    NOT NULL,
  minute      INTEGER NOT NULL,           -- floor(ts_ns / 60e9)
  PRIMARY KEY (agent_id, instrument, minute)
) WITHOUT ROWID;

-- One row per instrument and UTC day (day = floor(ts_ns / 86400e9)).
CREATE TABLE daily_summaries(
  agent_id        TEXT    NOT NULL,
  instrument      TEXT    NOT NULL,
  day             INTEGER NOT NULL,
  measurements    INTEGER NOT NULL DEFAULT 0,  -- telemetry records
  results         INTEGER NOT NULL DEFAULT 0,  -- run_result records
  events          INTEGER NOT NULL DEFAULT 0,
  runs            INTEGER NOT NULL DEFAULT 0,  -- runs that started this day
  active_minutes  INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (agent_id, instrument, day)
) WITHOUT ROWID;
CREATE INDEX daily_day ON daily_summaries(day);

-- No new index on records: every secondary index is paid by every ingested record. Run records
-- are found through runs (instrument, time bounds) and records_instrument_ts; the retention job
-- scans (it runs daily, off the ingest path).
