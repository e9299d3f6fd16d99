#include <semilab/central/store.hpp>
#include <semilab/schemas/sql.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <set>
#include <tuple>
#include <type_traits>
#include <variant>

namespace semilab::central {

namespace {

// u64 keys are stored as the signed 64-bit integer with the same bits (0001_store.sql).
std::int64_t as_i64(std::uint64_t v) noexcept { return static_cast<std::int64_t>(v); }
std::uint64_t as_u64(std::int64_t v) noexcept { return static_cast<std::uint64_t>(v); }

// UTC minute and day of a timestamp, truncating like SQL integer division (both backends).
constexpr std::int64_t kMinutesPerDay = 1440;
std::int64_t minute_of(std::int64_t ts_ns) noexcept { return ts_ns / 60'000'000'000; }
std::int64_t day_of(std::int64_t ts_ns) noexcept { return minute_of(ts_ns) / kMinutesPerDay; }

struct stmt {
  sqlite3_stmt* s = nullptr;
  stmt() = default;
  stmt(const stmt&) = delete;
  stmt& operator=(const stmt&) = delete;
  ~stmt() { sqlite3_finalize(s); }
  bool prepare(sqlite3* db, const char* sql) {
    return sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) == SQLITE_OK;
  }
  // Ready for the next use whatever happened in the last one.
  void reset() {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  }
  void bind(int i, std::int64_t v) { sqlite3_bind_int64(s, i, v); }
  void bind(int i, double v) { sqlite3_bind_double(s, i, v); }
  void bind(int i, std::string_view v) {
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  // No copy: `v` must stay alive and unchanged until the statement is reset (hot path).
  void bind_static(int i, std::string_view v) {
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
  }
  void bind_blob(int i, std::span<const std::uint8_t> v) {
    sqlite3_bind_blob(s, i, v.empty() ? "" : static_cast<const void*>(v.data()),
                      static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void bind_null(int i) { sqlite3_bind_null(s, i); }
};

std::string col_text(sqlite3_stmt* s, int i) {
  const auto* p = sqlite3_column_text(s, i);
  return p ? std::string(reinterpret_cast<const char*>(p),
                         static_cast<std::size_t>(sqlite3_column_bytes(s, i)))
           : std::string();
}

}  // namespace

struct sqlite_store::statements {
  stmt begin, commit, rollback;
  stmt insert_record, upsert_agent, insert_batch, insert_quarantine;
  stmt upsert_instrument, insert_minute, insert_run, update_run, upsert_daily;
  stmt upsert_sample, upsert_run_sample;  // 0006_samples.sql
};

sqlite_store::sqlite_store(sqlite3* db) : db_(db) {}

struct sqlite_store::read_cache {
  static constexpr std::size_t kMax = 64;  // distinct filter combinations kept prepared
  std::map<std::string, std::unique_ptr<stmt>, std::less<>> by_sql;
};

class sqlite_store::checkpointer {
 public:
  // Pages in the WAL at which the writer checkpoints by itself (8 KiB pages: 128 MiB).
  static constexpr int kWriterMark = 16384;
  static constexpr auto kPeriod = std::chrono::seconds(1);

  // Opens its own connection to `path`; null if it cannot (the writer then keeps SQLite's own
  // auto-checkpoint, nothing else changes).
  static std::unique_ptr<checkpointer> start(const std::string& path) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                        nullptr) != SQLITE_OK) {
      sqlite3_close_v2(db);
      return nullptr;
    }
    sqlite3_busy_timeout(db, 1000);
    return std::unique_ptr<checkpointer>(new checkpointer(db));
  }
  checkpointer(const checkpointer&) = delete;
  checkpointer& operator=(const checkpointer&) = delete;
  ~checkpointer() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    sqlite3_close_v2(db_);
  }

 private:
  explicit checkpointer(sqlite3* db) : db_(db), thread_([this] { run(); }) {}
  void run() {
    std::unique_lock lk(mu_);
    while (!cv_.wait_for(lk, kPeriod, [this] { return stop_; })) {
      lk.unlock();
      // PASSIVE: copies what no reader still needs, never waits for the writer or readers.
      // A failure (busy, I/O) is retried next period; the writer's mark bounds the WAL.
      int log = 0, done = 0;
      sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
      lk.lock();
    }
  }

  sqlite3* db_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;  // last: started once the members above exist
};

sqlite_store::~sqlite_store() {
  ckpt_.reset();  // its connection first: the writer's close then checkpoints what is left
  st_.reset();  // statements before the connection
  rc_.reset();
  sqlite3_close_v2(db_);
}

bool sqlite_store::exec(const char* sql) {
  char* msg = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
    last_error_ = msg ? msg : sqlite3_errmsg(db_);
    sqlite3_free(msg);
    return false;
  }
  return true;
}

result<std::unique_ptr<sqlite_store>> sqlite_store::open(const store_options& opts, std::string& error) {
  if (opts.path.empty() || opts.path == ":memory:" || opts.path.rfind("file::memory:", 0) == 0) {
    error = "the store needs a database file (WAL)";
    return make_error_code(errc::store_open_failed);
  }
  const bool rw = opts.mode == open_mode::read_write;
  int flags = (rw ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY) |
              SQLITE_OPEN_NOMUTEX;  // one thread at a time per connection (class contract)
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(opts.path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    error = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    return make_error_code(errc::store_open_failed);
  }
  std::unique_ptr<sqlite_store> s(new sqlite_store(db));
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, static_cast<int>(opts.busy_timeout.count()));

  if (rw) {
    // 8 KiB pages for a new database (no effect on an existing one): the record table and its
    // two indexes split half as often; measured 10-15 % more records/s than 4 KiB
    // (bench/central_ingest_bench.cpp). Must precede the first table and the switch to WAL.
    if (!s->exec("PRAGMA page_size=8192")) {
      error = s->last_error_;
      return make_error_code(errc::store_open_failed);
    }
    // journal_mode answers with the mode in effect: anything but "wal" (e.g. a file system
    // without shared memory) is refused rather than silently running in rollback mode.
    {
      stmt jm;  // finalized before the migrations: an active statement blocks their COMMIT
      if (!jm.prepare(db, "PRAGMA journal_mode=WAL") || sqlite3_step(jm.s) != SQLITE_ROW ||
          col_text(jm.s, 0) != "wal") {
        error = "cannot switch the database to WAL mode: " + std::string(sqlite3_errmsg(db));
        return make_error_code(errc::store_open_failed);
      }
    }
    // 64 MiB page cache for the writer: with many agents interleaving, the record indexes'
    // working set outgrows the 2 MiB default and every commit re-reads pages (pread in perf).
    if (!s->exec("PRAGMA cache_size=-65536")) {
      error = s->last_error_;
      return make_error_code(errc::store_open_failed);
    }
    // FULL: the ack promises durability, so the commit must survive a power cut (DESIGN-NOTES).
    if (!s->exec("PRAGMA synchronous=FULL")) {
      error = s->last_error_;
      return make_error_code(errc::store_open_failed);
    }
    if (auto ec = schemas::apply_migrations(db, schemas::central_store_migrations(), error))
      return make_error_code(errc::store_migration_failed);
    if (auto ec = s->prepare_writes()) {
      error = s->last_error_;
      return ec;
    }
    s->ckpt_ = checkpointer::start(opts.path);
    if (s->ckpt_ && !s->exec(("PRAGMA wal_autocheckpoint=" +
                              std::to_string(checkpointer::kWriterMark)).c_str())) {
      error = s->last_error_;
      return make_error_code(errc::store_open_failed);
    }
  } else {
    auto v = schemas::schema_version(db);
    auto steps = schemas::central_store_migrations();
    int newest = steps.empty() ? 0 : steps.back().version;
    if (!v) {
      error = sqlite3_errmsg(db);
      return make_error_code(errc::store_open_failed);
    }
    if (*v == 0 || *v > newest) {
      error = "database schema version " + std::to_string(*v) + " is not one this program reads (" +
              std::to_string(newest) + ")";
      return make_error_code(errc::store_migration_failed);
    }
  }
  return s;
}

boost::system::error_code sqlite_store::prepare_writes() {
  st_ = std::make_unique<statements>();
  struct item {
    stmt* s;
    const char* sql;
  };
  const item items[] = {
      {&st_->begin, "BEGIN IMMEDIATE"},
      {&st_->commit, "COMMIT"},
      {&st_->rollback, "ROLLBACK"},
      {&st_->insert_record,
       "INSERT INTO records(agent_id, store_epoch, record_seq, class, ts_ns, instrument, channel, "
       "unit, quality, value_real, value_int, value_text, value_repr, run_id, received_ns) "
       "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) "
       "ON CONFLICT(agent_id, store_epoch, record_seq) DO NOTHING"},
      {&st_->upsert_agent,
       "INSERT INTO agents(agent_id, site, first_seen_ns, last_batch_ns, last_ack_ns, records, "
       "batches, duplicates, bytes) VALUES(?1, ?2, ?3, ?3, ?4, ?5, 1, ?6, ?7) "
       "ON CONFLICT(agent_id) DO UPDATE SET site = excluded.site, "
       "last_batch_ns = excluded.last_batch_ns, last_ack_ns = excluded.last_ack_ns, "
       "records = records + excluded.records, batches = batches + 1, "
       "duplicates = duplicates + excluded.duplicates, bytes = bytes + excluded.bytes"},
      {&st_->insert_batch,
       "INSERT INTO batches(agent_id, store_epoch, batch_id, first_seq, last_seq, records, "
       "new_records, checksum, signature, received_ns, instance, bytes, signed_header, key_id) "
       "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"},
      {&st_->insert_quarantine,
       "INSERT INTO quarantine(received_ns, topic, agent_id, reason, bytes, payload) "
       "VALUES(?1, ?2, ?3, ?4, ?5, ?6)"},
      {&st_->upsert_instrument,
       "INSERT INTO instruments(agent_id, instrument, first_seen_ns, last_seen_ns, records) "
       "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(agent_id, instrument) DO UPDATE SET "
       "first_seen_ns = min(first_seen_ns, excluded.first_seen_ns), "
       "last_seen_ns = max(last_seen_ns, excluded.last_seen_ns), "
       "records = records + excluded.records"},
      {&st_->insert_minute,
       "INSERT INTO instrument_minutes(agent_id, instrument, minute) VALUES(?1, ?2, ?3) "
       "ON CONFLICT DO NOTHING"},
      {&st_->insert_run,
       "INSERT INTO runs(agent_id, run_id, instrument, first_ts_ns, last_ts_ns, records, results) "
       "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING"},
      {&st_->update_run,
       "UPDATE runs SET first_ts_ns = min(first_ts_ns, ?3), last_ts_ns = max(last_ts_ns, ?4), "
       "records = records + ?5, results = results + ?6 WHERE agent_id = ?1 AND run_id = ?2"},
      {&st_->upsert_daily,
       "INSERT INTO daily_summaries(agent_id, instrument, day, measurements, results, events, "
       "runs, active_minutes) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
       "ON CONFLICT(agent_id, instrument, day) DO UPDATE SET "
       "measurements = measurements + excluded.measurements, "
       "results = results + excluded.results, events = events + excluded.events, "
       "runs = runs + excluded.runs, active_minutes = active_minutes + excluded.active_minutes"},
      {&st_->upsert_sample,
       "INSERT INTO samples(lot_id, wafer_id, sample_id, die, die_x, die_y, first_seen_ns, "
       "last_seen_ns) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) "
       "ON CONFLICT(lot_id, wafer_id, sample_id, die) DO UPDATE SET "
       "die_x = coalesce(excluded.die_x, die_x), die_y = coalesce(excluded.die_y, die_y), "
       "first_seen_ns = min(first_seen_ns, excluded.first_seen_ns), "
       "last_seen_ns = max(last_seen_ns, excluded.last_seen_ns)"},
      {&st_->upsert_run_sample,
       "INSERT INTO run_samples(agent_id, run_id, lot_id, wafer_id, sample_id, die, operator, "
       "project, ts_ns) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
       "ON CONFLICT(agent_id, run_id) DO UPDATE SET lot_id = excluded.lot_id, "
       "wafer_id = excluded.wafer_id, sample_id = excluded.sample_id, die = excluded.die, "
       "operator = excluded.operator, project = excluded.project, ts_ns = excluded.ts_ns "
       "WHERE excluded.ts_ns >= run_samples.ts_ns"},
  };
  for (const auto& it : items) {
    if (!it.s->prepare(db_, it.sql)) {
      last_error_ = sqlite3_errmsg(db_);
      return make_error_code(errc::store_open_failed);
    }
  }
  return {};
}

boost::system::error_code sqlite_store::insert_quarantine(const quarantine_entry& q) {
  auto& s = st_->insert_quarantine;
  s.reset();
  s.bind(1, q.received_ns);
  s.bind(2, std::string_view(q.topic));
  if (q.agent_id.empty())
    s.bind_null(3);
  else
    s.bind(3, std::string_view(q.agent_id));
  s.bind(4, std::string_view(q.reason));
  s.bind(5, static_cast<std::int64_t>(q.payload.size()));
  s.bind_blob(6, q.payload.first(std::min(q.payload.size(), quarantine_cap_)));
  if (sqlite3_step(s.s) != SQLITE_DONE) {
    last_error_ = sqlite3_errmsg(db_);
    s.reset();
    return make_error_code(errc::store_write_failed);
  }
  s.reset();
  return {};
}

result<stored_info> sqlite_store::insert_batch(const batch_to_store& b, std::string_view instance,
                                        std::int64_t commit_ns) {
  const auto& h = b.frame->header;
  const std::string_view agent = h.agent_id;
  stored_info info;
  // The data model (0003_data_model.sql) from the newly stored records only; views into the
  // frame's strings, alive for this call.
  struct day_acc {
    std::int64_t measurements = 0, results = 0, events = 0, runs = 0, minutes = 0;
  };
  struct inst_acc {
    std::int64_t first = INT64_MAX, last = INT64_MIN, records = 0;
  };
  struct run_acc {
    std::string_view instrument;
    std::int64_t first = INT64_MAX, last = INT64_MIN, records = 0, results = 0;
  };
  std::map<std::pair<std::string_view, std::int64_t>, day_acc> days;
  std::map<std::string_view, inst_acc> insts;
  std::set<std::pair<std::string_view, std::int64_t>> minutes;
  std::map<std::string_view, run_acc> runs;
  day_acc* cur_day = nullptr;
  inst_acc* cur_inst = nullptr;
  run_acc* cur_run = nullptr;
  std::string_view last_inst, last_run;
  std::int64_t last_day = 0, last_minute = 0;
  // Hot path (one statement run per record; profiled: three quarters of the time is SQLite's
  // B-tree inserts into the record table and its two indexes plus the WAL writes, so a
  // multi-row INSERT ... RETURNING measured no faster and is not used). Every parameter is
  // bound on every row (no sqlite3_clear_bindings), text without copies (SQLITE_STATIC): the
  // frame's strings and `repr` outlive the step, and the statement is reset before they change.
  const auto& recs = b.frame->records;
  std::vector<char> fresh(recs.size(), 0);
  std::vector<std::size_t> metadata;  // fresh run_metadata records (rare)
  std::string repr;
  auto& ins = st_->insert_record;
  sqlite3_reset(ins.s);
  ins.bind_static(1, agent);
  ins.bind(2, as_i64(h.store_epoch));
  ins.bind(15, b.received_ns);
  for (std::size_t i = 0; i < recs.size(); ++i) {
    const auto& r = recs[i];
    sqlite3_reset(ins.s);
    ins.bind(3, as_i64(r.seq));
    ins.bind(4, static_cast<std::int64_t>(r.cls));
    ins.bind(5, r.ts_ns);
    ins.bind_static(6, r.instrument);
    ins.bind_static(7, r.channel);
    ins.bind_static(8, r.unit);
    ins.bind(9, static_cast<std::int64_t>(r.quality));
    for (int c = 10; c <= 13; ++c) ins.bind_null(c);
    std::visit(
        [&ins, &repr](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, double>) {
            ins.bind(10, v);
          } else if constexpr (std::is_same_v<T, std::int64_t>) {
            ins.bind(11, v);
          } else if constexpr (std::is_same_v<T, schemas::decimal>) {
            ins.bind(10, v.to_double());
            repr = v.to_string();
            ins.bind_static(13, repr);
          } else {
            ins.bind_static(12, v);
          }
        },
        r.val);
    if (r.run_id.empty())
      ins.bind_null(14);
    else
      ins.bind_static(14, r.run_id);
    if (sqlite3_step(ins.s) != SQLITE_DONE) {
      last_error_ = sqlite3_errmsg(db_);
      ins.reset();
      return make_error_code(errc::store_write_failed);
    }
    fresh[i] = sqlite3_changes(db_) > 0 ? 1 : 0;
  }
  ins.reset();

  for (std::size_t i = 0; i < recs.size(); ++i) {
    const auto& r = recs[i];
    if (!fresh[i]) {
      ++info.duplicates;
      continue;
    }
    ++info.new_records;
    if (is_run_metadata(r)) metadata.push_back(i);
    // Consecutive records mostly share instrument, minute and run: look the maps up only when
    // one of them changes (map nodes are stable, the pointers stay valid).
    const std::string_view inst(r.instrument);
    const std::int64_t minute = minute_of(r.ts_ns), day = minute / kMinutesPerDay;
    const bool same_inst = cur_inst && inst == last_inst;
    if (!same_inst) cur_inst = &insts[inst];
    if (!same_inst || day != last_day) cur_day = &days[{inst, day}];
    if (!same_inst || minute != last_minute) minutes.insert({inst, minute});
    last_inst = inst;
    last_day = day;
    last_minute = minute;
    auto& d = *cur_day;
    if (r.cls == schemas::record_class::telemetry) ++d.measurements;
    if (r.cls == schemas::record_class::run_result) ++d.results;
    if (r.cls == schemas::record_class::event) ++d.events;
    auto& ia = *cur_inst;
    ia.first = std::min(ia.first, r.ts_ns);
    ia.last = std::max(ia.last, r.ts_ns);
    ++ia.records;
    if (!r.run_id.empty()) {
      if (!cur_run || r.run_id != last_run) cur_run = &runs[std::string_view(r.run_id)];
      last_run = r.run_id;
      auto& ra = *cur_run;
      if (r.ts_ns < ra.first) ra.instrument = inst;  // instrument of the earliest record
      ra.first = std::min(ra.first, r.ts_ns);
      ra.last = std::max(ra.last, r.ts_ns);
      ++ra.records;
      if (r.cls == schemas::record_class::run_result) ++ra.results;
    }
  }
  auto step = [this](stmt& st) {
    const int rc = sqlite3_step(st.s);
    const bool changed = rc == SQLITE_DONE && sqlite3_changes(db_) > 0;
    if (rc != SQLITE_DONE) last_error_ = sqlite3_errmsg(db_);
    st.reset();
    return rc == SQLITE_DONE ? (changed ? 1 : 0) : -1;
  };
  for (const auto& [inst, m] : minutes) {
    auto& st = st_->insert_minute;
    st.reset();
    st.bind(1, agent);
    st.bind(2, inst);
    st.bind(3, m);
    const int rc = step(st);
    if (rc < 0) return make_error_code(errc::store_write_failed);
    if (rc > 0) ++days[{inst, m / kMinutesPerDay}].minutes;
  }
  for (const auto& [run, ra] : runs) {
    auto& st = st_->insert_run;
    st.reset();
    st.bind(1, agent);
    st.bind(2, run);
    st.bind(3, ra.instrument);
    st.bind(4, ra.first);
    st.bind(5, ra.last);
    st.bind(6, ra.records);
    st.bind(7, ra.results);
    int rc = step(st);
    if (rc < 0) return make_error_code(errc::store_write_failed);
    if (rc > 0) {
      ++days[{ra.instrument, day_of(ra.first)}].runs;  // a run counts on the day it started
      continue;
    }
    auto& up = st_->update_run;
    up.reset();
    up.bind(1, agent);
    up.bind(2, run);
    up.bind(3, ra.first);
    up.bind(4, ra.last);
    up.bind(5, ra.records);
    up.bind(6, ra.results);
    if (step(up) < 0) return make_error_code(errc::store_write_failed);
  }
  for (const auto& [inst, ia] : insts) {
    auto& st = st_->upsert_instrument;
    st.reset();
    st.bind(1, agent);
    st.bind(2, inst);
    st.bind(3, ia.first);
    st.bind(4, ia.last);
    st.bind(5, ia.records);
    if (step(st) < 0) return make_error_code(errc::store_write_failed);
  }
  for (const auto& [key, d] : days) {
    auto& st = st_->upsert_daily;
    st.reset();
    st.bind(1, agent);
    st.bind(2, key.first);
    st.bind(3, key.second);
    st.bind(4, d.measurements);
    st.bind(5, d.results);
    st.bind(6, d.events);
    st.bind(7, d.runs);
    st.bind(8, d.minutes);
    if (step(st) < 0) return make_error_code(errc::store_write_failed);
  }
  for (const std::size_t i : metadata) {
    // Samples (0006_samples.sql); a metadata record that does not decode stays a plain event.
    const auto& r = recs[i];
    auto m = schemas::decode_run_metadata(std::get<std::string>(r.val));
    if (!m) continue;
    if (has_sample(*m)) {
      auto& st = st_->upsert_sample;
      st.reset();
      st.bind(1, std::string_view(m->lot));
      st.bind(2, std::string_view(m->wafer));
      st.bind(3, std::string_view(m->sample));
      st.bind(4, std::string_view(m->die));
      if (m->die_x) st.bind(5, *m->die_x);
      if (m->die_y) st.bind(6, *m->die_y);
      st.bind(7, r.ts_ns);
      if (step(st) < 0) return make_error_code(errc::store_write_failed);
    }
    auto& rs = st_->upsert_run_sample;
    rs.reset();
    rs.bind(1, agent);
    rs.bind(2, std::string_view(r.run_id));
    rs.bind(3, std::string_view(m->lot));
    rs.bind(4, std::string_view(m->wafer));
    rs.bind(5, std::string_view(m->sample));
    rs.bind(6, std::string_view(m->die));
    rs.bind(7, std::string_view(m->operator_name));
    rs.bind(8, std::string_view(m->project));
    rs.bind(9, r.ts_ns);
    if (step(rs) < 0) return make_error_code(errc::store_write_failed);
  }

  auto& ag = st_->upsert_agent;
  ag.reset();
  ag.bind(1, agent);
  ag.bind(2, std::string_view(b.topic->site));
  ag.bind(3, b.received_ns);
  ag.bind(4, commit_ns);
  ag.bind(5, static_cast<std::int64_t>(info.new_records));
  ag.bind(6, static_cast<std::int64_t>(info.duplicates));
  ag.bind(7, static_cast<std::int64_t>(b.raw_bytes));
  int rc = sqlite3_step(ag.s);
  ag.reset();
  if (rc != SQLITE_DONE) {
    last_error_ = sqlite3_errmsg(db_);
    return make_error_code(errc::store_write_failed);
  }

  auto& bt = st_->insert_batch;
  bt.reset();
  bt.bind(1, agent);
  bt.bind(2, as_i64(h.store_epoch));
  bt.bind(3, as_i64(h.batch_id));
  bt.bind(4, as_i64(h.ranges.empty() ? 0 : h.ranges.front().first));
  bt.bind(5, as_i64(h.ranges.empty() ? 0 : h.ranges.back().last));
  bt.bind(6, static_cast<std::int64_t>(h.record_count));
  bt.bind(7, static_cast<std::int64_t>(info.new_records));
  bt.bind_blob(8, h.checksum);
  if (h.signature.empty())
    bt.bind_null(9);
  else
    bt.bind_blob(9, h.signature);
  bt.bind(10, b.received_ns);
  bt.bind(11, instance);
  bt.bind(12, static_cast<std::int64_t>(b.raw_bytes));
  if (b.signed_header.empty())
    bt.bind_null(13);
  else
    bt.bind_blob(13, b.signed_header);
  if (b.key_id.empty())
    bt.bind_null(14);
  else
    bt.bind(14, b.key_id);
  rc = sqlite3_step(bt.s);
  bt.reset();
  if (rc != SQLITE_DONE) {
    last_error_ = sqlite3_errmsg(db_);
    return make_error_code(errc::store_write_failed);
  }
  return info;
}

result<std::vector<stored_info>> sqlite_store::store_group(std::span<const batch_to_store> batches,
                                                    std::span<const quarantine_entry> quarantined,
                                                    std::string_view instance) {
  if (!st_) {
    last_error_ = "store opened read-only";
    return make_error_code(errc::store_write_failed);
  }
  std::vector<stored_info> out;
  out.reserve(batches.size());
  if (batches.empty() && quarantined.empty()) return out;

  auto fail = [this]() -> result<std::vector<stored_info>> {
    // After an error SQLite may already have rolled back (SQLITE_FULL, IOERR); ROLLBACK then
    // fails harmlessly. Either way the connection is out of the transaction afterwards.
    if (!sqlite3_get_autocommit(db_)) {
      st_->rollback.reset();
      sqlite3_step(st_->rollback.s);
      st_->rollback.reset();
    }
    return make_error_code(errc::store_write_failed);
  };

  st_->begin.reset();
  if (sqlite3_step(st_->begin.s) != SQLITE_DONE) {
    last_error_ = sqlite3_errmsg(db_);
    st_->begin.reset();
    return fail();
  }
  st_->begin.reset();
  const std::int64_t commit_ns = now_ns();
  for (const auto& b : batches) {
    auto r = insert_batch(b, instance, commit_ns);
    if (!r) return fail();
    out.push_back(*r);
  }
  for (const auto& q : quarantined)
    if (insert_quarantine(q)) return fail();
  st_->commit.reset();
  if (sqlite3_step(st_->commit.s) != SQLITE_DONE) {
    last_error_ = sqlite3_errmsg(db_);
    st_->commit.reset();
    return fail();
  }
  st_->commit.reset();
  return out;
}

result<std::uint64_t> sqlite_store::scalar(const char* sql) {
  stmt s;
  if (!s.prepare(db_, sql)) {
    last_error_ = sqlite3_errmsg(db_);
    return make_error_code(errc::store_read_failed);
  }
  if (sqlite3_step(s.s) != SQLITE_ROW) {
    last_error_ = sqlite3_errmsg(db_);
    return make_error_code(errc::store_read_failed);
  }
  return as_u64(sqlite3_column_int64(s.s, 0));
}

result<std::uint64_t> sqlite_store::record_count() { return scalar("SELECT COUNT(*) FROM records"); }
result<std::uint64_t> sqlite_store::quarantine_count() { return scalar("SELECT COUNT(*) FROM quarantine"); }
result<std::uint64_t> sqlite_store::batch_ledger_count() { return scalar("SELECT COUNT(*) FROM batches"); }

result<std::vector<agent_row>> sqlite_store::agents() {
  stmt s;
  if (!s.prepare(db_,
                 "SELECT agent_id, site, records, batches, duplicates, bytes, first_seen_ns, "
                 "last_batch_ns, last_ack_ns FROM agents ORDER BY agent_id")) {
    last_error_ = sqlite3_errmsg(db_);
    return make_error_code(errc::store_read_failed);
  }
  std::vector<agent_row> out;
  int rc;
  while ((rc = sqlite3_step(s.s)) == SQLITE_ROW) {
    agent_row a;
    a.agent_id = col_text(s.s, 0);
    a.site = col_text(s.s, 1);
    a.records = as_u64(sqlite3_column_int64(s.s, 2));
    a.batches = as_u64(sqlite3_column_int64(s.s, 3));
    a.duplicates = as_u64(sqlite3_column_int64(s.s, 4));
    a.bytes = as_u64(sqlite3_column_int64(s.s, 5));
    a.first_seen_ns = sqlite3_column_int64(s.s, 6);
    a.last_batch_ns = sqlite3_column_int64(s.s, 7);  // NULL reads as 0
    a.last_ack_ns = sqlite3_column_int64(s.s, 8);
    out.push_back(std::move(a));
  }
  if (rc != SQLITE_DONE) {
    last_error_ = sqlite3_errmsg(db_);
    return make_error_code(errc::store_read_failed);
  }
  return out;
}

result<store_totals> sqlite_store::totals() {
  stmt s;
  if (!s.prepare(db_,
                 "SELECT COUNT(*), COALESCE(SUM(records), 0), COALESCE(SUM(batches), 0), "
                 "COALESCE(SUM(duplicates), 0), COALESCE(SUM(bytes), 0), "
                 "(SELECT COUNT(*) FROM quarantine) FROM agents")) {
    last_error_ = sqlite3_errmsg(db_);
    return make_error_code(errc::store_read_failed);
  }
  if (sqlite3_step(s.s) != SQLITE_ROW) {
    last_error_ = sqlite3_errmsg(db_);
    return make_error_code(errc::store_read_failed);
  }
  // One read transaction: the numbers are consistent with each other.
  store_totals t;
  t.agents = as_u64(sqlite3_column_int64(s.s, 0));
  t.records = as_u64(sqlite3_column_int64(s.s, 1));
  t.batches = as_u64(sqlite3_column_int64(s.s, 2));
  t.duplicates = as_u64(sqlite3_column_int64(s.s, 3));
  t.bytes = as_u64(sqlite3_column_int64(s.s, 4));
  t.quarantined = as_u64(sqlite3_column_int64(s.s, 5));
  return t;
}

result<std::vector<std::uint64_t>> sqlite_store::record_seqs(std::string_view agent_id,
                                                             std::uint64_t store_epoch) {
  stmt s;
  if (!s.prepare(db_,
                 "SELECT record_seq FROM records WHERE agent_id = ?1 AND store_epoch = ?2")) {
    last_error_ = sqlite3_errmsg(db_);
    return make_error_code(errc::store_read_failed);
  }
  s.bind(1, agent_id);
  s.bind(2, as_i64(store_epoch));
  std::vector<std::uint64_t> out;
  int rc;
  while ((rc = sqlite3_step(s.s)) == SQLITE_ROW) out.push_back(as_u64(sqlite3_column_int64(s.s, 0)));
  if (rc != SQLITE_DONE) {
    last_error_ = sqlite3_errmsg(db_);
    return make_error_code(errc::store_read_failed);
  }
  // Sorted as unsigned: the same-bits key orders seqs >= 2^63 first.
  std::sort(out.begin(), out.end());
  return out;
}

namespace {
constexpr const char* kQuarantineColumns =
    "SELECT id, received_ns, topic, COALESCE(agent_id, ''), reason, bytes, length(payload)";

quarantine_row quarantine_columns(sqlite3_stmt* s) {
  quarantine_row q;
  q.id = sqlite3_column_int64(s, 0);
  q.received_ns = sqlite3_column_int64(s, 1);
  q.topic = col_text(s, 2);
  q.agent_id = col_text(s, 3);
  q.reason = col_text(s, 4);
  q.bytes = as_u64(sqlite3_column_int64(s, 5));
  q.kept_bytes = as_u64(sqlite3_column_int64(s, 6));
  return q;
}
}  // namespace

result<std::vector<quarantine_row>> sqlite_store::quarantine_list(std::size_t limit,
                                                                  std::int64_t before_id) {
  stmt s;
  const std::string sql = std::string(kQuarantineColumns) +
                          " FROM quarantine WHERE ?1 <= 0 OR id < ?1 ORDER BY id DESC LIMIT ?2";
  if (!s.prepare(db_, sql.c_str())) {
    last_error_ = sqlite3_errmsg(db_);
    return make_error_code(errc::store_read_failed);
  }
  s.bind(1, before_id);
  s.bind(2, static_cast<std::int64_t>(limit));
  std::vector<quarantine_row> out;
  int rc;
  while ((rc = sqlite3_step(s.s)) == SQLITE_ROW) out.push_back(quarantine_columns(s.s));
  if (rc != SQLITE_DONE) {
    last_error_ = sqlite3_errmsg(db_);
    return make_error_code(errc::store_read_failed);
  }
  return out;
}

result<std::optional<quarantine_row>> sqlite_store::quarantine_get(std::int64_t id) {
  stmt s;
  const std::string sql = std::string(kQuarantineColumns) + ", payload FROM quarantine WHERE id = ?1";
  if (!s.prepare(db_, sql.c_str())) {
    last_error_ = sqlite3_errmsg(db_);
    return make_error_code(errc::store_read_failed);
  }
  s.bind(1, id);
  const int rc = sqlite3_step(s.s);
  if (rc == SQLITE_DONE) return std::optional<quarantine_row>{};
  if (rc != SQLITE_ROW) {
    last_error_ = sqlite3_errmsg(db_);
    return make_error_code(errc::store_read_failed);
  }
  auto q = quarantine_columns(s.s);
  const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(s.s, 7));
  q.payload.assign(p, p + sqlite3_column_bytes(s.s, 7));
  return std::optional<quarantine_row>(std::move(q));
}

result<std::vector<measurement_row>> sqlite_store::measurements(const measurement_query& q) {
  std::vector<sql_param> params;
  auto sql = measurement_sql(q, params, false);
  if (!rc_) rc_ = std::make_unique<read_cache>();
  auto it = rc_->by_sql.find(sql);
  if (it == rc_->by_sql.end()) {
    auto p = std::make_unique<stmt>();
    if (!p->prepare(db_, sql.c_str())) {
      last_error_ = sqlite3_errmsg(db_);
      return make_error_code(errc::store_read_failed);
    }
    if (rc_->by_sql.size() >= read_cache::kMax) rc_->by_sql.clear();
    it = rc_->by_sql.emplace(std::move(sql), std::move(p)).first;
  }
  auto& s = *it->second;
  // Reset (ends the statement's read transaction) and unbound whatever happens below.
  struct done {
    stmt& s;
    ~done() { s.reset(); }
  } guard{s};
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (params[i].is_text)
      s.bind(static_cast<int>(i + 1), std::string_view(params[i].t));
    else
      s.bind(static_cast<int>(i + 1), params[i].i);
  }
  std::vector<measurement_row> out;
  int rc;
  while ((rc = sqlite3_step(s.s)) == SQLITE_ROW) {
    measurement_row m;
    m.agent_id = col_text(s.s, 0);
    m.store_epoch = as_u64(sqlite3_column_int64(s.s, 1));
    m.seq = as_u64(sqlite3_column_int64(s.s, 2));
    m.cls = sqlite3_column_int(s.s, 3);
    m.ts_ns = sqlite3_column_int64(s.s, 4);
    m.instrument = col_text(s.s, 5);
    m.channel = col_text(s.s, 6);
    m.unit = col_text(s.s, 7);
    m.quality = static_cast<std::uint32_t>(sqlite3_column_int64(s.s, 8));
    if (sqlite3_column_type(s.s, 9) != SQLITE_NULL) m.real = sqlite3_column_double(s.s, 9);
    if (sqlite3_column_type(s.s, 10) != SQLITE_NULL) m.integer = sqlite3_column_int64(s.s, 10);
    if (sqlite3_column_type(s.s, 11) != SQLITE_NULL) m.text = col_text(s.s, 11);
    if (sqlite3_column_type(s.s, 12) != SQLITE_NULL) m.repr = col_text(s.s, 12);
    m.run_id = col_text(s.s, 13);
    out.push_back(std::move(m));
  }
  if (rc != SQLITE_DONE) {
    last_error_ = sqlite3_errmsg(db_);
    return make_error_code(errc::store_read_failed);
  }
  return out;
}

boost::system::error_code sqlite_store::ping() {
  auto v = scalar("SELECT COUNT(*) FROM schema_version");
  return v ? boost::system::error_code{} : v.error();
}

namespace {
// Binds generic parameters (1-based, in order).
void bind_params(stmt& s, std::span<const sql_param> params) {
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (params[i].is_blob)
      s.bind_blob(static_cast<int>(i + 1),
                  {reinterpret_cast<const std::uint8_t*>(params[i].t.data()), params[i].t.size()});
    else if (params[i].is_text)
      s.bind(static_cast<int>(i + 1), std::string_view(params[i].t));
    else
      s.bind(static_cast<int>(i + 1), params[i].i);
  }
}
}  // namespace

result<sql_rows> sqlite_store::query(std::string_view sql, std::span<const sql_param> params) {
  stmt s;
  const std::string text(sql);
  if (!s.prepare(db_, text.c_str())) {
    last_error_ = sqlite3_errmsg(db_);
    return make_error_code(errc::store_read_failed);
  }
  bind_params(s, params);
  sql_rows out;
  const int cols = sqlite3_column_count(s.s);
  int rc;
  while ((rc = sqlite3_step(s.s)) == SQLITE_ROW) {
    std::vector<sql_cell> row(static_cast<std::size_t>(cols));
    for (int c = 0; c < cols; ++c) {
      switch (sqlite3_column_type(s.s, c)) {
        case SQLITE_NULL: break;
        case SQLITE_INTEGER: row[static_cast<std::size_t>(c)] = std::to_string(sqlite3_column_int64(s.s, c)); break;
        case SQLITE_FLOAT: {
          char buf[32];
          auto [p, ec] = std::to_chars(buf, buf + sizeof buf, sqlite3_column_double(s.s, c));
          row[static_cast<std::size_t>(c)] = std::string(buf, ec == std::errc() ? p : buf);
          break;
        }
        default: row[static_cast<std::size_t>(c)] = col_text(s.s, c);
      }
    }
    out.push_back(std::move(row));
  }
  if (rc != SQLITE_DONE) {
    last_error_ = sqlite3_errmsg(db_);
    return make_error_code(errc::store_read_failed);
  }
  return out;
}

result<std::uint64_t> sqlite_store::execute(std::string_view sql,
                                            std::span<const sql_param> params) {
  if (!st_) {
    last_error_ = "store opened read-only";
    return make_error_code(errc::store_write_failed);
  }
  stmt s;
  const std::string text(sql);
  if (!s.prepare(db_, text.c_str())) {
    last_error_ = sqlite3_errmsg(db_);
    return make_error_code(errc::store_write_failed);
  }
  bind_params(s, params);
  if (sqlite3_step(s.s) != SQLITE_DONE) {
    last_error_ = sqlite3_errmsg(db_);
    return make_error_code(errc::store_write_failed);
  }
  return static_cast<std::uint64_t>(sqlite3_changes64(db_));
}

}  // namespace semilab::central
