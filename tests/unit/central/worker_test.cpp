// The worker thread: queue bound, group commit, acks handed over only after the commit.
#include <semilab/central/store.hpp>
#include <semilab/central/ingest.hpp>
#include <semilab/schemas/topics.hpp>

#include <doctest/doctest.h>

#include <condition_variable>
#include <mutex>

#include "test_util.hpp"

using namespace semilab::central;
namespace sc = semilab::schemas;

TEST_CASE("worker: every submitted batch is acked after its commit; stop drains the queue") {
  central_test::temp_dir d;
  std::string err;
  auto s = sqlite_store::open(store_options{d.file("central.db")}, err);
  REQUIRE(s.has_value());
  auto reader = sqlite_store::open(store_options{d.file("central.db"), open_mode::read_only}, err);
  REQUIRE(reader.has_value());

  std::mutex m;
  std::vector<outbound_ack> acks;
  std::size_t sink_calls = 0;
  bool committed_before_ack = true;
  ingest_options o;
  o.instance = "c";
  o.group_max_batches = 64;
  sqlite_store* rd = reader->get();
  ingest_worker w(std::move(*s), o, [&](std::vector<outbound_ack> group) {
    // Runs on the worker thread after the commit: a second connection already sees the rows.
    std::lock_guard lock(m);
    auto count = rd->record_count();
    for (auto& a : group) {
      if (!count.has_value() || *count < a.ack.ranges.back().last) committed_before_ack = false;
      acks.push_back(std::move(a));
    }
    ++sink_calls;
  });
  w.start();
  constexpr int kBatches = 200;
  for (int i = 0; i < kBatches; ++i) {
    auto b = central_test::sample_batch("a1", 1, static_cast<std::uint64_t>(i),
                                        static_cast<std::uint64_t>(i) * 10 + 1, 10);
    inbound_message msg{sc::agent_topic("lab1", "a1", sc::agent_topic_kind::batch),
                        central_test::encode(b), 1};
    REQUIRE_FALSE(w.submit(std::move(msg)));
  }
  w.stop();
  CHECK(w.submit(inbound_message{"t", "p", 0}) == errc::stopped);
  std::lock_guard lock(m);
  REQUIRE(acks.size() == kBatches);
  CHECK(committed_before_ack);
  for (auto& a : acks) CHECK(a.ack.stored);
  auto st = w.stats();
  CHECK(st.records_new == kBatches * 10);
  CHECK(st.commits == sink_calls);
  CHECK(st.commits <= static_cast<std::uint64_t>(kBatches));
  MESSAGE("200 batches in " << st.commits << " commits");
}

TEST_CASE("worker: a full queue refuses with queue_full and leaves the message intact") {
  central_test::temp_dir d;
  std::string err;
  auto s = sqlite_store::open(store_options{d.file("central.db")}, err);
  REQUIRE(s.has_value());
  ingest_options o;
  o.queue_messages = 2;
  ingest_worker w(std::move(*s), o, nullptr);  // not started: nothing drains
  inbound_message a{"semilab/v1/s/a/batch", "x", 0}, b = a, c = a;
  CHECK_FALSE(w.submit(std::move(a)));
  CHECK_FALSE(w.submit(std::move(b)));
  CHECK(w.submit(std::move(c)) == errc::queue_full);
  CHECK(c.payload == "x");
  CHECK(w.stats().overloaded == 1);
  CHECK(w.stats().queue_depth == 2);
  w.start();
  w.stop();  // drains the two (invalid frames: quarantined)
  CHECK(w.stats().quarantined == 2);
}
