-- Central store, version 9 (PostgreSQL): back-fill of the data model for records stored before
-- version 2 (0002_data_model). Same meaning as schemas/sql/central/0010_backfill_data_model.sql:
-- idempotent, each figure the larger of what ingest counted and what the records held give,
-- minute marks a set union, a day's `runs` recounted from the runs table.

INSERT INTO instruments AS t (agent_id, instrument, first_seen_ns, last_seen_ns, records)
SELECT agent_id, instrument, min(ts_ns), max(ts_ns), count(*) FROM records
GROUP BY agent_id, instrument
ON CONFLICT (agent_id, instrument) DO UPDATE SET
  first_seen_ns = LEAST(t.first_seen_ns, excluded.first_seen_ns),
  last_seen_ns = GREATEST(t.last_seen_ns, excluded.last_seen_ns),
  records = GREATEST(t.records, excluded.records);

INSERT INTO runs AS t (agent_id, run_id, instrument, first_ts_ns, last_ts_ns, records, results)
SELECT agent_id, run_id, (array_agg(instrument ORDER BY ts_ns, record_seq))[1], min(ts_ns),
       max(ts_ns), count(*), count(*) FILTER (WHERE class = 1)
FROM records WHERE run_id IS NOT NULL
GROUP BY agent_id, run_id
ON CONFLICT (agent_id, run_id) DO UPDATE SET
  first_ts_ns = LEAST(t.first_ts_ns, excluded.first_ts_ns),
  last_ts_ns = GREATEST(t.last_ts_ns, excluded.last_ts_ns),
  records = GREATEST(t.records, excluded.records),
  results = GREATEST(t.results, excluded.results);

INSERT INTO instrument_minutes(agent_id, instrument, minute)
SELECT DISTINCT agent_id, instrument, ts_ns / 60000000000 FROM records
ON CONFLICT DO NOTHING;

INSERT INTO daily_summaries AS t (agent_id, instrument, day, measurements, results, events, runs,
                                  active_minutes)
SELECT agent_id, instrument, day, sum(m), sum(r), sum(e), sum(n), sum(mins) FROM (
  SELECT agent_id, instrument, (ts_ns / 60000000000) / 1440 AS day,
         count(*) FILTER (WHERE class = 2) AS m, count(*) FILTER (WHERE class = 1) AS r,
         count(*) FILTER (WHERE class = 0) AS e, 0 AS n, 0 AS mins
  FROM records GROUP BY 1, 2, 3
  UNION ALL
  SELECT agent_id, instrument, minute / 1440, 0, 0, 0, 0, count(*)
  FROM instrument_minutes GROUP BY 1, 2, 3
  UNION ALL
  SELECT agent_id, instrument, (first_ts_ns / 60000000000) / 1440, 0, 0, 0, count(*), 0
  FROM runs GROUP BY 1, 2, 3) u
GROUP BY 1, 2, 3
ON CONFLICT (agent_id, instrument, day) DO UPDATE SET
  measurements = GREATEST(t.measurements, excluded.measurements),
  results = GREATEST(t.results, excluded.results),
  events = GREATEST(t.events, excluded.events),
  runs = excluded.runs,
  active_minutes = GREATEST(t.active_minutes, excluded.active_minutes);
