// scpi_session over a serial port (ASRL resource): a socat pty bridged to the simulator's TCP
// server, so the session talks to a real tty (termios settings, FIONREAD, tcflush) and the
// instrument behind it has the simulator's faults.
#include "../../support/processes.hpp"

#include <semilab/drivers/scpi_session.hpp>
#include <semilab/sim/instrument.hpp>
#include <semilab/sim/server.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <doctest/doctest.h>

#include <filesystem>
#include <thread>

namespace asio = boost::asio;
using namespace semilab::drivers;
using boost::system::error_code;
using namespace std::chrono_literals;
namespace test = semilab::test;

namespace {

// The simulator on its own thread, reached through `socat pty,... tcp:127.0.0.1:PORT`.
struct serial_sim {
  asio::io_context sim_io;
  std::unique_ptr<semilab::sim::sim_server> server;
  std::thread thread;
  test::temp_dir dir;
  std::filesystem::path tty = dir.path() / "ttySIM";
  test::child socat;

  explicit serial_sim(semilab::sim::fault_config faults = {}) {
    server = std::make_unique<semilab::sim::sim_server>(
        sim_io, semilab::sim::make_sim_instrument("keithley2450", 1),
        asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0), faults);
    server->start();
    thread = std::thread([this] { sim_io.run(); });
    start_socat();
  }
  ~serial_sim() {
    socat.stop();
    server->stop();
    thread.join();
  }
  void start_socat() {
    std::error_code ec;
    std::filesystem::remove(tty, ec);
    socat = test::child({"/usr/bin/socat", "pty,raw,echo=0,link=" + tty.string(),
                         "tcp:127.0.0.1:" + std::to_string(server->local_endpoint().port())});
    REQUIRE(test::wait_until([&] { return std::filesystem::exists(tty); }, 5s));
  }
  serial_resource resource() const {
    serial_resource r;
    r.device = tty.string();
    r.baud = 115200;
    return r;
  }
};

struct client {
  asio::io_context io;
  asio::strand<asio::io_context::executor_type> strand = asio::make_strand(io);
  scpi_session session;

  client(const serial_resource& res, std::chrono::milliseconds timeout)
      : session(strand, res, options(timeout)) {}

  static scpi_session::options options(std::chrono::milliseconds timeout) {
    scpi_session::options o;
    o.io_timeout = timeout;
    o.connect_timeout = timeout;
    o.backoff = false;
    return o;
  }

  template <class Pred>
  void drive(Pred done) {
    auto until = std::chrono::steady_clock::now() + 10s;
    while (!done() && std::chrono::steady_clock::now() < until) {
      if (io.stopped()) io.restart();
      io.run_one_for(20ms);
    }
    REQUIRE_MESSAGE(done(), "operation did not complete within its bound");
  }
  std::pair<error_code, std::string> query(std::string cmd) {
    std::optional<std::pair<error_code, std::string>> out;
    session.async_query(std::move(cmd), [&](error_code ec, std::string r) { out.emplace(ec, r); });
    drive([&] { return out.has_value(); });
    return *out;
  }
  error_code write(std::string cmd) {
    std::optional<error_code> out;
    session.async_write(std::move(cmd), [&](error_code ec) { out = ec; });
    drive([&] { return out.has_value(); });
    return *out;
  }
};

}  // namespace

TEST_CASE("serial: queries, writes and binary blocks over a pty; line settings applied") {
  serial_sim sim;
  client c(sim.resource(), 2000ms);
  auto [ec, idn] = c.query("*IDN?");
  REQUIRE_MESSAGE(!ec, ec.message());
  CHECK(idn.find("KEITHLEY") != std::string::npos);
  CHECK(c.session.describe().find("serial " + sim.tty.string() + " 115200 8N1 flow none") == 0);
  CHECK(!c.write(":SOUR:VOLT 0.5"));
  CHECK(c.query(":SOUR:VOLT?").second == "5.000000E-01");
  auto [bec, block] = c.query(":SYST:BLOCk? 300");
  REQUIRE(!bec);
  REQUIRE(block.size() == 5 + 300);  // "#3300" + data with LF, CR and NUL inside
  for (std::size_t i = 0; i < 300; ++i)
    CHECK(static_cast<unsigned char>(block[5 + i]) == static_cast<unsigned char>(i % 256));
  CHECK(c.session.stats().connects == 1);

  // Out-of-band operations do not exist on a serial line: a clear error, the stream untouched.
  std::optional<error_code> stb;
  c.session.async_read_status_byte([&](error_code e, std::uint8_t) { stb = e; });
  c.drive([&] { return stb.has_value(); });
  CHECK(*stb == make_error_code(errc::not_supported));
  CHECK(c.query(":SYST:NONC? after-stb").second == "after-stb");
}

TEST_CASE("serial: a late reply is drained before the next command (10 of 10)") {
  semilab::sim::fault_config faults;
  REQUIRE(semilab::sim::apply_fault_spec("late=400/2", faults).empty());
  serial_sim sim(faults);
  client c(sim.resource(), 250ms);
  int timeouts = 0;
  for (int i = 0; i < 10; ++i) {
    // Every second reply comes 400 ms late: that query times out at 250 ms, the late reply
    // arrives while the next operation drains the line (quiet window = the 250 ms timeout); the
    // next query must get its own nonce back, never the late reply.
    std::string token = "n" + std::to_string(i);
    auto [ec, reply] = c.query(":SYST:NONC? " + token);
    if (ec) {
      CHECK(ec == make_error_code(errc::timeout));
      ++timeouts;
    } else {
      CHECK(reply == token);
    }
  }
  CHECK(timeouts == 5);
  CHECK(c.session.stats().connects == 1);  // a serial line is drained, not reopened
}

TEST_CASE("serial: the adapter vanishes and comes back; the session reopens the port") {
  serial_sim sim;
  client c(sim.resource(), 500ms);
  REQUIRE(!c.query("*IDN?").first);
  sim.socat.stop();  // the pty goes away (like an unplugged USB-serial adapter)
  auto [ec, r] = c.query("*IDN?");
  CHECK(ec);
  sim.start_socat();
  bool back = false;
  for (int i = 0; i < 20 && !back; ++i) {
    back = !c.query("*IDN?").first;
    if (!back) std::this_thread::sleep_for(50ms);
  }
  CHECK(back);
  CHECK(c.session.stats().connects >= 2);
}

TEST_CASE("serial: a missing device is a clear connection error, not a hang") {
  serial_resource r;
  r.device = "/nonexistent/ttyUSB9";
  client c(r, 500ms);
  auto [ec, reply] = c.query("*IDN?");
  CHECK(ec == boost::system::errc::no_such_file_or_directory);
  CHECK(c.session.stats().connect_failures == 1);
}
