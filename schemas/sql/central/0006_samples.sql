-- Central store, version 6: samples, wafers and lots with die coordinates, from the run metadata
-- records agents send (schemas/run_metadata.hpp, WIRE.md "Run metadata": an event of channel
-- run_metadata carrying the run id). Maintained in the ingest transaction; every statement is
-- idempotent (a redelivered or replayed metadata record changes nothing). Text keys are '' when
-- the metadata did not give them. Wafers and lots are the samples grouped by (lot) and
-- (lot, wafer): GET /api/v1/samples?group=wafer|lot.

-- One physical unit measured: a die of a wafer of a lot, or a named sample.
CREATE TABLE samples(
  lot_id         TEXT    NOT NULL,
  wafer_id       TEXT    NOT NULL,
  sample_id      TEXT    NOT NULL,
  die            TEXT    NOT NULL,        -- die label as written ("3,-2", "R3C5", '')
  die_x          INTEGER,                 -- die coordinates when the label reads "X,Y"
  die_y          INTEGER,
  first_seen_ns  INTEGER NOT NULL,        -- earliest metadata record naming it
  last_seen_ns   INTEGER NOT NULL,
  PRIMARY KEY (lot_id, wafer_id, sample_id, die)
) WITHOUT ROWID;
CREATE INDEX samples_last_seen ON samples(last_seen_ns);

-- Which sample each run measured (the latest metadata record of the run wins).
CREATE TABLE run_samples(
  agent_id    TEXT    NOT NULL,
  run_id      TEXT    NOT NULL,
  lot_id      TEXT    NOT NULL,
  wafer_id    TEXT    NOT NULL,
  sample_id   TEXT    NOT NULL,
  die         TEXT    NOT NULL,
  operator    TEXT    NOT NULL,
  project     TEXT    NOT NULL,
  ts_ns       INTEGER NOT NULL,           -- timestamp of the metadata record
  PRIMARY KEY (agent_id, run_id)
) WITHOUT ROWID;
CREATE INDEX run_samples_sample ON run_samples(lot_id, wafer_id, sample_id, die);
