// The ingest service against a real mosquitto on a free loopback port: batch in, ack out, presence.
#include <semilab/central/store.hpp>
#include <semilab/central/service.hpp>
#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/state.hpp>
#include <semilab/schemas/topics.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>

#include "test_util.hpp"

using namespace semilab::central;
namespace asio = boost::asio;
namespace sc = semilab::schemas;
using namespace std::chrono_literals;

namespace {

std::uint16_t free_port() {
  asio::io_context ioc;
  asio::ip::tcp::acceptor a(ioc, {asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

struct broker {
  pid_t pid = -1;
  std::uint16_t port = 0;
  explicit broker(const central_test::temp_dir& d) {
    port = free_port();
    auto conf = d.file("mosquitto.conf");
    std::ofstream(conf) << "listener " << port << " 127.0.0.1\nallow_anonymous true\n"
                        << "persistence false\nlog_dest none\n";
    pid = ::fork();
    if (pid == 0) {
      ::execl("/usr/sbin/mosquitto", "mosquitto", "-c", conf.c_str(), nullptr);
      ::_exit(127);
    }
    // Wait until it accepts connections.
    for (int i = 0; i < 100; ++i) {
      asio::io_context ioc;
      asio::ip::tcp::socket s(ioc);
      boost::system::error_code ec;
      s.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
      if (!ec) return;
      std::this_thread::sleep_for(50ms);
    }
  }
  ~broker() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
  }
  std::string url() const { return "tcp://127.0.0.1:" + std::to_string(port); }
};

// Collects messages from a test client's subscription.
struct inbox {
  std::mutex m;
  std::condition_variable cv;
  std::vector<semilab::sync::mqtt_message> msgs;
  void push(semilab::sync::mqtt_message msg) {
    std::lock_guard l(m);
    msgs.push_back(std::move(msg));
    cv.notify_all();
  }
  template <class Pred>
  bool wait_for(Pred p, std::chrono::milliseconds t = 10s) {
    std::unique_lock l(m);
    return cv.wait_for(l, t, [&] { return p(msgs); });
  }
};

}  // namespace

TEST_CASE("service: batch over mosquitto -> stored -> ack; presence online then offline") {
  if (::access("/usr/sbin/mosquitto", X_OK) != 0) {
    MESSAGE("mosquitto not installed: skipped");
    return;
  }
  central_test::temp_dir d;
  broker b(d);
  std::string err;
  auto s = sqlite_store::open(store_options{d.file("central.db")}, err);
  REQUIRE(s.has_value());
  auto reader = sqlite_store::open(store_options{d.file("central.db"), open_mode::read_only}, err);
  REQUIRE(reader.has_value());

  asio::io_context ioc;
  auto guard = asio::make_work_guard(ioc);

  service_options so;
  so.ingest.instance = "central-t1";
  so.mqtt.broker_url = b.url();
  so.version = "test";
  auto svc = std::make_unique<ingest_service>(asio::make_strand(ioc), std::move(*s), so);

  // The "agent": subscribes to its ack topic and the central state.
  inbox box;
  semilab::sync::mqtt_options ao;
  ao.broker_url = b.url();
  ao.client_id = "agent-01";
  ao.clean_start = true;
  semilab::sync::mqtt_client agent(asio::make_strand(ioc), ao);
  agent.add_subscription(sc::agent_topic("lab1", "agent-01", sc::agent_topic_kind::ack), 1);
  agent.add_subscription(sc::central_state_topic("central-t1"), 1);
  agent.on_message([&](semilab::sync::mqtt_message m) { box.push(std::move(m)); });
  REQUIRE_FALSE(agent.start());

  REQUIRE_FALSE(svc->start());
  std::thread io([&] { ioc.run(); });  // after start(): everything set up happens-before the loop
  auto state_is = [&](bool online) {
    return [online](const auto& msgs) {
      for (auto& m : msgs)
        if (m.topic == sc::central_state_topic("central-t1")) {
          auto p = sc::decode_presence(m.payload);
          if (p.has_value() && p->online == online) return true;
        }
      return false;
    };
  };
  REQUIRE(box.wait_for(state_is(true)));
  for (int i = 0; i < 100 && !svc->connected(); ++i) std::this_thread::sleep_for(20ms);
  REQUIRE(svc->connected());

  auto frame = central_test::encode(central_test::sample_batch("agent-01", 9, 3, 1, 25));
  auto batch_topic = sc::agent_topic("lab1", "agent-01", sc::agent_topic_kind::batch);
  auto is_ack = [](const auto& msgs) {
    for (auto& m : msgs)
      if (m.topic.ends_with("/ack")) return true;
    return false;
  };
  // Resend until acked, as an agent does: central's SUBSCRIBE may still be in flight at the broker.
  // Redelivery is harmless (acked as duplicates).
  bool acked = false;
  for (int i = 0; i < 10 && !acked; ++i) {
    // mqtt_client is used on its executor only (its handlers run there too).
    asio::post(ioc, [&] { agent.publish(batch_topic, frame, 1, false, [](boost::system::error_code) {}); });
    acked = box.wait_for(is_ack, 1s);
  }
  REQUIRE(acked);
  sc::ack a;
  {
    std::lock_guard l(box.m);
    for (auto& m : box.msgs)
      if (m.topic.ends_with("/ack")) a = *sc::decode_ack(m.payload);
  }
  CHECK(a.stored);
  CHECK(a.batch_id == 3);
  CHECK(a.central_instance == "central-t1");
  REQUIRE(a.ranges.size() == 1);
  CHECK(a.ranges[0] == sc::seq_range{1, 25});
  CHECK(*(*reader)->record_count() == 25);  // the ack came after the commit
  CHECK(svc->stats().batches_stored >= 1);

  // Clean shutdown publishes the retained offline state.
  std::promise<void> stopped;
  asio::post(ioc, [&] { svc->async_stop(1000ms, [&] { stopped.set_value(); }); });
  REQUIRE(stopped.get_future().wait_for(10s) == std::future_status::ready);
  CHECK(box.wait_for(state_is(false)));

  std::promise<void> agent_stopped;
  asio::post(ioc, [&] {
    agent.stop(1000ms);
    agent_stopped.set_value();
  });
  agent_stopped.get_future().wait();
  guard.reset();
  ioc.stop();
  io.join();
  svc.reset();
}
