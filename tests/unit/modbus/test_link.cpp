// Modbus links against a real pymodbus server (TCP, and RTU over a socat pty pair), plus fault
// cases: exception on some points, device restart, a device that hangs, a reply that comes late.
#include <semilab/drivers/modbus_error.hpp>
#include <semilab/drivers/modbus_link.hpp>
#include <semilab/drivers/modbus_plan.hpp>

#include <support/processes.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <doctest/doctest.h>

#include <netinet/tcp.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <optional>
#include <set>

using namespace semilab::drivers::modbus;
using namespace std::chrono_literals;
namespace test = semilab::test;
namespace asio = boost::asio;
using semilab::drivers::result;

namespace {

const std::string kServer = std::string(SEMILAB_SOURCE_DIR) + "/tests/support/modbus_server.py";

// The golden layout of tests/support/modbus_server.py.
const char* kGoldenMap = R"(
[device]
name = "golden"
max_gap = 4
interval = 0.2
timeout = 0.3
[[point]]
name = "f_abcd"
address = 0
table = "holding"
type = "f32"
[[point]]
name = "f_cdab"
register = 40003
type = "f32"
order = "CDAB"
[[point]]
name = "f_badc"
register = 40005
type = "f32"
order = "BADC"
[[point]]
name = "f_dcba"
register = 40007
type = "f32"
order = "DCBA"
[[point]]
name = "i32"
register = 40009
type = "i32"
[[point]]
name = "u64"
register = 40011
type = "u64"
[[point]]
name = "scaled"
register = 40015
type = "u16"
scale = 0.1
offset = -10
unit = "degC"
[[point]]
name = "bit5"
register = 40016
type = "bool"
bit = 5
[[point]]
name = "tag"
register = 40017
type = "string"
length = 4
[[point]]
name = "sp"
register = 40021
type = "u16"
writable = true
min = 0
max = 1000
[[point]]
name = "neg"
register = 40022
type = "i16"
[[point]]
name = "ir0"
register = 30001
type = "u16"
[[point]]
name = "coil3"
register = 4
type = "bool"
[[point]]
name = "di1"
register = 10002
type = "bool"
)";

struct server {
  test::temp_dir log;  // pymodbus logs every dropped connection: keep it off the test output
  int port = test::free_port();
  test::child proc;
  explicit server(int p = 0) {
    if (p) port = p;
    start();
  }
  void start() {
    proc = test::child({SEMILAB_PYTHON, kServer, "--port", std::to_string(port)}, log.path() / "server.log");
    if (!test::wait_until([&] { return test::port_open(port); }, 10s))
      throw std::runtime_error("pymodbus server did not start: needs python3-pymodbus, python3-serial and python3-serial-asyncio for /usr/bin/python3");
  }
  std::string uri(int unit = 1) const {
    return "modbus-tcp://127.0.0.1:" + std::to_string(port) + "?unit=" + std::to_string(unit);
  }
};

std::shared_ptr<const device_map> golden() {
  auto m = parse_map(kGoldenMap, "golden.toml");
  REQUIRE(m.has_value());
  return std::make_shared<const device_map>(std::move(*m));
}

link_resource res_of(const std::string& uri) {
  auto r = parse_link_resource(uri);
  REQUIRE(r.has_value());
  return *r;
}

// Runs the io_context until `slot` is filled or the deadline passes.
template <class T>
T await(asio::io_context& io, std::optional<T>& slot, std::chrono::milliseconds limit = 5000ms) {
  auto end = std::chrono::steady_clock::now() + limit;
  io.restart();
  auto guard = asio::make_work_guard(io);  // the worker posts later: do not let run_one return
  while (!slot && std::chrono::steady_clock::now() < end) io.run_one_for(10ms);
  REQUIRE(slot.has_value());
  return std::move(*slot);
}

poll_result poll(asio::io_context& io, session& l, std::vector<std::size_t> which = {}) {
  std::optional<poll_result> r;
  l.async_poll(std::move(which), [&](poll_result p) { r = std::move(p); });
  return await(io, r);
}

result<value> write(asio::io_context& io, session& l, std::string_view name, value v) {
  std::optional<result<value>> r;
  l.async_write(*l.map().index_of(name), std::move(v), [&](result<value> x) { r = std::move(x); });
  return await(io, r);
}

const result<value>& get(const poll_result& p, const device_map& m, std::string_view name) {
  auto i = *m.index_of(name);
  for (const auto& pv : p.values)
    if (pv.index == i) return pv.v;
  FAIL("no value for " << name);
  throw std::logic_error("unreachable");
}

bool all_ok(const poll_result& p) {
  for (const auto& v : p.values)
    if (!v.v.has_value()) return false;
  return !p.values.empty();
}

}  // namespace

TEST_CASE("TCP: every golden point decodes, coalesced into one request per table") {
  server srv;
  asio::io_context io;
  auto map = golden();
  session l(asio::make_strand(io), res_of(srv.uri()), map, {.name = "golden", .timeout_s = map->timeout_s});
  auto r = poll(io, l);
  for (const auto& v : r.values) {
    CAPTURE(map->points[v.index].name);
    if (!v.v.has_value()) FAIL(v.v.error().message);
  }
  CHECK(r.requests == 4);  // holding 0..21, input, coil, discrete
  CHECK(plan_reads(*map).size() == 4);
  CHECK(naive_request_count(*map) == 14);
  for (auto n : {"f_abcd", "f_cdab", "f_badc", "f_dcba"}) CHECK(*get(r, *map, n) == value{123456.0});
  CHECK(*get(r, *map, "i32") == value{std::int64_t{-123456}});
  CHECK(*get(r, *map, "u64") == value{std::uint64_t{(1ULL << 53) + 1}});
  CHECK(std::get<double>(*get(r, *map, "scaled")) == doctest::Approx(221.5));
  CHECK(*get(r, *map, "bit5") == value{true});
  CHECK(*get(r, *map, "tag") == value{std::string("AB12CD")});
  CHECK(*get(r, *map, "neg") == value{std::int64_t{-5}});
  CHECK(*get(r, *map, "ir0") == value{std::int64_t{1234}});
  CHECK(*get(r, *map, "coil3") == value{true});
  CHECK(*get(r, *map, "di1") == value{true});
  CHECK(r.utc_ns > 0);
  auto st = l.stats();
  CHECK(st.connected);
  CHECK(st.connects == 1);
}

TEST_CASE("start_polling: groups by interval, due groups read as one coalesced plan") {
  server srv;
  asio::io_context io;
  auto m = parse_map(R"(
[device]
max_gap = 0
[[point]]
name = "fast"
register = 40021
type = "u16"
interval = 0.05
[[point]]
name = "slow"
register = 40022
type = "i16"
interval = 0.2
[[point]]
name = "other"
register = 30001
type = "u16"
)", "groups.toml");
  REQUIRE(m.has_value());
  auto map = std::make_shared<const device_map>(std::move(*m));
  session l(asio::make_strand(io), res_of(srv.uri()), map);
  std::vector<poll_result> got;
  auto guard = asio::make_work_guard(io);  // results arrive from the worker
  l.start_polling(0.1, [&](poll_result r) { got.push_back(std::move(r)); });
  io.run_for(650ms);
  l.stop_polling();
  auto n = got.size();
  io.restart();
  io.run_for(100ms);  // a poll running at stop may still land; none starts after it
  CHECK(got.size() <= n + 1);
  MESSAGE(got.size() << " polls in 0.65 s");
  REQUIRE(got.size() >= 9);  // due at 0, 0.05, ..., 0.6 (13 on an idle machine)
  CHECK(got.size() <= 14);
  std::size_t with_slow = 0, with_other = 0;
  for (const auto& r : got) {
    CHECK(r.fastest);  // the 0.05 s group is due in every poll
    CHECK(r.failed_requests == 0);
    std::set<std::string> names;
    for (const auto& v : r.values) {
      CHECK(v.v.has_value());
      names.insert(map->points[v.index].name);
    }
    CHECK(names.count("fast") == 1);
    with_slow += names.count("slow");
    with_other += names.count("other");
    // holding 20..21 is one request when slow is due with fast; input 0 one more.
    CHECK(r.requests == 1 + names.count("other"));
  }
  CHECK(with_slow >= 2);
  CHECK(with_slow <= 4);
  CHECK(with_other >= 4);
  CHECK(with_other <= 7);
}

// Back-to-back polls under 1 ms each hand their results over in batches (up to 16 or 1 ms; a
// held result waits for later polls). Whichever way they travel, every result arrives, in
// order, and a write queued meanwhile runs between two polls (the held batch goes out first).
TEST_CASE("start_polling back to back: every result in order, a write runs between polls") {
  server srv;
  asio::io_context io;
  auto m = parse_map(R"(
[[point]]
name = "sp"
register = 40021
type = "u16"
writable = true
min = 0
max = 1000
)", "one.toml");
  REQUIRE(m.has_value());
  auto map = std::make_shared<const device_map>(std::move(*m));
  session l(asio::make_strand(io), res_of(srv.uri()), map);
  auto before = write(io, l, "sp", value{std::int64_t{111}});
  REQUIRE_MESSAGE(before.has_value(), before.error().message);
  std::vector<std::int64_t> seen;  // sp in each result, in delivery order
  std::size_t failed = 0, after_write = 0;
  std::optional<result<value>> wrote;
  io.restart();
  auto guard = asio::make_work_guard(io);
  l.start_polling(0.0, [&](poll_result r) {
    if (!all_ok(r)) {
      ++failed;
      return;
    }
    seen.push_back(std::get<std::int64_t>(*get(r, *map, "sp")));
    if (seen.size() == 20)
      l.async_write(*map->index_of("sp"), value{std::int64_t{777}},
                    [&](result<value> x) { wrote = std::move(x); });
    if (wrote && ++after_write == 50) io.stop();
  });
  io.run_for(20s);
  l.stop_polling();
  CHECK(failed == 0);
  REQUIRE(wrote.has_value());
  CHECK_MESSAGE(wrote->has_value(), wrote->error().message);
  CHECK(after_write >= 50);  // more when the 50th came early in a batch
  // 111 until the write, 777 after it; never back.
  auto first_new = std::find(seen.begin(), seen.end(), std::int64_t{777});
  CHECK(first_new - seen.begin() >= 20);
  CHECK(std::all_of(seen.begin(), first_new, [](std::int64_t v) { return v == 111; }));
  CHECK(std::all_of(first_new, seen.end(), [](std::int64_t v) { return v == 777; }));
  CHECK(seen.end() - first_new >= 50);
  auto st = l.stats();
  CHECK(st.requests >= seen.size() + 2);  // one read per poll, plus the writes and read-backs
}

TEST_CASE("poll_schedule: fixed-rate groups, no catch-up burst, 0 = always due") {
  auto m = parse_map("[[point]]\nname = \"a\"\nregister = 40001\ntype = \"u16\"\ninterval = 1\n"
                     "[[point]]\nname = \"b\"\nregister = 40002\ntype = \"u16\"\n"
                     "[[point]]\nname = \"c\"\nregister = 40003\ntype = \"u16\"\ninterval = 0.5\n",
                     "s.toml");
  if (!m) FAIL(m.error().message);
  using clk = poll_schedule::clock;
  auto t0 = clk::time_point{} + std::chrono::hours(1);
  poll_schedule s(*m, 0.5, t0);  // b takes the base 0.5 s: one group with c
  REQUIRE(s.groups().size() == 2);
  CHECK(s.take_due(t0) == std::vector<std::size_t>{0, 1, 2});
  CHECK(s.last_had_fastest());
  CHECK(s.take_due(t0 + 100ms).empty());
  CHECK(s.next_due() == t0 + 500ms);
  CHECK(s.take_due(t0 + 510ms) == std::vector<std::size_t>{1, 2});
  CHECK(s.next_due() == t0 + 1000ms);  // fixed rate: not 510 + 500
  CHECK(s.take_due(t0 + 1000ms) == std::vector<std::size_t>{0, 1, 2});
  // Three periods late: due once, then one period after now.
  CHECK(s.take_due(t0 + 3000ms) == std::vector<std::size_t>{0, 1, 2});
  CHECK(s.take_due(t0 + 3100ms).empty());
  CHECK(s.next_due() == t0 + 3500ms);
  poll_schedule fast(*m, 0.0, t0);
  CHECK(fast.take_due(t0).size() == 3);
  CHECK(fast.take_due(t0) == std::vector<std::size_t>{1});  // only the 0 s group is due again
}

TEST_CASE("an exception fails only the points it covers, named, and the link stays up") {
  server srv;
  asio::io_context io;
  auto m = parse_map(R"(
[device]
max_gap = 0
[[point]]
name = "good"
register = 40001
type = "f32"
[[point]]
name = "missing"
register = 40101
type = "u16"
[[point]]
name = "good2"
register = 30001
type = "u16"
)", "exc.toml");
  REQUIRE(m.has_value());
  auto map = std::make_shared<const device_map>(*m);
  session l(asio::make_strand(io), res_of(srv.uri()), map);
  for (int round = 0; round < 2; ++round) {
    auto r = poll(io, l);
    CHECK(r.requests == 3);
    CHECK(r.failed_requests == 1);
    CHECK(get(r, *map, "good").has_value());
    CHECK(get(r, *map, "good2").has_value());
    const auto& bad = get(r, *map, "missing");
    REQUIRE_FALSE(bad.has_value());
    CHECK(exception_of(bad.error().code) == 2);
    CHECK(bad.error().message.find("illegal data address (02)") != std::string::npos);
    CHECK(bad.error().message.find("holding 100+1") != std::string::npos);
  }
  auto st = l.stats();
  CHECK(st.exceptions == 2);
  CHECK(st.connects == 1);  // an exception is an answer: no reconnect
}

TEST_CASE("writes: writable only, range-checked, verified by read-back") {
  server srv;
  asio::io_context io;
  auto map = golden();
  session l(asio::make_strand(io), res_of(srv.uri()), map);
  auto ok = write(io, l, "sp", value{std::int64_t{321}});
  if (!ok) FAIL(ok.error().message);
  CHECK(*ok == value{std::int64_t{321}});
  auto r = poll(io, l);
  CHECK(*get(r, *map, "sp") == value{std::int64_t{321}});

  auto high = write(io, l, "sp", value{std::int64_t{1001}});
  REQUIRE_FALSE(high.has_value());
  CHECK(high.error().code == make_error_code(errc::out_of_range));
  CHECK(*get(poll(io, l), *map, "sp") == value{std::int64_t{321}});  // nothing was sent

  auto ro = write(io, l, "i32", value{std::int64_t{1}});
  REQUIRE_FALSE(ro.has_value());
  CHECK(ro.error().code == make_error_code(errc::not_writable));
}

TEST_CASE("device restart: failures while down, back within 2 poll intervals after it returns") {
  server srv;
  asio::io_context io;
  auto map = golden();  // interval 0.2 s
  session l(asio::make_strand(io), res_of(srv.uri()), map, {.timeout_s = 0.3});
  REQUIRE(all_ok(poll(io, l)));
  srv.proc.kill_hard();
  auto down = poll(io, l);
  CHECK_FALSE(all_ok(down));
  // Keep polling at the interval through a ~1.5 s outage, then restart the device.
  auto outage_end = std::chrono::steady_clock::now() + 1500ms;
  while (std::chrono::steady_clock::now() < outage_end) {
    CHECK_FALSE(all_ok(poll(io, l)));
    std::this_thread::sleep_for(200ms);
  }
  srv.start();  // returns once the port accepts
  auto back_at = std::chrono::steady_clock::now();
  bool recovered = false;
  std::chrono::steady_clock::duration took{};
  for (int i = 0; i < 20 && !recovered; ++i) {
    if (all_ok(poll(io, l))) {
      recovered = true;
      took = std::chrono::steady_clock::now() - back_at;
      break;
    }
    std::this_thread::sleep_for(200ms);
  }
  REQUIRE(recovered);
  MESSAGE("recovered " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                       << " ms after the device returned");
  CHECK(took <= 400ms + 600ms);  // 2 intervals, plus scheduling slack on a loaded 2-core VM
  CHECK(l.stats().connect_failures >= 1);
}

TEST_CASE("start_polling, 2 s interval: restarts between and across polls; back within 1 s") {
  server srv;
  auto m = parse_map("[[point]]\nname = \"r\"\nregister = 40001\ntype = \"u16\"\n", "slow.toml");
  REQUIRE(m.has_value());
  auto map = std::make_shared<const device_map>(std::move(*m));
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  struct joiner {
    asio::io_context& io;
    std::thread& t;
    ~joiner() {
      io.stop();
      t.join();
    }
  } join_at_exit{io, runner};  // also when a REQUIRE throws
  std::mutex mu;
  std::vector<std::pair<std::chrono::steady_clock::time_point, bool>> polls;
  auto count = [&] {
    std::lock_guard lk(mu);
    return polls.size();
  };
  session l(asio::make_strand(io), res_of(srv.uri()), map, {.timeout_s = 0.3});
  const auto t0 = std::chrono::steady_clock::now();
  l.start_polling(2.0, [&](poll_result r) {
    std::lock_guard lk(mu);
    polls.emplace_back(std::chrono::steady_clock::now(), all_ok(r));
  });
  REQUIRE(test::wait_until([&] { return count() == 1; }, 2s));
  // 1) The device restarts between two polls: the next poll finds a dead connection, reconnects
  // at once and reads; nothing is lost.
  srv.proc.kill_hard();
  std::this_thread::sleep_for(300ms);
  srv.start();
  REQUIRE(test::wait_until([&] { return count() == 2; }, 3s));
  {
    std::lock_guard lk(mu);
    CHECK(polls[1].second);
    CHECK(polls[1].first - t0 < 2500ms);
  }
  // 2) Down across a poll: that poll fails, the link reconnects in the background within 1 s
  // of the device's return, long before the next poll is due.
  srv.proc.kill_hard();
  REQUIRE(test::wait_until([&] { return count() == 3; }, 3s));
  {
    std::lock_guard lk(mu);
    CHECK_FALSE(polls[2].second);
  }
  std::this_thread::sleep_for(200ms);
  srv.start();
  const auto back_at = std::chrono::steady_clock::now();
  REQUIRE(test::wait_until([&] { return l.stats().connected; }, 3s));
  auto took = std::chrono::steady_clock::now() - back_at;
  MESSAGE("link back " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                       << " ms after the device returned");
  CHECK(took <= 1000ms + 500ms);  // backoff capped at 1 s (uncapped: 2 s), plus slack
  REQUIRE(test::wait_until([&] { return count() == 4; }, 3s));
  {
    std::lock_guard lk(mu);
    CHECK(polls[3].second);
  }
  l.stop_polling();
}

namespace {
// A raw Modbus TCP peer for the faults pymodbus cannot produce: it answers FC03 with `value` in
// every register after `delay`, or never when `hang` is set. One connection at a time.
class raw_peer {
 public:
  raw_peer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(fd_, 4);
    thread_ = std::thread([this] { serve(); });
  }
  ~raw_peer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  int port() const { return port_; }
  std::atomic<int> delay_ms{0};
  std::atomic<bool> hang{false};
  std::atomic<bool> dup{false};  // every reply sent twice (a gateway that repeats frames)
  std::atomic<std::uint16_t> value{0};
  std::atomic<int> connections{0};

 private:
  void serve() {
    while (!stop_) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      ++connections;
      int one = 1;
      ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      timeval tv{0, 100000};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      std::uint8_t req[12];
      std::size_t have = 0;
      while (!stop_) {
        auto n = ::recv(c, req + have, sizeof req - have, 0);
        if (n == 0) break;
        if (n < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK) continue;
          break;
        }
        have += static_cast<std::size_t>(n);
        if (have < sizeof req) continue;
        have = 0;
        if (hang) continue;
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));
        unsigned count = static_cast<unsigned>(req[10] << 8 | req[11]);
        std::vector<std::uint8_t> rsp = {req[0], req[1], 0, 0, 0,
                                         static_cast<std::uint8_t>(3 + 2 * count), req[6], 3,
                                         static_cast<std::uint8_t>(2 * count)};
        for (unsigned i = 0; i < count; ++i) {
          rsp.push_back(static_cast<std::uint8_t>(value >> 8));
          rsp.push_back(static_cast<std::uint8_t>(value & 0xff));
        }
        if (::send(c, rsp.data(), rsp.size(), MSG_NOSIGNAL) < 0) break;
        if (dup && ::send(c, rsp.data(), rsp.size(), MSG_NOSIGNAL) < 0) break;
      }
      ::close(c);
    }
  }
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::shared_ptr<const device_map> one_register_map() {
  auto m = parse_map("[device]\ntimeout = 0.15\n[[point]]\nname = \"r\"\nregister = 40001\ntype = \"u16\"\n",
                     "one.toml");
  REQUIRE(m.has_value());
  return std::make_shared<const device_map>(*m);
}
}  // namespace

TEST_CASE("a late reply is never taken for the next request's answer") {
  raw_peer peer;
  asio::io_context io;
  auto map = one_register_map();  // timeout 150 ms
  session l(asio::make_strand(io), res_of("modbus-tcp://127.0.0.1:" + std::to_string(peer.port())),
         map, {.timeout_s = 0.15});
  peer.value = 1111;
  peer.delay_ms = 300;  // answers after the timeout
  auto first = poll(io, l);
  REQUIRE(first.values.size() == 1);
  REQUIRE_FALSE(first.values[0].v.has_value());
  CHECK(first.values[0].v.error().code == make_error_code(errc::timeout));
  CHECK_FALSE(l.stats().connected);
  peer.value = 2222;
  peer.delay_ms = 0;
  std::this_thread::sleep_for(250ms);  // the late 1111 reply has been sent by now
  auto second = poll(io, l);
  REQUIRE(second.values.size() == 1);
  if (!second.values[0].v) FAIL(second.values[0].v.error().message);
  CHECK(*second.values[0].v == value{std::int64_t{2222}});
  CHECK(peer.connections == 2);
  CHECK(l.stats().timeouts == 1);
}

TEST_CASE("a stale frame (transaction id of an earlier request) is discarded, never the answer") {
  raw_peer peer;
  asio::io_context io;
  auto map = one_register_map();
  session l(asio::make_strand(io), res_of("modbus-tcp://127.0.0.1:" + std::to_string(peer.port())),
            map, {.timeout_s = 0.15});
  peer.dup = true;  // the copy of reply 1 waits in the socket when request 2 goes out
  peer.value = 1111;
  auto a = poll(io, l);
  REQUIRE(a.values[0].v.has_value());
  CHECK(*a.values[0].v == value{std::int64_t{1111}});
  std::this_thread::sleep_for(50ms);
  peer.dup = false;
  peer.value = 2222;
  auto b = poll(io, l);  // reads the stale 1111 copy first: wrong transaction id
  if (!b.values[0].v) FAIL(b.values[0].v.error().message);
  CHECK(*b.values[0].v == value{std::int64_t{2222}});  // asked again on a fresh connection
  CHECK(b.requests == 2);
  CHECK(peer.connections == 2);
  CHECK(l.stats().io_errors == 1);
  CHECK(l.stats().last_error.find("reply does not match the request") != std::string::npos);
}

TEST_CASE("a hanging device times out per poll and the link recovers when it answers again") {
  raw_peer peer;
  asio::io_context io;
  auto map = one_register_map();
  session l(asio::make_strand(io), res_of("modbus-tcp://127.0.0.1:" + std::to_string(peer.port())),
         map, {.timeout_s = 0.15});
  peer.hang = true;
  for (int i = 0; i < 3; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = poll(io, l);
    CHECK(std::chrono::steady_clock::now() - t0 < 1s);
    REQUIRE_FALSE(r.values[0].v.has_value());
    CHECK(r.values[0].v.error().code == make_error_code(errc::timeout));
  }
  peer.hang = false;
  peer.value = 7;
  auto r = poll(io, l);
  REQUIRE(r.values[0].v.has_value());
  CHECK(*r.values[0].v == value{std::int64_t{7}});
}

TEST_CASE("connect failures back off, capped by the interval, and name the resource") {
  int port = test::free_port();  // nothing listens
  asio::io_context io;
  auto map = one_register_map();  // interval 1 s -> backoff cap 1 s
  session l(asio::make_strand(io), res_of("modbus-tcp://127.0.0.1:" + std::to_string(port)), map);
  auto a = poll(io, l);
  REQUIRE_FALSE(a.values[0].v.has_value());
  CHECK(a.values[0].v.error().code == make_error_code(errc::link_down));
  CHECK(a.values[0].v.error().message.find("127.0.0.1:" + std::to_string(port)) != std::string::npos);
  auto b = poll(io, l);  // within the 50 ms backoff: no new attempt
  REQUIRE_FALSE(b.values[0].v.has_value());
  CHECK(b.values[0].v.error().message.find("next attempt in") != std::string::npos);
  CHECK(l.stats().connect_failures == 1);
}

TEST_CASE("scan finds the unit ids that answer") {
  server srv;
  auto hits = scan_units(res_of(srv.uri()), 1, 8, 0.1);
  if (!hits) FAIL(hits.error().message);
  REQUIRE(hits->size() == 2);
  CHECK((*hits)[0].unit == 1);
  CHECK((*hits)[1].unit == 7);
  CHECK_FALSE(scan_units(res_of(srv.uri()), 0, 300, 0.1).has_value());
}

TEST_CASE("RTU over a socat pty pair against a pymodbus RTU server") {
  test::temp_dir dir;
  auto a = (dir.path() / "a").string(), b = (dir.path() / "b").string();
  test::child socat({"/usr/bin/socat", "pty,raw,echo=0,link=" + a, "pty,raw,echo=0,link=" + b});
  REQUIRE(test::wait_until([&] { return std::filesystem::exists(a) && std::filesystem::exists(b); }, 5s));
  test::child py({SEMILAB_PYTHON, kServer, "--serial", b}, dir.path() / "rtu.log");
  asio::io_context io;
  auto map = golden();
  session l(asio::make_strand(io), res_of("modbus-rtu://" + a + "?baud=19200&parity=N&unit=1"), map,
         {.name = "rtu", .timeout_s = 0.5});
  // The server needs a moment to open its end; poll until it answers.
  poll_result r;
  bool ok = test::wait_until([&] {
    r = poll(io, l);
    return all_ok(r);
  }, 10s);
  if (!ok)
    for (const auto& v : r.values)
      if (!v.v) FAIL(v.v.error().message);
  CHECK(*get(r, *map, "f_cdab") == value{123456.0});
  CHECK(*get(r, *map, "u64") == value{std::uint64_t{(1ULL << 53) + 1}});
  auto w = write(io, l, "sp", value{std::int64_t{42}});
  if (!w) FAIL(w.error().message);
  CHECK(*w == value{std::int64_t{42}});
}

TEST_CASE("RTU RS-485 options: RTS driven around requests; a pty refuses RS-485 mode, clearly") {
  test::temp_dir dir;
  auto a = (dir.path() / "a").string(), b = (dir.path() / "b").string();
  test::child socat({"/usr/bin/socat", "pty,raw,echo=0,link=" + a, "pty,raw,echo=0,link=" + b});
  REQUIRE(test::wait_until([&] { return std::filesystem::exists(a) && std::filesystem::exists(b); }, 5s));
  test::child py({SEMILAB_PYTHON, kServer, "--serial", b}, dir.path() / "rtu.log");
  asio::io_context io;
  auto map = golden();
  {
    // rts=up: libmodbus raises RTS, waits rts_delay, sends, drains, waits, lowers RTS. A pty has
    // no modem lines (the ioctls fail, libmodbus ignores that): the requests still go through.
    session l(asio::make_strand(io),
              res_of("modbus-rtu://" + a + "?baud=19200&parity=N&unit=1&rts=up&rts_delay=200"), map,
              {.name = "rtu-rts", .timeout_s = 0.5});
    poll_result r;
    bool ok = test::wait_until([&] {
      r = poll(io, l);
      return all_ok(r);
    }, 10s);
    if (!ok)
      for (const auto& v : r.values)
        if (!v.v) FAIL(v.v.error().message);
    CHECK(*get(r, *map, "f_dcba") == value{123456.0});
  }
  {
    session l(asio::make_strand(io), res_of("modbus-rtu://" + a + "?baud=19200&parity=N&unit=1&rs485=1"),
              map, {.name = "rtu-485", .timeout_s = 0.5});
    auto r = poll(io, l);
    REQUIRE_FALSE(r.values.empty());
    const auto& e = r.values.front().v;
    REQUIRE_FALSE(e.has_value());
    MESSAGE(e.error().message);
    CHECK(e.error().code == semilab::drivers::errc::not_supported);
    CHECK(e.error().message.find(a) != std::string::npos);  // the device
    CHECK(e.error().message.find("rs485=1") != std::string::npos);  // the option
    CHECK(e.error().message.find("TIOCSRS485") != std::string::npos);
    CHECK(r.requests == 0);
    CHECK_FALSE(l.stats().connected);
    CHECK(l.stats().connect_failures == 1);
  }
}
