// scpi_session over VXI-11 (a TCPIP INSTR resource) against the VXI-11 simulator, in-process on
// 127.0.0.1: the session's own deadlines, resync after a late reply, status byte and device
// clear through the session's queue.
#include <semilab/drivers/scpi_session.hpp>
#include <semilab/sim/keithley2450.hpp>
#include <semilab/sim/vxi11_server.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <doctest/doctest.h>

#include <thread>

namespace asio = boost::asio;
using namespace semilab::drivers;
using boost::system::error_code;
using namespace std::chrono_literals;

namespace {

struct vxi_sim {
  asio::io_context io;
  std::unique_ptr<semilab::sim::vxi11_server> server;
  std::thread thread;

  explicit vxi_sim(semilab::sim::fault_config faults = {}) {
    server = std::make_unique<semilab::sim::vxi11_server>(
        io, semilab::sim::make_sim_instrument("keithley2450", 1),
        asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0), faults);
    server->start();
    thread = std::thread([this] { io.run(); });
  }
  ~vxi_sim() {
    server->stop();
    thread.join();
  }
};

template <class Pred>
void drive_until(asio::io_context& io, Pred pred, std::chrono::milliseconds limit = 5s) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!pred() && std::chrono::steady_clock::now() < until) {
    if (io.stopped()) io.restart();
    io.run_one_for(10ms);
  }
  REQUIRE_MESSAGE(pred(), "operation did not complete within its bound");
}

struct client {
  asio::io_context io;
  asio::strand<asio::io_context::executor_type> strand = asio::make_strand(io);
  scpi_session session;

  client(const resource& res, scpi_session::options opt) : session(strand, res, opt) {}

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
};

scpi_session::options options_for(const vxi_sim& sim) {
  scpi_session::options o;
  o.connect_timeout = 2000ms;
  o.io_timeout = 2000ms;
  o.portmapper_port = sim.server->portmapper_endpoint().port();
  o.backoff = false;
  return o;
}

}  // namespace

TEST_CASE("session over VXI-11: queries, status byte, device clear, describe") {
  vxi_sim sim;
  auto res = parse_resource("TCPIP0::127.0.0.1::inst0::INSTR");
  REQUIRE(res.has_value());
  client c(*res, options_for(sim));
  auto [ec, idn] = c.query("*IDN?");
  REQUIRE_MESSAGE(!ec, ec.message());
  CHECK(idn == semilab::sim::keithley2450::kIdn);
  CHECK(c.session.describe().find("vxi11 127.0.0.1 device inst0") == 0);
  CHECK(c.query(":SYST:BLOC? 300").second.size() == 5u + 300u);

  bool done = false;
  std::uint8_t stb = 0xFF;
  error_code stb_ec;
  c.session.async_read_status_byte([&](error_code e, std::uint8_t s) {
    stb_ec = e;
    stb = s;
    done = true;
  });
  drive_until(c.io, [&] { return done; });
  CHECK_MESSAGE(!stb_ec, stb_ec.message());
  CHECK((stb & 0x10) == 0);

  done = false;
  error_code clear_ec;
  c.session.async_device_clear([&](error_code e) {
    clear_ec = e;
    done = true;
  });
  drive_until(c.io, [&] { return done; });
  CHECK_MESSAGE(!clear_ec, clear_ec.message());
  CHECK(c.query(":SYST:NONC? after-clear").second == "after-clear");
}

TEST_CASE("session over VXI-11: after a timed-out query the next one gets its own reply") {
  vxi_sim sim;
  auto res = parse_resource("TCPIP0::127.0.0.1::gpib0,22::INSTR");
  REQUIRE(res.has_value());
  client c(*res, options_for(sim));
  REQUIRE(!c.query("*IDN?").first);
  semilab::sim::fault_config late;
  late.late = 400ms;
  late.late_every = 1;
  int own = 0;
  for (int i = 0; i < 20; ++i) {
    sim.server->set_faults(late);
    auto a = "a" + std::to_string(i);
    auto [ec1, r1] = c.query(":SYST:NONC? " + a, 60ms);
    CHECK((ec1 == errc::timeout || r1 == a));
    sim.server->set_faults({});
    auto b = "b" + std::to_string(i);
    if (c.query(":SYST:NONC? " + b, 2s).second == b) ++own;
  }
  CHECK(own == 20);
  CHECK(c.session.stats().timeouts >= 15u);
  CHECK(sim.server->devices_seen().back() == "gpib0,22");
}

TEST_CASE("session over VXI-11: a hanging instrument costs one deadline, not more") {
  semilab::sim::fault_config hang;
  hang.hang = true;
  vxi_sim sim(hang);
  auto res = parse_resource("TCPIP0::127.0.0.1::inst0::INSTR");
  REQUIRE(res.has_value());
  client c(*res, options_for(sim));
  auto t0 = std::chrono::steady_clock::now();
  auto [ec, reply] = c.query("*IDN?", 200ms);
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(ec == errc::timeout);
  CHECK(took < 500ms);
  sim.server->set_faults({});
  CHECK(c.query(":SYST:NONC? ok").second == "ok");
}

TEST_CASE("session over VXI-11: portmapper unreachable is a readable connect error") {
  asio::io_context tmp;
  asio::ip::tcp::acceptor a(tmp, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  auto port = a.local_endpoint().port();
  a.close();
  auto res = parse_resource("TCPIP0::127.0.0.1::inst0::INSTR");
  REQUIRE(res.has_value());
  scpi_session::options o;
  o.portmapper_port = port;
  o.backoff = false;
  client c(*res, o);
  auto [ec, reply] = c.query("*IDN?", 1000ms);
  CHECK(ec);
  CHECK_MESSAGE(ec.message().find("portmapper") != std::string::npos, ec.message());
}
