#include <semilab/schemas/sql.hpp>
#include <semilab/sync/outbox.hpp>

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
  const char* held_sql =
      *v >= 2 ? "SELECT (SELECT COUNT(*) FROM outbox), (SELECT COALESCE(SUM(bytes),0) FROM outbox),"
                " (SELECT ts_ns FROM outbox ORDER BY seq LIMIT 1), (SELECT COUNT(*) FROM dead_letter),"
                " (SELECT COALESCE(SUM(bytes),0) FROM dead_letter)"
              : "SELECT (SELECT COUNT(*) FROM outbox), (SELECT COALESCE(SUM(bytes),0) FROM outbox),"
                " (SELECT ts_ns FROM outbox ORDER BY seq LIMIT 1), 0, 0";
  detail::statement h(db, held_sql);
  if (!q || !h) return false;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    auto name = q.text(0);
    auto n = static_cast<std::uint64_t>(q.int64(1));
    if (name == "produced") c.produced = n;
    if (name == "acked") c.acked = n;
    if (name == "dropped") c.dropped = n;
  }
  if (rc != SQLITE_DONE || h.step() != SQLITE_ROW) return false;
  c.dead_letters = static_cast<std::uint64_t>(h.int64(3));
  c.held = static_cast<std::uint64_t>(h.int64(0)) + c.dead_letters;
  c.held_bytes = static_cast<std::uint64_t>(h.int64(1) + h.int64(4));
  c.oldest_ts_ns = h.int64(2);
  return true;
}

}  // namespace

struct outbox::impl {
  struct insert_job {
    std::vector<schemas::record> records;
    insert_done done;
  };
  struct ack_job {
    std::vector<schemas::seq_range> ranges;
    ack_done done;
  };
  struct read_job {
    class_cursors after;
    std::size_t max;
    read_done done;
  };
  struct dead_letter_job {
    std::vector<schemas::seq_range> ranges;
    std::string reason;
    int attempts;
    ack_done done;
  };
  struct retry_job {
    ack_done done;
  };
  using job = std::variant<insert_job, ack_job, read_job, dead_letter_job, retry_job>;

  sqlite3* db = nullptr;
  std::string path;
  std::size_t max_group;
  detail::statement insert, bump, del, read_class, oldest, to_dead, del_plain, dead_count;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<job> queue;
  bool stopping = false;
  std::thread writer;
  std::function<void()> committed;

  mutable std::mutex stats_mu;
  outbox_counters stats;
  std::string replaced;  // set when a corrupt database was moved aside at open

  ~impl() {
    {
      std::lock_guard lk(mu);
      stopping = true;
    }
    cv.notify_all();
    if (writer.joinable()) writer.join();
    insert = {};
    bump = {};
    del = {};
    read_class = {};
    oldest = {};
    to_dead = {};
    del_plain = {};
    dead_count = {};
    sqlite3_close(db);
  }

  bool prepare() {
    insert = detail::statement(db,
                               "INSERT INTO outbox(class, ts_ns, instrument, channel, unit, quality,"
                               " vkind, vnum, vexp, vtext, run_id, bytes)"
                               " VALUES(?,?,?,?,?,?,?,?,?,?,?,?)");
    bump = detail::statement(db, "UPDATE counters SET value = value + ? WHERE name = ?");
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
    return insert && bump && del && read_class && oldest && to_dead && del_plain && dead_count;
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

  bool bump_counter(const char* name, std::uint64_t by) {
    bump.bind(1, static_cast<std::int64_t>(by)).bind(2, std::string_view(name));
    bool ok = bump.step() == SQLITE_DONE;
    bump.reset();
    return ok;
  }

  // Inserts one job's records; returns false on a SQLite error (the transaction is then rolled back).
  bool do_insert(insert_job& j, schemas::seq_range& assigned, std::uint64_t& bytes) {
    for (std::size_t i = 0; i < j.records.size(); ++i) {
      auto& r = j.records[i];
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
      auto b = record_bytes(r);
      insert.bind(12, static_cast<std::int64_t>(b));
      bool ok = insert.step() == SQLITE_DONE;
      insert.reset();
      if (!ok) return false;
      r.seq = static_cast<std::uint64_t>(sqlite3_last_insert_rowid(db));
      if (i == 0) assigned.first = r.seq;
      assigned.last = r.seq;
      bytes += b;
    }
    return true;
  }

  bool do_ack(const ack_job& j, std::uint64_t& deleted, std::uint64_t& bytes) {
    for (auto& r : j.ranges) {
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

  void do_read(read_job& j) {
    std::vector<schemas::record> out;
    boost::system::error_code ec;
    for (int c = 0; c < schemas::kRecordClassCount && out.size() < j.max; ++c) {
      read_class.bind(1, static_cast<std::int64_t>(c))
          .bind(2, static_cast<std::int64_t>(j.after[static_cast<std::size_t>(c)]))
          .bind(3, static_cast<std::int64_t>(j.max - out.size()));
      int rc;
      while ((rc = read_class.step()) == SQLITE_ROW) {
        schemas::record r;
        r.seq = static_cast<std::uint64_t>(read_class.int64(0));
        r.cls = static_cast<schemas::record_class>(read_class.int64(1));
        r.ts_ns = read_class.int64(2);
        r.instrument = read_class.text(3);
        r.channel = read_class.text(4);
        r.unit = read_class.text(5);
        r.quality = static_cast<std::uint32_t>(read_class.int64(6));
        switch (read_class.int64(7)) {
          case 0: r.val = read_class.real(8); break;
          case 1: r.val = read_class.int64(8); break;
          case 2:
            r.val = schemas::decimal{read_class.int64(8), static_cast<std::int8_t>(read_class.int64(9))};
            break;
          default: r.val = read_class.text(10);
        }
        r.run_id = read_class.text(11);
        out.push_back(std::move(r));
      }
      read_class.reset();
      if (rc != SQLITE_DONE) {
        spdlog::error("[outbox] read failed: {}", sqlite3_errmsg(db));
        ec = make_error_code(errc::storage);
        break;
      }
    }
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.seq < b.seq; });
    j.done(ec, std::move(out));
  }

  void run() {
    std::vector<job> batch;
    for (;;) {
      {
        std::unique_lock lk(mu);
        cv.wait(lk, [&] { return stopping || !queue.empty(); });
        if (queue.empty() && stopping) return;
        // Take every write job up to the group limit; reads are served after the commit.
        std::size_t n = 0;
        while (!queue.empty() && n < max_group) {
          if (auto* ins = std::get_if<insert_job>(&queue.front())) n += ins->records.size();
          batch.push_back(std::move(queue.front()));
          queue.pop_front();
        }
      }
      process(batch);
      batch.clear();
    }
  }

  void process(std::vector<job>& jobs) {
    bool writes = false;
    for (auto& j : jobs) writes |= !std::holds_alternative<read_job>(j);
    std::vector<schemas::seq_range> assigned(jobs.size());
    std::vector<std::uint64_t> acked_by_job(jobs.size());
    std::uint64_t added = 0, added_bytes = 0, deleted = 0, deleted_bytes = 0;
    std::int64_t dead_delta = 0;  // records moved into (+) or out of (-) the dead letters
    bool ok = true;
    if (writes) {
      ok = detail::exec(db, "BEGIN IMMEDIATE");
      for (std::size_t i = 0; ok && i < jobs.size(); ++i) {
        if (auto* ins = std::get_if<insert_job>(&jobs[i])) {
          ok = do_insert(*ins, assigned[i], added_bytes);
          added += ins->records.size();
        } else if (auto* a = std::get_if<ack_job>(&jobs[i])) {
          std::uint64_t before = deleted;
          ok = do_ack(*a, deleted, deleted_bytes);
          acked_by_job[i] = deleted - before;
        } else if (auto* d = std::get_if<dead_letter_job>(&jobs[i])) {
          ok = do_dead_letter(*d, acked_by_job[i]);
          dead_delta += static_cast<std::int64_t>(acked_by_job[i]);
        } else if (std::holds_alternative<retry_job>(jobs[i])) {
          ok = do_retry(acked_by_job[i]);
          dead_delta -= static_cast<std::int64_t>(acked_by_job[i]);
        }
      }
      if (ok && added) ok = bump_counter("produced", added);
      if (ok && deleted) ok = bump_counter("acked", deleted);
      if (ok) ok = detail::exec(db, "COMMIT");
      if (!ok) {
        spdlog::error("[outbox] {}: transaction failed: {}", path, sqlite3_errmsg(db));
        detail::exec(db, "ROLLBACK");
      } else {
        std::int64_t oldest_ts = query_oldest();
        std::lock_guard lk(stats_mu);
        stats.produced += added;
        stats.acked += deleted;
        stats.held = stats.held + added - deleted;
        stats.held_bytes = stats.held_bytes + added_bytes - deleted_bytes;
        stats.oldest_ts_ns = oldest_ts;
        stats.dead_letters = count_dead();  // also sees moves made by `queue dead-letters --retry`
      }
    }
    auto ec = ok ? boost::system::error_code{} : make_error_code(errc::storage);
    // Completions only after the commit: a caller told "stored" can rely on it.
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      if (auto* ins = std::get_if<insert_job>(&jobs[i])) {
        if (ins->done) ins->done(ec, assigned[i]);
      } else if (auto* a = std::get_if<ack_job>(&jobs[i])) {
        if (a->done) a->done(ec, ok ? acked_by_job[i] : 0);
      } else if (auto* d = std::get_if<dead_letter_job>(&jobs[i])) {
        if (d->done) d->done(ec, ok ? acked_by_job[i] : 0);
      } else if (auto* r = std::get_if<retry_job>(&jobs[i])) {
        if (r->done) r->done(ec, ok ? acked_by_job[i] : 0);
      }
    }
    if (ok && (added || dead_delta < 0) && committed) committed();
    for (auto& j : jobs)
      if (auto* r = std::get_if<read_job>(&j)) do_read(*r);
  }

  void push(job j) {
    {
      std::lock_guard lk(mu);
      queue.push_back(std::move(j));
    }
    cv.notify_one();
  }
};

outbox::outbox(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
outbox::~outbox() = default;

namespace {

bool is_corruption(int rc) {
  rc &= 0xff;
  return rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB;
}

// Moves the database and its WAL/SHM aside for forensics; returns the new name of the main file.
std::string move_aside(const std::string& path) {
  auto stamp = std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count());
  std::string target = path + ".corrupt-" + stamp;
  std::error_code ec;
  for (auto ext : {"", "-wal", "-shm"}) {
    if (std::filesystem::exists(path + ext, ec))
      std::filesystem::rename(path + ext, target + ext, ec);
  }
  return target;
}

}  // namespace

// Opens, migrates and checks one database file. `corrupt` tells the caller that moving the file
// aside and starting a new outbox is the right answer (as opposed to, say, a permission error).
result<std::unique_ptr<outbox::impl>> outbox::open_file(const outbox_options& opts,
                                                        std::string& error, bool& corrupt,
                                                        std::uint64_t& epoch) {
  corrupt = false;
  auto p = std::make_unique<impl>();
  p->path = opts.path.string();
  p->max_group = opts.max_group;
  std::error_code fec;
  const bool existed = std::filesystem::file_size(opts.path, fec) > 0 && !fec;
  bool past_open = false;  // failures after the file opened and took the WAL mode
  auto fail = [&](std::string why) {
    int rc = sqlite3_errcode(p->db) & 0xff;
    // Corruption as SQLite reports it, or an existing file whose schema does not read back
    // consistently (e.g. damaged pages make migrations trip over existing tables). Resource
    // errors (disk full, I/O, permissions, locks) are never a reason to replace the outbox.
    bool resource = rc == SQLITE_FULL || rc == SQLITE_IOERR || rc == SQLITE_READONLY ||
                    rc == SQLITE_CANTOPEN || rc == SQLITE_BUSY || rc == SQLITE_LOCKED ||
                    rc == SQLITE_PERM || rc == SQLITE_NOMEM;
    corrupt = is_corruption(rc) || (existed && past_open && !resource);
    error = p->path + ": " + why;
    return make_error_code(errc::storage);
  };
  if (sqlite3_open_v2(p->path.c_str(), &p->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK)
    return fail(std::string("cannot open: ") + sqlite3_errmsg(p->db));
  sqlite3_extended_result_codes(p->db, 1);
  sqlite3_busy_timeout(p->db, 5000);
  std::string err;
  if (!detail::exec(p->db, "PRAGMA journal_mode=WAL", &err)) return fail(err);
  const char* sync_sql = opts.sync_mode == durability::full ? "PRAGMA synchronous=FULL"
                                                            : "PRAGMA synchronous=NORMAL";
  if (!detail::exec(p->db, sync_sql, &err)) return fail(err);
  past_open = true;
  if (auto ec = schemas::apply_migrations(p->db, schemas::agent_outbox_migrations(), err)) {
    if (ec == schemas::errc::unsupported_version) {
      error = p->path + ": " + err;  // a newer agent's outbox: refuse, never replace
      return make_error_code(errc::storage);
    }
    return fail(err);
  }
  // Identity: created with the database, checked on every open.
  std::string stored_agent, stored_epoch;
  {
    detail::statement q(p->db, "SELECT key, value FROM meta");
    if (!q) return fail(sqlite3_errmsg(p->db));
    int rc;
    while ((rc = q.step()) == SQLITE_ROW) {
      if (q.text(0) == "agent_id") stored_agent = q.text(1);
      if (q.text(0) == "store_epoch") stored_epoch = q.text(1);
    }
    if (rc != SQLITE_DONE) return fail(sqlite3_errmsg(p->db));
  }
  if (stored_epoch.empty()) {
    if (!schemas::valid_id(opts.agent_id)) {
      error = p->path + ": agent id '" + opts.agent_id + "' not allowed";
      return make_error_code(errc::storage);
    }
    epoch = new_epoch();
    std::string sql = "INSERT INTO meta(key, value) VALUES('store_epoch', '" + std::to_string(epoch) +
                      "'), ('agent_id', '" + opts.agent_id + "')";
    if (!detail::exec(p->db, sql.c_str(), &err)) return fail(err);
  } else {
    epoch = std::strtoull(stored_epoch.c_str(), nullptr, 10);
    if (epoch == 0) return fail("store epoch '" + stored_epoch + "' is not a number");
    if (stored_agent != opts.agent_id) {
      error = p->path + ": outbox belongs to agent '" + stored_agent + "', configured agent is '" +
              opts.agent_id + "' (move the file aside to start a new outbox)";
      return make_error_code(errc::agent_mismatch);
    }
  }
  if (!p->prepare()) return fail(sqlite3_errmsg(p->db));
  // Cheap consistency check at start: the counters, the newest pages of the outbox (where a torn
  // write would be) and the oldest record. A full integrity_check belongs to the background.
  {
    detail::statement tail(p->db, "SELECT seq, class, ts_ns, instrument, channel, unit, vkind, vnum"
                                  " FROM outbox ORDER BY seq DESC LIMIT 256");
    if (!tail) return fail(sqlite3_errmsg(p->db));
    int rc;
    while ((rc = tail.step()) == SQLITE_ROW) {
    }
    if (rc != SQLITE_DONE) return fail(std::string("consistency check: ") + sqlite3_errmsg(p->db));
  }
  if (!p->load_counters()) return fail(std::string("counters: ") + sqlite3_errmsg(p->db));
  return p;
}

result<std::unique_ptr<outbox>> outbox::open(const outbox_options& opts, std::string& error) {
  bool corrupt = false;
  std::uint64_t epoch = 0;
  auto p = open_file(opts, error, corrupt, epoch);
  std::string replaced;
  if (!p && corrupt) {
    // Never a crash loop: keep the damaged file for forensics, start a new outbox with a new
    // store epoch (keys never collide with the old one), and leave an event saying so.
    std::string why = error;
    std::string moved = move_aside(opts.path.string());
    spdlog::error("[outbox] {}; moved aside to {}, starting a new outbox", why, moved);
    replaced = why + "; moved aside to " + moved;
    p = open_file(opts, error, corrupt, epoch);
  }
  if (!p) return p.error();
  auto* raw = p->get();
  if (!replaced.empty()) {
    schemas::record ev;
    ev.cls = schemas::record_class::event;
    ev.ts_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    ev.instrument = "agent";
    ev.channel = "outbox_replaced";
    ev.val = replaced.substr(0, schemas::kMaxTextBytes);
    impl::insert_job j{{ev}, {}};
    std::vector<impl::job> jobs;
    jobs.emplace_back(std::move(j));
    raw->process(jobs);
    raw->replaced = replaced;
  }
  raw->writer = std::thread([raw] {
    pthread_setname_np(pthread_self(), "outbox-writer");
    raw->run();
  });
  std::unique_ptr<outbox> ob(new outbox(std::move(*p)));
  ob->epoch_ = epoch;
  ob->agent_id_ = opts.agent_id;
  return ob;
}

const std::string& outbox::replaced_reason() const noexcept { return impl_->replaced; }

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

void outbox::ack(std::vector<schemas::seq_range> ranges, ack_done done) {
  impl_->push(impl::ack_job{std::move(ranges), std::move(done)});
}

void outbox::dead_letter(std::vector<schemas::seq_range> ranges, std::string reason, int attempts,
                         ack_done done) {
  impl_->push(impl::dead_letter_job{std::move(ranges), std::move(reason), attempts, std::move(done)});
}

void outbox::retry_dead_letters(ack_done done) { impl_->push(impl::retry_job{std::move(done)}); }

void outbox::read(class_cursors after, std::size_t max, read_done done) {
  impl_->push(impl::read_job{after, max, std::move(done)});
}

void outbox::on_committed(std::function<void()> h) { impl_->committed = std::move(h); }

outbox_counters outbox::counters() const {
  std::lock_guard lk(impl_->stats_mu);
  return impl_->stats;
}

}  // namespace semilab::sync
