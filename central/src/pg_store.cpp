#include <libpq-fe.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>
#include <semilab/central/pg_store.hpp>
#include <type_traits>
#include <variant>

#include "pg_migrations.hpp"

namespace semilab::central {

namespace {

std::int64_t as_i64(std::uint64_t v) noexcept {
  return static_cast<std::int64_t>(v);
}
std::uint64_t as_u64(std::int64_t v) noexcept {
  return static_cast<std::uint64_t>(v);
}

// libpq messages end with a newline; keep them on one log line.
std::string trimmed(const char* msg) {
  std::string s = msg ? msg : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (auto& c : s)
    if (c == '\n') c = ' ';
  return s;
}

struct pg_result {
  PGresult* r = nullptr;
  explicit pg_result(PGresult* p) : r(p) {}
  pg_result(const pg_result&) = delete;
  pg_result& operator=(const pg_result&) = delete;
  ~pg_result() { PQclear(r); }
  ExecStatusType status() const { return r ? PQresultStatus(r) : PGRES_FATAL_ERROR; }
  std::string sqlstate() const {
    const char* s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    return s ? s : "";
  }
  std::int64_t i64(int row, int col) const {
    std::int64_t v = 0;
    const char* p = PQgetvalue(r, row, col);
    std::from_chars(p, p + std::strlen(p), v);  // NULL reads as "" -> 0
    return v;
  }
  std::string text(int row, int col) const {
    return std::string(PQgetvalue(r, row, col), static_cast<std::size_t>(PQgetlength(r, row, col)));
  }
};

// PostgreSQL binary COPY stream (https://www.postgresql.org/docs/15/sql-copy.html, "Binary
// Format"): signature, flags, extension length, then tuples of (int16 count, (int32 len, bytes)*),
// then int16 -1. Integers and floats in network byte order.
class copy_writer {
 public:
  copy_writer() {
    static constexpr char sig[] = "PGCOPY\n\377\r\n";
    buf_.append(sig, 11);
    be32(0);  // flags
    be32(0);  // header extension length
  }
  void row(std::int16_t fields) { be16(static_cast<std::uint16_t>(fields)); }
  void i16(std::int16_t v) {
    be32(2);
    be16(static_cast<std::uint16_t>(v));
  }
  void i32(std::int32_t v) {
    be32(4);
    be32(static_cast<std::uint32_t>(v));
  }
  void i64(std::int64_t v) {
    be32(8);
    be64(static_cast<std::uint64_t>(v));
  }
  void f64(double v) {
    be32(8);
    be64(std::bit_cast<std::uint64_t>(v));
  }
  void bytes(std::string_view v) {
    be32(static_cast<std::uint32_t>(v.size()));
    buf_.append(v);
  }
  void bytes(std::span<const std::uint8_t> v) {
    bytes(std::string_view(reinterpret_cast<const char*>(v.data()), v.size()));
  }
  void null() { be32(0xFFFFFFFFu); }
  std::string finish() {
    be16(0xFFFFu);
    return std::move(buf_);
  }

 private:
  void be16(std::uint16_t v) {
    char b[2] = {static_cast<char>(v >> 8), static_cast<char>(v)};
    buf_.append(b, 2);
  }
  void be32(std::uint32_t v) {
    char b[4];
    for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(v >> (24 - 8 * i));
    buf_.append(b, 4);
  }
  void be64(std::uint64_t v) {
    char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (56 - 8 * i));
    buf_.append(b, 8);
  }
  std::string buf_;
};

void drop_notice(void*, const char*) {}  // "relation already exists, skipping" and the like

constexpr const char* kStaging =
    "CREATE TEMP TABLE IF NOT EXISTS stage_records("
    "batch_ix integer NOT NULL, agent_id text NOT NULL, store_epoch bigint NOT NULL, "
    "record_seq bigint NOT NULL, class smallint NOT NULL, ts_ns bigint NOT NULL, "
    "instrument text NOT NULL, channel text NOT NULL, unit text NOT NULL, quality integer NOT "
    "NULL, "
    "value_real double precision, value_int bigint, value_text text, value_repr text, run_id text, "
    "received_ns bigint NOT NULL) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS stage_batches("
    "batch_ix integer NOT NULL, agent_id text NOT NULL, site text NOT NULL, "
    "store_epoch bigint NOT NULL, batch_id bigint NOT NULL, first_seq bigint NOT NULL, "
    "last_seq bigint NOT NULL, records bigint NOT NULL, checksum bytea NOT NULL, signature bytea, "
    "received_ns bigint NOT NULL, bytes bigint NOT NULL, signed_header bytea, key_id text) "
    "ON COMMIT DELETE ROWS";

// $1 commit time (ns), $2 instance. Returns (batch_ix, new records) for batches with new rows.
constexpr const char* kMerge =
    "WITH ins AS ("
    " INSERT INTO records(agent_id, store_epoch, record_seq, class, ts_ns, instrument, channel,"
    "  unit, quality, value_real, value_int, value_text, value_repr, run_id, received_ns)"
    " SELECT agent_id, store_epoch, record_seq, class, ts_ns, instrument, channel, unit, quality,"
    "  value_real, value_int, value_text, value_repr, run_id, received_ns FROM stage_records"
    " ORDER BY agent_id, store_epoch, record_seq, batch_ix"
    " ON CONFLICT (agent_id, store_epoch, record_seq) DO NOTHING"
    " RETURNING agent_id, store_epoch, record_seq, class, ts_ns, instrument, run_id),"
    "firsts AS (SELECT min(s.batch_ix) AS batch_ix FROM ins JOIN stage_records s"
    " USING (agent_id, store_epoch, record_seq) GROUP BY ins.agent_id, ins.store_epoch, "
    "ins.record_seq),"
    "counts AS (SELECT batch_ix, count(*) AS n FROM firsts GROUP BY batch_ix),"
    "per_batch AS (SELECT b.*, COALESCE(c.n, 0) AS new_records FROM stage_batches b"
    " LEFT JOIN counts c USING (batch_ix)),"
    "led AS (INSERT INTO batches(agent_id, store_epoch, batch_id, first_seq, last_seq, records,"
    " new_records, checksum, signature, received_ns, instance, bytes, signed_header, key_id)"
    " SELECT agent_id, store_epoch, batch_id, first_seq, last_seq, records, new_records, checksum,"
    " signature, received_ns, $2, bytes, signed_header, key_id FROM per_batch ORDER BY batch_ix),"
    "ag AS (INSERT INTO agents AS a (agent_id, site, first_seen_ns, last_batch_ns, last_ack_ns,"
    " records, batches, duplicates, bytes)"
    " SELECT agent_id, (array_agg(site ORDER BY batch_ix DESC))[1], min(received_ns),"
    " max(received_ns), $1::bigint, sum(new_records), count(*), sum(records - new_records), "
    "sum(bytes)"
    " FROM per_batch GROUP BY agent_id ORDER BY agent_id"
    " ON CONFLICT (agent_id) DO UPDATE SET site = excluded.site,"
    " last_batch_ns = excluded.last_batch_ns, last_ack_ns = excluded.last_ack_ns,"
    " records = a.records + excluded.records, batches = a.batches + excluded.batches,"
    " duplicates = a.duplicates + excluded.duplicates, bytes = a.bytes + excluded.bytes),"
    // The data model (0002_data_model.sql), from the newly inserted rows only; the same
    // arithmetic as sqlite_store (day = (ts_ns / 60e9) / 1440, truncating).
    "newmin AS (INSERT INTO instrument_minutes(agent_id, instrument, minute)"
    " SELECT DISTINCT agent_id, instrument, ts_ns / 60000000000 FROM ins ORDER BY 1, 2, 3"
    " ON CONFLICT DO NOTHING RETURNING agent_id, instrument, minute),"
    "inst AS (INSERT INTO instruments AS t (agent_id, instrument, first_seen_ns, last_seen_ns,"
    " records) SELECT agent_id, instrument, min(ts_ns), max(ts_ns), count(*) FROM ins"
    " GROUP BY 1, 2 ORDER BY 1, 2 ON CONFLICT (agent_id, instrument) DO UPDATE SET"
    " first_seen_ns = LEAST(t.first_seen_ns, excluded.first_seen_ns),"
    " last_seen_ns = GREATEST(t.last_seen_ns, excluded.last_seen_ns),"
    " records = t.records + excluded.records),"
    "runagg AS (SELECT agent_id, run_id,"
    " (array_agg(instrument ORDER BY ts_ns, record_seq))[1] AS instrument, min(ts_ns) AS f,"
    " max(ts_ns) AS l, count(*) AS n, count(*) FILTER (WHERE class = 1) AS r FROM ins"
    " WHERE run_id IS NOT NULL GROUP BY 1, 2),"
    "newrun AS (INSERT INTO runs AS t (agent_id, run_id, instrument, first_ts_ns, last_ts_ns,"
    " records, results) SELECT agent_id, run_id, instrument, f, l, n, r FROM runagg"
    " ORDER BY 1, 2 ON CONFLICT (agent_id, run_id) DO UPDATE SET"
    " first_ts_ns = LEAST(t.first_ts_ns, excluded.first_ts_ns),"
    " last_ts_ns = GREATEST(t.last_ts_ns, excluded.last_ts_ns),"
    " records = t.records + excluded.records, results = t.results + excluded.results"
    " RETURNING agent_id, instrument, first_ts_ns, (xmax = 0) AS inserted),"
    "dayall AS (SELECT agent_id, instrument, day, sum(m) AS m, sum(r) AS r, sum(e) AS e,"
    " sum(runs) AS runs, sum(mins) AS mins FROM ("
    "  SELECT agent_id, instrument, (ts_ns / 60000000000) / 1440 AS day,"
    "   count(*) FILTER (WHERE class = 2) AS m, count(*) FILTER (WHERE class = 1) AS r,"
    "   count(*) FILTER (WHERE class = 0) AS e, 0 AS runs, 0 AS mins FROM ins GROUP BY 1, 2, 3"
    "  UNION ALL SELECT agent_id, instrument, minute / 1440, 0, 0, 0, 0, count(*) FROM newmin"
    "   GROUP BY 1, 2, 3"
    "  UNION ALL SELECT agent_id, instrument, (first_ts_ns / 60000000000) / 1440, 0, 0, 0,"
    "   count(*), 0 FROM newrun WHERE inserted GROUP BY 1, 2, 3) u GROUP BY 1, 2, 3),"
    "daily AS (INSERT INTO daily_summaries AS t (agent_id, instrument, day, measurements,"
    " results, events, runs, active_minutes) SELECT agent_id, instrument, day, m, r, e, runs,"
    " mins FROM dayall ORDER BY 1, 2, 3 ON CONFLICT (agent_id, instrument, day) DO UPDATE SET"
    " measurements = t.measurements + excluded.measurements,"
    " results = t.results + excluded.results, events = t.events + excluded.events,"
    " runs = t.runs + excluded.runs, active_minutes = t.active_minutes + excluded.active_minutes)"
    "SELECT batch_ix, n FROM counts";

constexpr std::int64_t kMigrationLock = 0x73656d696c616231;  // "semilab1"

}  // namespace

pg_store::pg_store(pg_conn* conn, pg_options opts) : conn_(conn), opts_(std::move(opts)) {}

pg_store::~pg_store() {
  PQfinish(conn_);
}

bool pg_store::exec(const char* sql) {
  pg_result r(PQexec(conn_, sql));
  auto st = r.status();
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    last_error_ = trimmed(PQerrorMessage(conn_));
    return false;
  }
  return true;
}

bool pg_store::setup_session() {
  PQsetNoticeProcessor(conn_, drop_notice, nullptr);
  const std::string settings =
      "SET synchronous_commit = on; SET client_min_messages = warning; SET lock_timeout = " +
      std::to_string(opts_.lock_timeout.count()) + ";" +
      (opts_.mode == open_mode::read_only ? " SET default_transaction_read_only = on;" : "");
  if (!exec(settings.c_str())) return false;
  if (opts_.mode == open_mode::read_write && !exec(kStaging)) return false;
  return true;
}

bool pg_store::ensure_connection() {
  if (PQstatus(conn_) == CONNECTION_OK) return true;
  PQreset(conn_);
  if (PQstatus(conn_) != CONNECTION_OK) {
    last_error_ =
        "connection to PostgreSQL lost and not re-established: " + trimmed(PQerrorMessage(conn_));
    return false;
  }
  return setup_session();
}

result<std::unique_ptr<pg_store>> pg_store::open(const pg_options& opts, std::string& error) {
  if (opts.url.empty()) {
    error = "no PostgreSQL URL configured ([store] url)";
    return make_error_code(errc::store_open_failed);
  }
  PGconn* c = PQconnectdb(opts.url.c_str());
  if (!c) {
    error = "out of memory connecting to PostgreSQL";
    return make_error_code(errc::store_open_failed);
  }
  std::unique_ptr<pg_store> s(new pg_store(c, opts));
  if (PQstatus(c) != CONNECTION_OK) {
    error = "cannot connect to PostgreSQL at " + redact_url(opts.url) + ": " +
            trimmed(PQerrorMessage(c));
    return make_error_code(errc::store_open_failed);
  }
  if (!s->setup_session()) {
    error = s->last_error_;
    return make_error_code(errc::store_open_failed);
  }
  const auto steps = central_pg_migrations();
  const int newest = steps.empty() ? 0 : steps.back().version;
  if (opts.mode == open_mode::read_write) {
    // One transaction under an advisory lock: instances starting together migrate once.
    auto fail = [&](std::string why) -> result<std::unique_ptr<pg_store>> {
      error = std::move(why);
      s->exec("ROLLBACK");
      return make_error_code(errc::store_migration_failed);
    };
    if (!s->exec("BEGIN")) return fail("migration: " + s->last_error_);
    const std::string lock = "SELECT pg_advisory_xact_lock(" + std::to_string(kMigrationLock) + ")";
    if (!s->exec(lock.c_str()) ||
        !s->exec("CREATE TABLE IF NOT EXISTS schema_version(version integer PRIMARY KEY, "
                 "name text NOT NULL, applied_ns bigint NOT NULL)"))
      return fail("migration: " + s->last_error_);
    auto v = s->scalar("SELECT COALESCE(MAX(version), 0) FROM schema_version");
    if (!v) return fail("migration: " + s->last_error_);
    const int current = static_cast<int>(*v);
    if (current > newest)
      return fail("database schema version " + std::to_string(current) +
                  " is newer than this program knows (" + std::to_string(newest) + ")");
    for (const auto& m : steps) {
      if (m.version <= current) continue;
      const std::string sql(m.sql);
      if (!s->exec(sql.c_str()))
        return fail("migration " + std::string(m.name) + ": " + s->last_error_);
      const std::string ver = std::to_string(m.version), name(m.name),
                        at = std::to_string(now_ns());
      const char* params[] = {ver.c_str(), name.c_str(), at.c_str()};
      pg_result r(PQexecParams(c, "INSERT INTO schema_version VALUES($1, $2, $3)", 3, nullptr,
                               params, nullptr, nullptr, 0));
      if (r.status() != PGRES_COMMAND_OK)
        return fail("migration " + name + ": " + trimmed(PQerrorMessage(c)));
    }
    if (!s->exec("COMMIT")) return fail("migration commit: " + s->last_error_);
  } else {
    auto v = s->scalar(
        "SELECT CASE WHEN to_regclass('schema_version') IS NULL THEN 0 "
        "ELSE (SELECT COALESCE(MAX(version), 0) FROM schema_version) END");
    if (!v) {
      error = s->last_error_;
      return make_error_code(errc::store_open_failed);
    }
    if (*v == 0 || static_cast<int>(*v) > newest) {
      error = "database schema version " + std::to_string(*v) + " is not one this program reads (" +
              std::to_string(newest) + ")";
      return make_error_code(errc::store_migration_failed);
    }
  }
  return s;
}

bool pg_store::copy_in(const char* sql, const std::string& data) {
  pg_result start(PQexec(conn_, sql));
  if (start.status() != PGRES_COPY_IN) {
    last_error_ = trimmed(PQerrorMessage(conn_));
    return false;
  }
  constexpr std::size_t kChunk = 1 << 20;
  bool sent = true;
  for (std::size_t off = 0; off < data.size() && sent; off += kChunk) {
    const auto n = std::min(kChunk, data.size() - off);
    sent = PQputCopyData(conn_, data.data() + off, static_cast<int>(n)) == 1;
  }
  if (!sent) last_error_ = trimmed(PQerrorMessage(conn_));
  if (PQputCopyEnd(conn_, sent ? nullptr : "client failed to send COPY data") != 1 && sent) {
    last_error_ = trimmed(PQerrorMessage(conn_));
    sent = false;
  }
  bool ok = sent;
  while (PGresult* r = PQgetResult(conn_)) {
    pg_result res(r);
    if (res.status() != PGRES_COMMAND_OK) {
      if (ok) last_error_ = trimmed(PQresultErrorMessage(r));
      ok = false;
    }
  }
  return ok;
}

result<std::vector<stored_info>> pg_store::store_group(
    std::span<const batch_to_store> batches, std::span<const quarantine_entry> quarantined,
    std::string_view instance) {
  if (opts_.mode != open_mode::read_write) {
    last_error_ = "store opened read-only";
    return make_error_code(errc::store_write_failed);
  }
  if (batches.empty() && quarantined.empty()) return std::vector<stored_info>{};
  for (int attempt = 1;; ++attempt) {
    if (!ensure_connection()) return make_error_code(errc::store_write_failed);
    bool retryable = false;
    auto r = try_group(batches, quarantined, instance, retryable);
    if (r || !retryable || attempt == 3) return r;
  }
}

result<std::vector<stored_info>> pg_store::try_group(std::span<const batch_to_store> batches,
                                                     std::span<const quarantine_entry> quarantined,
                                                     std::string_view instance, bool& retryable) {
  auto fail = [this]() -> result<std::vector<stored_info>> {
    if (PQstatus(conn_) == CONNECTION_OK && PQtransactionStatus(conn_) != PQTRANS_IDLE) {
      std::string keep = last_error_;
      exec("ROLLBACK");
      last_error_ = std::move(keep);
    }
    return make_error_code(errc::store_write_failed);
  };
  if (!exec("BEGIN")) return fail();

  if (!batches.empty()) {
    copy_writer recs, heads;
    for (std::size_t ix = 0; ix < batches.size(); ++ix) {
      const auto& b = batches[ix];
      const auto& h = b.frame->header;
      for (const auto& r : b.frame->records) {
        recs.row(16);
        recs.i32(static_cast<std::int32_t>(ix));
        recs.bytes(std::string_view(h.agent_id));
        recs.i64(as_i64(h.store_epoch));
        recs.i64(as_i64(r.seq));
        recs.i16(static_cast<std::int16_t>(r.cls));
        recs.i64(r.ts_ns);
        recs.bytes(std::string_view(r.instrument));
        recs.bytes(std::string_view(r.channel));
        recs.bytes(std::string_view(r.unit));
        recs.i32(static_cast<std::int32_t>(r.quality));
        // value_real, value_int, value_text, value_repr
        std::visit(
            [&recs](const auto& v) {
              using T = std::decay_t<decltype(v)>;
              if constexpr (std::is_same_v<T, double>) {
                recs.f64(v);
                recs.null();
                recs.null();
                recs.null();
              } else if constexpr (std::is_same_v<T, std::int64_t>) {
                recs.null();
                recs.i64(v);
                recs.null();
                recs.null();
              } else if constexpr (std::is_same_v<T, schemas::decimal>) {
                recs.f64(v.to_double());
                recs.null();
                recs.null();
                recs.bytes(std::string_view(v.to_string()));
              } else {
                recs.null();
                recs.null();
                recs.bytes(std::string_view(v));
                recs.null();
              }
            },
            r.val);
        if (r.run_id.empty())
          recs.null();
        else
          recs.bytes(std::string_view(r.run_id));
        recs.i64(b.received_ns);
      }
      heads.row(14);
      heads.i32(static_cast<std::int32_t>(ix));
      heads.bytes(std::string_view(h.agent_id));
      heads.bytes(std::string_view(b.topic->site));
      heads.i64(as_i64(h.store_epoch));
      heads.i64(as_i64(h.batch_id));
      heads.i64(as_i64(h.ranges.empty() ? 0 : h.ranges.front().first));
      heads.i64(as_i64(h.ranges.empty() ? 0 : h.ranges.back().last));
      heads.i64(static_cast<std::int64_t>(b.frame->records.size()));
      heads.bytes(std::span<const std::uint8_t>(h.checksum));
      if (h.signature.empty())
        heads.null();
      else
        heads.bytes(std::span<const std::uint8_t>(h.signature));
      heads.i64(b.received_ns);
      heads.i64(static_cast<std::int64_t>(b.raw_bytes));
      if (b.signed_header.empty())
        heads.null();
      else
        heads.bytes(b.signed_header);
      if (b.key_id.empty())
        heads.null();
      else
        heads.bytes(b.key_id);
    }
    if (!copy_in("COPY stage_records FROM STDIN (FORMAT binary)", recs.finish()) ||
        !copy_in("COPY stage_batches FROM STDIN (FORMAT binary)", heads.finish()))
      return fail();
  }

  std::vector<stored_info> out(batches.size());
  if (!batches.empty()) {
    const std::string commit_ns = std::to_string(now_ns());
    const std::string inst(instance);
    const char* params[] = {commit_ns.c_str(), inst.c_str()};
    pg_result r(PQexecParams(conn_, kMerge, 2, nullptr, params, nullptr, nullptr, 0));
    if (r.status() != PGRES_TUPLES_OK) {
      last_error_ = trimmed(PQerrorMessage(conn_));
      const auto state = r.sqlstate();
      retryable = state == "40P01" || state == "40001";
      return fail();
    }
    for (int i = 0; i < PQntuples(r.r); ++i) {
      const auto ix = static_cast<std::size_t>(r.i64(i, 0));
      if (ix < out.size()) out[ix].new_records = static_cast<std::uint64_t>(r.i64(i, 1));
    }
    for (std::size_t i = 0; i < batches.size(); ++i)
      out[i].duplicates = batches[i].frame->records.size() - out[i].new_records;
    // Samples (0005_samples.sql) from run_metadata records (rare): idempotent upserts, so
    // redelivered ones may run them again; one that does not decode stays a plain event.
    for (const auto& b : batches)
      for (const auto& rec : b.frame->records) {
        if (!is_run_metadata(rec)) continue;
        auto m = schemas::decode_run_metadata(std::get<std::string>(rec.val));
        if (!m) continue;
        const std::string ts = std::to_string(rec.ts_ns);
        const std::string dx = m->die_x ? std::to_string(*m->die_x) : std::string();
        const std::string dy = m->die_y ? std::to_string(*m->die_y) : std::string();
        if (has_sample(*m)) {
          const char* sv[] = {m->lot.c_str(), m->wafer.c_str(), m->sample.c_str(),
                              m->die.c_str(), m->die_x ? dx.c_str() : nullptr,
                              m->die_y ? dy.c_str() : nullptr, ts.c_str()};
          pg_result up(PQexecParams(
              conn_,
              "INSERT INTO samples AS t (lot_id, wafer_id, sample_id, die, die_x, die_y, "
              "first_seen_ns, last_seen_ns) VALUES($1, $2, $3, $4, $5, $6, $7, $7) "
              "ON CONFLICT (lot_id, wafer_id, sample_id, die) DO UPDATE SET "
              "die_x = coalesce(excluded.die_x, t.die_x), die_y = coalesce(excluded.die_y, t.die_y), "
              "first_seen_ns = LEAST(t.first_seen_ns, excluded.first_seen_ns), "
              "last_seen_ns = GREATEST(t.last_seen_ns, excluded.last_seen_ns)",
              7, nullptr, sv, nullptr, nullptr, 0));
          if (up.status() != PGRES_COMMAND_OK) {
            last_error_ = trimmed(PQerrorMessage(conn_));
            return fail();
          }
        }
        const char* rv[] = {b.frame->header.agent_id.c_str(), rec.run_id.c_str(),
                            m->lot.c_str(), m->wafer.c_str(), m->sample.c_str(), m->die.c_str(),
                            m->operator_name.c_str(), m->project.c_str(), ts.c_str()};
        pg_result up(PQexecParams(
            conn_,
            "INSERT INTO run_samples AS t (agent_id, run_id, lot_id, wafer_id, sample_id, die, "
            "operator, project, ts_ns) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9) "
            "ON CONFLICT (agent_id, run_id) DO UPDATE SET lot_id = excluded.lot_id, "
            "wafer_id = excluded.wafer_id, sample_id = excluded.sample_id, die = excluded.die, "
            "operator = excluded.operator, project = excluded.project, ts_ns = excluded.ts_ns "
            "WHERE excluded.ts_ns >= t.ts_ns",
            9, nullptr, rv, nullptr, nullptr, 0));
        if (up.status() != PGRES_COMMAND_OK) {
          last_error_ = trimmed(PQerrorMessage(conn_));
          return fail();
        }
      }
  }

  for (const auto& q : quarantined) {
    const std::string at = std::to_string(q.received_ns), size = std::to_string(q.payload.size());
    const auto kept = q.payload.first(std::min(q.payload.size(), quarantine_cap_));
    const char* values[] = {at.c_str(),
                            q.topic.c_str(),
                            q.agent_id.empty() ? nullptr : q.agent_id.c_str(),
                            q.reason.c_str(),
                            size.c_str(),
                            kept.empty() ? "" : reinterpret_cast<const char*>(kept.data())};
    const int lengths[] = {0, 0, 0, 0, 0, static_cast<int>(kept.size())};
    const int formats[] = {0, 0, 0, 0, 0, 1};  // payload binary
    pg_result r(PQexecParams(conn_,
                             "INSERT INTO quarantine(received_ns, topic, agent_id, reason, bytes, "
                             "payload) VALUES($1, $2, $3, $4, $5, $6)",
                             6, nullptr, values, lengths, formats, 0));
    if (r.status() != PGRES_COMMAND_OK) {
      last_error_ = trimmed(PQerrorMessage(conn_));
      return fail();
    }
  }

  pg_result c(PQexec(conn_, "COMMIT"));
  if (c.status() != PGRES_COMMAND_OK) {
    last_error_ = trimmed(PQerrorMessage(conn_));
    const auto state = c.sqlstate();
    retryable = state == "40P01" || state == "40001";
    return fail();
  }
  return out;
}

result<std::uint64_t> pg_store::scalar(const char* sql) {
  if (!ensure_connection()) return make_error_code(errc::store_read_failed);
  pg_result r(PQexec(conn_, sql));
  if (r.status() != PGRES_TUPLES_OK || PQntuples(r.r) != 1) {
    last_error_ = trimmed(PQerrorMessage(conn_));
    return make_error_code(errc::store_read_failed);
  }
  return as_u64(r.i64(0, 0));
}

result<std::uint64_t> pg_store::record_count() {
  return scalar("SELECT COUNT(*) FROM records");
}
result<std::uint64_t> pg_store::quarantine_count() {
  return scalar("SELECT COUNT(*) FROM quarantine");
}
result<std::uint64_t> pg_store::batch_ledger_count() {
  return scalar("SELECT COUNT(*) FROM batches");
}

result<std::vector<agent_row>> pg_store::agents() {
  if (!ensure_connection()) return make_error_code(errc::store_read_failed);
  pg_result r(PQexec(conn_,
                     "SELECT agent_id, site, records, batches, duplicates, bytes, first_seen_ns, "
                     "last_batch_ns, last_ack_ns FROM agents ORDER BY agent_id"));
  if (r.status() != PGRES_TUPLES_OK) {
    last_error_ = trimmed(PQerrorMessage(conn_));
    return make_error_code(errc::store_read_failed);
  }
  std::vector<agent_row> out;
  out.reserve(static_cast<std::size_t>(PQntuples(r.r)));
  for (int i = 0; i < PQntuples(r.r); ++i) {
    agent_row a;
    a.agent_id = r.text(i, 0);
    a.site = r.text(i, 1);
    a.records = as_u64(r.i64(i, 2));
    a.batches = as_u64(r.i64(i, 3));
    a.duplicates = as_u64(r.i64(i, 4));
    a.bytes = as_u64(r.i64(i, 5));
    a.first_seen_ns = r.i64(i, 6);
    a.last_batch_ns = r.i64(i, 7);  // NULL reads as 0
    a.last_ack_ns = r.i64(i, 8);
    out.push_back(std::move(a));
  }
  return out;
}

result<store_totals> pg_store::totals() {
  if (!ensure_connection()) return make_error_code(errc::store_read_failed);
  // One statement: one snapshot.
  pg_result r(PQexec(conn_,
                     "SELECT COUNT(*), COALESCE(SUM(records), 0), COALESCE(SUM(batches), 0), "
                     "COALESCE(SUM(duplicates), 0), COALESCE(SUM(bytes), 0), "
                     "(SELECT COUNT(*) FROM quarantine) FROM agents"));
  if (r.status() != PGRES_TUPLES_OK || PQntuples(r.r) != 1) {
    last_error_ = trimmed(PQerrorMessage(conn_));
    return make_error_code(errc::store_read_failed);
  }
  store_totals t;
  t.agents = as_u64(r.i64(0, 0));
  t.records = as_u64(r.i64(0, 1));
  t.batches = as_u64(r.i64(0, 2));
  t.duplicates = as_u64(r.i64(0, 3));
  t.bytes = as_u64(r.i64(0, 4));
  t.quarantined = as_u64(r.i64(0, 5));
  return t;
}

result<std::vector<std::uint64_t>> pg_store::record_seqs(std::string_view agent_id,
                                                         std::uint64_t store_epoch) {
  if (!ensure_connection()) return make_error_code(errc::store_read_failed);
  const std::string agent(agent_id), epoch = std::to_string(as_i64(store_epoch));
  const char* params[] = {agent.c_str(), epoch.c_str()};
  pg_result r(
      PQexecParams(conn_, "SELECT record_seq FROM records WHERE agent_id = $1 AND store_epoch = $2",
                   2, nullptr, params, nullptr, nullptr, 0));
  if (r.status() != PGRES_TUPLES_OK) {
    last_error_ = trimmed(PQerrorMessage(conn_));
    return make_error_code(errc::store_read_failed);
  }
  std::vector<std::uint64_t> out;
  out.reserve(static_cast<std::size_t>(PQntuples(r.r)));
  for (int i = 0; i < PQntuples(r.r); ++i) out.push_back(as_u64(r.i64(i, 0)));
  std::sort(out.begin(), out.end());  // as unsigned
  return out;
}

namespace {
constexpr const char* kPgQuarantineColumns =
    "SELECT id, received_ns, topic, COALESCE(agent_id, ''), reason, bytes, length(payload)";

quarantine_row pg_quarantine_columns(const pg_result& r, int i) {
  quarantine_row q;
  q.id = r.i64(i, 0);
  q.received_ns = r.i64(i, 1);
  q.topic = r.text(i, 2);
  q.agent_id = r.text(i, 3);
  q.reason = r.text(i, 4);
  q.bytes = as_u64(r.i64(i, 5));
  q.kept_bytes = as_u64(r.i64(i, 6));
  return q;
}
}  // namespace

result<std::vector<quarantine_row>> pg_store::quarantine_list(std::size_t limit,
                                                              std::int64_t before_id) {
  if (!ensure_connection()) return make_error_code(errc::store_read_failed);
  const std::string sql = std::string(kPgQuarantineColumns) +
                          " FROM quarantine WHERE $1::bigint <= 0 OR id < $1::bigint "
                          "ORDER BY id DESC LIMIT $2::bigint";
  const std::string b = std::to_string(before_id), l = std::to_string(limit);
  const char* params[] = {b.c_str(), l.c_str()};
  pg_result r(PQexecParams(conn_, sql.c_str(), 2, nullptr, params, nullptr, nullptr, 0));
  if (r.status() != PGRES_TUPLES_OK) {
    last_error_ = trimmed(PQerrorMessage(conn_));
    return make_error_code(errc::store_read_failed);
  }
  std::vector<quarantine_row> out;
  for (int i = 0; i < PQntuples(r.r); ++i) out.push_back(pg_quarantine_columns(r, i));
  return out;
}

result<std::optional<quarantine_row>> pg_store::quarantine_get(std::int64_t id) {
  if (!ensure_connection()) return make_error_code(errc::store_read_failed);
  const std::string sql =
      std::string(kPgQuarantineColumns) + ", payload FROM quarantine WHERE id = $1::bigint";
  const std::string v = std::to_string(id);
  const char* params[] = {v.c_str()};
  // Text results: the payload arrives hex-escaped (bytea_output = hex) and is unescaped here.
  pg_result r(PQexecParams(conn_, sql.c_str(), 1, nullptr, params, nullptr, nullptr, 0));
  if (r.status() != PGRES_TUPLES_OK) {
    last_error_ = trimmed(PQerrorMessage(conn_));
    return make_error_code(errc::store_read_failed);
  }
  if (PQntuples(r.r) == 0) return std::optional<quarantine_row>{};
  auto q = pg_quarantine_columns(r, 0);
  std::size_t n = 0;
  unsigned char* raw =
      PQunescapeBytea(reinterpret_cast<const unsigned char*>(PQgetvalue(r.r, 0, 7)), &n);
  if (!raw) {
    last_error_ = "cannot decode the quarantined payload (out of memory)";
    return make_error_code(errc::store_read_failed);
  }
  q.payload.assign(raw, raw + n);
  PQfreemem(raw);
  return std::optional<quarantine_row>(std::move(q));
}

result<std::vector<measurement_row>> pg_store::measurements(const measurement_query& q) {
  if (!ensure_connection()) return make_error_code(errc::store_read_failed);
  std::vector<sql_param> params;
  const auto sql = measurement_sql(q, params, true);
  std::vector<std::string> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p.is_text ? p.t : std::to_string(p.i));
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  pg_result r(PQexecParams(conn_, sql.c_str(), static_cast<int>(ptrs.size()), nullptr, ptrs.data(),
                           nullptr, nullptr, 0));
  if (r.status() != PGRES_TUPLES_OK) {
    last_error_ = trimmed(PQerrorMessage(conn_));
    return make_error_code(errc::store_read_failed);
  }
  std::vector<measurement_row> out;
  out.reserve(static_cast<std::size_t>(PQntuples(r.r)));
  for (int i = 0; i < PQntuples(r.r); ++i) {
    measurement_row m;
    m.agent_id = r.text(i, 0);
    m.store_epoch = as_u64(r.i64(i, 1));
    m.seq = as_u64(r.i64(i, 2));
    m.cls = static_cast<int>(r.i64(i, 3));
    m.ts_ns = r.i64(i, 4);
    m.instrument = r.text(i, 5);
    m.channel = r.text(i, 6);
    m.unit = r.text(i, 7);
    m.quality = static_cast<std::uint32_t>(r.i64(i, 8));
    if (!PQgetisnull(r.r, i, 9)) {
      // float8 text output is shortest-exact (extra_float_digits default 1 in PG >= 12).
      const char* p = PQgetvalue(r.r, i, 9);
      double v = 0;
      std::from_chars(p, p + std::strlen(p), v);
      m.real = v;
    }
    if (!PQgetisnull(r.r, i, 10)) m.integer = r.i64(i, 10);
    if (!PQgetisnull(r.r, i, 11)) m.text = r.text(i, 11);
    if (!PQgetisnull(r.r, i, 12)) m.repr = r.text(i, 12);
    m.run_id = r.text(i, 13);
    out.push_back(std::move(m));
  }
  return out;
}

boost::system::error_code pg_store::ping() {
  auto v = scalar("SELECT 1");
  return v ? boost::system::error_code{} : v.error();
}

namespace {
// Text-format parameter: bytes as bytea's hex input form "\\x...".
std::string param_text(const sql_param& p) {
  if (!p.is_blob) return p.is_text ? p.t : std::to_string(p.i);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\\x";
  out.reserve(2 + 2 * p.t.size());
  for (unsigned char c : p.t) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}
// `?N` -> `$N` (the portable SQL of storage.cpp has no '?' in literals).
std::string dollar_placeholders(std::string_view sql) {
  std::string out(sql);
  for (std::size_t i = 0; i + 1 < out.size(); ++i)
    if (out[i] == '?' && out[i + 1] >= '0' && out[i + 1] <= '9') out[i] = '$';
  return out;
}
}  // namespace

result<sql_rows> pg_store::query(std::string_view sql, std::span<const sql_param> params) {
  if (!ensure_connection()) return make_error_code(errc::store_read_failed);
  std::vector<std::string> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(param_text(p));
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  const auto text = dollar_placeholders(sql);
  pg_result r(PQexecParams(conn_, text.c_str(), static_cast<int>(ptrs.size()), nullptr,
                           ptrs.data(), nullptr, nullptr, 0));
  if (r.status() != PGRES_TUPLES_OK) {
    last_error_ = trimmed(PQerrorMessage(conn_));
    return make_error_code(errc::store_read_failed);
  }
  sql_rows out;
  const int rows = PQntuples(r.r), cols = PQnfields(r.r);
  out.reserve(static_cast<std::size_t>(rows));
  for (int i = 0; i < rows; ++i) {
    std::vector<sql_cell> row(static_cast<std::size_t>(cols));
    for (int c = 0; c < cols; ++c)
      if (!PQgetisnull(r.r, i, c)) row[static_cast<std::size_t>(c)] = r.text(i, c);
    out.push_back(std::move(row));
  }
  return out;
}

result<std::uint64_t> pg_store::execute(std::string_view sql, std::span<const sql_param> params) {
  if (opts_.mode != open_mode::read_write) {
    last_error_ = "store opened read-only";
    return make_error_code(errc::store_write_failed);
  }
  if (!ensure_connection()) return make_error_code(errc::store_write_failed);
  std::vector<std::string> values;
  for (const auto& p : params) values.push_back(param_text(p));
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  const auto text = dollar_placeholders(sql);
  pg_result r(PQexecParams(conn_, text.c_str(), static_cast<int>(ptrs.size()), nullptr,
                           ptrs.data(), nullptr, nullptr, 0));
  if (r.status() != PGRES_COMMAND_OK) {
    last_error_ = trimmed(PQerrorMessage(conn_));
    return make_error_code(errc::store_write_failed);
  }
  std::uint64_t n = 0;
  const char* t = PQcmdTuples(r.r);
  std::from_chars(t, t + std::strlen(t), n);
  return n;
}

}  // namespace semilab::central
