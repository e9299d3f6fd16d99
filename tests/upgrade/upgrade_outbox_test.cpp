// Upgrade of the agent outbox from every earlier schema version (issue 10, "Upgrades").
//
// For each version N of schemas/sql/agent (whatever migrations exist: the loop reads the list the
// library embeds), a database is built as the released agents left it: migration 1, then the rows
// that version's code wrote, migration 2, its rows, ... up to N. The current code then opens it
// (outbox::open runs the remaining migrations) and must keep the store epoch and every record:
// held records readable and deliverable in seq order, acks deleting them, dead letters listed and
// retried with their seq, retained records replayable, counters consistent, new seqs above every
// seq ever handed out. A failed migration would make outbox::open treat the file as corrupt and
// move it aside: the test checks that nothing was replaced.
//
// A new migration that changes how rows are written should add a fixture below (what that
// version's code writes); versions without a fixture are covered schema-only.
#include <semilab/schemas/sql.hpp>
#include <semilab/sync/outbox.hpp>

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <chrono>
#include <future>
#include <map>
#include <string>
#include <vector>

#include "support/processes.hpp"

using namespace semilab;
using schemas::decimal;
using schemas::record;
using schemas::record_class;

namespace {

constexpr std::uint64_t kEpoch = 12297829382473034410ull;  // above INT64_MAX: stored as text
constexpr const char* kAgent = "lab1-agent-01";

// What the fixtures wrote, for the checks.
struct expected_state {
  std::map<std::uint64_t, record> held;      // in the outbox table
  std::map<std::uint64_t, record> dead;      // dead_letter
  std::map<std::uint64_t, record> retained;  // retained
  std::uint64_t produced = 0, acked = 0, dropped = 0, max_seq = 0;
};

record rec(std::uint64_t seq, record_class c, std::int64_t ts, std::string inst, std::string ch,
           std::string unit, schemas::value v, std::uint32_t q = 0, std::string run = {}) {
  record r;
  r.seq = seq;
  r.cls = c;
  r.ts_ns = ts;
  r.instrument = std::move(inst);
  r.channel = std::move(ch);
  r.unit = std::move(unit);
  r.val = std::move(v);
  r.quality = q;
  r.run_id = std::move(run);
  return r;
}

// The `bytes` estimate every released version stored (sync/src/outbox.cpp record_bytes).
std::int64_t est_bytes(const record& r) {
  std::size_t n = 40 + r.instrument.size() + r.channel.size() + r.unit.size() + r.run_id.size();
  if (auto* t = std::get_if<std::string>(&r.val)) n += t->size();
  return static_cast<std::int64_t>(n);
}

void exec(sqlite3* db, const std::string& sql) {
  char* msg = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg);
  std::string m = msg ? msg : "";
  sqlite3_free(msg);
  REQUIRE_MESSAGE(rc == SQLITE_OK, sql << ": " << m);
}

// Inserts a record row into `table` with the columns every version had, plus `extra` columns.
void insert_row(sqlite3* db, const char* table, const record& r, const std::string& extra_cols = {},
                const std::vector<std::int64_t>& extra_ints = {}, const std::string& extra_text = {}) {
  std::string sql = std::string("INSERT INTO ") + table +
                    "(seq, class, ts_ns, instrument, channel, unit, quality, vkind, vnum, vexp, vtext,"
                    " run_id, bytes" + extra_cols + ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?";
  std::size_t n_extra = extra_ints.size() + (extra_text.empty() ? 0 : 1);
  for (std::size_t i = 0; i < n_extra; ++i) sql += ",?";
  sql += ")";
  sqlite3_stmt* st = nullptr;
  REQUIRE_MESSAGE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK,
                  sqlite3_errmsg(db));
  sqlite3_bind_int64(st, 1, static_cast<std::int64_t>(r.seq));
  sqlite3_bind_int(st, 2, static_cast<int>(r.cls));
  sqlite3_bind_int64(st, 3, r.ts_ns);
  sqlite3_bind_text(st, 4, r.instrument.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 5, r.channel.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 6, r.unit.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 7, r.quality);
  sqlite3_bind_int64(st, 8, static_cast<std::int64_t>(r.val.index()));
  switch (r.val.index()) {
    case 0: sqlite3_bind_double(st, 9, std::get<double>(r.val)); break;
    case 1: sqlite3_bind_int64(st, 9, std::get<std::int64_t>(r.val)); break;
    case 2:
      sqlite3_bind_int64(st, 9, std::get<decimal>(r.val).mantissa);
      sqlite3_bind_int64(st, 10, std::get<decimal>(r.val).exponent);
      break;
    default: sqlite3_bind_text(st, 11, std::get<std::string>(r.val).c_str(), -1, SQLITE_TRANSIENT);
  }
  if (!r.run_id.empty()) sqlite3_bind_text(st, 12, r.run_id.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 13, est_bytes(r));
  int i = 14;
  if (!extra_text.empty()) sqlite3_bind_text(st, i++, extra_text.c_str(), -1, SQLITE_TRANSIENT);
  for (auto v : extra_ints) sqlite3_bind_int64(st, i++, v);
  int rc = sqlite3_step(st);
  std::string err = sqlite3_errmsg(db);
  sqlite3_finalize(st);
  REQUIRE_MESSAGE(rc == SQLITE_DONE, table << ": " << err);
}

void set_counter(sqlite3* db, const std::string& name, std::int64_t v) {
  exec(db, "INSERT INTO counters(name, value) VALUES('" + name + "', " + std::to_string(v) +
               ") ON CONFLICT(name) DO UPDATE SET value = excluded.value");
}

std::int64_t held_bytes_of(const expected_state& e) {
  std::int64_t b = 0;
  for (auto& [s, r] : e.held) b += est_bytes(r);
  for (auto& [s, r] : e.dead) b += est_bytes(r);
  return b;
}

constexpr std::int64_t kT0 = 1'764'250'000'000'000'000;

// Version 1 (edaab0b .. 85b3b14): meta identity, counters produced/acked/dropped, the outbox.
// Seqs 1-2 were acked and deleted (AUTOINCREMENT remembers them); 3-8 are held, one per value
// kind and class, with the digits, exact integers, flags and run ids that must survive.
void fixture_v1(sqlite3* db, expected_state& e) {
  exec(db, "INSERT INTO meta(key, value) VALUES('store_epoch', '" + std::to_string(kEpoch) +
               "'), ('agent_id', '" + kAgent + "')");
  for (std::uint64_t s : {1, 2}) {
    insert_row(db, "outbox", rec(s, record_class::telemetry, kT0, "smu1", "curr", "A", 1.0));
    exec(db, "DELETE FROM outbox WHERE seq = " + std::to_string(s));
  }
  std::vector<record> rows = {
      rec(3, record_class::event, kT0 + 1, "smu1", "state", "", std::string("connected")),
      rec(4, record_class::run_result, kT0 + 2, "smu1", "vth", "V", decimal{1234500, -9}, 0, "run-7"),
      rec(5, record_class::telemetry, kT0 + 3, "smu1", "curr", "A", 1.0000000000000002e-7,
          schemas::quality::compliance | schemas::quality::over_range),
      rec(6, record_class::telemetry, kT0 + 4, "plc1", "count", "", std::int64_t{9007199254740993}),
      rec(7, record_class::telemetry, kT0 - 5'000'000'000, "smu1", "volt", "V", decimal{-5, 0},
          schemas::quality::bad_timestamp),
      rec(8, record_class::blob, kT0 + 6, "xrd1", "export", "", std::string("chunk 0 of scan.xrdml")),
  };
  for (auto& r : rows) {
    insert_row(db, "outbox", r);
    e.held[r.seq] = r;
  }
  set_counter(db, "produced", 8);
  set_counter(db, "acked", 2);
  e.produced = 8;
  e.acked = 2;
  e.max_seq = 8;
}

// Version 2 (85b3b14): dead letters. Seq 9 was rejected permanently and moved aside (still
// held); 10-11 are new held records.
void fixture_v2(sqlite3* db, expected_state& e) {
  auto dead = rec(9, record_class::telemetry, kT0 + 9, "smu1", "curr", "A", decimal{42, -3});
  insert_row(db, "dead_letter", dead, ", reason, attempts, moved_ns",
             {5, kT0 + 100}, "invalid_frame: checksum mismatch");
  e.dead[9] = dead;
  for (std::uint64_t s : {10, 11}) {
    auto r = rec(s, record_class::telemetry, kT0 + static_cast<std::int64_t>(s), "smu1", "curr",
                 "A", decimal{static_cast<std::int64_t>(s), -6});
    insert_row(db, "outbox", r);
    e.held[s] = r;
  }
  // AUTOINCREMENT: 9 was handed out through the outbox table before it moved.
  exec(db, "UPDATE sqlite_sequence SET seq = 11 WHERE name = 'outbox'");
  e.produced += 3;
  e.max_seq = 11;
  set_counter(db, "produced", static_cast<std::int64_t>(e.produced));
}

// Version 3 (58d38a9): retention of acked records, the persisted held_bytes counter and the
// quota accounting of 8dd3363: 12-13 acked and retained, 14 evicted by the quota (counted, with
// the drop notice 15 still held).
void fixture_v3(sqlite3* db, expected_state& e) {
  const std::int64_t acked_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::system_clock::now().time_since_epoch() - std::chrono::hours(1))
          .count();
  std::int64_t ret_bytes = 0;
  for (std::uint64_t s : {12, 13}) {
    auto r = rec(s, record_class::run_result, kT0 + static_cast<std::int64_t>(s), "smu1", "ron",
                 "Ohm", decimal{static_cast<std::int64_t>(s) * 1000, -2}, 0, "run-8");
    insert_row(db, "retained", r, ", acked_ns", {acked_ns});
    e.retained[s] = r;
    ret_bytes += est_bytes(r);
  }
  auto notice = rec(15, record_class::event, kT0 + 15, "agent", "drop_notice", "",
                    std::string(R"({"v":1,"action":"dropped","reason":"quota","class":"telemetry",)"
                                R"("epoch":"12297829382473034410","records":"1","ranges":[["14","14"]],)"
                                R"("first_ts_ns":"0","last_ts_ns":"0","detail":"evicted"})"));
  insert_row(db, "outbox", notice);
  e.held[15] = notice;
  exec(db, "UPDATE sqlite_sequence SET seq = 15 WHERE name = 'outbox'");
  e.produced += 4;
  e.acked += 2;
  e.dropped += 1;
  e.max_seq = 15;
  set_counter(db, "produced", static_cast<std::int64_t>(e.produced));
  set_counter(db, "acked", static_cast<std::int64_t>(e.acked));
  set_counter(db, "dropped", static_cast<std::int64_t>(e.dropped));
  set_counter(db, "dropped.quota.telemetry", 1);
  set_counter(db, "notices", 1);
  set_counter(db, "retained", 2);
  set_counter(db, "retained_bytes", ret_bytes);
  set_counter(db, "held_bytes", held_bytes_of(e));
}

using fixture_fn = void (*)(sqlite3*, expected_state&);
const std::map<int, fixture_fn> kFixtures = {{1, fixture_v1}, {2, fixture_v2}, {3, fixture_v3}};

// Builds the database of an agent last run at schema version `n`.
expected_state build_at(const std::filesystem::path& path, int n) {
  expected_state e;
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  exec(db, "PRAGMA journal_mode=WAL");
  auto all = schemas::agent_outbox_migrations();
  for (std::size_t i = 0; i < all.size() && all[i].version <= n; ++i) {
    std::string err;
    auto ec = schemas::apply_migrations(db, all.first(i + 1), err);
    REQUIRE_MESSAGE(!ec, err);
    if (auto f = kFixtures.find(all[i].version); f != kFixtures.end()) f->second(db, e);
  }
  auto v = schemas::schema_version(db);
  REQUIRE(v.has_value());
  CHECK(*v == n);
  sqlite3_close(db);
  return e;
}

sync::outbox_options options(const std::filesystem::path& p) {
  sync::outbox_options o{p, kAgent, sync::durability::normal};
  o.integrity_interval = std::chrono::seconds(0);
  o.retention = {std::chrono::hours(24 * 7), 1u << 30};
  return o;
}

std::vector<record> read_all(sync::outbox& box) {
  std::promise<std::pair<boost::system::error_code, std::vector<record>>> p;
  auto f = p.get_future();
  box.read(sync::class_cursors{}, 1000,
           sync::outbox::read_epoch_done(
               [&](boost::system::error_code ec, std::vector<record> r, std::uint64_t epoch) {
                 CHECK(epoch == kEpoch);
                 p.set_value({ec, std::move(r)});
               }));
  auto [ec, r] = f.get();
  CHECK_FALSE(ec);
  return r;
}

std::uint64_t wait_count(std::function<void(sync::outbox::ack_done)> op) {
  std::promise<std::uint64_t> p;
  auto f = p.get_future();
  op([&](boost::system::error_code ec, std::uint64_t n) { p.set_value(ec ? ~0ull : n); });
  return f.get();
}

std::vector<record> read_retained(sync::outbox& box, std::uint64_t from, std::uint64_t to) {
  std::promise<std::vector<record>> p;
  auto f = p.get_future();
  box.read_retained(from, to, 1000,
                    sync::outbox::read_epoch_done([&](boost::system::error_code ec,
                                                      std::vector<record> r, std::uint64_t epoch) {
                      CHECK_FALSE(ec);
                      CHECK(epoch == kEpoch);
                      p.set_value(std::move(r));
                    }));
  return f.get();
}

std::vector<record> values(const std::map<std::uint64_t, record>& m) {
  std::vector<record> v;
  for (auto& [s, r] : m) v.push_back(r);
  return v;
}

}  // namespace

TEST_CASE("an outbox of every earlier schema version opens with the current code, data intact") {
  auto steps = schemas::agent_outbox_migrations();
  REQUIRE(!steps.empty());
  const int newest = steps.back().version;
  for (const auto& m : steps) {
    const int n = m.version;
    CAPTURE(n);
    test::temp_dir dir;
    const auto path = dir.path() / "outbox.db";
    expected_state e = build_at(path, n);
    std::string err;
    auto opened = sync::outbox::open(options(path), err);
    REQUIRE_MESSAGE(opened.has_value(), err);
    auto& box = **opened;
    CHECK(box.replaced_reason().empty());  // not mistaken for a corrupt file
    CHECK(box.store_epoch() == kEpoch);    // identity kept: central's keys stay unique
    CHECK(std::filesystem::exists(path));
    {
      sqlite3* db = nullptr;
      REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
      auto v = schemas::schema_version(db);
      CHECK((v.has_value() && *v == newest));
      sqlite3_close(db);
    }

    auto c = box.counters();
    CHECK(c.produced == e.produced);
    CHECK(c.acked == e.acked);
    CHECK(c.dropped == e.dropped);
    CHECK(c.held == e.held.size() + e.dead.size());
    CHECK(c.dead_letters == e.dead.size());
    CHECK(c.held_bytes == static_cast<std::uint64_t>(held_bytes_of(e)));
    CHECK(c.retained == e.retained.size());
    CHECK(c.oldest_ts_ns == e.held.begin()->second.ts_ns);
    CHECK(c.produced == c.acked + c.held + c.dropped);

    // Held records come back exactly (values, digits, flags, run ids), highest class first.
    auto got = read_all(box);
    std::vector<record> want = values(e.held);
    std::sort(want.begin(), want.end(), [](const record& a, const record& b) {
      return std::pair(a.cls, a.seq) < std::pair(b.cls, b.seq);
    });
    std::sort(got.begin(), got.end(), [](const record& a, const record& b) {
      return std::pair(a.cls, a.seq) < std::pair(b.cls, b.seq);
    });
    CHECK(got == want);

    // New records continue above every seq ever handed out (never reused).
    auto added = box.enqueue_wait({rec(0, record_class::telemetry, kT0 + 100, "smu1", "curr", "A",
                                       decimal{7, -6})});
    REQUIRE(added.has_value());
    CHECK(added->first == e.max_seq + 1);

    if (n >= 3) {  // retained records of the old version replay
      auto r = read_retained(box, 1, e.max_seq);
      CHECK(r == values(e.retained));
    }
    if (n >= 2) {  // the old dead letter is listed, retried with its seq, then deliverable
      auto dl = sync::outbox::list_dead_letters(path, 100, err);
      REQUIRE_MESSAGE(dl.has_value(), err);
      REQUIRE(dl->size() == 1);
      CHECK((*dl)[0].seq == 9);
      CHECK((*dl)[0].reason == "invalid_frame: checksum mismatch");
      CHECK((*dl)[0].attempts == 5);
      CHECK(wait_count([&](auto done) { box.retry_dead_letters(std::move(done)); }) == 1);
      auto again = read_all(box);
      CHECK(std::any_of(again.begin(), again.end(),
                        [&](const record& r) { return r == e.dead.at(9); }));
    }

    // Central acks everything: the outbox empties, the acked records move into retention.
    std::vector<schemas::seq_range> all{{1, added->last}};
    const std::uint64_t held_now = e.held.size() + e.dead.size() + 1;
    CHECK(wait_count([&](auto done) { box.ack(all, std::move(done), kEpoch); }) == held_now);
    c = box.counters();
    CHECK(c.held == 0);
    CHECK(c.held_bytes == 0);
    CHECK(c.acked == e.acked + held_now);
    CHECK(c.produced == c.acked + c.held + c.dropped);
    CHECK(read_retained(box, 1, added->last).size() == e.retained.size() + held_now);
  }
}

TEST_CASE("an outbox newer than this agent is refused and left in place, never replaced") {
  test::temp_dir dir;
  const auto path = dir.path() / "outbox.db";
  auto steps = schemas::agent_outbox_migrations();
  build_at(path, steps.back().version);
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    exec(db, "INSERT INTO schema_version(version, name, applied_ns) VALUES(" +
                 std::to_string(steps.back().version + 1) + ", '9999_future', 0)");
    sqlite3_close(db);
  }
  std::string err;
  auto opened = sync::outbox::open(options(path), err);
  CHECK_FALSE(opened.has_value());
  CHECK(err.find("newer than this program") != std::string::npos);
  CHECK(std::filesystem::exists(path));
  for (auto& f : std::filesystem::directory_iterator(dir.path()))
    CHECK(f.path().filename().string().find("corrupt") == std::string::npos);
}
