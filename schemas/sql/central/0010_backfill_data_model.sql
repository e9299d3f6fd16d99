-- Central store, version 10: back-fill of the data model (0003_data_model.sql) for records stored
-- before version 3, which the ingest transaction never counted. Idempotent and safe on any store:
-- every derived figure becomes the larger of what ingest counted and what the records still held
-- give (retention may have deleted records that ingest counted; a record stored since version 3
-- is counted once either way), minute marks are a set union, and a day's `runs` is recounted from
-- the runs table (never pruned). Same statements as central-pg/0009_backfill_data_model.sql.
-- One pass over records per table; it runs once, at the upgrade.

INSERT INTO instruments(agent_id, instrument, first_seen_ns, last_seen_ns, records)
SELECT agent_id, instrument, min(ts_ns), max(ts_ns), count(*) FROM records WHERE true
GROUP BY agent_id, instrument
ON CONFLICT(agent_id, instrument) DO UPDATE SET
  first_seen_ns = min(first_seen_ns, excluded.first_seen_ns),
  last_seen_ns = max(last_seen_ns, excluded.last_seen_ns),
  records = max(records, excluded.records);

-- A run's instrument: that of its earliest record (ingest keeps the one it saw first).
INSERT INTO runs(agent_id, run_id, instrument, first_ts_ns, last_ts_ns, records, results)
SELECT agent_id, run_id, max(CASE WHEN rn = 1 THEN instrument END), min(ts_ns), max(ts_ns),
       count(*), sum(class = 1)
FROM (SELECT agent_id, run_id, instrument, ts_ns, class,
             row_number() OVER (PARTITION BY agent_id, run_id ORDER BY ts_ns, record_seq) AS rn
      FROM records WHERE run_id IS NOT NULL) WHERE true
GROUP BY agent_id, run_id
ON CONFLICT(agent_id, run_id) DO UPDATE SET
  first_ts_ns = min(first_ts_ns, excluded.first_ts_ns),
  last_ts_ns = max(last_ts_ns, excluded.last_ts_ns),
  records = max(records, excluded.records),
  results = max(results, excluded.results);

INSERT INTO instrument_minutes(agent_id, instrument, minute)
SELECT DISTINCT agent_id, instrument, ts_ns / 60000000000 FROM records WHERE true
ON CONFLICT DO NOTHING;

-- day = (ts_ns / 60e9) / 1440, truncating, as at ingest.
INSERT INTO daily_summaries(agent_id, instrument, day, measurements, results, events, runs,
                            active_minutes)
SELECT agent_id, instrument, day, sum(m), sum(r), sum(e), sum(n), sum(mins) FROM (
  SELECT agent_id, instrument, (ts_ns / 60000000000) / 1440 AS day, sum(class = 2) AS m,
         sum(class = 1) AS r, sum(class = 0) AS e, 0 AS n, 0 AS mins
  FROM records GROUP BY 1, 2, 3
  UNION ALL
  SELECT agent_id, instrument, minute / 1440, 0, 0, 0, 0, count(*)
  FROM instrument_minutes GROUP BY 1, 2, 3
  UNION ALL
  SELECT agent_id, instrument, (first_ts_ns / 60000000000) / 1440, 0, 0, 0, count(*), 0
  FROM runs GROUP BY 1, 2, 3) WHERE true
GROUP BY 1, 2, 3
ON CONFLICT(agent_id, instrument, day) DO UPDATE SET
  measurements = max(measurements, excluded.measurements),
  results = max(results, excluded.results),
  events = max(events, excluded.events),
  runs = excluded.runs,
  active_minutes = max(active_minutes, excluded.active_minutes);
