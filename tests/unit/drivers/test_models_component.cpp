// Every model's driver profile against its simulator over TCP (poller + session on a strand),
// and the instrument layer's guarantees under injected faults: hang, late replies, power cycle,
// error-queue entries and overflow, binary blocks, concurrency through the strand, deadlines,
// connect backoff, prompt shutdown, a dead instrument next to a live one.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <future>
#include <semilab/drivers/instrument_poller.hpp>
#include <semilab/drivers/scpi_reply.hpp>
#include <semilab/drivers/scpi_session.hpp>
#include <semilab/sim/e4980a.hpp>
#include <semilab/sim/keithley2450.hpp>
#include <semilab/sim/server.hpp>
#include <thread>

namespace asio = boost::asio;
using namespace semilab::drivers;
using boost::system::error_code;
using namespace std::chrono_literals;

namespace {

struct sim_fixture {
  asio::io_context sim_io;
  std::unique_ptr<semilab::sim::sim_server> server;
  std::thread thread;

  explicit sim_fixture(std::string_view model = "keithley2450",
                       semilab::sim::fault_config faults = {}) {
    server = std::make_unique<semilab::sim::sim_server>(
        sim_io, semilab::sim::make_sim_instrument(model, 1),
        asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0), std::move(faults));
    server->start();
    thread = std::thread([this] { sim_io.run(); });
  }
  ~sim_fixture() {
    server->stop();
    thread.join();
  }
  tcp_socket_resource resource() const { return {0, "127.0.0.1", server->local_endpoint().port()}; }
};

template <class Pred>
void drive_until(asio::io_context& io, Pred pred, std::chrono::milliseconds limit = 10s) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!pred() && std::chrono::steady_clock::now() < until) {
    if (io.stopped()) io.restart();
    io.run_one_for(20ms);
  }
  REQUIRE_MESSAGE(pred(), "operation did not complete within its bound");
}

scpi_session::options fast_options() {
  scpi_session::options o;
  o.connect_timeout = 1000ms;
  o.io_timeout = 1000ms;
  return o;
}

struct client {
  asio::io_context io;
  asio::strand<asio::io_context::executor_type> strand = asio::make_strand(io);
  scpi_session session;

  client(const tcp_socket_resource& res, scpi_session::options opt = fast_options())
      : session(strand, res, opt) {}

  std::pair<error_code, std::string> query(std::string cmd, std::chrono::milliseconds t = 0ms) {
    bool done = false;
    std::pair<error_code, std::string> out;
    session.async_query(
        std::move(cmd),
        [&](error_code ec, std::string reply) {
          out = {ec, std::move(reply)};
          done = true;
        },
        t);
    drive_until(io, [&] { return done; });
    return out;
  }
  error_code write(std::string cmd) {
    bool done = false;
    error_code out;
    session.async_write(std::move(cmd), [&](error_code ec) {
      out = ec;
      done = true;
    });
    drive_until(io, [&] { return done; });
    return out;
  }
  void sleep(std::chrono::milliseconds d) {
    asio::steady_timer t(io, d);
    bool done = false;
    t.async_wait([&](error_code) { done = true; });
    drive_until(io, [&] { return done; });
  }
  std::pair<error_code, std::vector<reading>> poll(instrument_poller& p) {
    bool done = false;
    std::pair<error_code, std::vector<reading>> out;
    p.async_poll([&](error_code ec, std::vector<reading> r) {
      out = {ec, std::move(r)};
      done = true;
    });
    drive_until(io, [&] { return done; });
    return out;
  }
};

}  // namespace

TEST_CASE("every model: init and polls against its simulator over TCP") {
  for (const auto& m : models()) {
    CAPTURE(m.name);
    sim_fixture sim(m.name);
    client c(sim.resource());
    auto settings = resolve_settings(m, {});
    REQUIRE(settings.has_value());
    instrument_poller poller(c.session, m, *settings);
    for (int i = 0; i < 3; ++i) {
      auto [ec, readings] = c.poll(poller);
      REQUIRE_MESSAGE(!ec, poller.last_error());
      CHECK(!readings.empty());
      for (const auto& r : readings)
        CHECK((r.quality & semilab::schemas::quality::over_range) == 0);
    }
    CHECK(poller.inits() == 1);
    CHECK(poller.power_cycles() == 0);
    CHECK(c.session.stats().connects == 1);
  }
}

TEST_CASE("model transcripts: what each profile's readings say about its device") {
  SUBCASE("keithley2400: diode current, then compliance with a tight limit") {
    sim_fixture sim("keithley2400");
    client c(sim.resource());
    const auto& m = *find_model("keithley2400");
    instrument_poller p(c.session, m, *resolve_settings(m, {{"bias", "0.6"}, {"ilim", "0.1"}}));
    auto [ec, r] = c.poll(p);
    REQUIRE_MESSAGE(!ec, p.last_error());
    REQUIRE(r.size() == 2);
    CHECK(r[1].value.to_double() ==
          doctest::Approx(semilab::sim::keithley2450::diode_current(0.6)).epsilon(1e-3));
    CHECK(r[1].quality == 0);
    CHECK(c.query(":OUTP?").second == "1");
    instrument_poller tight(c.session, m, *resolve_settings(m, {{"bias", "2"}, {"ilim", "1e-5"}}));
    tight.force_init();
    auto [ec2, r2] = c.poll(tight);
    REQUIRE_MESSAGE(!ec2, tight.last_error());
    CHECK((r2[1].quality & semilab::schemas::quality::compliance) != 0);
    CHECK(r2[1].value.to_double() == doctest::Approx(1e-5).epsilon(1e-3));
  }
  SUBCASE("e4980a: C-V through the bias setting, overload at 20 Hz") {
    sim_fixture sim("e4980a");
    client c(sim.resource());
    const auto& m = *find_model("e4980a");
    instrument_poller acc(c.session, m, *resolve_settings(m, {{"bias", "-3"}}));
    auto [ec, r] = c.poll(acc);
    REQUIRE_MESSAGE(!ec, acc.last_error());
    REQUIRE(r.size() == 2);
    CHECK(r[0].value.to_double() ==
          doctest::Approx(semilab::sim::e4980a::capacitance(-3)).epsilon(1e-3));
    instrument_poller inv(c.session, m, *resolve_settings(m, {{"bias", "3"}}));
    auto [ec2, r2] = c.poll(inv);
    REQUIRE_MESSAGE(!ec2, inv.last_error());
    CHECK(r2[0].value.to_double() < 0.3 * r[0].value.to_double());
    instrument_poller low(c.session, m, *resolve_settings(m, {{"bias", "3"}, {"freq", "20"}}));
    auto [ec3, r3] = c.poll(low);
    REQUIRE_MESSAGE(!ec3, low.last_error());
    CHECK(r3[0].quality == semilab::schemas::quality::over_range);
  }
  SUBCASE("34461a: divider midpoint, over-range on the 1 V range") {
    sim_fixture sim("34461a");
    client c(sim.resource());
    const auto& m = *find_model("34461a");
    instrument_poller p(c.session, m, *resolve_settings(m, {}));
    auto [ec, r] = c.poll(p);
    REQUIRE_MESSAGE(!ec, p.last_error());
    CHECK(r[0].value.to_double() == doctest::Approx(2.5).epsilon(5e-3));
    instrument_poller small(c.session, m, *resolve_settings(m, {{"range", "1"}}));
    auto [ec2, r2] = c.poll(small);
    REQUIRE_MESSAGE(!ec2, small.last_error());
    CHECK(r2[0].quality == semilab::schemas::quality::over_range);
  }
}

TEST_CASE("power cycle: the poller reconnects, sees PON, re-applies its configuration") {
  sim_fixture sim("keithley2450");
  client c(sim.resource());
  const auto& m = *find_model("keithley2450");
  instrument_poller p(c.session, m, *resolve_settings(m, {}));
  REQUIRE(!c.poll(p).first);
  CHECK(c.query(":OUTP?").second == "1");
  sim.server->power_cycle();
  drive_until(c.io, [&] { return sim.server->power_cycles() == 1; });
  c.sleep(50ms);  // the FIN arrives; the next operation reconnects
  auto [ec, r] = c.poll(p);
  REQUIRE_MESSAGE(!ec, p.last_error());
  CHECK(p.power_cycles() == 1);
  CHECK(p.inits() == 2);
  CHECK(c.query(":OUTP?").second == "1");  // output back on: configuration re-applied
  // A power cycle after the Nth reply (fault grammar) behaves the same.
  semilab::sim::fault_config f;
  REQUIRE(semilab::sim::apply_fault_spec("power-cycle-after=1", f).empty());
  sim.server->set_faults(f);
  CHECK(c.query("*OPC?").second == "1");
  drive_until(c.io, [&] { return sim.server->power_cycles() == 2; });
  sim.server->set_faults({});
  c.sleep(50ms);
  REQUIRE_MESSAGE(!c.poll(p).first, p.last_error());
  CHECK(p.power_cycles() == 2);
}

TEST_CASE("error queue: injected entries drained (<= 32 reads), overflow ends in -350") {
  sim_fixture sim("e4980a");
  client c(sim.resource());
  semilab::sim::fault_config f;
  REQUIRE(semilab::sim::apply_fault_spec("error=-222", f).empty());
  REQUIRE(semilab::sim::apply_fault_spec("error=-113*12", f).empty());
  sim.server->set_faults(f);
  bool done = false;
  error_code got;
  std::vector<scpi_error_entry> entries;
  c.sleep(20ms);  // the injection is posted to the simulator's thread
  async_drain_errors(c.session, [&](error_code ec, std::vector<scpi_error_entry> e) {
    got = ec;
    entries = std::move(e);
    done = true;
  });
  drive_until(c.io, [&] { return done; });
  CHECK(!got);
  REQUIRE(entries.size() == semilab::sim::scpi_instrument::kErrorQueueCapacity);
  CHECK(entries.front().code == -222);
  CHECK(entries[1].code == -113);
  CHECK(entries.back().code == -350);
  // Keysight's "+0" ended the drain; a second drain finds nothing.
  done = false;
  async_drain_errors(c.session, [&](error_code ec, std::vector<scpi_error_entry> e) {
    got = ec;
    entries = std::move(e);
    done = true;
  });
  drive_until(c.io, [&] { return done; });
  CHECK(!got);
  CHECK(entries.empty());
  // A queue that never empties within max_reads is an instrument_error, entries kept.
  sim.server->set_faults(f);
  c.sleep(20ms);
  done = false;
  async_drain_errors(
      c.session,
      [&](error_code ec, std::vector<scpi_error_entry> e) {
        got = ec;
        entries = std::move(e);
        done = true;
      },
      3);
  drive_until(c.io, [&] { return done; });
  CHECK(got == errc::instrument_error);
  CHECK(entries.size() == 3);
}

TEST_CASE("binary blocks with LF, CR and NUL come back whole through the session") {
  sim_fixture sim;
  client c(sim.resource());
  for (std::size_t n : {0u, 1u, 10u, 11u, 13u, 256u, 100000u}) {
    CAPTURE(n);
    auto [ec, reply] = c.query(":SYST:BLOC? " + std::to_string(n));
    REQUIRE_MESSAGE(!ec, ec.message());
    auto data = parse_block(reply);
    REQUIRE(data.has_value());
    REQUIRE(data->size() == n);
    bool pattern = true;
    for (std::size_t i = 0; i < n; ++i)
      pattern = pattern && data->at(i) == static_cast<char>(i & 0xFF);
    CHECK(pattern);
  }
  CHECK(c.session.stats().connects == 1);
  CHECK(c.session.stats().resyncs == 0);
  // A declared length over the reply limit fails fast and resynchronises.
  auto opt = fast_options();
  opt.max_reply_bytes = 1000;
  client small(sim.resource(), opt);
  CHECK(small.query(":SYST:BLOC? 5000").first == errc::reply_too_long);
  CHECK(small.query(":SYST:NONC? after").second == "after");
}

TEST_CASE("hang: the query times out within its deadline; the session recovers") {
  semilab::sim::fault_config f;
  f.hang = true;
  sim_fixture sim("34461a", f);
  client c(sim.resource());
  auto t0 = std::chrono::steady_clock::now();
  auto [ec, reply] = c.query("*IDN?", 150ms);
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(ec == errc::timeout);
  CHECK(took >= 150ms);
  CHECK(took < 1000ms);
  sim.server->set_faults({});
  CHECK(c.query(":SYST:NONC? alive").second == "alive");
}

TEST_CASE("a late reply never reaches a later query (100 of 100), worst deadline overrun") {
  sim_fixture sim("keithley2450");
  client c(sim.resource());
  semilab::sim::fault_config f;
  // Every 2nd reply 150 ms late: far enough past the 15 ms deadline that a timer delayed by a
  // loaded machine still fires before the late reply arrives.
  REQUIRE(semilab::sim::apply_fault_spec("late=150/2", f).empty());
  sim.server->set_faults(f);
  int own = 0;
  std::chrono::nanoseconds worst{0};
  for (int run = 0; run < 100; ++run) {
    // Reply 2k+1 is on time, reply 2k+2 comes after the 15 ms deadline.
    auto [ec1, r1] = c.query(":SYST:NONC? a" + std::to_string(run), 2000ms);
    REQUIRE_MESSAGE(!ec1, ec1.message());
    CHECK(r1 == "a" + std::to_string(run));
    auto t0 = std::chrono::steady_clock::now();
    auto [ec2, r2] = c.query(":SYST:NONC? late" + std::to_string(run), 15ms);
    worst = std::max(worst, std::chrono::steady_clock::now() - t0 - 15ms);
    CHECK(ec2 == errc::timeout);
    CHECK(r2.empty());
    // The next query gets its own reply, not the late one.
    own += r1 == "a" + std::to_string(run) ? 1 : 0;
  }
  CHECK(own == 100);
  auto worst_ms = std::chrono::duration<double, std::milli>(worst).count();
  MESSAGE("worst deadline overrun: " << worst_ms << " ms over 100 timed-out queries");
  CHECK(worst_ms < 1000.0);  // the deadline holds (slack: ASan on 2 busy cores)
  CHECK(c.session.stats().timeouts == 100);
}

TEST_CASE("16 threads x 1000 nonce queries through one session's strand: no crossed reply") {
  sim_fixture sim("keithley2450");
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  auto strand = asio::make_strand(io);
  auto opt = fast_options();
  opt.io_timeout = 5000ms;
  scpi_session session(strand, sim.resource(), opt);
  std::vector<std::thread> runners;
  for (int i = 0; i < 2; ++i) runners.emplace_back([&] { io.run(); });

  constexpr int kThreads = 16;
  constexpr int kQueries = 1000;
  std::atomic<int> crossed{0}, failed{0}, ok{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < kThreads; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < kQueries; ++i) {
        std::string token = "t" + std::to_string(t) + "n" + std::to_string(i);
        std::promise<std::pair<error_code, std::string>> done;
        auto fut = done.get_future();
        asio::post(strand, [&, token] {
          session.async_query(":SYST:NONC? " + token, [&](error_code ec, std::string r) {
            done.set_value({ec, std::move(r)});
          });
        });
        auto [ec, reply] = fut.get();
        if (ec)
          ++failed;
        else if (reply != token)
          ++crossed;
        else
          ++ok;
      }
    });
  }
  for (auto& th : clients) th.join();
  std::promise<void> closed;
  asio::post(strand, [&] {
    session.close();
    closed.set_value();
  });
  closed.get_future().get();
  work.reset();
  for (auto& th : runners) th.join();
  CHECK(crossed.load() == 0);
  CHECK(failed.load() == 0);
  CHECK(ok.load() == kThreads * kQueries);
}

TEST_CASE("connect backoff: a dead instrument costs no time after the first failure") {
  std::uint16_t dead_port = 0;
  {
    asio::io_context tmp;
    asio::ip::tcp::acceptor a(tmp, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    dead_port = a.local_endpoint().port();
  }
  client c({0, "127.0.0.1", dead_port});
  CHECK(c.query("*IDN?").first == asio::error::connection_refused);
  CHECK(c.session.backoff_remaining() > 0ms);
  CHECK(c.session.backoff_remaining() <= 100ms);
  auto [ec, r] = c.query("*IDN?");
  CHECK(ec == errc::backing_off);
  CHECK(c.session.stats().backoff_rejects == 1);
  CHECK(c.session.stats().connect_failures == 1);
  c.sleep(c.session.backoff_remaining() + 5ms);
  CHECK(c.query("*IDN?").first == asio::error::connection_refused);  // tried again
  CHECK(c.session.stats().connect_failures == 2);
  auto ring = c.session.recent();
  REQUIRE(ring.size() == 3);
  CHECK(ring[1].outcome == errc::backing_off);
  CHECK(ring[0].command == "*IDN?");
  CHECK(ring[0].bytes_out == 6);
}

TEST_CASE("transaction ring: last N operations with bytes, duration and outcome") {
  sim_fixture sim;
  auto opt = fast_options();
  opt.history = 4;
  client c(sim.resource(), opt);
  for (int i = 0; i < 6; ++i)
    CHECK(c.query(":SYST:NONC? n" + std::to_string(i)).second == "n" + std::to_string(i));
  CHECK(!c.write(":SOUR:VOLT 1"));
  auto ring = c.session.recent();
  REQUIRE(ring.size() == 4);
  CHECK(ring[0].command == ":SYST:NONC? n3");
  CHECK(ring[2].command == ":SYST:NONC? n5");
  CHECK(ring[2].bytes_in == 3);  // "n5\n"
  CHECK(ring[3].command == ":SOUR:VOLT 1");
  CHECK(ring[3].bytes_in == 0);
  CHECK(!ring[3].outcome);
  CHECK(ring[3].time >= ring[0].time);
  CHECK(ring[2].duration.count() > 0);
}

TEST_CASE("a dead instrument never stalls a live one on the same io_context") {
  semilab::sim::fault_config f;
  f.hang = true;
  sim_fixture dead("keithley2450", f);
  sim_fixture live("34461a");
  asio::io_context io;
  scpi_session hung(asio::make_strand(io), dead.resource(), fast_options());
  scpi_session ok(asio::make_strand(io), live.resource(), fast_options());
  bool hung_done = false;
  error_code hung_ec;
  hung.async_query(
      "*IDN?",
      [&](error_code ec, std::string) {
        hung_ec = ec;
        hung_done = true;
      },
      2000ms);
  int live_done = 0;
  std::function<void()> next = [&] {
    ok.async_query(":SYST:NONC? x", [&](error_code ec, std::string r) {
      CHECK(!ec);
      CHECK(r == "x");
      if (++live_done < 50) next();
    });
  };
  next();
  auto t0 = std::chrono::steady_clock::now();
  drive_until(io, [&] { return live_done == 50; });
  CHECK(!hung_done);  // the hung query is still waiting for its 2 s deadline
  CHECK(std::chrono::steady_clock::now() - t0 < 1500ms);
  hung.close();
  drive_until(io, [&] { return hung_done; });
  CHECK(hung_ec == asio::error::operation_aborted);
}

TEST_CASE("shutdown with an unreachable instrument is prompt") {
  // An instrument that does not complete the TCP handshake: a listener whose accept queue is
  // full (backlog 0, never accepting) drops further SYNs, so connect() hangs.
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(lfd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(lfd, 0) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  std::uint16_t port = ntohs(addr.sin_port);
  std::vector<int> fillers;
  for (int i = 0; i < 4; ++i) {  // fill the accept queue (non-blocking connects)
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    (void)::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    fillers.push_back(fd);
  }
  std::this_thread::sleep_for(50ms);

  asio::io_context io;
  auto opt = fast_options();
  opt.connect_timeout = 30000ms;
  std::optional<scpi_session> s;
  s.emplace(asio::make_strand(io), tcp_socket_resource{0, "127.0.0.1", port}, opt);
  bool done = false;
  error_code got;
  s->async_query("*IDN?", [&](error_code ec, std::string) {
    got = ec;
    done = true;
  });
  io.run_for(200ms);
  bool was_pending = !done;
  auto t0 = std::chrono::steady_clock::now();
  s.reset();  // shutdown: destroy the session with the connect in flight
  io.restart();
  io.run_for(2s);  // returns as soon as nothing is left
  auto took = std::chrono::steady_clock::now() - t0;
  for (int fd : fillers) ::close(fd);
  ::close(lfd);
  CHECK(done);
  CHECK(got == asio::error::operation_aborted);
  CHECK(took < 500ms);
  MESSAGE("connect still pending before shutdown: "
          << was_pending << ", shutdown took "
          << std::chrono::duration<double, std::milli>(took).count() << " ms");
}
