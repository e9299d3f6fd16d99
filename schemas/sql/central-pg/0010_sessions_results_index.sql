-- Central store (PostgreSQL), version 10; the same as the SQLite store's 0011.
-- 1. Expiring API tokens: browser sessions of POST /api/v1/login are tokens with an end of life
--    (central/include/semilab/central/auth.hpp). NULL = never expires (tokens of the CLI).
ALTER TABLE api_tokens ADD COLUMN expires_ns BIGINT;

-- 2. /api/v1/results from one ordered index (the page order of measurement_sql) carrying the
--    columns it returns (index-only scans once the visibility map is set); only run_result
--    records (class 1, written as a literal by measurement_sql), so telemetry ingest does not pay.
CREATE INDEX records_results ON records(instrument, ts_ns, agent_id, store_epoch, record_seq)
  INCLUDE (class, channel, unit, quality, value_real, value_int, value_text, value_repr, run_id)
  WHERE class = 1;
