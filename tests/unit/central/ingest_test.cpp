#include <semilab/central/ingest.hpp>
#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/topics.hpp>

#include <doctest/doctest.h>
#include <sqlite3.h>

#include "test_util.hpp"

using namespace semilab::central;
namespace sc = semilab::schemas;
using central_test::encode;
using central_test::sample_batch;
using central_test::temp_dir;

namespace {

struct fixture {
  temp_dir dir;
  std::unique_ptr<store> db;
  ingest_counters counters;
  std::unique_ptr<ingest_processor> proc;

  fixture() {
    std::string err;
    auto s = store::open(store_options{dir.file("central.db")}, err);
    REQUIRE(s.has_value());
    db = std::move(*s);
    ingest_options o;
    o.instance = "central-test";
    proc = std::make_unique<ingest_processor>(*db, o, counters);
  }
};

inbound_message msg(std::string site, std::string agent, std::string payload) {
  return {sc::agent_topic(site, agent, sc::agent_topic_kind::batch), std::move(payload), 1000};
}

sc::ack decode(const outbound_ack& a) {
  auto r = sc::decode_ack(a.payload);
  REQUIRE(r.has_value());
  return *r;
}

}  // namespace

TEST_CASE("ingest: a valid batch is stored and acked with its ranges on the agent's ack topic") {
  fixture fx;
  auto b = sample_batch("agent-01", 0xfedcba9876543210ull, 5, 10, 8);
  std::vector<inbound_message> in = {msg("lab1", "agent-01", encode(b))};
  auto acks = fx.proc->process(in);
  REQUIRE(acks.size() == 1);
  CHECK(acks[0].topic == "semilab/v1/lab1/agent-01/ack");
  auto a = decode(acks[0]);
  CHECK(a.stored);
  CHECK(a.agent_id == "agent-01");
  CHECK(a.store_epoch == 0xfedcba9876543210ull);
  CHECK(a.batch_id == 5);
  REQUIRE(a.ranges.size() == 1);
  CHECK(a.ranges[0] == sc::seq_range{10, 17});
  CHECK(a.central_instance == "central-test");
  CHECK(*fx.db->record_count() == 8);
  auto st = fx.counters.snapshot();
  CHECK(st.received == 1);
  CHECK(st.batches_stored == 1);
  CHECK(st.records_new == 8);
  CHECK(st.commits == 1);
}

TEST_CASE("ingest: redelivery is acked as stored and counted as duplicates") {
  fixture fx;
  auto frame = encode(sample_batch("agent-01", 1, 1, 1, 5));
  std::vector<inbound_message> in = {msg("lab1", "agent-01", frame)};
  REQUIRE(fx.proc->process(in).size() == 1);
  auto acks = fx.proc->process(in);
  REQUIRE(acks.size() == 1);
  auto a = decode(acks[0]);
  CHECK(a.stored);
  REQUIRE(a.ranges.size() == 1);
  CHECK(a.ranges[0] == sc::seq_range{1, 5});
  CHECK(fx.counters.snapshot().records_duplicate == 5);
  CHECK(*fx.db->record_count() == 5);
}

TEST_CASE("ingest: bad frames are quarantined, rejected without retry, and do not block others") {
  fixture fx;
  auto good = encode(sample_batch("agent-01", 1, 1, 1, 3));
  auto corrupt = good;
  corrupt[corrupt.size() - 1] ^= 0x55;  // checksum mismatch
  auto other = encode(sample_batch("agent-02", 2, 1, 1, 4));
  std::vector<inbound_message> in = {
      msg("lab1", "agent-01", "not a frame at all"),
      msg("lab1", "agent-01", corrupt),
      msg("lab1", "agent-01", good),
      msg("lab1", "agent-99", other),  // agent_id in frame != topic agent
      {"semilab/v1/lab1/agent-01/batch/extra", good, 1},  // bad topic: no ack possible
      {"semilab/v1/lab1/agent-01/state", good, 1},        // not a batch topic
  };
  auto acks = fx.proc->process(in);
  REQUIRE(acks.size() == 4);

  auto a0 = decode(acks[0]);
  CHECK_FALSE(a0.stored);
  CHECK(a0.code == sc::reject_code::invalid_frame);
  CHECK_FALSE(a0.retry);
  CHECK(acks[0].topic == "semilab/v1/lab1/agent-01/ack");

  auto a1 = decode(acks[1]);
  CHECK_FALSE(a1.stored);
  CHECK(a1.code == sc::reject_code::invalid_frame);

  auto a2 = decode(acks[2]);
  CHECK(a2.stored);

  auto a3 = decode(acks[3]);
  CHECK_FALSE(a3.stored);
  CHECK(a3.code == sc::reject_code::agent_mismatch);
  CHECK_FALSE(a3.retry);
  CHECK(acks[3].topic == "semilab/v1/lab1/agent-99/ack");  // answered to the topic's agent

  CHECK(*fx.db->record_count() == 3);
  CHECK(*fx.db->quarantine_count() == 5);
  auto st = fx.counters.snapshot();
  CHECK(st.received == 6);
  CHECK(st.rejected == 5);
  CHECK(st.quarantined == 5);
  CHECK(st.batches_stored == 1);
}

TEST_CASE("ingest: a storage error rejects every batch of the group as internal, retryable") {
  fixture fx;
  REQUIRE(sqlite3_exec(fx.db->native_handle(),
                       "CREATE TRIGGER fail BEFORE INSERT ON records "
                       "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  std::vector<inbound_message> in = {msg("lab1", "a1", encode(sample_batch("a1", 1, 1, 1, 3))),
                                     msg("lab1", "a2", encode(sample_batch("a2", 1, 7, 1, 3)))};
  auto acks = fx.proc->process(in);
  REQUIRE(acks.size() == 2);
  for (auto& o : acks) {
    auto a = decode(o);
    CHECK_FALSE(a.stored);
    CHECK(a.code == sc::reject_code::internal);
    CHECK(a.retry);
  }
  CHECK(decode(acks[1]).batch_id == 7);
  CHECK(fx.counters.snapshot().storage_errors == 1);
  CHECK(fx.counters.snapshot().batches_stored == 0);
}

TEST_CASE("ingest: a frame over the configured limit is refused before decoding") {
  fixture fx;
  ingest_options o;
  o.instance = "c";
  o.limits.max_frame_bytes = 200;
  ingest_counters counters;
  ingest_processor small(*fx.db, o, counters);
  std::vector<inbound_message> in = {msg("lab1", "a1", encode(sample_batch("a1", 1, 1, 1, 50)))};
  REQUIRE(in[0].payload.size() > 200);
  auto acks = small.process(in);
  REQUIRE(acks.size() == 1);
  auto a = decode(acks[0]);
  CHECK_FALSE(a.stored);
  CHECK(a.code == sc::reject_code::invalid_frame);
  CHECK(*fx.db->quarantine_count() == 1);
}

TEST_CASE("ingest: overload ack names the batch and is retryable") {
  sc::frame_decoder dec;
  auto m = msg("lab1", "a1", encode(sample_batch("a1", 77, 12, 1, 2)));
  auto a = make_overload_ack(dec, m, "c");
  REQUIRE(a.has_value());
  auto d = decode(*a);
  CHECK_FALSE(d.stored);
  CHECK(d.code == sc::reject_code::overload);
  CHECK(d.retry);
  CHECK(d.store_epoch == 77);
  CHECK(d.batch_id == 12);
  CHECK_FALSE(make_overload_ack(dec, inbound_message{"bad/topic", "x", 0}, "c").has_value());
}
