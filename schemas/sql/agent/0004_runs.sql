-- Runs executed by the daemon (agent/src/runs.hpp): one row per submitted recipe run, its
-- lifecycle queued -> running -> completed | aborted | failed, progress and a JSON summary of the
-- result. The run's raw curves and extracted parameters are outbox records (class run_result,
-- run_id set); this table is the daemon's own bookkeeping, read back at start so that a run that
-- was queued or running when the daemon died is closed as failed with a reason.
CREATE TABLE runs(
  run_id       TEXT PRIMARY KEY,
  state        TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'completed', 'aborted', 'failed')),
  recipe_name  TEXT    NOT NULL,
  recipe_version TEXT  NOT NULL,
  method       TEXT    NOT NULL,
  recipe_toml  TEXT    NOT NULL,            -- the recipe as submitted (re-analysis, audit)
  metadata     TEXT    NOT NULL,            -- JSON: sample, wafer, lot, die, operator, ...
  bindings     TEXT    NOT NULL,            -- JSON: role -> instrument id
  step         INTEGER NOT NULL DEFAULT 0,  -- points measured
  steps        INTEGER NOT NULL DEFAULT 0,  -- points planned
  reason       TEXT    NOT NULL DEFAULT '', -- why it failed or was aborted
  result       TEXT,                        -- JSON summary: parameters, warnings, limit failures
  created_ns   INTEGER NOT NULL,
  started_ns   INTEGER,
  finished_ns  INTEGER
) WITHOUT ROWID;
CREATE INDEX runs_state ON runs(state);
CREATE INDEX runs_created ON runs(created_ns);
