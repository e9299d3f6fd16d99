// The daemon's Modbus runner honours per-point intervals: against a real pymodbus server, a point
// at 0.1 s and one at 0.5 s land in the outbox at their own rates, and the slow point is read in
// the same (coalesced) poll as the fast one when both are due.
#include <semilab/agent/recorder.hpp>
#include <semilab/drivers/modbus_map.hpp>

#include <support/processes.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <doctest/doctest.h>

#include <future>
#include <map>
#include <set>

#include "modbus_runner.hpp"

using namespace semilab;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {
const std::string kServer = std::string(SEMILAB_SOURCE_DIR) + "/tests/support/modbus_server.py";

std::vector<schemas::record> read_all(sync::outbox& box) {
  std::promise<std::vector<schemas::record>> p;
  box.read({}, 10'000, [&](boost::system::error_code, std::vector<schemas::record> v) { p.set_value(std::move(v)); });
  return p.get_future().get();
}
}  // namespace

TEST_CASE("runner: every point polled at its own interval, due groups read together") {
  test::temp_dir dir;
  int port = test::free_port();
  test::child srv({SEMILAB_PYTHON, kServer, "--port", std::to_string(port)}, dir.path() / "server.log");
  REQUIRE(test::wait_until([&] { return test::port_open(port); }, 10s));

  std::string err;
  auto box = sync::outbox::open({dir.path() / "o.db", "agent-1", sync::durability::normal}, err);
  REQUIRE(box.has_value());
  agent::recorder rec(**box);

  auto map = drivers::modbus::parse_map(R"(
[device]
name = "intervals"
[[point]]
name = "fast"
register = 40021
type = "u16"
interval = 0.1
[[point]]
name = "slow"
register = 40022
type = "i16"
interval = 0.5
[[point]]
name = "base"
register = 30001
type = "u16"
)", "intervals.toml");
  REQUIRE(map.has_value());
  agent::instrument_config ic;
  ic.id = "mb1";
  ic.resource = "modbus-tcp://127.0.0.1:" + std::to_string(port) + "?unit=1";
  ic.modbus_map = std::make_shared<const drivers::modbus::device_map>(std::move(*map));
  ic.poll_interval_s = 0.2;  // points without their own interval
  ic.timeout_ms = 500;

  asio::io_context io;
  auto guard = asio::make_work_guard(io);  // results arrive from the session's worker
  auto runner = std::make_shared<agent::modbus_runner>(io, ic, rec);
  runner->start();
  io.run_for(1250ms);
  runner->stop();
  io.run_for(100ms);
  auto st = runner->status();
  CHECK(st.errors == 0);

  auto recs = read_all(**box);
  std::map<std::string, std::vector<std::int64_t>> ts;
  for (const auto& r : recs) ts[r.channel].push_back(r.ts_ns);
  MESSAGE("fast " << ts["fast"].size() << ", base " << ts["base"].size() << ", slow "
                  << ts["slow"].size() << " values in 1.25 s");
  // Due at 0, 0.1, ..., 1.2 s (13), 0, 0.2, ..., 1.2 (7), 0, 0.5, 1.0 (3); the first poll
  // connects, a loaded machine may lose a tick at the end.
  CHECK(ts["fast"].size() >= 10);
  CHECK(ts["fast"].size() <= 14);
  CHECK(ts["base"].size() >= 5);
  CHECK(ts["base"].size() <= 8);
  CHECK(ts["slow"].size() >= 2);
  CHECK(ts["slow"].size() <= 4);
  // Every slow and base reading came with a fast one: groups due together share one poll.
  std::set<std::int64_t> fast(ts["fast"].begin(), ts["fast"].end());
  for (auto t : ts["slow"]) CHECK(fast.count(t) == 1);
  for (auto t : ts["base"]) CHECK(fast.count(t) == 1);
}

TEST_CASE("runner: `count` polls of the fastest group, then polling stops") {
  test::temp_dir dir;
  int port = test::free_port();
  test::child srv({SEMILAB_PYTHON, kServer, "--port", std::to_string(port)}, dir.path() / "server.log");
  REQUIRE(test::wait_until([&] { return test::port_open(port); }, 10s));
  std::string err;
  auto box = sync::outbox::open({dir.path() / "o.db", "agent-1", sync::durability::normal}, err);
  REQUIRE(box.has_value());
  agent::recorder rec(**box);
  auto map = drivers::modbus::parse_map(
      "[[point]]\nname = \"a\"\nregister = 40021\ntype = \"u16\"\n"
      "[[point]]\nname = \"b\"\nregister = 40022\ntype = \"i16\"\ninterval = 0.15\n",
      "count.toml");
  REQUIRE(map.has_value());
  agent::instrument_config ic;
  ic.id = "mb2";
  ic.resource = "modbus-tcp://127.0.0.1:" + std::to_string(port) + "?unit=1";
  ic.modbus_map = std::make_shared<const drivers::modbus::device_map>(std::move(*map));
  ic.poll_interval_s = 0.05;
  ic.count = 4;
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  auto runner = std::make_shared<agent::modbus_runner>(io, ic, rec);
  runner->start();
  for (int i = 0; i < 60 && !runner->status().finished; ++i) io.run_for(50ms);
  CHECK(runner->status().finished);
  runner->stop();
  io.run_for(50ms);
  auto recs = read_all(**box);
  std::map<std::string, int> n;
  for (const auto& r : recs) ++n[r.channel];
  CHECK(n["a"] == 4);  // due at 0, 0.05, 0.1, 0.15 s
  CHECK(n["b"] >= 1);  // due at 0 and 0.15 s (once, when a slow first connect shifted a's clock)
  CHECK(n["b"] <= 2);
}
