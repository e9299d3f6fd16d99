#include <semilab/schemas/drop_notice.hpp>
#include <semilab/schemas/sql.hpp>
#include <semilab/sync/outbox.hpp>

#include <array>
#include <cstring>
#include <fstream>
#include <optional>

#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <random>
#include <thread>
#include <variant>

#include <semilab/schemas/topics.hpp>

#include <algorithm>
#include <pthread.h>

#include "error.hpp"
#include "sqlite_util.hpp"

namespace semilab::sync {

namespace {

class category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "semilab.sync"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::ok: return "ok";
      case errc::storage: return "outbox storage error";
      case errc::closed: return "outbox closed";
      case errc::agent_mismatch: return "outbox belongs to another agent";
      case errc::bad_record: return "record cannot be stored";
      case errc::quota: return "outbox quota reached: intake of this class is paused";
    }
    return "sync error " + std::to_string(ev);
  }
};

std::uint64_t new_epoch() {
  std::random_device rd;
  std::uint64_t e = 0;
  while (e == 0) e = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  return e;
}

// Size estimate of one stored record: what the row costs, for status and quota.
std::uint64_t record_bytes(const schemas::record& r) {
  std::uint64_t n = 40 + r.instrument.size() + r.channel.size() + r.unit.size() + r.run_id.size();
  if (auto* t = std::get_if<std::string>(&r.val)) n += t->size();
  return n;
}

}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const category c;
  return c;
}

namespace {

// Moves every dead letter back into the outbox with its seq (the caller owns the transaction).
bool move_dead_letters_back(sqlite3* db, std::uint64_t& moved, std::string* err) {
  if (!detail::exec(db,
                    "INSERT OR IGNORE INTO outbox(seq, class, ts_ns, instrument, channel, unit,"
                    " quality, vkind, vnum, vexp, vtext, run_id, bytes) SELECT seq, class, ts_ns,"
                    " instrument, channel, unit, quality, vkind, vnum, vexp, vtext, run_id, bytes"
                    " FROM dead_letter",
                    err))
    return false;
  moved = static_cast<std::uint64_t>(sqlite3_changes(db));
  return detail::exec(db, "DELETE FROM dead_letter", err);
}

// Reads the persisted counters and the held records (outbox + dead letters) in one statement
// each; callers wrap it in a transaction when they need one snapshot.
bool read_counters(sqlite3* db, outbox_counters& c) {
  auto v = schemas::schema_version(db);
  if (!v) return false;
  detail::statement q(db, "SELECT name, value FROM counters");
  // Held bytes are a persisted counter ("held_bytes", kept in every transaction): summing the
  // column would read the whole table at every start (seconds for a 1 GB outbox).
  const char* held_sql =
      *v >= 2 ? "SELECT (SELECT COUNT(*) FROM outbox), 0,"
                " (SELECT ts_ns FROM outbox ORDER BY seq LIMIT 1), (SELECT COUNT(*) FROM dead_letter), 0"
              : "SELECT (SELECT COUNT(*) FROM outbox), 0,"
                " (SELECT ts_ns FROM outbox ORDER BY seq LIMIT 1), 0, 0";
  detail::statement h(db, held_sql);
  if (!q || !h) return false;
  int rc;
  std::optional<std::uint64_t> held_bytes;
  while ((rc = q.step()) == SQLITE_ROW) {
    auto name = q.text(0);
    auto n = static_cast<std::uint64_t>(q.int64(1));
    if (name == "produced") c.produced = n;
    else if (name == "acked") c.acked = n;
    else if (name == "dropped") c.dropped = n;
    else if (name == "held_bytes") held_bytes = n;
    else if (name == "retained") c.retained = n;
    else if (name == "retained_bytes") c.retained_bytes = n;
    else c.by_reason[name] = n;
    if (name.rfind("refused.", 0) == 0) c.refused += n;
  }
  if (rc != SQLITE_DONE || h.step() != SQLITE_ROW) return false;
  c.dead_letters = static_cast<std::uint64_t>(h.int64(3));
  c.held = static_cast<std::uint64_t>(h.int64(0)) + c.dead_letters;
  if (held_bytes) {
    c.held_bytes = *held_bytes;
  } else {  // an outbox from before the counter: sum once (open_db then persists it)
    detail::statement b(db, *v >= 2 ? "SELECT (SELECT COALESCE(SUM(bytes),0) FROM outbox) +"
                                      " (SELECT COALESCE(SUM(bytes),0) FROM dead_letter)"
                                    : "SELECT COALESCE(SUM(bytes),0) FROM outbox");
    if (!b || b.step() != SQLITE_ROW) return false;
    c.held_bytes = static_cast<std::uint64_t>(b.int64(0));
    c.by_reason.erase("held_bytes");
  }
  c.oldest_ts_ns = h.int64(2);
  return true;
}

}  // namespace

namespace {

bool is_corruption(int rc) {
  rc &= 0xff;
  return rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB;
}

std::int64_t wall_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Moves the database and its WAL/SHM aside for forensics; returns the new name of the main file.
std::string move_aside(const std::string& path) {
  auto stamp = std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count());
  std::string target = path + ".corrupt-" + stamp;
  std::error_code ec;
  for (int i = 1; std::filesystem::exists(target, ec); ++i)
    target = path + ".corrupt-" + stamp + "-" + std::to_string(i);
  for (auto ext : {"", "-wal", "-shm"}) {
    if (std::filesystem::exists(path + ext, ec))
      std::filesystem::rename(path + ext, target + ext, ec);
  }
  return target;
}

// Cheap check of the database header before SQLite sees the file: the magic, a valid page size,
// and a file not shorter than the page count the header vouches for (a truncated file). Returns
// the reason when the file is damaged.
std::optional<std::string> check_header(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  unsigned char h[100];
  if (!f.read(reinterpret_cast<char*>(h), sizeof h)) return "header: file shorter than 100 bytes";
  if (std::memcmp(h, "SQLite format 3", 16) != 0) return "header: not an SQLite database";
  auto be32 = [&](int o) {
    return (std::uint32_t{h[o]} << 24) | (std::uint32_t{h[o + 1]} << 16) |
           (std::uint32_t{h[o + 2]} << 8) | std::uint32_t{h[o + 3]};
  };
  std::uint32_t page = (std::uint32_t{h[16]} << 8) | h[17];
  if (page == 1) page = 65536;
  if (page < 512 || (page & (page - 1)) != 0) return "header: invalid page size";
  std::uint32_t pages = be32(28);
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  // The in-header size is valid only when the change counter matches version-valid-for.
  if (!ec && pages != 0 && be32(24) == be32(92) &&
      size < static_cast<std::uintmax_t>(pages) * page)
    return "header: file truncated (" + std::to_string(size) + " bytes, header says " +
           std::to_string(pages) + " pages of " + std::to_string(page) + ")";
  return std::nullopt;
}

// What can still be read of a damaged outbox, for the unrecoverable-records notice. Every part
// is best effort: a field that cannot be read stays 0.
struct lost_records {
  std::uint64_t epoch = 0, count = 0, first = 0, last = 0;
  std::int64_t first_ts = 0, last_ts = 0;
};
lost_records probe_lost(const std::string& path) {
  lost_records l;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    detail::statement e(db, "SELECT value FROM meta WHERE key = 'store_epoch'");
    if (e && e.step() == SQLITE_ROW) l.epoch = std::strtoull(e.text(0).c_str(), nullptr, 10);
    detail::statement q(db, "SELECT COUNT(*), MIN(seq), MAX(seq), MIN(ts_ns), MAX(ts_ns) FROM outbox");
    if (q && q.step() == SQLITE_ROW) {
      l.count = static_cast<std::uint64_t>(q.int64(0));
      l.first = static_cast<std::uint64_t>(q.int64(1));
      l.last = static_cast<std::uint64_t>(q.int64(2));
      l.first_ts = q.int64(3);
      l.last_ts = q.int64(4);
    }
  }
  sqlite3_close(db);
  return l;
}

constexpr std::uint32_t class_bit(schemas::record_class c) { return 1u << static_cast<unsigned>(c); }

std::string class_counter(const char* what, const char* reason, schemas::record_class c) {
  return std::string(what) + "." + reason + "." + std::string(schemas::to_string(c));
}

}  // namespace

struct outbox::impl {
  struct insert_job {
    std::vector<schemas::record> records;
    insert_done done;
    bool bypass_quota = false;  // drop notices and outbox events: never refused
  };
  struct ack_job {
    std::vector<schemas::seq_range> ranges;
    ack_done done;
    std::uint64_t epoch = 0;  // 0 = whatever the current one is
  };
  struct read_job {
    class_cursors after;
    std::size_t max;
    read_epoch_done done;
    class_limits limits = kNoClassLimits;
  };
  struct dead_letter_job {
    std::vector<schemas::seq_range> ranges;
    std::string reason;
    int attempts;
    ack_done done;
    std::uint64_t epoch = 0;
  };
  struct retry_job {
    ack_done done;
  };
  struct retained_read_job {
    std::uint64_t from, to;
    std::size_t max;
    read_epoch_done done;
  };
  struct replace_job {
    std::string why;
    std::uint64_t epoch;  // of the database found corrupt: a later one is not replaced
  };
  // Runs on the writer thread after the group's commit, with the writer's connection (outside
  // any transaction): rare statements that need no group commit (dictionaries).
  struct call_job {
    std::function<void(sqlite3*, bool broken)> fn;
  };
  using job = std::variant<insert_job, ack_job, read_job, dead_letter_job, retry_job, replace_job,
                           retained_read_job, call_job>;

  // Refusals of one class since its intake paused, for the `resumed` notice.
  struct pause_info {
    std::uint64_t refused = 0;
    std::int64_t first_ts = 0, last_ts = 0;
  };
  // What one transaction did to the accounting; applied to `stats` only after its commit.
  struct txn_state {
    std::uint64_t used = 0;  // held bytes as the transaction goes
    // Retained (acked) bytes as the transaction goes; they count against the quota and are the
    // first to go under its pressure (0 while retention is off).
    std::uint64_t ret_bytes = 0, ret_count = 0;
    std::uint64_t ret_evicted = 0, ret_evicted_bytes = 0;
    std::uint64_t dropped = 0, dropped_bytes = 0, refused = 0;
    std::map<std::string, std::uint64_t> reasons;
    std::uint32_t paused = 0;
    std::array<pause_info, schemas::kRecordClassCount> pauses{};
    std::uint32_t newly_paused = 0;
    std::array<std::vector<std::uint64_t>, schemas::kRecordClassCount> evicted;
    std::array<std::pair<std::int64_t, std::int64_t>, schemas::kRecordClassCount> evicted_ts{};
    std::vector<schemas::drop_notice> notices;
  };

  outbox_options opts;
  sqlite3* db = nullptr;
  std::string path;
  std::size_t max_group;
  std::atomic<std::uint64_t> epoch{0};
  bool broken = false;  // a run-time replacement failed: every job fails with a storage error
  // synchronous=NORMAL set for a group of acks only (process()); any other write group sets
  // FULL back before it begins.
  bool relaxed_sync = false;
  detail::statement insert, bump, del, read_class, oldest, to_dead, del_plain, dead_count, evict;
  detail::statement to_retained, prune_age, prune_size, read_ret;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<job> queue;
  bool stopping = false;
  std::thread writer;
  std::function<void()> committed;

  // Background integrity checker: its own read-only connection, never the writer's.
  std::thread checker;
  std::mutex check_mu;
  std::condition_variable check_cv;
  bool check_requested = false;
  bool check_stopping = false;

  mutable std::mutex stats_mu;
  outbox_counters stats;
  std::string replaced;  // set when a corrupt database was moved aside at open
  std::vector<std::string> alarm_list;  // under stats_mu
  // Writer thread only: the committed pause state.
  std::uint32_t paused = 0;
  std::array<pause_info, schemas::kRecordClassCount> pauses{};

  ~impl() {
    {
      std::lock_guard lk(check_mu);
      check_stopping = true;
    }
    check_cv.notify_all();
    if (checker.joinable()) checker.join();
    {
      std::lock_guard lk(mu);
      stopping = true;
    }
    cv.notify_all();
    if (writer.joinable()) writer.join();
    close_db();
  }

  void close_db() {
    insert = {};
    bump = {};
    del = {};
    read_class = {};
    oldest = {};
    to_dead = {};
    del_plain = {};
    dead_count = {};
    evict = {};
    to_retained = {};
    prune_age = {};
    prune_size = {};
    read_ret = {};
    sqlite3_close(db);
    db = nullptr;
  }

  bool prepare() {
    insert = detail::statement(db,
                               "INSERT INTO outbox(class, ts_ns, instrument, channel, unit, quality,"
                               " vkind, vnum, vexp, vtext, run_id, bytes)"
                               " VALUES(?,?,?,?,?,?,?,?,?,?,?,?)");
    bump = detail::statement(db,
                             "INSERT INTO counters(name, value) VALUES(?2, ?1)"
                             " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value");
    del = detail::statement(db, "DELETE FROM outbox WHERE seq BETWEEN ? AND ? RETURNING bytes");
    read_class = detail::statement(
        db,
        "SELECT seq, class, ts_ns, instrument, channel, unit, quality, vkind, vnum, vexp, vtext,"
        " run_id FROM outbox WHERE class = ? AND seq > ? ORDER BY seq LIMIT ?");
    oldest = detail::statement(db, "SELECT ts_ns FROM outbox ORDER BY seq LIMIT 1");
    to_dead = detail::statement(
        db,
        "INSERT OR IGNORE INTO dead_letter(seq, class, ts_ns, instrument, channel, unit, quality,"
        " vkind, vnum, vexp, vtext, run_id, bytes, reason, attempts, moved_ns)"
        " SELECT seq, class, ts_ns, instrument, channel, unit, quality, vkind, vnum, vexp, vtext,"
        " run_id, bytes, ?3, ?4, ?5 FROM outbox WHERE seq BETWEEN ?1 AND ?2");
    del_plain = detail::statement(db, "DELETE FROM outbox WHERE seq BETWEEN ? AND ?");
    dead_count = detail::statement(db, "SELECT COUNT(*) FROM dead_letter");
    evict = detail::statement(db,
                              "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE class = ?1"
                              " ORDER BY seq LIMIT ?2) RETURNING seq, bytes, ts_ns");
    to_retained = detail::statement(
        db,
        "INSERT OR REPLACE INTO retained(seq, class, ts_ns, instrument, channel, unit, quality,"
        " vkind, vnum, vexp, vtext, run_id, bytes, acked_ns)"
        " SELECT seq, class, ts_ns, instrument, channel, unit, quality, vkind, vnum, vexp, vtext,"
        " run_id, bytes, ?3 FROM outbox WHERE seq BETWEEN ?1 AND ?2");
    prune_age = detail::statement(db, "DELETE FROM retained WHERE acked_ns < ? RETURNING bytes");
    prune_size = detail::statement(db,
                                   "DELETE FROM retained WHERE seq IN (SELECT seq FROM retained"
                                   " ORDER BY seq LIMIT ?) RETURNING bytes");
    read_ret = detail::statement(
        db,
        "SELECT seq, class, ts_ns, instrument, channel, unit, quality, vkind, vnum, vexp, vtext,"
        " run_id FROM retained WHERE seq BETWEEN ? AND ? ORDER BY seq LIMIT ?");
    return insert && bump && del && read_class && oldest && to_dead && del_plain && dead_count &&
           evict && to_retained && prune_age && prune_size && read_ret;
  }

  bool load_counters() {
    outbox_counters c;
    if (!read_counters(db, c)) return false;
    std::lock_guard lk(stats_mu);
    stats = c;
    return true;
  }

  std::uint64_t count_dead() {
    std::uint64_t n = 0;
    if (dead_count.step() == SQLITE_ROW) n = static_cast<std::uint64_t>(dead_count.int64(0));
    dead_count.reset();
    return n;
  }

  std::int64_t query_oldest() {
    std::int64_t ts = 0;
    if (oldest.step() == SQLITE_ROW) ts = oldest.int64(0);
    oldest.reset();
    return ts;
  }

  bool bump_counter(std::string_view name, std::uint64_t by) {
    return bump_signed(name, static_cast<std::int64_t>(by));
  }
  bool bump_signed(std::string_view name, std::int64_t by) {
    bump.bind(1, by).bind(2, name);
    bool ok = bump.step() == SQLITE_DONE;
    bump.reset();
    return ok;
  }

  full_policy policy_of(schemas::record_class c) const {
    switch (c) {
      case schemas::record_class::telemetry: return opts.quota.telemetry;
      case schemas::record_class::blob: return opts.quota.blob;
      default: return full_policy::pause;  // events and run results are never dropped
    }
  }

  // Evicts the oldest held records of class `c` until `need` bytes are free (in chunks of at
  // least 1/64 of the quota, so a full outbox does not evict per record). False on SQL error.
  bool evict_oldest(schemas::record_class c, std::uint64_t need, txn_state& t) {
    const std::uint64_t target = std::max(need, opts.quota.max_bytes / 64);
    std::uint64_t freed = 0;
    auto ci = static_cast<std::size_t>(c);
    while (freed < target) {
      evict.bind(1, static_cast<std::int64_t>(c)).bind(2, std::int64_t{256});
      int rc;
      std::uint64_t rows = 0;
      while ((rc = evict.step()) == SQLITE_ROW) {
        ++rows;
        auto b = static_cast<std::uint64_t>(evict.int64(1));
        auto ts = evict.int64(2);
        t.evicted[ci].push_back(static_cast<std::uint64_t>(evict.int64(0)));
        auto& [lo, hi] = t.evicted_ts[ci];
        lo = lo == 0 ? ts : std::min(lo, ts);
        hi = std::max(hi, ts);
        freed += b;
        t.used -= std::min(t.used, b);
        ++t.dropped;
        t.dropped_bytes += b;
        ++t.reasons[class_counter("dropped", "quota", c)];
      }
      evict.reset();
      if (rc != SQLITE_DONE) return false;
      if (rows == 0) break;  // nothing left of this class
    }
    return true;
  }

  // Evicts retained (acked, safe at central) records, oldest seq first, until `need` bytes are
  // free or none is left; in chunks of at least 1/64 of the quota. False on SQL error.
  bool evict_retained(std::uint64_t need, txn_state& t) {
    const std::uint64_t target = std::max(need, opts.quota.max_bytes / 64);
    std::uint64_t freed = 0;
    while (freed < target && t.ret_bytes > 0) {
      // As many of the oldest as the rest needs at their average size (plus one), so a full
      // outbox evicts about what it must and no more.
      const auto avg = std::max<std::uint64_t>(1, t.ret_bytes / std::max<std::uint64_t>(1, t.ret_count));
      const auto n = std::min<std::uint64_t>((target - freed) / avg + 1, 4096);
      prune_size.bind(1, static_cast<std::int64_t>(n));
      int rc;
      std::uint64_t rows = 0;
      while ((rc = prune_size.step()) == SQLITE_ROW) {
        auto b = static_cast<std::uint64_t>(prune_size.int64(0));
        ++rows;
        freed += b;
        t.ret_bytes -= std::min(t.ret_bytes, b);
        t.ret_count -= std::min<std::uint64_t>(t.ret_count, 1);
        ++t.ret_evicted;
        t.ret_evicted_bytes += b;
      }
      prune_size.reset();
      if (rc != SQLITE_DONE) return false;
      if (rows == 0) {
        t.ret_bytes = 0;  // the counter was ahead of the table: nothing left to evict
        break;
      }
    }
    return true;
  }

  enum class admit_result { yes, refused, error };

  // Quota decision for one record about to be inserted (see outbox.hpp, quota_options).
  admit_result admit(const schemas::record& r, std::uint64_t b, txn_state& t) {
    const auto& q = opts.quota;
    const bool protected_class =
        r.cls == schemas::record_class::event || r.cls == schemas::record_class::run_result;
    if (t.used + t.ret_bytes + b <= q.max_bytes) return admit_result::yes;
    // Acked records in the retention window are safe at central: they go before any held
    // record is paused or dropped.
    if (t.ret_bytes > 0) {
      if (!evict_retained(t.used + t.ret_bytes + b - q.max_bytes, t)) return admit_result::error;
      if (t.used + t.ret_bytes + b <= q.max_bytes) return admit_result::yes;
    }
    // Make room from the lowest class up to this record's own, where the policy allows drops;
    // only then do events and run results dip into their reserve.
    for (int d = schemas::kRecordClassCount - 1; d >= static_cast<int>(r.cls); --d) {
      auto dc = static_cast<schemas::record_class>(d);
      if (policy_of(dc) != full_policy::drop_oldest) continue;
      if (!evict_oldest(dc, t.used + b - q.max_bytes, t)) return admit_result::error;
      if (t.used + b <= q.max_bytes) return admit_result::yes;
    }
    if (protected_class && t.used + b <= q.max_bytes + q.reserve_bytes) return admit_result::yes;
    // Refused: the class's intake pauses until a record of it fits again.
    auto ci = static_cast<std::size_t>(r.cls);
    if (!(t.paused & class_bit(r.cls))) {
      t.paused |= class_bit(r.cls);
      t.newly_paused |= class_bit(r.cls);
      t.pauses[ci] = {};
    }
    auto& p = t.pauses[ci];
    ++p.refused;
    p.first_ts = p.first_ts == 0 ? r.ts_ns : std::min(p.first_ts, r.ts_ns);
    p.last_ts = std::max(p.last_ts, r.ts_ns);
    ++t.refused;
    ++t.reasons[class_counter("refused", "quota", r.cls)];
    return admit_result::refused;
  }

  bool insert_one(schemas::record& r, std::uint64_t b) {
    insert.bind(1, static_cast<std::int64_t>(r.cls))
        .bind(2, r.ts_ns)
        .bind(3, r.instrument)
        .bind(4, r.channel)
        .bind(5, r.unit)
        .bind(6, static_cast<std::int64_t>(r.quality))
        .bind(7, static_cast<std::int64_t>(r.val.index()));
    switch (r.val.index()) {
      case 0: insert.bind(8, std::get<double>(r.val)); break;
      case 1: insert.bind(8, std::get<std::int64_t>(r.val)); break;
      case 2: {
        auto& d = std::get<schemas::decimal>(r.val);
        insert.bind(8, d.mantissa).bind(9, static_cast<std::int64_t>(d.exponent));
        break;
      }
      default: insert.bind(10, std::get<std::string>(r.val));
    }
    if (!r.run_id.empty()) insert.bind(11, r.run_id);
    insert.bind(12, static_cast<std::int64_t>(b));
    bool ok = insert.step() == SQLITE_DONE;
    insert.reset();
    if (ok) r.seq = static_cast<std::uint64_t>(sqlite3_last_insert_rowid(db));
    return ok;
  }

  // Inserts one job's records under the quota; false on a SQLite error (the transaction is then
  // rolled back). `admitted`/`refused` count this job's records.
  bool do_insert(insert_job& j, schemas::seq_range& assigned, std::uint64_t& admitted,
                 std::uint64_t& refused, std::uint64_t& bytes, txn_state& t) {
    std::uint64_t stored_here = 0;
    for (auto& r : j.records) {
      auto b = record_bytes(r);
      if (opts.quota.max_bytes && !j.bypass_quota) {
        auto a = admit(r, b, t);
        if (a == admit_result::error) return false;
        if (a == admit_result::refused) {
          ++refused;
          continue;
        }
      }
      if (!insert_one(r, b)) return false;
      if (stored_here++ == 0) assigned.first = r.seq;
      assigned.last = r.seq;
      bytes += b;
      t.used += b;
      auto ci = static_cast<std::size_t>(r.cls);
      if (t.paused & class_bit(r.cls)) {
        // A record of a paused class fits again: intake resumes, say how much was refused.
        t.paused &= ~class_bit(r.cls);
        schemas::drop_notice n;
        n.action = schemas::drop_action::resumed;
        n.reason = "quota";
        n.cls = r.cls;
        n.store_epoch = epoch;
        n.records = t.pauses[ci].refused;
        n.first_ts_ns = t.pauses[ci].first_ts;
        n.last_ts_ns = t.pauses[ci].last_ts;
        n.detail = "intake resumed after refusing " + std::to_string(n.records) + " record(s)";
        t.notices.push_back(std::move(n));
        t.pauses[ci] = {};
      }
    }
    admitted += stored_here;
    return true;
  }

  // The drop notices of one transaction, stored in it: a drop is never without its notice.
  bool write_notices(txn_state& t, std::uint64_t& added, std::uint64_t& added_bytes) {
    for (int c = 0; c < schemas::kRecordClassCount; ++c) {
      auto& ev = t.evicted[static_cast<std::size_t>(c)];
      if (ev.empty()) continue;
      std::sort(ev.begin(), ev.end());
      auto ranges = schemas::ranges_of(ev);
      for (std::size_t i = 0; i < ranges.size(); i += schemas::kDropNoticeMaxRanges) {
        schemas::drop_notice n;
        n.action = schemas::drop_action::dropped;
        n.reason = "quota";
        n.cls = static_cast<schemas::record_class>(c);
        n.store_epoch = epoch;
        auto end = std::min(ranges.size(), i + schemas::kDropNoticeMaxRanges);
        n.ranges.assign(ranges.begin() + static_cast<std::ptrdiff_t>(i),
                        ranges.begin() + static_cast<std::ptrdiff_t>(end));
        for (auto& r : n.ranges) n.records += r.count();
        n.first_ts_ns = t.evicted_ts[static_cast<std::size_t>(c)].first;
        n.last_ts_ns = t.evicted_ts[static_cast<std::size_t>(c)].second;
        n.detail = "oldest records evicted: outbox at its quota of " +
                   std::to_string(opts.quota.max_bytes) + " bytes";
        t.notices.push_back(std::move(n));
      }
    }
    for (int c = 0; c < schemas::kRecordClassCount; ++c) {
      auto cls = static_cast<schemas::record_class>(c);
      if (!(t.newly_paused & class_bit(cls)) || !(t.paused & class_bit(cls))) continue;
      auto& p = t.pauses[static_cast<std::size_t>(c)];
      schemas::drop_notice n;
      n.action = schemas::drop_action::paused;
      n.reason = "quota";
      n.cls = cls;
      n.store_epoch = epoch;
      n.records = p.refused;
      n.first_ts_ns = p.first_ts;
      n.last_ts_ns = p.last_ts;
      n.detail = "outbox at its quota of " + std::to_string(opts.quota.max_bytes) +
                 " bytes: intake of this class paused, new records refused";
      t.notices.push_back(std::move(n));
    }
    auto now = wall_now_ns();
    for (auto& n : t.notices) {
      auto r = schemas::make_drop_notice_record(n, now);
      auto b = record_bytes(r);
      if (!insert_one(r, b)) return false;
      ++added;
      added_bytes += b;
      t.used += b;
    }
    if (!t.notices.empty()) t.reasons["notices"] += t.notices.size();
    return true;
  }

  bool do_ack(const ack_job& j, std::uint64_t& deleted, std::uint64_t& bytes) {
    if (j.epoch && j.epoch != epoch) return true;  // an ack for a replaced outbox
    const auto now = wall_now_ns();
    for (auto& r : j.ranges) {
      if (opts.retention.enabled()) {
        // Acked records go into the retention window (same row, same seq) before leaving.
        to_retained.bind(1, static_cast<std::int64_t>(r.first))
            .bind(2, static_cast<std::int64_t>(r.last))
            .bind(3, now);
        bool ok = to_retained.step() == SQLITE_DONE;
        to_retained.reset();
        if (!ok) return false;
      }
      del.bind(1, static_cast<std::int64_t>(r.first)).bind(2, static_cast<std::int64_t>(r.last));
      int rc;
      while ((rc = del.step()) == SQLITE_ROW) {
        ++deleted;
        bytes += static_cast<std::uint64_t>(del.int64(0));
      }
      del.reset();
      if (rc != SQLITE_DONE) return false;
    }
    return true;
  }

  bool do_dead_letter(const dead_letter_job& j, std::uint64_t& moved) {
    if (j.epoch && j.epoch != epoch) return true;
    auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    for (auto& r : j.ranges) {
      to_dead.bind(1, static_cast<std::int64_t>(r.first))
          .bind(2, static_cast<std::int64_t>(r.last))
          .bind(3, std::string_view(j.reason))
          .bind(4, static_cast<std::int64_t>(j.attempts))
          .bind(5, now);
      bool ok = to_dead.step() == SQLITE_DONE;
      to_dead.reset();
      if (!ok) return false;
      moved += static_cast<std::uint64_t>(sqlite3_changes(db));
      del_plain.bind(1, static_cast<std::int64_t>(r.first)).bind(2, static_cast<std::int64_t>(r.last));
      ok = del_plain.step() == SQLITE_DONE;
      del_plain.reset();
      if (!ok) return false;
    }
    return true;
  }

  bool do_retry(std::uint64_t& moved) {
    // Same seq numbers: the records keep their identity, central deduplicates as ever.
    return move_dead_letters_back(db, moved, nullptr);
  }

  // One row of `SELECT seq, class, ts_ns, instrument, channel, unit, quality, vkind, vnum, vexp,
  // vtext, run_id`.
  static schemas::record row_record(detail::statement& q) {
    schemas::record r;
    r.seq = static_cast<std::uint64_t>(q.int64(0));
    r.cls = static_cast<schemas::record_class>(q.int64(1));
    r.ts_ns = q.int64(2);
    r.instrument = q.text(3);
    r.channel = q.text(4);
    r.unit = q.text(5);
    r.quality = static_cast<std::uint32_t>(q.int64(6));
    switch (q.int64(7)) {
      case 0: r.val = q.real(8); break;
      case 1: r.val = q.int64(8); break;
      case 2: r.val = schemas::decimal{q.int64(8), static_cast<std::int8_t>(q.int64(9))}; break;
      default: r.val = q.text(10);
    }
    r.run_id = q.text(11);
    return r;
  }

  void do_read_retained(retained_read_job& j) {
    std::vector<schemas::record> out;
    boost::system::error_code ec;
    if (broken) ec = make_error_code(errc::storage);
    if (!broken && j.max > 0 && j.from <= j.to) {
      read_ret.bind(1, static_cast<std::int64_t>(std::min<std::uint64_t>(j.from, INT64_MAX)))
          .bind(2, static_cast<std::int64_t>(std::min<std::uint64_t>(j.to, INT64_MAX)))
          .bind(3, static_cast<std::int64_t>(j.max));
      int rc;
      while ((rc = read_ret.step()) == SQLITE_ROW) out.push_back(row_record(read_ret));
      read_ret.reset();
      if (rc != SQLITE_DONE) {
        spdlog::error("[outbox] reading retained records failed: {}", sqlite3_errmsg(db));
        ec = make_error_code(errc::storage);
        out.clear();
        note_error();
      }
    }
    j.done(ec, std::move(out), epoch.load());
  }

  // Retention bounds, in the current transaction: older than max_age since the ack, then the
  // oldest seq first while above max_bytes. `bytes` is the retained size as the transaction goes.
  bool prune_retained(std::uint64_t& bytes, std::uint64_t count, std::uint64_t& pruned,
                      std::uint64_t& pruned_bytes) {
    if (!opts.retention.enabled()) return true;
    auto cutoff = wall_now_ns() -
                  std::chrono::duration_cast<std::chrono::nanoseconds>(opts.retention.max_age).count();
    auto drain = [&](detail::statement& q) {
      int rc;
      std::uint64_t rows = 0;
      while ((rc = q.step()) == SQLITE_ROW) {
        auto b = static_cast<std::uint64_t>(q.int64(0));
        ++rows;
        ++pruned;
        pruned_bytes += b;
        bytes -= std::min(bytes, b);
      }
      q.reset();
      return rc == SQLITE_DONE ? std::optional<std::uint64_t>(rows) : std::nullopt;
    };
    prune_age.bind(1, cutoff);
    if (!drain(prune_age)) return false;
    while (bytes > opts.retention.max_bytes) {
      // As many of the oldest as the excess needs at their average size (plus one): a few
      // rounds at most, never much more than the excess.
      const auto left = count > pruned ? count - pruned : 1;
      const auto avg = std::max<std::uint64_t>(1, bytes / left);
      const auto n = std::min<std::uint64_t>((bytes - opts.retention.max_bytes) / avg + 1, 100'000);
      prune_size.bind(1, static_cast<std::int64_t>(n));
      auto rows = drain(prune_size);
      if (!rows) return false;
      if (*rows == 0) break;
    }
    return true;
  }

  void do_read(read_job& j) {
    std::vector<schemas::record> out;
    boost::system::error_code ec;
    if (broken) ec = make_error_code(errc::storage);
    for (int c = 0; !broken && c < schemas::kRecordClassCount && out.size() < j.max; ++c) {
      const auto limit = std::min(j.max - out.size(), j.limits[static_cast<std::size_t>(c)]);
      if (limit == 0) continue;
      read_class.bind(1, static_cast<std::int64_t>(c))
          .bind(2, static_cast<std::int64_t>(j.after[static_cast<std::size_t>(c)]))
          .bind(3, static_cast<std::int64_t>(limit));
      int rc;
      while ((rc = read_class.step()) == SQLITE_ROW) out.push_back(row_record(read_class));
      read_class.reset();
      if (rc != SQLITE_DONE) {
        spdlog::error("[outbox] read failed: {}", sqlite3_errmsg(db));
        ec = make_error_code(errc::storage);
        note_error();
        break;
      }
    }
    // Classes were read one after the other; a backlog of one class is in order already.
    const auto by_seq = [](const schemas::record& a, const schemas::record& b) { return a.seq < b.seq; };
    if (!std::is_sorted(out.begin(), out.end(), by_seq)) std::sort(out.begin(), out.end(), by_seq);
    j.done(ec, std::move(out), epoch.load());
  }

  void run() {
    std::vector<job> batch;
    for (;;) {
      {
        std::unique_lock lk(mu);
        cv.wait(lk, [&] { return stopping || !queue.empty(); });
        if (queue.empty() && stopping) return;
        // Take every write job up to the group limit; reads are served after the commit. A
        // replacement runs alone, between groups.
        std::size_t n = 0;
        while (!queue.empty() && n < max_group) {
          if (std::holds_alternative<replace_job>(queue.front()) && !batch.empty()) break;
          if (auto* ins = std::get_if<insert_job>(&queue.front())) n += ins->records.size();
          batch.push_back(std::move(queue.front()));
          queue.pop_front();
          if (std::holds_alternative<replace_job>(batch.back())) break;
        }
      }
      if (auto* rj = std::get_if<replace_job>(&batch.front())) {
        // Two checks may find the same damage (a periodic one and one after an I/O error).
        if (rj->epoch == epoch && !broken) replace(rj->why);
      }
      else process(batch);
      batch.clear();
    }
  }

  // An I/O or corruption error on the writer connection: ask for a full check.
  void note_error() {
    int rc = sqlite3_errcode(db) & 0xff;
    if (rc == SQLITE_IOERR || is_corruption(rc)) request_check();
  }

  void request_check() {
    {
      std::lock_guard lk(check_mu);
      check_requested = true;
    }
    check_cv.notify_all();
  }

  void process(std::vector<job>& jobs) {
    bool writes = false;
    for (auto& j : jobs)
      writes |= !std::holds_alternative<read_job>(j) && !std::holds_alternative<retained_read_job>(j) &&
                !std::holds_alternative<call_job>(j);
    std::vector<schemas::seq_range> assigned(jobs.size());
    std::vector<std::uint64_t> acked_by_job(jobs.size()), refused_by_job(jobs.size());
    std::uint64_t added = 0, added_bytes = 0, deleted = 0, deleted_bytes = 0;
    std::int64_t dead_delta = 0;  // records moved into (+) or out of (-) the dead letters
    std::uint64_t ret_count = 0, ret_bytes = 0;  // retention window after this transaction
    txn_state t;
    t.paused = paused;
    t.pauses = pauses;
    {
      std::lock_guard lk(stats_mu);
      t.used = stats.held_bytes;
      if (opts.retention.enabled()) {
        t.ret_bytes = stats.retained_bytes;
        t.ret_count = stats.retained;
      }
    }
    bool ok = !broken;
    // A group that only deletes acked records (a backlog draining) commits without its own
    // fsync: losing it to a power cut only brings those records back as held, they are sent
    // again and central, which stored them durably before acking, deduplicates. The WAL is
    // append-only, so the next synced commit (or checkpoint) makes these durable too, and an
    // insert is never reported stored before its own fsync.
    const bool unsynced_acks =
        writes && opts.sync_mode == durability::full &&
        std::all_of(jobs.begin(), jobs.end(), [](const job& j) {
          return std::holds_alternative<ack_job>(j) || std::holds_alternative<read_job>(j) ||
                 std::holds_alternative<retained_read_job>(j) || std::holds_alternative<call_job>(j);
        });
    if (writes && ok && unsynced_acks != relaxed_sync) {
      ok = detail::exec(db, unsynced_acks ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL");
      if (ok) relaxed_sync = unsynced_acks;
    }
    if (writes && ok) {
      ok = detail::exec(db, "BEGIN IMMEDIATE");
      for (std::size_t i = 0; ok && i < jobs.size(); ++i) {
        if (auto* ins = std::get_if<insert_job>(&jobs[i])) {
          ok = do_insert(*ins, assigned[i], added, refused_by_job[i], added_bytes, t);
        } else if (auto* a = std::get_if<ack_job>(&jobs[i])) {
          std::uint64_t before = deleted, before_bytes = deleted_bytes;
          ok = do_ack(*a, deleted, deleted_bytes);
          acked_by_job[i] = deleted - before;
          t.used -= std::min(t.used, deleted_bytes - before_bytes);
          if (opts.retention.enabled()) {
            t.ret_bytes += deleted_bytes - before_bytes;
            t.ret_count += deleted - before;
          }
        } else if (auto* d = std::get_if<dead_letter_job>(&jobs[i])) {
          ok = do_dead_letter(*d, acked_by_job[i]);
          dead_delta += static_cast<std::int64_t>(acked_by_job[i]);
        } else if (std::holds_alternative<retry_job>(jobs[i])) {
          ok = do_retry(acked_by_job[i]);
          dead_delta -= static_cast<std::int64_t>(acked_by_job[i]);
        }
      }
      if (ok) ok = write_notices(t, added, added_bytes);
      std::uint64_t ret_before = 0, ret_before_bytes = 0;
      {
        std::lock_guard lk(stats_mu);
        ret_before = stats.retained;
        ret_before_bytes = stats.retained_bytes;
      }
      if (opts.retention.enabled()) {
        // Evicted under quota pressure (admit) before the retention bounds are applied.
        ret_count = ret_before + deleted - std::min(ret_before + deleted, t.ret_evicted);
        ret_bytes = ret_before_bytes + deleted_bytes -
                    std::min(ret_before_bytes + deleted_bytes, t.ret_evicted_bytes);
        if (t.ret_evicted) t.reasons["evicted.quota.retained"] += t.ret_evicted;
        std::uint64_t pruned = 0, pruned_bytes = 0;
        if (ok) ok = prune_retained(ret_bytes, ret_count, pruned, pruned_bytes);
        ret_count -= std::min(ret_count, pruned);
      } else {
        ret_count = ret_before;
        ret_bytes = ret_before_bytes;
      }
      const auto ret_delta = static_cast<std::int64_t>(ret_count) - static_cast<std::int64_t>(ret_before);
      const auto ret_bytes_delta =
          static_cast<std::int64_t>(ret_bytes) - static_cast<std::int64_t>(ret_before_bytes);
      if (ok && ret_delta) ok = bump_signed("retained", ret_delta);
      if (ok && ret_bytes_delta) ok = bump_signed("retained_bytes", ret_bytes_delta);
      if (ok && added) ok = bump_counter("produced", added);
      if (ok && deleted) ok = bump_counter("acked", deleted);
      if (ok && t.dropped) ok = bump_counter("dropped", t.dropped);
      const auto bytes_delta = static_cast<std::int64_t>(added_bytes) -
                               static_cast<std::int64_t>(deleted_bytes + t.dropped_bytes);
      if (ok && bytes_delta) ok = bump_signed("held_bytes", bytes_delta);
      for (auto& [name, n] : t.reasons)
        if (ok) ok = bump_counter(name, n);
      if (ok) ok = detail::exec(db, "COMMIT");
      if (!ok) {
        spdlog::error("[outbox] {}: transaction failed: {}", path, sqlite3_errmsg(db));
        note_error();
        detail::exec(db, "ROLLBACK");
      } else {
        paused = t.paused;
        pauses = t.pauses;
        for (int c = 0; c < schemas::kRecordClassCount; ++c) {
          auto cls = static_cast<schemas::record_class>(c);
          if (t.newly_paused & class_bit(cls) & t.paused)
            spdlog::warn("[outbox] quota of {} bytes reached: intake of {} paused", opts.quota.max_bytes,
                         schemas::to_string(cls));
        }
        if (t.dropped)
          spdlog::warn("[outbox] quota of {} bytes reached: {} record(s) dropped (drop notice written)",
                       opts.quota.max_bytes, t.dropped);
        std::int64_t oldest_ts = query_oldest();
        std::lock_guard lk(stats_mu);
        stats.produced += added;
        stats.acked += deleted;
        stats.dropped += t.dropped;
        stats.refused += t.refused;
        for (auto& [name, n] : t.reasons) stats.by_reason[name] += n;
        stats.held = stats.held + added - deleted - t.dropped;
        stats.held_bytes = stats.held_bytes + added_bytes - deleted_bytes - t.dropped_bytes;
        stats.oldest_ts_ns = oldest_ts;
        stats.paused_classes = paused;
        stats.dead_letters = count_dead();  // also sees moves made by `queue dead-letters --retry`
        stats.retained = ret_count;
        stats.retained_bytes = ret_bytes;
      }
    }
    auto ec = ok ? boost::system::error_code{} : make_error_code(errc::storage);
    // Completions only after the commit: a caller told "stored" can rely on it.
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      if (auto* ins = std::get_if<insert_job>(&jobs[i])) {
        auto jec = ec ? ec : refused_by_job[i] ? make_error_code(errc::quota) : ec;
        if (ins->done) ins->done(jec, ok ? assigned[i] : schemas::seq_range{});
      } else if (auto* a = std::get_if<ack_job>(&jobs[i])) {
        if (a->done) a->done(ec, ok ? acked_by_job[i] : 0);
      } else if (auto* d = std::get_if<dead_letter_job>(&jobs[i])) {
        if (d->done) d->done(ec, ok ? acked_by_job[i] : 0);
      } else if (auto* r = std::get_if<retry_job>(&jobs[i])) {
        if (r->done) r->done(ec, ok ? acked_by_job[i] : 0);
      }
    }
    if (ok && (added || dead_delta < 0) && committed) committed();
    if (relaxed_sync && std::any_of(jobs.begin(), jobs.end(), [](const job& j) {
          return std::holds_alternative<call_job>(j);
        }) && detail::exec(db, "PRAGMA synchronous=FULL"))
      relaxed_sync = false;  // a call (a dictionary saved) commits on its own: synced
    for (auto& j : jobs) {
      if (auto* r = std::get_if<read_job>(&j)) do_read(*r);
      else if (auto* rr = std::get_if<retained_read_job>(&j)) do_read_retained(*rr);
      else if (auto* cj = std::get_if<call_job>(&j)) cj->fn(db, broken);
    }
  }

  void push(job j) {
    {
      std::lock_guard lk(mu);
      queue.push_back(std::move(j));
    }
    cv.notify_one();
  }

  void add_alarm(std::string a) {
    std::lock_guard lk(stats_mu);
    alarm_list.push_back(std::move(a));
  }

  // Opens, migrates and checks the database file at `path` into this impl. `corrupt` tells the
  // caller that moving the file aside and starting a new outbox is the right answer (as opposed
  // to, say, a permission error).
  boost::system::error_code open_db(std::string& error, bool& corrupt);

  // Stores the event that says the outbox was replaced and the notice of what was lost, in one
  // transaction on the new database.
  void record_replacement(const std::string& why, const lost_records& lost) {
    schemas::record ev;
    ev.cls = schemas::record_class::event;
    ev.ts_ns = wall_now_ns();
    ev.instrument = "agent";
    ev.channel = "outbox_replaced";
    ev.val = why.substr(0, schemas::kMaxTextBytes);
    schemas::drop_notice n;
    n.action = schemas::drop_action::unrecoverable;
    n.reason = "corrupt_outbox";
    n.store_epoch = lost.epoch;
    n.records = lost.count;
    if (lost.count) n.ranges.push_back({lost.first, lost.last});
    n.first_ts_ns = lost.first_ts;
    n.last_ts_ns = lost.last_ts;
    n.detail = lost.epoch ? "records held by the corrupt outbox (at most these; central may hold some)"
                          : "the corrupt outbox could not be read: records unknown";
    std::vector<job> jobs;
    jobs.emplace_back(insert_job{{ev, schemas::make_drop_notice_record(n, ev.ts_ns)}, {}, true});
    process(jobs);
    // Accounting of the old epoch's loss, on the new database (the old one is unreadable).
    if (detail::exec(db, "BEGIN IMMEDIATE")) {
      bool ok = bump_counter("unrecoverable.corrupt_outbox.all", lost.count) &&
                bump_counter("notices", 1) && detail::exec(db, "COMMIT");
      if (!ok) detail::exec(db, "ROLLBACK");
      else {
        std::lock_guard lk(stats_mu);
        stats.by_reason["unrecoverable.corrupt_outbox.all"] += lost.count;
        stats.by_reason["notices"] += 1;
      }
    }
  }

  // Run time: the background check found the outbox corrupt. Writer thread.
  void replace(const std::string& why) {
    lost_records lost;
    {
      // What the writer knows beats what a damaged file still says.
      std::lock_guard lk(stats_mu);
      lost.count = stats.held;
      lost.first_ts = stats.oldest_ts_ns;
    }
    auto probed = probe_lost(path);
    lost.epoch = epoch;
    lost.first = probed.first;
    lost.last = probed.last;
    lost.last_ts = probed.last_ts;
    if (!lost.first_ts) lost.first_ts = probed.first_ts;
    close_db();
    std::string moved = move_aside(path);
    std::string reason = why + "; moved aside to " + moved;
    spdlog::error("[outbox] {}: {}; starting a new outbox", path, reason);
    std::string err;
    bool corrupt = false;
    if (auto ec = open_db(err, corrupt)) {
      broken = true;
      spdlog::error("[outbox] cannot create a new outbox: {}", err);
      add_alarm("outbox unusable: " + err);
      return;
    }
    paused = 0;
    pauses = {};
    record_replacement(reason, lost);
    {
      std::lock_guard lk(stats_mu);
      replaced = reason;
    }
    add_alarm("outbox replaced: " + reason);
  }

  // Background thread: PRAGMA quick_check on a read-only connection of its own, periodically and
  // when asked (I/O errors). Corruption found: the writer replaces the outbox.
  void check_loop() {
    for (;;) {
      {
        std::unique_lock lk(check_mu);
        auto wake = [&] { return check_stopping || check_requested; };
        if (opts.integrity_interval.count() > 0) check_cv.wait_for(lk, opts.integrity_interval, wake);
        else check_cv.wait(lk, wake);
        if (check_stopping) return;
        check_requested = false;
      }
      const std::uint64_t checked_epoch = epoch;  // read before the file is opened
      auto verdict = quick_check();
      {
        std::lock_guard lk(stats_mu);
        ++stats.integrity_checks;
      }
      if (verdict) {
        spdlog::error("[outbox] integrity check failed: {}", *verdict);
        push(replace_job{"integrity check: " + *verdict, checked_epoch});
      }
    }
  }

  // nullopt when the database is fine or the check could not run (a resource problem is not
  // corruption); the first problem otherwise.
  std::optional<std::string> quick_check() {
    sqlite3* rdb = nullptr;
    std::optional<std::string> out;
    if (sqlite3_open_v2(path.c_str(), &rdb, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
      sqlite3_busy_timeout(rdb, 5000);
      detail::statement q(rdb, "PRAGMA quick_check");
      int rc = q ? SQLITE_ROW : sqlite3_errcode(rdb);
      while (q && (rc = q.step()) == SQLITE_ROW) {
        auto line = q.text(0);
        if (line != "ok" && !out) out = line;
      }
      if (is_corruption(rc) && !out) out = sqlite3_errmsg(rdb);
      if (rc != SQLITE_DONE && !out)
        spdlog::warn("[outbox] integrity check could not run: {}", sqlite3_errmsg(rdb));
    } else if (is_corruption(sqlite3_errcode(rdb))) {
      out = sqlite3_errmsg(rdb);
    }
    sqlite3_close(rdb);
    return out;
  }
};

outbox::outbox(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
outbox::~outbox() = default;

boost::system::error_code outbox::impl::open_db(std::string& error, bool& corrupt) {
  corrupt = false;
  std::error_code fec;
  const bool existed = std::filesystem::file_size(path, fec) > 0 && !fec;
  bool past_open = false;  // failures after the file opened and took the WAL mode
  auto fail = [&](std::string why) {
    int rc = db ? sqlite3_errcode(db) & 0xff : SQLITE_OK;
    // Corruption as SQLite reports it, or an existing file whose schema does not read back
    // consistently (e.g. damaged pages make migrations trip over existing tables). Resource
    // errors (disk full, I/O, permissions, locks) are never a reason to replace the outbox.
    bool resource = rc == SQLITE_FULL || rc == SQLITE_IOERR || rc == SQLITE_READONLY ||
                    rc == SQLITE_CANTOPEN || rc == SQLITE_BUSY || rc == SQLITE_LOCKED ||
                    rc == SQLITE_PERM || rc == SQLITE_NOMEM;
    corrupt = is_corruption(rc) || (existed && past_open && !resource);
    error = path + ": " + why;
    close_db();
    return make_error_code(errc::storage);
  };
  if (existed) {
    if (auto why = check_header(path)) {
      corrupt = true;
      error = path + ": " + *why;
      return make_error_code(errc::storage);
    }
  }
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK)
    return fail(std::string("cannot open: ") + sqlite3_errmsg(db));
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, 5000);
  std::string err;
  if (!detail::exec(db, "PRAGMA journal_mode=WAL", &err)) return fail(err);
  const char* sync_sql = opts.sync_mode == durability::full ? "PRAGMA synchronous=FULL"
                                                            : "PRAGMA synchronous=NORMAL";
  if (!detail::exec(db, sync_sql, &err)) return fail(err);
  relaxed_sync = false;
  past_open = true;
  if (auto ec = schemas::apply_migrations(db, schemas::agent_outbox_migrations(), err)) {
    if (ec == schemas::errc::unsupported_version) {
      error = path + ": " + err;  // a newer agent's outbox: refuse, never replace
      close_db();
      return make_error_code(errc::storage);
    }
    return fail(err);
  }
  // Identity: created with the database, checked on every open.
  std::string stored_agent, stored_epoch;
  {
    detail::statement q(db, "SELECT key, value FROM meta");
    if (!q) return fail(sqlite3_errmsg(db));
    int rc;
    while ((rc = q.step()) == SQLITE_ROW) {
      if (q.text(0) == "agent_id") stored_agent = q.text(1);
      if (q.text(0) == "store_epoch") stored_epoch = q.text(1);
    }
    if (rc != SQLITE_DONE) return fail(sqlite3_errmsg(db));
  }
  if (stored_epoch.empty()) {
    if (!schemas::valid_id(opts.agent_id)) {
      error = path + ": agent id '" + opts.agent_id + "' not allowed";
      close_db();
      return make_error_code(errc::storage);
    }
    epoch = new_epoch();
    std::string sql = "INSERT INTO meta(key, value) VALUES('store_epoch', '" +
                      std::to_string(epoch.load()) + "'), ('agent_id', '" + opts.agent_id + "')";
    if (!detail::exec(db, sql.c_str(), &err)) return fail(err);
  } else {
    epoch = std::strtoull(stored_epoch.c_str(), nullptr, 10);
    if (epoch == 0) return fail("store epoch '" + stored_epoch + "' is not a number");
    if (stored_agent != opts.agent_id) {
      error = path + ": outbox belongs to agent '" + stored_agent + "', configured agent is '" +
              opts.agent_id + "' (move the file aside to start a new outbox)";
      close_db();
      return make_error_code(errc::agent_mismatch);
    }
  }
  if (!prepare()) return fail(sqlite3_errmsg(db));
  // Cheap consistency check at start (the header was checked above): the schema version (the
  // migrations), the newest pages of the outbox (where a torn write would be) and the counters.
  // The full check runs in the background.
  {
    detail::statement tail(db, "SELECT seq, class, ts_ns, instrument, channel, unit, vkind, vnum"
                               " FROM outbox ORDER BY seq DESC LIMIT 256");
    if (!tail) return fail(sqlite3_errmsg(db));
    int rc;
    while ((rc = tail.step()) == SQLITE_ROW) {
    }
    if (rc != SQLITE_DONE) return fail(std::string("consistency check: ") + sqlite3_errmsg(db));
  }
  if (!load_counters()) return fail(std::string("counters: ") + sqlite3_errmsg(db));
  {
    detail::statement hb(db, "INSERT OR IGNORE INTO counters(name, value) VALUES('held_bytes', ?)");
    if (!hb) return fail(sqlite3_errmsg(db));
    hb.bind(1, static_cast<std::int64_t>(stats.held_bytes));
    if (hb.step() != SQLITE_DONE) return fail(std::string("counters: ") + sqlite3_errmsg(db));
  }
  return {};
}

result<std::unique_ptr<outbox>> outbox::open(const outbox_options& opts, std::string& error) {
  auto p = std::make_unique<impl>();
  p->opts = opts;
  p->path = opts.path.string();
  p->max_group = opts.max_group;
  bool corrupt = false;
  auto ec = p->open_db(error, corrupt);
  std::string replaced;
  lost_records lost;
  if (ec && corrupt) {
    // Never a crash loop: keep the damaged file for forensics, start a new outbox with a new
    // store epoch (keys never collide with the old one), and leave an event saying so.
    std::string why = error;
    lost = probe_lost(p->path);
    std::string moved = move_aside(p->path);
    spdlog::error("[outbox] {}; moved aside to {}, starting a new outbox", why, moved);
    replaced = why + "; moved aside to " + moved;
    ec = p->open_db(error, corrupt);
  }
  if (ec) return ec;
  auto* raw = p.get();
  if (!replaced.empty()) {
    raw->record_replacement(replaced, lost);
    raw->replaced = replaced;
    raw->alarm_list.push_back("outbox replaced: " + replaced);
  }
  raw->writer = std::thread([raw] {
    pthread_setname_np(pthread_self(), "outbox-writer");
    raw->run();
  });
  raw->checker = std::thread([raw] {
    pthread_setname_np(pthread_self(), "outbox-check");
    raw->check_loop();
  });
  std::unique_ptr<outbox> ob(new outbox(std::move(p)));
  ob->agent_id_ = opts.agent_id;
  return ob;
}

std::uint64_t outbox::store_epoch() const noexcept { return impl_->epoch.load(); }

std::string outbox::replaced_reason() const {
  std::lock_guard lk(impl_->stats_mu);
  return impl_->replaced;
}

std::vector<std::string> outbox::alarms() const {
  std::lock_guard lk(impl_->stats_mu);
  auto out = impl_->alarm_list;
  for (int c = 0; c < schemas::kRecordClassCount; ++c) {
    auto cls = static_cast<schemas::record_class>(c);
    if (impl_->stats.paused_classes & class_bit(cls))
      out.push_back("outbox quota reached: intake of " + std::string(schemas::to_string(cls)) +
                    " paused");
  }
  return out;
}

void outbox::request_integrity_check() { impl_->request_check(); }

result<outbox_counters> outbox::read_status(const std::filesystem::path& path, std::string& error) {
  sqlite3* db = nullptr;
  auto close = [&] { sqlite3_close(db); };
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    error = path.string() + ": cannot open: " + sqlite3_errmsg(db);
    close();
    return make_error_code(errc::storage);
  }
  sqlite3_busy_timeout(db, 2000);
  outbox_counters c;
  // A daemon that is creating the database right now: nothing stored yet, not an error.
  if (auto v = schemas::schema_version(db); v && *v == 0) {
    close();
    return c;
  }
  // One snapshot so that produced = acked + held + dropped holds.
  detail::exec(db, "BEGIN");
  bool ok = read_counters(db, c);
  if (!ok) error = path.string() + ": not a semilab outbox: " + sqlite3_errmsg(db);
  detail::exec(db, "COMMIT");
  close();
  if (!ok) return make_error_code(errc::storage);
  return c;
}

result<std::vector<dead_letter_entry>> outbox::list_dead_letters(const std::filesystem::path& path,
                                                                 std::size_t limit,
                                                                 std::string& error) {
  sqlite3* db = nullptr;
  std::vector<dead_letter_entry> out;
  bool ok = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK;
  if (ok) {
    sqlite3_busy_timeout(db, 2000);
    auto v = schemas::schema_version(db);
    if (v && *v < 2) {  // an outbox from before dead letters existed has none
      sqlite3_close(db);
      return out;
    }
    detail::statement q(db, "SELECT seq, class, ts_ns, instrument, channel, reason, attempts, moved_ns"
                            " FROM dead_letter ORDER BY seq LIMIT ?");
    ok = static_cast<bool>(q);
    if (ok) {
      q.bind(1, static_cast<std::int64_t>(limit));
      int rc;
      while ((rc = q.step()) == SQLITE_ROW)
        out.push_back({static_cast<std::uint64_t>(q.int64(0)),
                       static_cast<schemas::record_class>(q.int64(1)), q.int64(2), q.text(3),
                       q.text(4), q.text(5), static_cast<int>(q.int64(6)), q.int64(7)});
      ok = rc == SQLITE_DONE;
    }
  }
  if (!ok) error = path.string() + ": " + sqlite3_errmsg(db);
  sqlite3_close(db);
  if (!ok) return make_error_code(errc::storage);
  return out;
}

result<std::uint64_t> outbox::retry_dead_letters_in(const std::filesystem::path& path,
                                                    std::string& error) {
  sqlite3* db = nullptr;
  std::uint64_t moved = 0;
  bool ok = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK;
  if (ok) {
    sqlite3_busy_timeout(db, 5000);
    std::string err;
    ok = detail::exec(db, "BEGIN IMMEDIATE", &err) && move_dead_letters_back(db, moved, &err) &&
         detail::exec(db, "COMMIT", &err);
    if (!ok) {
      error = path.string() + ": " + err;
      detail::exec(db, "ROLLBACK");
    }
  } else {
    error = path.string() + ": " + sqlite3_errmsg(db);
  }
  sqlite3_close(db);
  if (!ok) return make_error_code(errc::storage);
  return moved;
}

void outbox::enqueue(std::vector<schemas::record> records, insert_done done) {
  if (records.empty()) {
    if (done) done({}, {});
    return;
  }
  impl_->push(impl::insert_job{std::move(records), std::move(done)});
}

result<schemas::seq_range> outbox::enqueue_wait(std::vector<schemas::record> records) {
  std::promise<std::pair<boost::system::error_code, schemas::seq_range>> p;
  auto f = p.get_future();
  enqueue(std::move(records), [&p](boost::system::error_code ec, schemas::seq_range r) {
    p.set_value({ec, r});
  });
  auto [ec, r] = f.get();
  if (ec) return ec;
  return r;
}

void outbox::ack(std::vector<schemas::seq_range> ranges, ack_done done, std::uint64_t epoch) {
  impl_->push(impl::ack_job{std::move(ranges), std::move(done), epoch});
}

void outbox::dead_letter(std::vector<schemas::seq_range> ranges, std::string reason, int attempts,
                         ack_done done, std::uint64_t epoch) {
  impl_->push(
      impl::dead_letter_job{std::move(ranges), std::move(reason), attempts, std::move(done), epoch});
}

void outbox::retry_dead_letters(ack_done done) { impl_->push(impl::retry_job{std::move(done)}); }

void outbox::read(class_cursors after, std::size_t max, read_epoch_done done) {
  impl_->push(impl::read_job{after, max, std::move(done)});
}

void outbox::read(class_cursors after, std::size_t max, const class_limits& limits,
                  read_epoch_done done) {
  impl_->push(impl::read_job{after, max, std::move(done), limits});
}

void outbox::read(class_cursors after, std::size_t max, read_done done) {
  read(after, max,
       read_epoch_done([d = std::move(done)](boost::system::error_code ec,
                                             std::vector<schemas::record> r, std::uint64_t) {
         d(ec, std::move(r));
       }));
}

void outbox::read_retained(std::uint64_t from, std::uint64_t to, std::size_t max,
                           read_epoch_done done) {
  impl_->push(impl::retained_read_job{from, to, max, std::move(done)});
}

void outbox::on_committed(std::function<void()> h) { impl_->committed = std::move(h); }

namespace {
// Every stored dictionary, newest first. False on a SQL error.
bool select_dictionaries(sqlite3* db, std::vector<schemas::zstd_dictionary>& out) {
  detail::statement q(db, "SELECT dict_id, bytes FROM dictionaries ORDER BY created_ns DESC, dict_id");
  if (!q) return false;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(q.get(), 1));
    auto n = static_cast<std::size_t>(sqlite3_column_bytes(q.get(), 1));
    auto d = schemas::make_dictionary(std::span<const std::uint8_t>(p, n));
    // A row that is not a dictionary any more (bit rot) is skipped: the engine trains anew.
    if (d && d->id == static_cast<std::uint32_t>(q.int64(0))) out.push_back(std::move(*d));
  }
  return rc == SQLITE_DONE;
}
}  // namespace

void outbox::save_dictionary(schemas::zstd_dictionary d, std::vector<std::uint32_t> keep,
                             dictionaries_done done) {
  impl_->push(impl::call_job{[d = std::move(d), keep = std::move(keep), done = std::move(done)](
                                 sqlite3* db, bool broken) {
    std::vector<schemas::zstd_dictionary> out;
    if (broken) return done(make_error_code(errc::storage), std::move(out));
    bool ok = detail::exec(db, "BEGIN IMMEDIATE");
    if (ok) {
      detail::statement ins(db,
                            "INSERT OR REPLACE INTO dictionaries(dict_id, bytes, created_ns) VALUES(?, ?, ?)");
      ok = static_cast<bool>(ins);
      if (ok) {
        ins.bind(1, static_cast<std::int64_t>(d.id));
        sqlite3_bind_blob(ins.get(), 2, d.bytes.data(), static_cast<int>(d.bytes.size()), SQLITE_TRANSIENT);
        ins.bind(3, wall_now_ns());
        ok = ins.step() == SQLITE_DONE;
      }
    }
    if (ok) {
      std::string sql = "DELETE FROM dictionaries WHERE dict_id NOT IN (" + std::to_string(d.id);
      for (auto k : keep) sql += "," + std::to_string(k);
      sql += ")";
      ok = detail::exec(db, sql.c_str());
    }
    if (ok) ok = detail::exec(db, "COMMIT");
    if (!ok) {
      spdlog::error("[outbox] saving dictionary {} failed: {}", d.id, sqlite3_errmsg(db));
      detail::exec(db, "ROLLBACK");
      return done(make_error_code(errc::storage), std::move(out));
    }
    if (!select_dictionaries(db, out)) return done(make_error_code(errc::storage), {});
    done({}, std::move(out));
  }});
}

void outbox::load_dictionaries(dictionaries_done done) {
  impl_->push(impl::call_job{[done = std::move(done)](sqlite3* db, bool broken) {
    std::vector<schemas::zstd_dictionary> out;
    if (broken || !select_dictionaries(db, out)) return done(make_error_code(errc::storage), {});
    done({}, std::move(out));
  }});
}

outbox_counters outbox::counters() const {
  std::lock_guard lk(impl_->stats_mu);
  return impl_->stats;
}

}  // namespace semilab::sync
