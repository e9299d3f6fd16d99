// One storage test suite, run against both backends: every STORAGE_TEST is a test case for
// SQLite and one for PostgreSQL. PostgreSQL is started once for this binary (initdb + pg_ctl in
// a temp directory, tests/support/postgres.hpp); each test gets its own database. Missing
// PostgreSQL binaries fail the PostgreSQL cases with the helper's message: nothing is skipped.
#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <semilab/central/agent_keys.hpp>
#include <semilab/central/audit.hpp>
#include <semilab/central/auth.hpp>
#include <semilab/central/backup.hpp>
#include <semilab/central/ingest.hpp>
#include <semilab/central/pg_store.hpp>
#include <semilab/central/restore_replay.hpp>
#include <semilab/central/storage.hpp>
#include <semilab/central/store.hpp>
#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/drop_notice.hpp>
#include <semilab/schemas/run_metadata.hpp>
#include <thread>

#include "../../support/postgres.hpp"
#include "test_util.hpp"

using namespace semilab::central;
namespace sc = semilab::schemas;
using central_test::sample_batch;
using central_test::temp_dir;

namespace {

struct pg_cluster {
  std::unique_ptr<semilab::test::postgres_server> server;
  std::string error;
  int next_db = 0;
};

pg_cluster& cluster() {
  static pg_cluster c = [] {
    pg_cluster p;
    p.server = semilab::test::postgres_server::start(p.error);
    return p;
  }();
  return c;
}

// A fresh, empty store location of one backend.
struct env {
  storage_backend backend;
  temp_dir dir;
  storage_options opts;

  explicit env(storage_backend b) : backend(b) {
    opts.backend = b;
    opts.busy_timeout = std::chrono::milliseconds(2000);
    if (b == storage_backend::sqlite) {
      opts.sqlite_path = dir.file("central.db");
    } else {
      auto& c = cluster();
      REQUIRE_MESSAGE(c.server != nullptr, "PostgreSQL test server: " << c.error);
      const std::string db = "t" + std::to_string(++c.next_db);
      REQUIRE_MESSAGE(c.server->create_database(db) == 0, "CREATE DATABASE " << db);
      opts.url = c.server->url(db);
    }
  }
  std::unique_ptr<storage> open(open_mode mode = open_mode::read_write) {
    auto o = opts;
    o.mode = mode;
    std::string err;
    auto s = open_storage(o, err);
    REQUIRE_MESSAGE(s.has_value(), err);
    CHECK((*s)->backend() == backend);
    return std::move(*s);
  }
};

// Runs SQL on the store's own connection (fault injection).
void exec_native(storage& s, const std::string& sql) {
  if (auto* lite = dynamic_cast<sqlite_store*>(&s)) {
    char* msg = nullptr;
    const int rc = sqlite3_exec(lite->native_handle(), sql.c_str(), nullptr, nullptr, &msg);
    std::string m = msg ? msg : "";
    sqlite3_free(msg);
    REQUIRE_MESSAGE(rc == SQLITE_OK, m);
  } else {
    auto* pg = dynamic_cast<pg_store*>(&s);
    REQUIRE(pg != nullptr);
    PGresult* r = PQexec(pg->native_handle(), sql.c_str());
    const auto st = PQresultStatus(r);
    std::string m = PQresultErrorMessage(r);
    PQclear(r);
    REQUIRE_MESSAGE((st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK), m);
  }
}

sc::decoded_frame decoded(const sc::batch& b) {
  sc::frame_decoder dec;
  auto bytes = central_test::encode(b);
  auto f = dec.decode(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
  REQUIRE(f.has_value());
  return std::move(*f);
}

std::vector<std::uint64_t> iota(std::uint64_t first, std::size_t n) {
  std::vector<std::uint64_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = first + i;
  return v;
}

}  // namespace

#define STORAGE_TEST(fn, title)              \
  static void fn(storage_backend backend);   \
  TEST_CASE("storage[sqlite]: " title) {     \
    fn(storage_backend::sqlite);             \
  }                                          \
  TEST_CASE("storage[postgresql]: " title) { \
    fn(storage_backend::postgresql);         \
  }                                          \
  static void fn(storage_backend backend)

STORAGE_TEST(open_twice, "open migrates once, reopens, and a reader opens beside the writer") {
  env e(backend);
  auto w = e.open();
  auto w2 = e.open();  // migrations already applied: a no-op
  auto r = e.open(open_mode::read_only);
  CHECK(*r->record_count() == 0);
  CHECK(r->agents()->empty());
}

STORAGE_TEST(dup_batch, "a batch, then the same batch again is all duplicates") {
  env e(backend);
  auto s = e.open();
  sc::agent_topic_parts topic{"lab1", "agent-01", sc::agent_topic_kind::batch};
  auto f = decoded(sample_batch("agent-01", 42, 1, 100, 20));
  auto r1 = s->store_batch(topic, f, 1234, "central-t");
  REQUIRE(r1.has_value());
  CHECK(r1->new_records == 20);
  CHECK(r1->duplicates == 0);
  auto r2 = s->store_batch(topic, f, 1234, "central-t");
  REQUIRE(r2.has_value());
  CHECK(r2->new_records == 0);
  CHECK(r2->duplicates == 20);
  CHECK(*s->record_count() == 20);
  CHECK(*s->batch_ledger_count() == 2);
  CHECK(*s->record_seqs("agent-01", 42) == iota(100, 20));

  auto agents = s->agents();
  REQUIRE(agents.has_value());
  REQUIRE(agents->size() == 1);
  const auto& a = agents->front();
  CHECK(a.agent_id == "agent-01");
  CHECK(a.site == "lab1");
  CHECK(a.records == 20);
  CHECK(a.batches == 2);
  CHECK(a.duplicates == 20);
  CHECK(a.bytes == 2468);
  CHECK(a.first_seen_ns > 0);
  CHECK(a.last_ack_ns >= a.first_seen_ns);
  auto t = s->totals();
  REQUIRE(t.has_value());
  CHECK(t->records == 20);
  CHECK(t->agents == 1);
  CHECK(t->batches == 2);
  CHECK(t->duplicates == 20);
  CHECK(t->bytes == 2468);
}

STORAGE_TEST(u64_keys, "u64 epoch and seqs above 2^63 round-trip bit for bit") {
  env e(backend);
  auto s = e.open();
  const std::uint64_t epoch = 0xfedcba9876543210ull;
  const std::uint64_t seq = (1ull << 63) - 2;  // straddles 2^63: signed order differs
  sc::agent_topic_parts topic{"lab1", "agent-02", sc::agent_topic_kind::batch};
  auto f = decoded(sample_batch("agent-02", epoch, 9, seq, 4));
  REQUIRE(s->store_batch(topic, f, 10, "c").has_value());
  auto again = s->store_batch(topic, f, 10, "c");  // the key must match bit for bit
  REQUIRE(again.has_value());
  CHECK(again->duplicates == 4);
  CHECK(*s->record_seqs("agent-02", epoch) == iota(seq, 4));
  CHECK(s->record_seqs("agent-02", 1)->empty());
}

STORAGE_TEST(group, "group commit: overlapping batches, first carrier wins, quarantine capped") {
  env e(backend);
  auto s = e.open();
  sc::agent_topic_parts t1{"lab1", "a1", sc::agent_topic_kind::batch};
  sc::agent_topic_parts t2{"lab2", "a2", sc::agent_topic_kind::batch};
  auto f1 = decoded(sample_batch("a1", 7, 1, 1, 10));
  auto f2 = decoded(sample_batch("a1", 7, 2, 6, 10));  // overlaps f1 on 6..10
  auto f3 = decoded(sample_batch("a2", 8, 1, 1, 5));
  auto f4 = decoded(sample_batch("a1", 7, 3, 1, 3));  // all inside f1
  std::vector<batch_to_store> group = {
      {&t1, &f1, 100, 1}, {&t1, &f2, 100, 2}, {&t2, &f3, 100, 3}, {&t1, &f4, 50, 4}};
  std::vector<std::uint8_t> junk(100'000, 0xAB);
  s->set_quarantine_cap(1000);
  std::vector<quarantine_entry> q = {{"semilab/v1/lab1/a1/batch", "a1", "invalid frame", junk, 4},
                                     {"garbage", "", "bad topic", junk, 5}};
  auto r = s->store_group(group, q, "c");
  REQUIRE_MESSAGE(r.has_value(), s->last_error());
  REQUIRE(r->size() == 4);
  CHECK((*r)[0].new_records == 10);
  CHECK((*r)[0].duplicates == 0);
  CHECK((*r)[1].new_records == 5);
  CHECK((*r)[1].duplicates == 5);
  CHECK((*r)[2].new_records == 5);
  CHECK((*r)[3].new_records == 0);
  CHECK((*r)[3].duplicates == 3);
  CHECK(*s->record_count() == 20);
  CHECK(*s->quarantine_count() == 2);
  CHECK(*s->batch_ledger_count() == 4);
  CHECK(*s->record_seqs("a1", 7) == iota(1, 15));
  auto agents = s->agents();
  REQUIRE(agents.has_value());
  REQUIRE(agents->size() == 2);
  CHECK((*agents)[0].agent_id == "a1");
  CHECK((*agents)[0].batches == 3);
  CHECK((*agents)[0].records == 15);
  CHECK((*agents)[0].duplicates == 8);
  CHECK((*agents)[0].bytes == 250);
  CHECK((*agents)[1].site == "lab2");
  CHECK((*agents)[1].records == 5);
  CHECK(s->totals()->quarantined == 2);
}

STORAGE_TEST(rollback, "a failed group leaves nothing behind and the store stays usable") {
  env e(backend);
  auto s = e.open();
  sc::agent_topic_parts t1{"lab1", "a1", sc::agent_topic_kind::batch};
  auto f1 = decoded(sample_batch("a1", 7, 1, 1, 10));
  // The ledger insert fails inside the transaction, after the records went in.
  if (backend == storage_backend::sqlite) {
    exec_native(*s,
                "CREATE TRIGGER fail_ledger BEFORE INSERT ON batches "
                "BEGIN SELECT RAISE(ABORT, 'injected'); END");
  } else {
    exec_native(*s,
                "CREATE FUNCTION fail_ledger() RETURNS trigger LANGUAGE plpgsql AS "
                "$$BEGIN RAISE EXCEPTION 'injected'; END$$;"
                "CREATE TRIGGER fail_ledger BEFORE INSERT ON batches "
                "FOR EACH ROW EXECUTE FUNCTION fail_ledger()");
  }
  std::vector<batch_to_store> group = {{&t1, &f1, 100, 1}};
  std::vector<std::uint8_t> junk(10, 1);
  std::vector<quarantine_entry> q = {{"garbage", "", "bad topic", junk, 5}};
  auto r = s->store_group(group, q, "c");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == errc::store_write_failed);
  CHECK(s->last_error().find("injected") != std::string::npos);
  CHECK(*s->record_count() == 0);
  CHECK(*s->quarantine_count() == 0);
  CHECK(s->agents()->empty());
  exec_native(*s, backend == storage_backend::sqlite ? "DROP TRIGGER fail_ledger"
                                                     : "DROP TRIGGER fail_ledger ON batches");
  auto again = s->store_group(group, q, "c");
  REQUIRE_MESSAGE(again.has_value(), s->last_error());
  CHECK((*again)[0].new_records == 10);
  CHECK(*s->quarantine_count() == 1);
}

STORAGE_TEST(reader, "quarantine() and a read-only connection beside the writer") {
  env e(backend);
  auto w = e.open();
  std::vector<std::uint8_t> bytes = {1, 2, 3};
  CHECK_FALSE(w->quarantine("semilab/v1/x/y/batch", "y", "bad", bytes));
  CHECK_FALSE(w->quarantine("garbage", "", "bad topic", bytes));
  auto r = e.open(open_mode::read_only);
  CHECK(*r->quarantine_count() == 2);
  CHECK(r->agents()->empty());
  sc::agent_topic_parts t{"lab1", "a1", sc::agent_topic_kind::batch};
  auto f = decoded(sample_batch("a1", 1, 1, 1, 3));
  CHECK_FALSE(r->store_batch(t, f, 1, "c").has_value());  // read-only refuses writes
  REQUIRE(w->store_batch(t, f, 1, "c").has_value());
  CHECK(r->totals()->records == 3);  // the reader sees the writer's commit
}

STORAGE_TEST(ingest, "the ingest processor stores, rejects and acks the same on each backend") {
  env e(backend);
  auto s = e.open();
  ingest_counters counters;
  ingest_options o;
  o.instance = "central-x";
  ingest_processor proc(*s, o, counters);
  auto topic = sc::agent_topic("lab1", "ag", sc::agent_topic_kind::batch);
  const auto good = central_test::encode(sample_batch("ag", 3, 1, 1, 50));
  std::vector<inbound_message> in = {
      {topic, good, now_ns()},
      {topic, "not a frame", now_ns()},
      {topic, good, now_ns()},
      {sc::agent_topic("lab1", "other", sc::agent_topic_kind::batch), good, now_ns()}};
  auto acks = proc.process(in);
  REQUIRE(acks.size() == 4);
  auto a0 = sc::decode_ack(acks[0].payload);
  auto a1 = sc::decode_ack(acks[1].payload);
  auto a2 = sc::decode_ack(acks[2].payload);
  auto a3 = sc::decode_ack(acks[3].payload);
  REQUIRE((a0.has_value() && a1.has_value() && a2.has_value() && a3.has_value()));
  CHECK(a0->stored);
  CHECK_FALSE(a1->stored);
  CHECK(a2->stored);  // redelivery inside the group: stored, all duplicates
  CHECK_FALSE(a3->stored);
  CHECK(a3->code == sc::reject_code::agent_mismatch);
  auto st = counters.snapshot();
  CHECK(st.records_new == 50);
  CHECK(st.records_duplicate == 50);
  CHECK(st.quarantined == 2);
  CHECK(*s->record_count() == 50);
  CHECK(*s->quarantine_count() == 2);
}

STORAGE_TEST(quarantine_rows,
             "quarantine list (newest first, paged) and get with the kept payload") {
  env e(backend);
  auto w = e.open();
  w->set_quarantine_cap(4);
  std::vector<std::uint8_t> p1 = {0x00, 0xFF, 0x10, 0x5C, 0x27, 0x99};  // NUL, backslash, quote
  std::vector<std::uint8_t> p2 = {1, 2};
  REQUIRE_FALSE(w->quarantine("semilab/v1/lab/a1/batch", "a1", "invalid frame: bad magic", p1));
  REQUIRE_FALSE(w->quarantine("garbage", "", "bad topic", p2));
  auto r = e.open(open_mode::read_only);
  auto list = r->quarantine_list(10, 0);
  REQUIRE(list.has_value());
  REQUIRE(list->size() == 2);
  CHECK((*list)[0].topic == "garbage");
  CHECK((*list)[0].agent_id.empty());
  CHECK((*list)[0].payload.empty());
  CHECK((*list)[1].reason == "invalid frame: bad magic");
  CHECK((*list)[1].bytes == 6);
  CHECK((*list)[1].kept_bytes == 4);
  CHECK((*list)[1].received_ns > 0);
  auto older = r->quarantine_list(10, (*list)[0].id);
  REQUIRE(older.has_value());
  REQUIRE(older->size() == 1);
  CHECK((*older)[0].id == (*list)[1].id);
  CHECK(r->quarantine_list(1, 0)->size() == 1);
  auto one = r->quarantine_get((*list)[1].id);
  REQUIRE(one.has_value());
  REQUIRE(one->has_value());
  CHECK((*one)->agent_id == "a1");
  CHECK((*one)->payload == std::vector<std::uint8_t>(p1.begin(), p1.begin() + 4));
  auto none = r->quarantine_get(987654);
  REQUIRE(none.has_value());
  CHECK_FALSE(none->has_value());
}

STORAGE_TEST(measurement_pages, "measurements: filters, time range, keyset pages, values") {
  env e(backend);
  auto w = e.open();
  for (const char* agent : {"m1", "m2"}) {
    sc::agent_topic_parts t{"lab", agent, sc::agent_topic_kind::batch};
    auto f = decoded(sample_batch(agent, 5, 1, 1, 12));
    REQUIRE(w->store_batch(t, f, 1, "c").has_value());
  }
  auto r = e.open(open_mode::read_only);
  measurement_query q;
  q.limit = 7;
  std::vector<std::string> keys;
  for (int page = 0; page < 10; ++page) {
    auto rows = r->measurements(q);
    REQUIRE_MESSAGE(rows.has_value(), r->last_error());
    for (const auto& m : *rows) keys.push_back(m.agent_id + "/" + std::to_string(m.seq));
    if (rows->size() < q.limit) break;
    const auto& last = rows->back();
    q.has_after = true;
    q.after_ts_ns = last.ts_ns;
    q.after_agent = last.agent_id;
    q.after_epoch = last.store_epoch;
    q.after_seq = last.seq;
  }
  REQUIRE(keys.size() == 24);
  CHECK(keys[0] == "m1/1");
  CHECK(keys[1] == "m2/1");
  CHECK(keys[23] == "m2/12");
  measurement_query f;
  f.agent_id = "m2";
  f.from_ns = 1'764'250'001'000'000'000 + 1;
  f.to_ns = 1'764'250'001'000'000'000 + 5;
  auto rows = r->measurements(f);
  REQUIRE(rows.has_value());
  REQUIRE(rows->size() == 4);
  const auto& d = (*rows)[0];  // seq 2: i % 4 == 1 -> integer
  CHECK(d.seq == 2);
  CHECK(d.store_epoch == 5);
  CHECK(d.integer == std::optional<std::int64_t>(-(1ll << 60)));
  CHECK_FALSE(d.real.has_value());
  CHECK(d.run_id == "run-1");
  CHECK((*rows)[1].repr == std::optional<std::string>(sc::decimal{12345000, -10}.to_string()));
  CHECK((*rows)[1].real.has_value());
  CHECK((*rows)[2].text == std::optional<std::string>("text"));
  CHECK((*rows)[3].real == std::optional<double>(1.5 * 4));
  CHECK((*rows)[3].run_id.empty());
  f.instrument = "nope";
  CHECK(r->measurements(f)->empty());
  CHECK_FALSE(r->ping());
}

TEST_CASE("storage[postgresql]: a lost connection fails one group, the next reconnects") {
  env e(storage_backend::postgresql);
  auto s = e.open();
  auto* pg = dynamic_cast<pg_store*>(s.get());
  REQUIRE(pg != nullptr);
  const int pid = PQbackendPID(pg->native_handle());
  auto killer = e.open(open_mode::read_write);
  exec_native(*killer, "SELECT pg_terminate_backend(" + std::to_string(pid) + ")");
  sc::agent_topic_parts t{"lab1", "a1", sc::agent_topic_kind::batch};
  auto f = decoded(sample_batch("a1", 1, 1, 1, 30));
  auto first = s->store_batch(t, f, 1, "c");
  CHECK_FALSE(first.has_value());
  CHECK_FALSE(s->last_error().empty());
  auto second = s->store_batch(t, f, 1, "c");
  REQUIRE_MESSAGE(second.has_value(), s->last_error());
  CHECK(second->new_records == 30);
  CHECK(*s->record_seqs("a1", 1) == iota(1, 30));
}

TEST_CASE("storage[postgresql]: two writers on overlapping batches store each record once") {
  env e(storage_backend::postgresql);
  auto w1 = e.open();
  auto w2 = e.open();
  constexpr int kAgents = 4, kBatches = 30, kPer = 50;
  std::vector<sc::agent_topic_parts> topics;
  std::vector<sc::decoded_frame> frames;
  for (int a = 0; a < kAgents; ++a)
    topics.push_back({"lab", "ag" + std::to_string(a), sc::agent_topic_kind::batch});
  for (int b = 0; b < kBatches; ++b)
    for (int a = 0; a < kAgents; ++a)
      frames.push_back(
          decoded(sample_batch("ag" + std::to_string(a), 1, static_cast<std::uint64_t>(b),
                               static_cast<std::uint64_t>(b * kPer + 1), kPer)));
  // Both writers store every batch, in groups of kAgents, in opposite agent orders.
  std::atomic<int> failures{0};
  std::atomic<std::uint64_t> new_total{0};
  auto run = [&](storage& w, bool reverse) {
    for (int b = 0; b < kBatches; ++b) {
      std::vector<batch_to_store> group;
      for (int k = 0; k < kAgents; ++k) {
        const int a = reverse ? kAgents - 1 - k : k;
        group.push_back({&topics[static_cast<std::size_t>(a)],
                         &frames[static_cast<std::size_t>(b * kAgents + a)], 100, 1});
      }
      auto r = w.store_group(group, {}, "c");
      if (!r) {
        ++failures;
        continue;
      }
      for (const auto& i : *r) new_total += i.new_records;
    }
  };
  std::thread t1([&] { run(*w1, false); });
  std::thread t2([&] { run(*w2, true); });
  t1.join();
  t2.join();
  CHECK(failures.load() == 0);
  CHECK(new_total.load() == std::uint64_t{kAgents} * kBatches * kPer);
  CHECK(*w1->record_count() == std::uint64_t{kAgents} * kBatches * kPer);
  for (int a = 0; a < kAgents; ++a)
    CHECK(*w1->record_seqs("ag" + std::to_string(a), 1) == iota(1, kBatches * kPer));
  auto agents = w1->agents();
  REQUIRE(agents.has_value());
  for (const auto& ag : *agents) {
    CHECK(ag.records == std::uint64_t{kBatches} * kPer);
    CHECK(ag.batches == 2 * kBatches);
    CHECK(ag.duplicates == std::uint64_t{kBatches} * kPer);
  }
}

TEST_CASE("storage: redact_url hides passwords") {
  CHECK(redact_url("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db");
  CHECK(redact_url("postgresql://u@h/db") == "postgresql://u@h/db");
  CHECK(redact_url("postgresql://h/db?password=secret&x=1") ==
        "postgresql://h/db?password=***&x=1");
  CHECK(redact_url("host=h password=secret dbname=x") == "host=h password=*** dbname=x");
}

TEST_CASE("storage[postgresql]: an unreachable server is a clear open error without the password") {
  storage_options o;
  o.backend = storage_backend::postgresql;
  o.url = "postgresql://u:topsecret@127.0.0.1:" + std::to_string(semilab::test::free_port()) +
          "/db?connect_timeout=2";
  std::string err;
  auto s = open_storage(o, err);
  REQUIRE_FALSE(s.has_value());
  CHECK(s.error() == errc::store_open_failed);
  CHECK(err.find("cannot connect to PostgreSQL") != std::string::npos);
  CHECK(err.find("topsecret") == std::string::npos);
}

namespace {
// A record of the data-model tests: day d (UTC days since 1970), minute m of that day.
sc::record model_rec(std::uint64_t seq, sc::record_class cls, std::int64_t day, std::int64_t minute,
                     std::string instrument, std::string channel, std::string run = {}) {
  sc::record r;
  r.seq = seq;
  r.cls = cls;
  r.ts_ns = day * 86'400'000'000'000 + minute * 60'000'000'000 + static_cast<std::int64_t>(seq);
  r.instrument = std::move(instrument);
  r.channel = std::move(channel);
  r.unit = "V";
  r.val = 1.0 * static_cast<double>(seq);
  r.run_id = std::move(run);
  return r;
}
constexpr std::int64_t kDay = 20'400;  // 2025-11-08
}  // namespace

STORAGE_TEST(data_model, "instruments, runs and daily summaries follow ingest; redelivery adds nothing") {
  env e(backend);
  auto s = e.open();
  sc::agent_topic_parts topic{"lab1", "agent-01", sc::agent_topic_kind::batch};
  using rc = sc::record_class;
  sc::batch b1;
  b1.agent_id = "agent-01";
  b1.store_epoch = 5;
  b1.batch_id = 1;
  // smu1: 3 telemetry in minutes 0, 0, 1 of kDay; run-A: 2 results at minute 2 (smu1) and one
  // telemetry on the next day; lcr1: an event at minute 10.
  b1.records = {model_rec(1, rc::telemetry, kDay, 0, "smu1", "curr"),
                model_rec(2, rc::telemetry, kDay, 0, "smu1", "curr"),
                model_rec(3, rc::telemetry, kDay, 1, "smu1", "volt"),
                model_rec(4, rc::run_result, kDay, 2, "smu1", "vth", "run-A"),
                model_rec(5, rc::run_result, kDay, 2, "smu1", "gm", "run-A"),
                model_rec(6, rc::event, kDay, 10, "lcr1", "alarm")};
  auto f1 = decoded(b1);
  REQUIRE(s->store_batch(topic, f1, 100, "c").has_value());
  // Redelivered: nothing counts twice.
  REQUIRE(s->store_batch(topic, f1, 100, "c").has_value());
  // A later batch continues run-A on the next day, in a minute already seen for smu1 on kDay+1.
  sc::batch b2 = b1;
  b2.batch_id = 2;
  b2.records = {model_rec(7, rc::telemetry, kDay + 1, 0, "smu1", "curr", "run-A"),
                model_rec(8, rc::telemetry, kDay + 1, 0, "smu1", "curr")};
  REQUIRE(s->store_batch(topic, decoded(b2), 100, "c").has_value());

  auto r = e.open(open_mode::read_only);
  auto inst = r->instruments();
  REQUIRE_MESSAGE(inst.has_value(), r->last_error());
  REQUIRE(inst->size() == 2);
  CHECK((*inst)[0].instrument == "lcr1");
  CHECK((*inst)[0].records == 1);
  CHECK((*inst)[1].instrument == "smu1");
  CHECK((*inst)[1].records == 7);
  CHECK((*inst)[1].first_seen_ns == f1.records[0].ts_ns);
  CHECK((*inst)[1].last_seen_ns == b2.records[1].ts_ns);
  CHECK_FALSE((*inst)[1].calibration_due_ns.has_value());
  CHECK(r->instruments("nobody")->empty());

  auto runs = r->runs(run_query{});
  REQUIRE_MESSAGE(runs.has_value(), r->last_error());
  REQUIRE(runs->size() == 1);
  CHECK((*runs)[0].run_id == "run-A");
  CHECK((*runs)[0].instrument == "smu1");
  CHECK((*runs)[0].records == 3);
  CHECK((*runs)[0].results == 2);
  CHECK((*runs)[0].first_ts_ns == f1.records[3].ts_ns);
  CHECK((*runs)[0].last_ts_ns == b2.records[0].ts_ns);
  run_query rq;
  rq.run_id = "run-B";
  CHECK(r->runs(rq)->empty());

  auto days = r->daily(daily_query{});
  REQUIRE_MESSAGE(days.has_value(), r->last_error());
  REQUIRE(days->size() == 3);
  const auto& d0 = (*days)[0];  // kDay lcr1
  CHECK(d0.instrument == "lcr1");
  CHECK(d0.day == kDay);
  CHECK(d0.events == 1);
  CHECK(d0.active_minutes == 1);
  const auto& d1 = (*days)[1];  // kDay smu1
  CHECK(d1.instrument == "smu1");
  CHECK(d1.measurements == 3);
  CHECK(d1.results == 2);
  CHECK(d1.runs == 1);
  CHECK(d1.active_minutes == 3);  // minutes 0, 1, 2
  CHECK(d1.utilisation() == doctest::Approx(3.0 / 1440));
  const auto& d2 = (*days)[2];  // kDay+1 smu1: the run started the day before
  CHECK(d2.day == kDay + 1);
  CHECK(d2.measurements == 2);
  CHECK(d2.runs == 0);
  CHECK(d2.active_minutes == 1);
  daily_query dq;
  dq.instrument = "smu1";
  dq.from_day = kDay + 1;
  CHECK(r->daily(dq)->size() == 1);
}

STORAGE_TEST(gaps, "gaps in an agent's sequence are found; drop notices explain them") {
  env e(backend);
  auto s = e.open();
  sc::agent_topic_parts topic{"lab1", "agent-01", sc::agent_topic_kind::batch};
  using rc = sc::record_class;
  sc::batch b;
  b.agent_id = "agent-01";
  b.store_epoch = 7;
  b.batch_id = 1;
  // Seqs 1, 2, [3-4 missing, announced], 5, [6 missing, announced], 7, [8-9 missing, not
  // announced for this epoch], then the notices 10..13.
  b.records = {model_rec(1, rc::telemetry, kDay, 0, "smu1", "curr"),
               model_rec(2, rc::telemetry, kDay, 0, "smu1", "curr"),
               model_rec(5, rc::telemetry, kDay, 0, "smu1", "curr"),
               model_rec(7, rc::telemetry, kDay, 0, "smu1", "curr")};
  // Notices as the agent makes them (schemas/drop_notice.hpp): 3-4 in one, 6 in another with
  // the epoch left unknown (0: the notice's own epoch applies); 8-9 is announced for another
  // epoch only, so it stays unexplained here.
  sc::drop_notice d1;
  d1.reason = "quota";
  d1.store_epoch = 7;
  d1.ranges = {{3, 4}};
  sc::drop_notice d2 = d1;
  d2.store_epoch = 0;
  d2.ranges = {{6, 6}};
  sc::drop_notice d3 = d1;
  d3.store_epoch = 99;
  d3.ranges = {{8, 9}};
  std::uint64_t nseq = 10;
  for (const auto* n : {&d1, &d2, &d3}) {
    auto rec = sc::make_drop_notice_record(*n, kDay * 86'400'000'000'000);
    rec.seq = nseq++;
    b.records.push_back(rec);
  }
  // A malformed notice is ignored, not fatal.
  sc::record junk = model_rec(nseq, rc::event, kDay, 2, "agent", "drop_notice");
  junk.val = std::string("8-9 not json");
  b.records.push_back(junk);
  REQUIRE(s->store_batch(topic, decoded(b), 100, "c").has_value());
  auto g = s->gaps("agent-01");
  REQUIRE_MESSAGE(g.has_value(), s->last_error());
  REQUIRE(g->size() == 3);
  CHECK((*g)[0].first == 3);
  CHECK((*g)[0].last == 4);
  CHECK((*g)[0].explained);
  CHECK((*g)[0].reason == "quota");
  CHECK((*g)[1].first == 6);
  CHECK((*g)[1].explained);
  CHECK((*g)[2].first == 8);
  CHECK((*g)[2].last == 9);
  CHECK_FALSE((*g)[2].explained);  // flagged
  CHECK((*g)[2].store_epoch == 7);
  CHECK(s->gaps("agent-02")->empty());
}

STORAGE_TEST(retention, "retention deletes per record class and table by age, nothing else") {
  env e(backend);
  auto s = e.open();
  sc::agent_topic_parts topic{"lab1", "agent-01", sc::agent_topic_kind::batch};
  using rc = sc::record_class;
  sc::batch b;
  b.agent_id = "agent-01";
  b.store_epoch = 1;
  b.batch_id = 1;
  b.records = {model_rec(1, rc::telemetry, kDay, 0, "smu1", "curr"),
               model_rec(2, rc::event, kDay, 0, "smu1", "alarm"),
               model_rec(3, rc::run_result, kDay, 0, "smu1", "vth", "run-1")};
  auto f = decoded(b);
  // Received 10 days before "now".
  const std::int64_t now = 1'800'000'000'000'000'000;
  batch_to_store old{&topic, &f, 100, now - 10 * 86'400'000'000'000};
  REQUIRE(s->store_group(std::span(&old, 1), {}, "c").has_value());
  b.batch_id = 2;
  b.records = {model_rec(4, rc::telemetry, kDay, 0, "smu1", "curr")};
  auto f2 = decoded(b);
  batch_to_store fresh{&topic, &f2, 100, now - 86'400'000'000'000};
  quarantine_entry q{"t", "agent-01", "bad", {}, now - 100 * 86'400'000'000'000};
  REQUIRE(s->store_group(std::span(&fresh, 1), std::span(&q, 1), "c").has_value());
  REQUIRE(*s->record_count() == 4);

  retention_policy p;
  p.telemetry_days = 7;  // the old telemetry goes, the fresh one stays
  p.event_days = 30;     // stays
  p.quarantine_days = 90;
  p.batch_ledger_days = 5;
  auto rep = s->apply_retention(p, now);
  REQUIRE_MESSAGE(rep.has_value(), s->last_error());
  CHECK(rep->records[2] == 1);
  CHECK(rep->records[0] == 0);
  CHECK(rep->records[1] == 0);
  CHECK(rep->quarantine == 1);
  CHECK(rep->batches == 1);
  CHECK(*s->record_seqs("agent-01", 1) == std::vector<std::uint64_t>{2, 3, 4});
  CHECK(*s->quarantine_count() == 0);
  CHECK(*s->batch_ledger_count() == 1);
  // Summaries by day (kDay is far in the past of `now`), minutes likewise.
  p = retention_policy{};
  p.summary_days = 1;
  p.activity_minutes_days = 1;
  rep = s->apply_retention(p, now);
  REQUIRE(rep.has_value());
  CHECK(rep->summaries == 1);
  CHECK(rep->minutes == 1);
  CHECK(s->daily(daily_query{})->empty());
  // A read-only store refuses.
  auto r = e.open(open_mode::read_only);
  CHECK_FALSE(r->apply_retention(p, now).has_value());
}

STORAGE_TEST(api_tokens, "API tokens: created hashed, listed, checked, revoked by id or name") {
  env e(backend);
  auto w = e.open();
  std::string err;
  auto t1 = create_token(*w, role::engineer, "line-3 dashboard", 1000, err);
  REQUIRE_MESSAGE(t1.has_value(), err);
  auto t2 = create_token(*w, role::admin, "ops", 2000, err);
  REQUIRE_MESSAGE(t2.has_value(), err);
  CHECK(t1->id != t2->id);
  CHECK(t1->token.starts_with("slc_" + t1->id + "_"));
  CHECK_FALSE(create_token(*w, role::none, "x", 1, err).has_value());

  // Only the hash is stored: the secret appears nowhere in the table.
  const std::string secret = t1->token.substr(4 + 12 + 1);
  auto raw = w->query("SELECT id, name, role, secret_sha256 FROM api_tokens", {});
  REQUIRE(raw.has_value());
  for (const auto& row : *raw)
    for (const auto& c : row) CHECK(c.value_or("").find(secret) == std::string::npos);

  auto r = e.open(open_mode::read_only);
  token_table tt;
  REQUIRE_FALSE(tt.load(*r));
  CHECK(tt.size() == 2);
  auto p1 = parse_bearer("Bearer " + t1->token);
  REQUIRE(p1.has_value());
  CHECK(tt.check(*p1) == role::engineer);
  auto wrong = *p1;
  wrong.secret[0] = wrong.secret[0] == 'a' ? 'b' : 'a';
  CHECK_FALSE(tt.check(wrong).has_value());

  auto list = list_tokens(*r, false);
  REQUIRE(list.has_value());
  REQUIRE(list->size() == 2);
  CHECK((*list)[0].name == "line-3 dashboard");
  CHECK((*list)[0].r == role::engineer);
  CHECK((*list)[0].created_ns == 1000);

  auto n = revoke_token(*w, "ops", 3000, err);  // by name
  REQUIRE(n.has_value());
  CHECK(*n == 1);
  n = revoke_token(*w, t1->id, 3001, err);  // by id
  REQUIRE(n.has_value());
  CHECK(*n == 1);
  n = revoke_token(*w, t1->id, 3002, err);  // already revoked
  REQUIRE(n.has_value());
  CHECK(*n == 0);
  REQUIRE_FALSE(tt.load(*r));
  CHECK(tt.size() == 0);
  CHECK_FALSE(tt.check(*p1).has_value());
  list = list_tokens(*r, true);
  REQUIRE(list.has_value());
  REQUIRE(list->size() == 2);
  CHECK((*list)[1].revoked_ns == 3000);
  CHECK(list_tokens(*r, false)->empty());

  // Two valid tokens of one name: revoking by that name is refused.
  REQUIRE(create_token(*w, role::viewer, "twin", 4000, err).has_value());
  REQUIRE(create_token(*w, role::viewer, "twin", 4001, err).has_value());
  CHECK_FALSE(revoke_token(*w, "twin", 5000, err).has_value());
  CHECK(err.find("revoke by id") != std::string::npos);
}

TEST_CASE("storage[postgresql]: pg_dump backup of a snapshot, verified, restored into a fresh "
          "database with equal counts and checksums") {
  env e(storage_backend::postgresql);
  auto w = e.open();
  sc::frame_decoder dec;
  for (std::uint64_t b = 0; b < 6; ++b) {
    auto f = decoded(sample_batch("agent-" + std::to_string(b % 2), 7, b + 1, b * 20 + 1, 20));
    sc::agent_topic_parts t{"lab", f.header.agent_id, sc::agent_topic_kind::batch};
    REQUIRE(w->store_batch(t, f, 100, "c").has_value());
  }
  const std::vector<std::uint8_t> junk = {1, 2, 3};
  REQUIRE_FALSE(w->quarantine("semilab/v1/lab/x/batch", "x", "bad magic", junk));
  std::string err;
  REQUIRE(create_token(*w, role::admin, "ops", 1, err).has_value());

  temp_dir dir;
  auto b = backup_pg(e.opts.url, dir.path.string(), err);
  REQUIRE_MESSAGE(b.has_value(), err);
  CHECK(b->file.ends_with(".pgdump"));
  CHECK(std::filesystem::exists(b->file));
  CHECK(std::filesystem::exists(b->manifest));
  CHECK_FALSE(std::filesystem::exists(b->file + ".partial"));
  auto rec = std::find_if(b->tables.begin(), b->tables.end(),
                          [](const auto& t) { return t.table == "records"; });
  REQUIRE(rec != b->tables.end());
  CHECK(rec->rows == 120);

  // Writes after the backup are not in it.
  auto later = decoded(sample_batch("agent-9", 7, 1, 1, 5));
  sc::agent_topic_parts t9{"lab", "agent-9", sc::agent_topic_kind::batch};
  REQUIRE(w->store_batch(t9, later, 10, "c").has_value());

  auto v = verify_pg_backup(b->file, e.opts.url, err);
  REQUIRE_MESSAGE(v.has_value(), err);
  CHECK(*v == b->tables);

  // Restore into a fresh, empty database of the same server.
  auto& c = cluster();
  REQUIRE(c.server->create_database("restored_fresh") == 0);
  const auto fresh_url = c.server->url("restored_fresh");
  REQUIRE_FALSE(restore_pg(b->file, fresh_url, err));
  storage_options o = e.opts;
  o.url = fresh_url;
  auto restored = open_storage(o, err);
  REQUIRE_MESSAGE(restored.has_value(), err);
  CHECK(*(*restored)->record_count() == 120);
  CHECK(*(*restored)->quarantine_count() == 1);
  CHECK((*restored)->agents()->size() == 2);
  CHECK(list_tokens(**restored, true)->size() == 1);
  // And over the live store: its content goes back to the backup's (agent-9 disappears).
  restored->reset();
  w.reset();
  REQUIRE_FALSE(restore_pg(b->file, e.opts.url, err));
  auto back = e.open();
  CHECK(*back->record_count() == 120);

  // A manifest that does not match: refused.
  {
    std::ifstream in(b->manifest);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto at = text.find("\"rows\":120");
    REQUIRE(at != std::string::npos);
    text.replace(at, 10, "\"rows\":121");
    std::ofstream(b->manifest, std::ios::trunc) << text;
  }
  auto bad = verify_pg_backup(b->file, e.opts.url, err);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error() == errc::backup_mismatch);
}

STORAGE_TEST(agent_keys_both, "agent keys: approve, idempotent re-approval, list, revoke, re-approve") {
  env e(backend);
  auto w = e.open();
  auto k1 = sc::signing_key::generate();
  auto k2 = sc::signing_key::generate();
  REQUIRE(k1.has_value());
  REQUIRE(k2.has_value());
  std::string err;
  auto a = approve_agent_key(*w, "agent-k", k1->public_key(), 100, err);
  REQUIRE_MESSAGE(a.has_value(), err);
  CHECK(*a);
  auto again = approve_agent_key(*w, "agent-k", k1->public_key(), 150, err);
  REQUIRE(again.has_value());
  CHECK_FALSE(*again);  // already approved: unchanged
  REQUIRE(approve_agent_key(*w, "agent-k", k2->public_key(), 200, err).has_value());
  REQUIRE(approve_agent_key(*w, "agent-other", k2->public_key(), 300, err).has_value());
  CHECK_FALSE(approve_agent_key(*w, "bad/id", k1->public_key(), 300, err).has_value());

  auto r = e.open(open_mode::read_only);
  auto keys = list_agent_keys(*r, "agent-k", false);
  REQUIRE(keys.has_value());
  REQUIRE(keys->size() == 2);
  CHECK((*keys)[0].key_id == k1->key_id());
  CHECK((*keys)[0].public_key == k1->public_key());
  CHECK((*keys)[0].approved_ns == 100);
  CHECK_FALSE((*keys)[0].revoked_ns.has_value());
  CHECK((*keys)[1].key_id == k2->key_id());
  CHECK(list_agent_keys(*r, "", false)->size() == 3);
  CHECK(list_agent_keys(*r, "nobody", true)->empty());

  auto n = revoke_agent_key(*w, "agent-k", k1->key_id(), 400);
  REQUIRE(n.has_value());
  CHECK(*n == 1);
  CHECK(*revoke_agent_key(*w, "agent-k", k1->key_id(), 401) == 0);  // already revoked
  CHECK(list_agent_keys(*r, "agent-k", false)->size() == 1);
  auto all = list_agent_keys(*r, "agent-k", true);
  REQUIRE(all->size() == 2);
  CHECK((*all)[0].revoked_ns.value_or(0) == 400);
  auto back = approve_agent_key(*w, "agent-k", k1->public_key(), 500, err);
  REQUIRE(back.has_value());
  CHECK(*back);  // a revoked key approved again is valid again
  CHECK(list_agent_keys(*r, "agent-k", false)->size() == 2);
}

namespace {
sc::record metadata_rec(std::uint64_t seq, std::int64_t minute, std::string run,
                        const sc::run_metadata& m) {
  auto r = model_rec(seq, sc::record_class::event, kDay, minute, "smu1",
                     std::string(sc::kRunMetadataChannel), std::move(run));
  r.val = sc::encode_run_metadata(m);
  return r;
}
}  // namespace

STORAGE_TEST(samples, "samples, wafers and lots from run metadata; redelivery and replays add nothing") {
  env e(backend);
  auto s = e.open();
  sc::agent_topic_parts topic{"lab1", "agent-01", sc::agent_topic_kind::batch};
  using rc = sc::record_class;
  sc::run_metadata m1{"S-1", "W07", "L1", "3,-2", "ana", "hfo2", {}, {}};
  sc::run_metadata m2{"S-2", "W07", "L1", "4,-2", "ana", "hfo2", {}, {}};
  sc::run_metadata m3{"", "W01", "L2", "R3C5", "bo", "", {}, {}};  // a die label, no coordinates
  sc::batch b;
  b.agent_id = "agent-01";
  b.store_epoch = 7;
  b.batch_id = 1;
  b.records = {metadata_rec(1, 0, "run-a", m1),
               model_rec(2, rc::run_result, kDay, 1, "smu1", "vth", "run-a"),
               metadata_rec(3, 2, "run-b", m2),
               metadata_rec(4, 3, "run-c", m1),  // the same die measured again
               metadata_rec(5, 4, "run-d", m3)};
  // Malformed metadata and metadata without a run stay plain events.
  auto junk = metadata_rec(6, 5, "run-e", m1);
  junk.val = std::string("not json");
  b.records.push_back(junk);
  auto norun = metadata_rec(7, 5, "", m2);
  b.records.push_back(norun);
  const auto f = decoded(b);
  REQUIRE_MESSAGE(s->store_batch(topic, f, 100, "c").has_value(), s->last_error());
  REQUIRE(s->store_batch(topic, f, 100, "c").has_value());  // redelivery

  sample_query q;
  auto rows = s->samples(q);
  REQUIRE_MESSAGE(rows.has_value(), s->last_error());
  REQUIRE(rows->size() == 3);
  const auto& a = (*rows)[0];
  CHECK(a.lot == "L1");
  CHECK(a.wafer == "W07");
  CHECK(a.sample == "S-1");
  CHECK(a.die == "3,-2");
  REQUIRE(a.die_x.has_value());
  CHECK(*a.die_x == 3);
  CHECK(*a.die_y == -2);
  CHECK(a.runs == 2);  // run-a and run-c
  CHECK(a.first_seen_ns == kDay * 86'400'000'000'000 + 1);
  CHECK(a.last_seen_ns == kDay * 86'400'000'000'000 + 3 * 60'000'000'000 + 4);
  CHECK((*rows)[1].sample == "S-2");
  CHECK((*rows)[1].runs == 1);
  CHECK((*rows)[2].lot == "L2");
  CHECK((*rows)[2].die == "R3C5");
  CHECK_FALSE((*rows)[2].die_x.has_value());

  // Keyset pages of one row.
  q.limit = 1;
  std::vector<std::string> seen;
  for (int i = 0; i < 5; ++i) {
    auto page = s->samples(q);
    REQUIRE(page.has_value());
    if (page->empty()) break;
    const auto& r = page->back();
    seen.push_back(r.sample);
    q.has_after = true;
    q.after_lot = r.lot;
    q.after_wafer = r.wafer;
    q.after_sample = r.sample;
    q.after_die = r.die;
  }
  CHECK(seen == std::vector<std::string>{"S-1", "S-2", ""});

  // Filters and groups.
  sample_query f1;
  f1.lot = "L1";
  f1.die = "4,-2";
  rows = s->samples(f1);
  REQUIRE(rows.has_value());
  REQUIRE(rows->size() == 1);
  CHECK((*rows)[0].sample == "S-2");
  sample_query w;
  w.group = sample_group::wafer;
  rows = s->samples(w);
  REQUIRE(rows.has_value());
  REQUIRE(rows->size() == 2);
  CHECK((*rows)[0].wafer == "W07");
  CHECK((*rows)[0].samples == 2);
  CHECK((*rows)[0].runs == 3);
  sample_query l;
  l.group = sample_group::lot;
  l.from_ns = kDay * 86'400'000'000'000 + 4 * 60'000'000'000;  // last seen from minute 4
  rows = s->samples(l);
  REQUIRE(rows.has_value());
  REQUIRE(rows->size() == 1);
  CHECK((*rows)[0].lot == "L2");
  sample_query ag;
  ag.agent_id = "agent-02";
  CHECK(s->samples(ag)->empty());
  ag.agent_id = "agent-01";
  CHECK(s->samples(ag)->size() == 3);
  // The run -> sample link, latest metadata of the run wins.
  const sql_param rp[] = {sql_param{true, 0, "run-c"}};
  auto link = s->query("SELECT sample_id, die, operator FROM run_samples WHERE run_id = ?1", rp);
  REQUIRE(link.has_value());
  REQUIRE(link->size() == 1);
  CHECK((*link)[0][0] == "S-1");
  CHECK((*link)[0][2] == "ana");
}

STORAGE_TEST(restore_marks, "restore high-water marks: latest epoch per agent, first unexplained gap") {
  env e(backend);
  auto s = e.open();
  sc::agent_topic_parts topic{"lab1", "agent-01", sc::agent_topic_kind::batch};
  using rc = sc::record_class;
  // An older epoch, received first: not the one asked for.
  REQUIRE(s->store_batch(topic, decoded(sample_batch("agent-01", 3, 1, 1, 50)), 100, "c").has_value());
  // Epoch 7: 1, 2, [3-4 explained], 5, 6, [7-8 unexplained], 9, then the notice (10).
  sc::batch b;
  b.agent_id = "agent-01";
  b.store_epoch = 7;
  b.batch_id = 2;
  for (std::uint64_t q : {1, 2, 5, 6, 9})
    b.records.push_back(model_rec(q, rc::telemetry, kDay, 0, "smu1", "curr"));
  sc::drop_notice d;
  d.reason = "quota";
  d.store_epoch = 7;
  d.ranges = {{3, 4}};
  auto n = sc::make_drop_notice_record(d, kDay * 86'400'000'000'000);
  n.seq = 10;
  b.records.push_back(n);
  std::this_thread::sleep_for(std::chrono::milliseconds(2));  // a later receipt time
  REQUIRE(s->store_batch(topic, decoded(b), 100, "c").has_value());
  // Another agent without gaps.
  sc::agent_topic_parts t2{"lab2", "agent-02", sc::agent_topic_kind::batch};
  REQUIRE(s->store_batch(t2, decoded(sample_batch("agent-02", 11, 1, 100, 20)), 100, "c").has_value());

  auto hw = restored_high_water(*s);
  REQUIRE_MESSAGE(hw.has_value(), s->last_error());
  REQUIRE(hw->size() == 2);
  const auto& a = (*hw)[0];
  CHECK(a.agent_id == "agent-01");
  CHECK(a.site == "lab1");
  CHECK(a.store_epoch == 7);
  CHECK(a.first_seq == 1);
  CHECK(a.contiguous == 6);
  CHECK(a.replay_from() == 7);
  CHECK(a.max_seq == 10);
  CHECK(a.records == 6);
  const auto& c = (*hw)[1];
  CHECK(c.agent_id == "agent-02");
  CHECK(c.site == "lab2");
  CHECK(c.store_epoch == 11);
  CHECK(c.first_seq == 100);
  CHECK(c.contiguous == 119);
  CHECK(c.replay_from() == 120);

  // The pending list round-trips through its file.
  temp_dir d2;
  const auto file = std::filesystem::path(d2.file("restore-replay.json"));
  std::string err;
  auto none = read_pending_replays(file, err);
  REQUIRE(none.has_value());
  CHECK(none->empty());
  REQUIRE_FALSE(write_pending_replays(file, *hw, err));
  auto back = read_pending_replays(file, err);
  REQUIRE_MESSAGE(back.has_value(), err);
  REQUIRE(back->size() == 2);
  CHECK((*back)[0].agent_id == "agent-01");
  CHECK((*back)[0].store_epoch == 7);
  CHECK((*back)[0].contiguous == 6);
  CHECK((*back)[1].site == "lab2");
  {
    std::ofstream bad(file, std::ios::trunc);
    bad << "{\"agents\": [{\"agent_id\": \"x\"}]}";
  }
  auto broken = read_pending_replays(file, err);
  CHECK_FALSE(broken.has_value());
  CHECK(err.find("agents[0]") != std::string::npos);
}

// Audit trail on both backends (audit.hpp): batch.store entries from the ledger, admin entries
// with NULL values, re-verification of stored signatures, and an edited entry found.
STORAGE_TEST(audit_both_backends, "audit trail and stored-batch signatures") {
  env e(backend);
  auto db = e.open();
  auto key = sc::signing_key::generate();
  REQUIRE(key.has_value());
  std::string err;
  REQUIRE(approve_agent_key(*db, "agent-1", key->public_key(), now_ns(), err).has_value());
  ingest_counters counters;
  ingest_options io;
  io.instance = "central-a";
  ingest_processor proc(*db, io, counters);
  std::vector<inbound_message> in;
  sc::frame_encoder enc;
  for (std::uint64_t b = 1; b <= 3; ++b) {
    auto f = enc.encode(sample_batch("agent-1", 9, b, 1 + 10 * b, 4), &*key);
    REQUIRE(f.has_value());
    in.push_back({sc::agent_topic("lab1", "agent-1", sc::agent_topic_kind::batch),
                  std::string(f->begin(), f->end()), now_ns()});
  }
  REQUIRE(proc.process(in).size() == 3);
  auto n = audit_catch_up(*db, "central-a");
  REQUIRE_MESSAGE(n.has_value(), db->last_error());
  CHECK(*n == 3);
  REQUIRE_FALSE(audit_record(*db, {"test.action", "x", std::nullopt, "new", "tester", ""},
                             now_ns(), err));
  auto rep = audit_verify(*db, {});
  REQUIRE_MESSAGE(rep.has_value(), db->last_error());
  CHECK(rep->findings.empty());
  CHECK(rep->batches_checked == 3);
  CHECK(rep->chains == 2);  // ingest:central-a and admin (key approval, test.action)
  auto vb = verify_stored_batches(*db);
  REQUIRE_MESSAGE(vb.has_value(), db->last_error());
  CHECK(vb->verified == 3);
  CHECK(vb->failures.empty());
  exec_native(*db, "UPDATE audit_log SET reason = 'x' WHERE chain = 'ingest:central-a' AND seq = 2");
  rep = audit_verify(*db, {});
  REQUIRE(rep.has_value());
  REQUIRE(rep->findings.size() == 1);
  CHECK(rep->findings[0].seq == 2);
}

// ---- Export files (blobs.hpp): chunk reassembly, dedup across agents, parse errors ----------

#include <semilab/central/blobs.hpp>
#include <openssl/evp.h>

namespace {

std::string b64(std::string_view in) {
  static constexpr char kTab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const auto v = (std::uint32_t{static_cast<unsigned char>(in[i])} << 16) |
                   (std::uint32_t{static_cast<unsigned char>(in[i + 1])} << 8) |
                   static_cast<unsigned char>(in[i + 2]);
    out += {kTab[v >> 18], kTab[(v >> 12) & 63], kTab[(v >> 6) & 63], kTab[v & 63]};
  }
  if (const auto rest = in.size() - i; rest > 0) {
    std::uint32_t v = std::uint32_t{static_cast<unsigned char>(in[i])} << 16;
    if (rest == 2) v |= std::uint32_t{static_cast<unsigned char>(in[i + 1])} << 8;
    out += {kTab[v >> 18], kTab[(v >> 12) & 63], rest == 2 ? kTab[(v >> 6) & 63] : '=', '='};
  }
  return out;
}

std::string sha_hex(std::string_view s) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(s.data(), s.size(), md, &n, EVP_sha256(), nullptr);
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    static constexpr char h[] = "0123456789abcdef";
    out += {h[md[i] >> 4], h[md[i] & 15]};
  }
  return out;
}

// The records a file-drop agent makes for `content` (agent/src/filedrop.cpp), seqs from `seq`.
std::vector<sc::record> file_records(const std::string& content, std::uint64_t seq,
                                     const std::string& name, const std::string& parse_error = {}) {
  const auto sha = sha_hex(content);
  std::vector<sc::record> out;
  auto make = [&](sc::record_class c, std::string ch, sc::value v) {
    sc::record r;
    r.seq = seq++;
    r.cls = c;
    r.ts_ns = 1'764'250'001'000'000'000;
    r.instrument = "xrd";
    r.channel = std::move(ch);
    r.val = std::move(v);
    r.run_id = "file:" + sha;
    out.push_back(std::move(r));
  };
  std::string info = R"({"name":")" + name + R"(","folder":"/exports","size":)" +
                     std::to_string(content.size()) + R"(,"sha256":")" + sha + R"(","format":"xrdml")";
  if (!parse_error.empty()) info += R"(,"parse_error":")" + parse_error + "\"";
  make(sc::record_class::run_result, "filedrop.file", info + R"(,"meta":{"sample":"Si"}})");
  make(sc::record_class::run_result, "xrd-peak.center", 28.44);
  const std::size_t chunk = 3072, n = (content.size() + chunk - 1) / chunk;
  for (std::size_t i = 0; i < n; ++i)
    make(sc::record_class::blob, "blob:" + std::to_string(i) + "/" + std::to_string(n),
         b64(std::string_view(content).substr(i * chunk, chunk)));
  return out;
}

blob_absorb_stats store_and_absorb(storage& db, const std::string& agent, std::vector<sc::record> recs,
                                   std::uint64_t batch_id) {
  sc::batch b{agent, 7, batch_id, std::move(recs)};
  auto f = decoded(b);
  sc::agent_topic_parts topic{"site", agent, sc::agent_topic_kind::batch};
  REQUIRE(db.store_batch(topic, f, 100, "c1").has_value());
  batch_to_store bs{&topic, &f, 100, 1};
  std::string err;
  auto r = absorb_blobs(db, std::span(&bs, 1), 5, err);
  REQUIRE_MESSAGE(r.has_value(), err);
  return *r;
}

}  // namespace

STORAGE_TEST(blobs_reassembled_once, "export files: chunks reassembled across batches, one content stored once for two agents") {
  env e(backend);
  auto db = e.open();
  std::string content;
  for (int i = 0; i < 7000; ++i) content += static_cast<char>((i * 7919) % 251);  // 3 chunks, binary
  const auto sha = sha_hex(content);
  auto recs = file_records(content, 1, "scan.xrdml");
  REQUIRE(recs.size() == 5);
  // First batch: metadata, a parameter and the first chunk; not complete yet.
  auto s1 = store_and_absorb(*db, "a1", {recs.begin(), recs.begin() + 3}, 1);
  CHECK(s1.files == 1);
  CHECK(s1.completed == 0);
  auto rd = e.open(open_mode::read_only);
  auto l = list_blob_files(*rd, blob_query{sha});
  REQUIRE(l.has_value());
  REQUIRE(l->size() == 1);
  CHECK_FALSE(l->front().stored);
  CHECK(l->front().name == "scan.xrdml");
  CHECK_FALSE(l->front().parse_error.has_value());
  auto none = fetch_blob(*rd, sha);
  REQUIRE(none.has_value());
  CHECK_FALSE(none->has_value());
  // Second batch completes it; its redelivery changes nothing.
  auto s2 = store_and_absorb(*db, "a1", {recs.begin() + 3, recs.end()}, 2);
  CHECK(s2.completed == 1);
  auto s2b = store_and_absorb(*db, "a1", {recs.begin() + 3, recs.end()}, 3);
  CHECK(s2b.completed == 0);
  auto got = fetch_blob(*rd, sha);
  REQUIRE(got.has_value());
  REQUIRE(got->has_value());
  CHECK(**got == content);
  // The same content from another agent: a second file row, still one blob.
  auto s3 = store_and_absorb(*db, "a2", file_records(content, 40, "copy.xrdml"), 1);
  CHECK(s3.files == 1);
  CHECK(s3.completed == 0);
  l = list_blob_files(*rd, blob_query{sha});
  REQUIRE(l->size() == 2);
  CHECK(l->at(0).stored);
  CHECK(l->at(1).stored);
  auto params = blob_parameters(*rd, l->at(0));
  REQUIRE(params.has_value());
  REQUIRE(params->size() == 1);
  CHECK(params->front().name == "xrd-peak.center");
  CHECK(params->front().real == doctest::Approx(28.44));
  auto count = [&](const char* sql) {
    auto r = rd->query(sql, {});
    REQUIRE(r.has_value());
    return r->front()[0].value_or("?");
  };
  CHECK(count("SELECT COUNT(*) FROM blobs") == "1");
  CHECK(count("SELECT COUNT(*) FROM blob_chunks") == "0");
  CHECK(count("SELECT COUNT(*) FROM records WHERE class = 3") == "6");  // keys kept
  CHECK(count("SELECT COUNT(*) FROM records WHERE class = 3 AND value_text IS NOT NULL") == "0");
}

STORAGE_TEST(blobs_parse_error_and_bad_chunks, "export files: parse errors listed, malformed and mismatched chunks never stored") {
  env e(backend);
  auto db = e.open();
  const std::string content = "not an xrdml file";
  auto recs = file_records(content, 1, "bad.xrdml", "xrdml: no <intensities>");
  auto s = store_and_absorb(*db, "a1", recs, 1);
  CHECK(s.completed == 1);
  auto rd = e.open(open_mode::read_only);
  blob_query q;
  q.parse_error = true;
  auto l = list_blob_files(*rd, q);
  REQUIRE(l.has_value());
  REQUIRE(l->size() == 1);
  CHECK(l->front().parse_error == std::optional<std::string>("xrdml: no <intensities>"));
  q.parse_error = false;
  CHECK(list_blob_files(*rd, q)->empty());
  // A chunk with a broken channel is counted; one whose bytes do not hash to its name stays staged.
  auto other = file_records("some other bytes", 10, "x.xrdml");
  other[2].channel = "blob:zero/one";
  CHECK(store_and_absorb(*db, "a1", other, 2).malformed == 1);
  auto lie = file_records("the real bytes", 20, "y.xrdml");
  lie[2].val = b64("forged bytes!!");
  auto m = store_and_absorb(*db, "a1", lie, 3);
  CHECK(m.mismatched == 1);
  CHECK(m.completed == 0);
  auto r = fetch_blob(*rd, sha_hex("the real bytes"));
  REQUIRE(r.has_value());
  CHECK_FALSE(r->has_value());
}
