// The sync engine against a real mosquitto and a minimal central: batches arrive, are acked only
// by the peer, and records are deleted only after that ack; unacked batches are resent.
#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/state.hpp>
#include <semilab/schemas/topics.hpp>
#include <semilab/sync/engine.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <future>
#include <set>
#include <thread>

#include "support/processes.hpp"

using namespace semilab;
namespace asio = boost::asio;

namespace {

std::vector<schemas::record> make(std::size_t n) {
  std::vector<schemas::record> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    v[i].ts_ns = 1'700'000'000'000'000'000 + static_cast<std::int64_t>(i) * 1000;
    v[i].instrument = "smu1";
    v[i].channel = "curr";
    v[i].unit = "A";
    v[i].val = schemas::decimal{static_cast<std::int64_t>(i), -3};
  }
  return v;
}

// A stand-in for central: stores seqs in a set, acks after "storing" unless told to stay silent.
struct fake_central {
  asio::io_context io;
  sync::mqtt_client client;
  schemas::frame_decoder dec;
  std::mutex mu;
  std::set<std::uint64_t> stored;
  std::atomic<int> batches{0};
  std::atomic<bool> silent{false};
  std::atomic<bool> reject{false};  // answer every batch with a permanent rejection
  std::thread th;

  explicit fake_central(const std::string& url)
      : client(io.get_executor(), sync::mqtt_options{.broker_url = url, .client_id = "central-test",
                                                     .clean_start = true}) {
    client.add_subscription(schemas::central_batch_subscription(), 1);
    client.on_message([this](sync::mqtt_message m) {
      auto t = schemas::parse_agent_topic(m.topic);
      REQUIRE(t.has_value());
      std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(m.payload.data()),
                                          m.payload.size());
      auto f = dec.decode(bytes);
      REQUIRE(f.has_value());
      ++batches;
      if (silent) return;
      if (reject) {
        schemas::ack r;
        r.agent_id = f->header.agent_id;
        r.store_epoch = f->header.store_epoch;
        r.batch_id = f->header.batch_id;
        r.stored = false;
        r.code = schemas::reject_code::invalid_frame;
        r.reason = "test says no";
        client.publish(schemas::agent_topic(t->site, t->agent, schemas::agent_topic_kind::ack),
                       schemas::encode_ack(r), 1, false, [](boost::system::error_code) {});
        return;
      }
      {
        std::lock_guard lk(mu);
        for (auto& r : f->records) stored.insert(r.seq);
      }
      schemas::ack a;
      a.agent_id = f->header.agent_id;
      a.store_epoch = f->header.store_epoch;
      a.batch_id = f->header.batch_id;
      a.ranges = f->header.ranges;
      client.publish(schemas::agent_topic(t->site, t->agent, schemas::agent_topic_kind::ack),
                     schemas::encode_ack(a), 1, false, [](boost::system::error_code) {});
    });
    client.start();
    th = std::thread([this] {
      auto guard = asio::make_work_guard(io);
      io.run();
    });
    test::wait_until([&] { return client.connected(); }, std::chrono::seconds(5));
  }
  ~fake_central() {
    client.stop(std::chrono::milliseconds(500));
    io.stop();
    th.join();
  }
  std::size_t count() {
    std::lock_guard lk(mu);
    return stored.size();
  }
};

struct agent_side {
  asio::io_context io;
  std::unique_ptr<sync::outbox> box;
  std::unique_ptr<sync::engine> eng;
  std::thread th;

  agent_side(const std::filesystem::path& db, const std::string& url,
             std::chrono::milliseconds ack_timeout = std::chrono::milliseconds(10'000),
             double max_bytes_per_s = 0, std::size_t batch = 100) {
    std::string err;
    auto b = sync::outbox::open({db, "agent-1", sync::durability::normal}, err);
    REQUIRE_MESSAGE(b.has_value(), err);
    box = std::move(*b);
    sync::engine_options eo{.agent_id = "agent-1", .site = "lab", .batch_max_records = batch,
                            .ack_timeout = ack_timeout, .linger = std::chrono::milliseconds(20),
                            .max_bytes_per_s = max_bytes_per_s};
    eng = std::make_unique<sync::engine>(asio::make_strand(io), *box, eo,
                                         sync::mqtt_options{.broker_url = url});
    REQUIRE_FALSE(eng->start());
    th = std::thread([this] {
      auto guard = asio::make_work_guard(io);
      io.run();
    });
  }
  ~agent_side() {
    eng->stop();
    io.stop();
    th.join();
    eng.reset();
  }
};

}  // namespace

TEST_CASE("records reach the peer, are acked, and only then leave the outbox") {
  test::temp_dir dir;
  test::mosquitto broker(dir.path());
  fake_central central(broker.url());
  agent_side agent(dir.path() / "o.db", broker.url());
  for (int i = 0; i < 10; ++i) REQUIRE(agent.box->enqueue_wait(make(50)).has_value());
  REQUIRE(test::wait_until([&] { return agent.box->counters().held == 0; }, std::chrono::seconds(20)));
  CHECK(central.count() == 500);
  auto c = agent.box->counters();
  CHECK(c.produced == 500);
  CHECK(c.acked == 500);
  CHECK(agent.eng->stats().batches_acked >= 5);
}

TEST_CASE("without central's ack nothing is deleted; batches are resent until acked") {
  test::temp_dir dir;
  test::mosquitto broker(dir.path());
  fake_central central(broker.url());
  central.silent = true;  // receives, never acks
  agent_side agent(dir.path() / "o.db", broker.url(), std::chrono::milliseconds(300));
  REQUIRE(agent.box->enqueue_wait(make(30)).has_value());
  REQUIRE(test::wait_until([&] { return central.batches >= 2; }, std::chrono::seconds(10)));
  CHECK(agent.box->counters().held == 30);  // PUBACK from the broker deleted nothing
  CHECK(agent.eng->stats().batches_resent >= 1);
  central.silent = false;
  REQUIRE(test::wait_until([&] { return agent.box->counters().held == 0; }, std::chrono::seconds(10)));
  CHECK(central.count() == 30);
}

TEST_CASE("a broker outage loses nothing: records wait in the outbox and flow after reconnect") {
  test::temp_dir dir;
  auto broker = std::make_unique<test::mosquitto>(dir.path());
  int port = broker->port();
  std::string url = broker->url();
  agent_side agent(dir.path() / "o.db", url);
  broker->stop();
  REQUIRE(agent.box->enqueue_wait(make(40)).has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(agent.box->counters().held == 40);
  // Same port again.
  std::ofstream(dir.path() / "m2.conf") << "listener " << port << " 127.0.0.1\nallow_anonymous true\npersistence false\n";
  test::child again({"/usr/sbin/mosquitto", "-c", (dir.path() / "m2.conf").string()}, dir.path() / "m2.log");
  REQUIRE(test::wait_until([&] { return test::port_open(port); }, std::chrono::seconds(5)));
  fake_central central(url);
  REQUIRE(test::wait_until([&] { return agent.box->counters().held == 0; }, std::chrono::seconds(20)));
  CHECK(central.count() == 40);
}

TEST_CASE("the bandwidth cap holds the upload rate to within 5 %") {
  test::temp_dir dir;
  test::mosquitto broker(dir.path());
  fake_central central(broker.url());
  constexpr double kRate = 10'000;  // bytes/s
  agent_side agent(dir.path() / "o.db", broker.url(), std::chrono::milliseconds(10'000), kRate, 200);
  // A backlog far larger than the cap lets through in the measurement window.
  for (int i = 0; i < 40; ++i) REQUIRE(agent.box->enqueue_wait(make(5000)).has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  auto b0 = agent.eng->stats().bytes_published;
  auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(6000));
  auto b1 = agent.eng->stats().bytes_published;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double rate = static_cast<double>(b1 - b0) / secs;
  MESSAGE("measured ", rate, " bytes/s against a cap of ", kRate);
  CHECK(rate == doctest::Approx(kRate).epsilon(0.05));
  CHECK(agent.eng->stats().rate_limited > 0);
  CHECK(agent.box->counters().held > 0);  // the rest waits, nothing dropped
  CHECK(agent.box->counters().dropped == 0);
}

TEST_CASE("the backlog is held while every central instance says offline") {
  test::temp_dir dir;
  test::mosquitto broker(dir.path());
  fake_central central(broker.url());
  auto announce = [&](bool online) {
    std::promise<void> p;
    central.client.publish(schemas::central_state_topic("c1"),
                           schemas::encode_presence({online, "c1", 1, "test"}), 1, true,
                           [&](boost::system::error_code) { p.set_value(); });
    p.get_future().wait();
  };
  announce(false);
  agent_side agent(dir.path() / "o.db", broker.url());
  REQUIRE(test::wait_until([&] { return !agent.eng->stats().central_online; }, std::chrono::seconds(5)));
  REQUIRE(agent.box->enqueue_wait(make(20)).has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(central.batches == 0);  // nothing spent while no central can store it
  CHECK(agent.box->counters().held == 20);
  announce(true);
  REQUIRE(test::wait_until([&] { return agent.box->counters().held == 0; }, std::chrono::seconds(10)));
  CHECK(central.count() == 20);
}

TEST_CASE("permanent rejections move a batch to the dead letters without blocking the queue") {
  test::temp_dir dir;
  test::mosquitto broker(dir.path());
  fake_central central(broker.url());
  central.reject = true;
  agent_side agent(dir.path() / "o.db", broker.url());
  REQUIRE(agent.box->enqueue_wait(make(30)).has_value());
  REQUIRE(test::wait_until([&] { return agent.box->counters().dead_letters == 30; },
                           std::chrono::seconds(10)));
  CHECK(central.batches >= 3);  // tried three times first
  CHECK(agent.box->counters().held == 30);  // still held, never silently dropped
  central.reject = false;
  REQUIRE(agent.box->enqueue_wait(make(10)).has_value());  // later records are not blocked
  REQUIRE(test::wait_until([&] { return agent.box->counters().held == 30; }, std::chrono::seconds(10)));
  CHECK(central.count() == 10);
  std::string err;
  auto listed = sync::outbox::list_dead_letters(dir.path() / "o.db", 100, err);
  REQUIRE(listed.has_value());
  REQUIRE(listed->size() == 30);
  CHECK((*listed)[0].reason.find("test says no") != std::string::npos);
  CHECK((*listed)[0].attempts == 3);
  // The CLI's retry, with the daemon running: the engine's idle rescan sends them.
  auto moved = sync::outbox::retry_dead_letters_in(dir.path() / "o.db", err);
  REQUIRE(moved.has_value());
  CHECK(*moved == 30);
  REQUIRE(test::wait_until([&] { return central.count() == 40; }, std::chrono::seconds(15)));
  REQUIRE(test::wait_until([&] { return agent.box->counters().held == 0; }, std::chrono::seconds(5)));
}
