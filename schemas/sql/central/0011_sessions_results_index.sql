-- Central store, version 11.
-- 1. Expiring API tokens: browser sessions of POST /api/v1/login are tokens with an end of life
--    (central/include/semilab/central/auth.hpp). NULL = never expires (tokens of the CLI).
ALTER TABLE api_tokens ADD COLUMN expires_ns INTEGER;

-- 2. /api/v1/results (one instrument's results over a time range, keyset pages) from one covering
--    index: the key is the page order (instrument, then the measurement_sql ORDER BY) and the
--    remaining columns are carried, so a page is one index range scan instead of one table
--    lookup per row (bench/central_api_bench.py: central CPU per request 340 -> 120 us).
--    Partial: only run_result records (class 1; measurement_sql writes the class as a literal so
--    the planner can match it), so telemetry ingest does not pay for it.
CREATE INDEX records_results ON records(instrument, ts_ns, agent_id, store_epoch, record_seq,
                                        class, channel, unit, quality, value_real, value_int,
                                        value_text, value_repr, run_id)
  WHERE class = 1;
