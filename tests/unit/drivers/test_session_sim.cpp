// scpi_session and instrument_poller against the simulator server, in-process, on 127.0.0.1.
// The simulator runs on its own io_context thread (as a separate process would); the client side
// runs on the test thread's io_context through a strand, as in the agent.
#include <semilab/drivers/instrument_poller.hpp>
#include <semilab/drivers/scpi_session.hpp>
#include <semilab/sim/keithley2450.hpp>
#include <semilab/sim/server.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <doctest/doctest.h>

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

  explicit sim_fixture(semilab::sim::fault_config faults = {}) {
    server = std::make_unique<semilab::sim::sim_server>(
        sim_io, semilab::sim::make_sim_instrument("keithley2450", 1),
        asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0), faults);
    server->start();
    thread = std::thread([this] { sim_io.run(); });
  }
  ~sim_fixture() {
    server->stop();
    thread.join();
  }
  tcp_socket_resource resource() const {
    return {0, "127.0.0.1", server->local_endpoint().port()};
  }
};

// Runs the client io_context until `pred()` (bounded, so a bug fails instead of hanging).
template <class Pred>
void drive_until(asio::io_context& io, Pred pred, std::chrono::milliseconds limit = 5s) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!pred() && std::chrono::steady_clock::now() < until) {
    if (io.stopped()) io.restart();
    io.run_one_for(20ms);
  }
  REQUIRE_MESSAGE(pred(), "operation did not complete within its bound");
}
void drive(asio::io_context& io, const bool& done) {
  drive_until(io, [&] { return done; });
}

struct client {
  asio::io_context io;
  asio::strand<asio::io_context::executor_type> strand = asio::make_strand(io);
  scpi_session session;

  client(const tcp_socket_resource& res, scpi_session::options opt) : session(strand, res, opt) {}

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
    drive(io, done);
    return out;
  }
  error_code write(std::string cmd) {
    bool done = false;
    error_code out;
    session.async_write(std::move(cmd), [&](error_code ec) {
      out = ec;
      done = true;
    });
    drive(io, done);
    return out;
  }
  void sleep(std::chrono::milliseconds d) {
    asio::steady_timer t(io, d);
    bool done = false;
    t.async_wait([&](error_code) { done = true; });
    drive(io, done);
  }
};

scpi_session::options fast_options() {
  scpi_session::options o;
  o.connect_timeout = 1000ms;
  o.io_timeout = 1000ms;
  return o;
}

constexpr std::string_view kIdn = semilab::sim::keithley2450::kIdn;

}  // namespace

TEST_CASE("session: query, write, lazy connect, queued operations keep their replies") {
  sim_fixture sim;
  client c(sim.resource(), fast_options());
  CHECK(!c.session.is_open());
  auto [ec, idn] = c.query("*IDN?");
  REQUIRE_MESSAGE(!ec, ec.message());
  CHECK(idn == kIdn);
  CHECK(c.session.is_open());
  CHECK(!c.write(":SOUR:VOLT 0.25"));
  CHECK(c.query(":SOUR:VOLT?").second == "2.500000E-01");

  // 40 operations queued at once: one in flight at a time, each handler gets its own reply.
  constexpr int kOps = 40;
  std::vector<std::string> replies(kOps);
  int completed = 0;
  for (int i = 0; i < kOps; ++i) {
    c.session.async_query(":SOUR:VOLT " + std::to_string(i) + ";:SOUR:VOLT?",
                          [&, i](error_code e, std::string r) {
                            CHECK(!e);
                            replies[static_cast<std::size_t>(i)] = std::move(r);
                            ++completed;
                          });
  }
  drive_until(c.io, [&] { return completed == kOps; });
  for (int i = 0; i < kOps; ++i) {
    char expect[32];
    std::snprintf(expect, sizeof expect, "%.6E", static_cast<double>(i));
    CHECK(replies[static_cast<std::size_t>(i)] == expect);
  }
  CHECK(c.session.stats().connects == 1);
  CHECK(c.session.stats().timeouts == 0);
}

TEST_CASE("session: a timed-out query closes the connection; the next query gets its own reply") {
  sim_fixture sim;
  auto opt = fast_options();
  opt.io_timeout = 100ms;
  client c(sim.resource(), opt);
  REQUIRE(c.query("*IDN?").second == kIdn);
  // Every reply is now 250 ms late. Were the socket kept, the late *IDN? reply would arrive
  // (at ~250 ms) before the reply to *OPC? (~500 ms) and be handed to it.
  sim.server->set_faults({250ms, 0, 0});
  auto [ec, reply] = c.query("*IDN?");
  CHECK(ec == errc::timeout);
  CHECK(reply.empty());
  CHECK(!c.session.is_open());
  CHECK(c.session.stats().timeouts == 1);
  auto [ec2, reply2] = c.query("*OPC?", 2000ms);
  REQUIRE_MESSAGE(!ec2, ec2.message());
  CHECK(reply2 == "1");
  CHECK(c.session.stats().connects == 2);
  sim.server->set_faults({});
  CHECK(c.query(":SOUR:VOLT?").second == "0.000000E+00");
}

TEST_CASE("session: reconnects after the instrument dropped the connection") {
  sim_fixture sim({0ms, 2, 0});  // close each connection after 2 replies
  client c(sim.resource(), fast_options());
  CHECK(c.query("*IDN?").second == kIdn);
  CHECK(c.query("*OPC?").second == "1");
  c.sleep(100ms);  // let the FIN arrive: the idle check then reconnects before sending
  auto [ec, reply] = c.query("*IDN?");
  REQUIRE_MESSAGE(!ec, ec.message());
  CHECK(reply == kIdn);
  CHECK(c.session.stats().connects == 2);
  CHECK(sim.server->connections_accepted() == 2);
}

// The raw TCP link sends the next command without first trying a receive (tcp_transport.cpp),
// and skips the idle peek right after a clean reply: a connection the instrument closed right
// after its reply must still fail the next query at once (the closed peer resets the command),
// not at its deadline, and the query after that reconnects.
TEST_CASE("session: a query right after the instrument closed the link fails at once") {
  sim_fixture sim({0ms, 1, 0});  // close each connection after 1 reply
  auto opt = fast_options();
  opt.io_timeout = 4000ms;  // a missed close would show as a timeout (drive_until allows 5 s)
  client c(sim.resource(), opt);
  bool done = false;
  std::string first;
  error_code second_ec;
  c.session.async_query("*IDN?", [&](error_code ec, std::string reply) {
    CHECK_MESSAGE(!ec, ec.message());
    first = std::move(reply);
    // Issued from the reply's handler: the fast path (no receive, no peek) whenever the close
    // came with or right after the reply.
    c.session.async_query("*OPC?", [&](error_code ec2, std::string) {
      second_ec = ec2;
      done = true;
    });
  });
  drive(c.io, done);
  CHECK(first == kIdn);
  MESSAGE("query after the close: " << (second_ec ? second_ec.message() : "answered"));
  // Either the close was seen before the command went out (then it reconnected and answered)
  // or the command failed on the closed connection: never by the deadline.
  CHECK(second_ec != errc::timeout);
  CHECK(c.session.stats().timeouts == 0);
  auto [ec3, reply3] = c.query("*IDN?");
  REQUIRE_MESSAGE(!ec3, ec3.message());
  CHECK(reply3 == kIdn);
}

TEST_CASE("session: cancel() and destruction abort pending operations") {
  sim_fixture sim({200ms, 0, 0});
  client c(sim.resource(), fast_options());
  std::vector<error_code> results;
  for (int i = 0; i < 3; ++i)
    c.session.async_query("*IDN?", [&](error_code ec, std::string) { results.push_back(ec); });
  c.session.cancel();
  drive_until(c.io, [&] { return results.size() == 3; });
  for (auto ec : results) CHECK(ec == asio::error::operation_aborted);
  sim.server->set_faults({});
  CHECK(c.query("*IDN?").second == kIdn);

  // A session destroyed with an operation in flight still completes it (aborted).
  bool done = false;
  error_code last;
  {
    scpi_session s(c.strand, sim.resource(), fast_options());
    s.async_query("*IDN?", [&](error_code ec, std::string) {
      last = ec;
      done = true;
    });
  }
  drive(c.io, done);
  CHECK(last == asio::error::operation_aborted);
}

TEST_CASE("session: refused connection, bad commands, over-long replies") {
  sim_fixture sim;
  std::uint16_t dead_port = 0;
  {
    asio::io_context tmp;
    asio::ip::tcp::acceptor a(tmp, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    dead_port = a.local_endpoint().port();
  }
  client dead({0, "127.0.0.1", dead_port}, fast_options());
  auto [ec, r] = dead.query("*IDN?");
  CHECK(ec == asio::error::connection_refused);

  client c(sim.resource(), fast_options());
  CHECK(c.write("*IDN?") == errc::bad_command);  // a reply nobody reads would desync the stream
  CHECK(c.write(":SENS:FUNC \"CURR?\"") != errc::bad_command);  // '?' inside a string is data
  CHECK(c.query("*IDN?\n*IDN?").first == errc::bad_command);
  CHECK(c.query("").first == errc::bad_command);

  auto opt = fast_options();
  opt.max_reply_bytes = 16;
  client small(sim.resource(), opt);
  CHECK(small.query("*IDN?").first == errc::reply_too_long);
  CHECK(!small.session.is_open());
  CHECK(small.query("*OPC?").second == "1");
}

TEST_CASE("poller: init, poll, compliance, garbage reply, re-init after reconnect") {
  sim_fixture sim;
  client c(sim.resource(), fast_options());
  const auto* model = find_model("keithley2450");
  REQUIRE(model);
  auto settings = resolve_settings(*model, {{"bias", "0.6"}, {"ilim", "0.1"}});
  REQUIRE(settings.has_value());
  instrument_poller poller(c.session, *model, *settings);

  auto poll = [&] {
    bool done = false;
    std::pair<error_code, std::vector<reading>> out;
    poller.async_poll([&](error_code ec, std::vector<reading> r) {
      out = {ec, std::move(r)};
      done = true;
    });
    drive(c.io, done);
    return out;
  };

  auto [ec, readings] = poll();
  REQUIRE_MESSAGE(!ec, poller.last_error());
  REQUIRE(readings.size() == 1);
  CHECK(readings[0].channel == "curr");
  CHECK(readings[0].unit == "A");
  CHECK(readings[0].quality == 0);
  CHECK(readings[0].value.to_double() ==
        doctest::Approx(semilab::sim::keithley2450::diode_current(0.6)).epsilon(1e-3));
  CHECK(poller.idn() == kIdn);
  CHECK(c.query(":OUTP?").second == "1");  // init turned the output on

  // Garbage in place of the next reply: an error naming the reply, then polling goes on.
  sim.server->set_faults({0ms, 0, 1});
  auto [gec, gr] = poll();
  CHECK(gec == errc::bad_reply);
  CHECK(gr.empty());
  CHECK_MESSAGE(poller.last_error().find("'#\\x15GaRbAgE?\\x7F,,E+'") != std::string::npos,
                poller.last_error());
  sim.server->set_faults({});
  CHECK(!poll().first);
  CHECK(c.session.stats().connects == 1);

  // The instrument lost its settings and the connection: the next poll re-runs init.
  CHECK(!c.write("*RST"));
  c.session.close();
  auto [rec, rr] = poll();
  REQUIRE_MESSAGE(!rec, poller.last_error());
  CHECK(c.session.stats().connects == 2);
  CHECK(c.query(":OUTP?").second == "1");

  // Compliance: a tiny limit at a forward bias the diode would exceed.
  auto tight = resolve_settings(*model, {{"bias", "0.9"}, {"ilim", "1e-6"}});
  REQUIRE(tight.has_value());
  instrument_poller limited(c.session, *model, *tight);
  bool done = false;
  std::vector<reading> lr;
  limited.async_poll([&](error_code e, std::vector<reading> r) {
    CHECK(!e);
    lr = std::move(r);
    done = true;
  });
  drive(c.io, done);
  REQUIRE(lr.size() == 1);
  CHECK((lr[0].quality & semilab::schemas::quality::compliance) != 0);
}

TEST_CASE("poller: wrong instrument and init errors are reported, not polled") {
  sim_fixture sim;
  client c(sim.resource(), fast_options());
  static constexpr std::string_view kBadInit[] = {":SOUR:VOLT {bias}", ":SOUR:BOGUS 1"};
  model_profile broken = *find_model("keithley2450");
  broken.init = kBadInit;
  auto settings = resolve_settings(broken, {});
  REQUIRE(settings.has_value());
  instrument_poller p(c.session, broken, *settings);
  bool done = false;
  error_code got;
  p.async_poll([&](error_code e, std::vector<reading>) {
    got = e;
    done = true;
  });
  drive(c.io, done);
  CHECK(got == errc::instrument_error);
  CHECK_MESSAGE(p.last_error().find("-113") != std::string::npos, p.last_error());

  model_profile other = *find_model("keithley2450");
  other.idn_pattern = "KEYSIGHT*";
  instrument_poller q(c.session, other, *settings);
  done = false;
  q.async_poll([&](error_code e, std::vector<reading>) {
    got = e;
    done = true;
  });
  drive(c.io, done);
  CHECK(got == errc::wrong_model);
  CHECK(q.last_error().find("KEITHLEY INSTRUMENTS,MODEL 2450") != std::string::npos);
}
