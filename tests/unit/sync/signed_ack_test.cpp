// An agent that pins central's Ed25519 key (engine_options::central_keys), against a real
// mosquitto: unsigned acks and acks signed by another key delete nothing and are counted
// (acks_refused); acks signed by the pinned key delete; a replay command must carry the pinned
// key's signature (an HMAC-only command is refused).
#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/command.hpp>
#include <semilab/schemas/signing.hpp>
#include <semilab/schemas/topics.hpp>
#include <semilab/sync/engine.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "support/processes.hpp"

using namespace semilab;
namespace asio = boost::asio;

namespace {

schemas::signing_key new_key() {
  auto k = schemas::signing_key::generate();
  REQUIRE(k.has_value());
  return std::move(*k);
}

std::vector<schemas::record> make(std::size_t n) {
  std::vector<schemas::record> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    v[i].ts_ns = 1'700'000'000'000'000'000 + static_cast<std::int64_t>(i);
    v[i].instrument = "smu1";
    v[i].channel = "curr";
    v[i].unit = "A";
    v[i].val = static_cast<double>(i);
  }
  return v;
}

enum class mode { unsigned_acks, foreign_key, pinned_key };

// A central stand-in that acks every batch, signed as `how` says.
struct signing_central {
  asio::io_context io;
  sync::mqtt_client client;
  schemas::frame_decoder dec;
  const schemas::signing_key& pinned;
  schemas::signing_key foreign = new_key();
  std::atomic<mode> how{mode::unsigned_acks};
  std::atomic<int> acks{0};
  std::thread th;

  signing_central(const std::string& url, const schemas::signing_key& k)
      : client(io.get_executor(), sync::mqtt_options{.broker_url = url, .client_id = "central-sig",
                                                     .clean_start = true}),
        pinned(k) {
    client.add_subscription(schemas::central_batch_subscription(), 1);
    client.on_message([this](sync::mqtt_message m) {
      auto t = schemas::parse_agent_topic(m.topic);
      if (!t) return;
      auto f = dec.decode({reinterpret_cast<const std::uint8_t*>(m.payload.data()),
                           m.payload.size()});
      if (!f) return;
      schemas::ack a;
      a.agent_id = f->header.agent_id;
      a.store_epoch = f->header.store_epoch;
      a.batch_id = f->header.batch_id;
      a.ranges = f->header.ranges;
      a.central_instance = "central-sig";
      if (how == mode::foreign_key) schemas::sign_ack(a, foreign);
      if (how == mode::pinned_key) schemas::sign_ack(a, pinned);
      ++acks;
      client.publish(schemas::agent_topic(t->site, t->agent, schemas::agent_topic_kind::ack),
                     schemas::encode_ack(a), 1, false, [](boost::system::error_code) {});
    });
    client.start();
    th = std::thread([this] {
      auto guard = asio::make_work_guard(io);
      io.run();
    });
    REQUIRE(test::wait_until([&] { return client.connected(); }, std::chrono::seconds(5)));
  }
  ~signing_central() {
    client.stop(std::chrono::milliseconds(500));
    io.stop();
    th.join();
  }
  void command(const std::string& payload) {
    client.publish(schemas::agent_topic("lab", "agent-1", schemas::agent_topic_kind::cmd), payload,
                   1, false, [](boost::system::error_code) {});
  }
};

std::int64_t wall() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

TEST_CASE("a pinned central key: only acks and commands signed by it count") {
  test::temp_dir dir;
  test::mosquitto broker(dir.path());
  auto central_key = new_key();
  signing_central central(broker.url(), central_key);

  asio::io_context io;
  std::string err;
  sync::outbox_options oo{dir.path() / "o.db", "agent-1", sync::durability::normal};
  oo.integrity_interval = std::chrono::seconds(0);
  auto box = sync::outbox::open(oo, err);
  REQUIRE_MESSAGE(box.has_value(), err);
  sync::engine_options eo{.agent_id = "agent-1", .site = "lab", .batch_max_records = 100,
                          .ack_timeout = std::chrono::milliseconds(500),
                          .linger = std::chrono::milliseconds(20)};
  eo.central_keys = {central_key.public_key()};
  eo.command_key = "0123456789abcdef0123";  // an HMAC secret too: ignored once a key is pinned
  auto eng = std::make_unique<sync::engine>(asio::make_strand(io), **box, eo,
                                            sync::mqtt_options{.broker_url = broker.url()});
  REQUIRE_FALSE(eng->start());
  std::thread th([&] {
    auto guard = asio::make_work_guard(io);
    io.run();
  });

  REQUIRE((*box)->enqueue_wait(make(50)).has_value());
  // Unsigned acks: refused, nothing deleted (the batch is resent after ack_timeout).
  REQUIRE(test::wait_until([&] { return eng->stats().acks_refused >= 2; },
                           std::chrono::seconds(20)));
  CHECK((*box)->counters().acked == 0);
  // Signed by a key the agent does not pin: refused as well.
  central.how = mode::foreign_key;
  const auto before = eng->stats().acks_refused;
  REQUIRE(test::wait_until([&] { return eng->stats().acks_refused >= before + 2; },
                           std::chrono::seconds(20)));
  CHECK((*box)->counters().acked == 0);
  CHECK(eng->stats().batches_acked == 0);
  // Signed by the pinned key: stored and deleted.
  central.how = mode::pinned_key;
  REQUIRE(test::wait_until([&] { return (*box)->counters().held == 0; },
                           std::chrono::seconds(20)));
  CHECK((*box)->counters().acked == 50);

  // Commands: an HMAC-only replay is refused, one signed with the pinned key is accepted.
  const auto epoch = (*box)->store_epoch();
  schemas::replay_command c{"agent-1", epoch, 1, 10, wall(), schemas::new_nonce()};
  central.command(schemas::encode_command(c, eo.command_key));
  REQUIRE(test::wait_until([&] { return eng->stats().commands_refused >= 1; },
                           std::chrono::seconds(10)));
  CHECK(eng->stats().commands_accepted == 0);
  c.nonce = schemas::new_nonce();
  central.command(schemas::encode_command(c, "", &central_key));
  REQUIRE(test::wait_until([&] { return eng->stats().commands_accepted == 1; },
                           std::chrono::seconds(10)));

  eng->stop();
  io.stop();
  th.join();
}
