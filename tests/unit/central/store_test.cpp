#include <semilab/central/store.hpp>
#include <semilab/schemas/sql.hpp>
#include <semilab/schemas/topics.hpp>

#include <doctest/doctest.h>
#include <sqlite3.h>

#include "test_util.hpp"

using namespace semilab::central;
namespace sc = semilab::schemas;
using central_test::sample_batch;
using central_test::temp_dir;

namespace {

std::unique_ptr<sqlite_store> open_rw(const temp_dir& d, open_mode mode = open_mode::read_write) {
  std::string err;
  auto s = sqlite_store::open(store_options{d.file("central.db"), mode, std::chrono::milliseconds(1000)}, err);
  REQUIRE_MESSAGE(s.has_value(), err);
  return std::move(*s);
}

sc::decoded_frame decoded(const sc::batch& b) {
  sc::frame_decoder dec;
  auto bytes = central_test::encode(b);
  auto f = dec.decode(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
  REQUIRE(f.has_value());
  return std::move(*f);
}

std::string query_text(sqlite3* db, const char* sql) {
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK);
  std::string out;
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
    out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  return out;
}

}  // namespace

TEST_CASE("store: open configures WAL and synchronous=FULL and migrates") {
  temp_dir d;
  auto s = open_rw(d);
  CHECK(query_text(s->native_handle(), "PRAGMA journal_mode") == "wal");
  CHECK(query_text(s->native_handle(), "PRAGMA synchronous") == "2");  // FULL
  CHECK(query_text(s->native_handle(), "SELECT MAX(version) FROM schema_version") ==
        std::to_string(sc::central_store_migrations().back().version));
  std::string err;
  CHECK_FALSE(sqlite_store::open(store_options{":memory:"}, err).has_value());
}

TEST_CASE("store: insert a batch, then the same batch again is all duplicates") {
  temp_dir d;
  auto s = open_rw(d);
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
}

TEST_CASE("store: values land in their columns") {
  temp_dir d;
  auto s = open_rw(d);
  sc::agent_topic_parts topic{"lab1", "agent-01", sc::agent_topic_kind::batch};
  auto f = decoded(sample_batch("agent-01", 1, 1, 1, 4));
  REQUIRE(s->store_batch(topic, f, 100, "c").has_value());
  auto* db = s->native_handle();
  CHECK(query_text(db, "SELECT value_real FROM records WHERE record_seq=1") == "0.0");
  CHECK(query_text(db, "SELECT value_int FROM records WHERE record_seq=2") ==
        std::to_string(-(1ll << 60)));
  CHECK(query_text(db, "SELECT value_repr FROM records WHERE record_seq=3") ==
        sc::decimal{12345000, -10}.to_string());
  CHECK(query_text(db, "SELECT value_real IS NOT NULL FROM records WHERE record_seq=3") == "1");
  CHECK(query_text(db, "SELECT value_text FROM records WHERE record_seq=4") == "text");
  CHECK(query_text(db, "SELECT run_id FROM records WHERE record_seq=2") == "run-1");
  CHECK(query_text(db, "SELECT run_id IS NULL FROM records WHERE record_seq=1") == "1");
}

TEST_CASE("store: u64 epoch and seq above 2^63 round-trip through the signed columns") {
  temp_dir d;
  auto s = open_rw(d);
  const std::uint64_t epoch = 0xfedcba9876543210ull;
  const std::uint64_t seq = (1ull << 63) + 5;
  sc::agent_topic_parts topic{"lab1", "agent-02", sc::agent_topic_kind::batch};
  auto f = decoded(sample_batch("agent-02", epoch, 9, seq, 3));
  REQUIRE(s->store_batch(topic, f, 10, "c").has_value());
  auto again = s->store_batch(topic, f, 10, "c");  // the key must match bit for bit
  REQUIRE(again.has_value());
  CHECK(again->duplicates == 3);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(s->native_handle(),
                             "SELECT store_epoch, MIN(record_seq) FROM records", -1, &st,
                             nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  CHECK(static_cast<std::uint64_t>(sqlite3_column_int64(st, 0)) == epoch);
  CHECK(static_cast<std::uint64_t>(sqlite3_column_int64(st, 1)) == seq);
  sqlite3_finalize(st);
}

TEST_CASE("store: group commit of several batches and quarantine rows in one transaction") {
  temp_dir d;
  auto s = open_rw(d);
  sc::agent_topic_parts t1{"lab1", "a1", sc::agent_topic_kind::batch};
  sc::agent_topic_parts t2{"lab2", "a2", sc::agent_topic_kind::batch};
  auto f1 = decoded(sample_batch("a1", 7, 1, 1, 10));
  auto f2 = decoded(sample_batch("a1", 7, 2, 6, 10));  // overlaps f1 on 6..10
  auto f3 = decoded(sample_batch("a2", 8, 1, 1, 5));
  std::vector<batch_to_store> group = {
      {&t1, &f1, 100, 1}, {&t1, &f2, 100, 2}, {&t2, &f3, 100, 3}};
  std::vector<std::uint8_t> junk(100'000, 0xAB);
  s->set_quarantine_cap(1000);
  std::vector<quarantine_entry> q = {{"semilab/v1/lab1/a1/batch", "a1", "invalid frame", junk, 4}};
  auto r = s->store_group(group, q, "c");
  REQUIRE(r.has_value());
  REQUIRE(r->size() == 3);
  CHECK((*r)[0].new_records == 10);
  CHECK((*r)[1].new_records == 5);
  CHECK((*r)[1].duplicates == 5);
  CHECK((*r)[2].new_records == 5);
  CHECK(*s->record_count() == 20);
  CHECK(*s->quarantine_count() == 1);
  CHECK(query_text(s->native_handle(), "SELECT length(payload) || ',' || bytes FROM quarantine") ==
        "1000,100000");
  auto agents = s->agents();
  REQUIRE(agents.has_value());
  REQUIRE(agents->size() == 2);
  CHECK((*agents)[0].agent_id == "a1");
  CHECK((*agents)[0].batches == 2);
  CHECK((*agents)[0].records == 15);
  CHECK((*agents)[1].site == "lab2");
}

TEST_CASE("store: a failed group leaves nothing behind and the store stays usable") {
  temp_dir d;
  auto s = open_rw(d);
  sc::agent_topic_parts t1{"lab1", "a1", sc::agent_topic_kind::batch};
  auto f1 = decoded(sample_batch("a1", 7, 1, 1, 10));
  // Make the ledger insert fail inside the transaction, after the records went in.
  REQUIRE(sqlite3_exec(s->native_handle(),
                       "CREATE TRIGGER fail_ledger BEFORE INSERT ON batches "
                       "BEGIN SELECT RAISE(ABORT, 'injected'); END",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  std::vector<batch_to_store> group = {{&t1, &f1, 100, 1}};
  auto r = s->store_group(group, {}, "c");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == errc::store_write_failed);
  CHECK(s->last_error().find("injected") != std::string::npos);
  CHECK(*s->record_count() == 0);
  CHECK(s->agents()->empty());
  REQUIRE(sqlite3_exec(s->native_handle(), "DROP TRIGGER fail_ledger", nullptr, nullptr,
                       nullptr) == SQLITE_OK);
  auto again = s->store_group(group, {}, "c");
  REQUIRE(again.has_value());
  CHECK((*again)[0].new_records == 10);
}

TEST_CASE("store: quarantine() and a read-only connection beside the writer") {
  temp_dir d;
  auto w = open_rw(d);
  std::vector<std::uint8_t> bytes = {1, 2, 3};
  CHECK_FALSE(w->quarantine("semilab/v1/x/y/batch", "y", "bad", bytes));
  CHECK_FALSE(w->quarantine("garbage", "", "bad topic", bytes));
  auto r = open_rw(d, open_mode::read_only);
  CHECK(*r->quarantine_count() == 2);
  CHECK(r->agents()->empty());
  sc::agent_topic_parts t{"lab1", "a1", sc::agent_topic_kind::batch};
  auto f = decoded(sample_batch("a1", 1, 1, 1, 3));
  CHECK_FALSE(r->store_batch(t, f, 1, "c").has_value());  // read-only refuses writes
  REQUIRE(w->store_batch(t, f, 1, "c").has_value());
  CHECK(r->totals()->records == 3);  // the reader sees the writer's commit
}
