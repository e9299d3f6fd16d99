// The USBTMC transport through the real libusb against an emulated USB488 instrument
// (tests/support/usbtmc_emulator.hpp, umockdev's ioctl handler). The test plays the session's
// part: it runs the transport on a strand, arms a deadline per operation and calls interrupt()
// when it passes. umockdev's fake device node makes libusb busy-poll: keep deadlines short.
#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <memory>
#include <optional>

#include "transports.hpp"
#include "usbtmc_emulator.hpp"

namespace asio = boost::asio;
using namespace semilab::drivers;
using boost::system::error_code;
using semilab::test::usbtmc_emulator;
using namespace std::chrono_literals;
using fault = usbtmc_emulator::fault;

namespace {

error_code sys(boost::system::errc::errc_t e) {
  return boost::system::errc::make_error_code(e);
}

struct fixture {
  usbtmc_emulator emu;
  asio::io_context io;
  asio::strand<asio::io_context::executor_type> strand = asio::make_strand(io);
  std::unique_ptr<transport> t;
  bool timed_out = false;

  explicit fixture(usbtmc_emulator::options o = {}, std::string serial = "MY12345678")
      : emu(std::move(o)) {
    usb_resource res;
    res.vendor_id = 0x0957;
    res.product_id = 0x1796;
    res.serial = std::move(serial);
    t = detail::make_usbtmc(strand, res, transport_options{});
  }
  ~fixture() {
    t.reset();
    io.run_for(200ms);
  }

  // Runs the io_context until `done`, calling interrupt() at `deadline` like the session.
  template <class Done>
  void drive(const Done& done, std::chrono::milliseconds deadline) {
    timed_out = false;
    // An expiry already queued when the operation completes must not hit the next operation.
    auto active = std::make_shared<bool>(true);
    asio::steady_timer timer(strand);
    timer.expires_after(deadline);
    timer.async_wait([this, active](error_code ec) {
      if (ec || !*active) return;
      timed_out = true;
      t->interrupt();
    });
    auto bound = std::chrono::steady_clock::now() + deadline + 3s;
    while (!done() && std::chrono::steady_clock::now() < bound) {
      if (io.stopped()) io.restart();
      io.run_one_for(10ms);
    }
    *active = false;
    timer.cancel();
    REQUIRE_MESSAGE(done(), "operation did not complete after interrupt()");
  }

  error_code ready(std::chrono::milliseconds deadline = 2s) {
    std::optional<error_code> r;
    asio::post(strand, [&] { t->async_ready([&](error_code ec) { r = ec; }); });
    drive([&] { return r.has_value(); }, deadline);
    return *r;
  }

  std::pair<error_code, std::string> exchange(std::string msg, bool read,
                                              std::chrono::milliseconds deadline = 2s) {
    std::optional<std::pair<error_code, std::string>> r;
    asio::post(strand, [&] {
      t->async_exchange(msg, read,
                        [&](error_code ec, std::string s) { r.emplace(ec, std::move(s)); });
    });
    drive([&] { return r.has_value(); }, deadline);
    return *r;
  }

  // ready() + exchange, as the session does per query.
  std::string query(std::string msg) {
    REQUIRE(!ready());
    auto [ec, reply] = exchange(std::move(msg), true);
    REQUIRE_MESSAGE(!ec, ec.message());
    return reply;
  }

  // Until the emulator has seen `n` REQUEST_DEV_DEP_MSG_IN in all (bounded).
  void wait_requests(int n) {
    auto bound = std::chrono::steady_clock::now() + 2s;
    while (emu.stats().requests < n && std::chrono::steady_clock::now() < bound) {
      if (io.stopped()) io.restart();
      io.run_one_for(5ms);
    }
    REQUIRE(emu.stats().requests >= n);
  }

  std::pair<error_code, std::uint8_t> read_stb() {
    std::optional<std::pair<error_code, std::uint8_t>> r;
    asio::post(strand, [&] {
      t->async_read_stb([&](error_code ec, std::uint8_t b) { r.emplace(ec, b); });
    });
    drive([&] { return r.has_value(); }, 2s);
    return *r;
  }
};

usbtmc_emulator::options full_speed() {
  usbtmc_emulator::options o;
  o.max_packet = 64;
  return o;
}

}  // namespace

TEST_CASE("usbtmc: open, *IDN? round trip, describe") {
  if (!usbtmc_emulator::available()) {
    MESSAGE("skipped: not running under libumockdev-preload (run through ctest)");
    return;
  }
  fixture f;
  CHECK_FALSE(f.t->is_open());
  CHECK(f.t->describe().find("(not open)") != std::string::npos);
  REQUIRE(!f.ready());
  CHECK(f.t->is_open());
  CHECK(f.t->ready_now());
  CHECK(f.t->describe() ==
        "usbtmc 0957:1796 serial MY12345678 bus 1 dev 5 if 0 bulk-out 0x02 bulk-in 0x81 "
        "int-in 0x83 max packet 512 USB488");
  auto s = f.emu.stats();
  CHECK(s.detach_claims == 1);  // claimed with kernel-driver auto-detach
  CHECK(s.get_capabilities == 1);
  CHECK(s.initiate_clear == 1);  // stale device output cleared at open
  CHECK(f.query("*IDN?") == "SEMILAB,USBTMC-EMU,MY12345678,1.0");
  CHECK(f.emu.commands().back() == "*IDN?");
  // A write only.
  REQUIRE(!f.ready());
  auto [ec, reply] = f.exchange("STB 16", false);
  CHECK(!ec);
  CHECK(reply.empty());
  CHECK(f.query("*STB?") == "16");
}

TEST_CASE("usbtmc: binary blocks with LF and NUL, exact multiples with ZLP, bTag wrap") {
  if (!usbtmc_emulator::available()) return;
  fixture f;
  for (std::size_t n : {1u, 100u, 497u, 4000u, 70000u}) {
    CAPTURE(n);
    std::string r = f.query("BLOCK? " + std::to_string(n));
    std::string len = std::to_string(n);
    REQUIRE(r.size() == 2 + len.size() + n);
    CHECK(r.substr(0, 2 + len.size()) == "#" + std::to_string(len.size()) + len);
    CHECK(r[2 + len.size()] == '\n');
    CHECK(r[3 + len.size()] == '\0');
  }
  // 12 + 500 = 512: the emulator follows with a ZLP, which the next reply skips.
  int zlps = f.emu.stats().zlps;
  CHECK(f.query("LEN? 500") == std::string(499, 'A'));
  CHECK(f.emu.stats().zlps == zlps + 1);
  CHECK(f.query("ECHO? after zlp") == "after zlp");
  // bTags: 2 per query; run past 255.
  for (int i = 0; i < 130; ++i) REQUIRE(f.query("ECHO? " + std::to_string(i)) == std::to_string(i));
  auto tags = f.emu.stats().out_tags;
  REQUIRE(tags.size() > 256);
  bool wrapped = false;
  for (std::size_t i = 1; i < tags.size(); ++i) {
    CHECK(tags[i] != 0);
    if (tags[i - 1] == 255) {
      CHECK(tags[i] == 1);
      wrapped = true;
    } else {
      CHECK(tags[i] == tags[i - 1] + 1);
    }
  }
  CHECK(wrapped);
}

TEST_CASE("usbtmc: Siglent SDG1062X *IDN? (TransferSize shorter than the payload)") {
  if (!usbtmc_emulator::available()) return;
  auto o = full_speed();
  o.idn = "Siglent Technologies,SDG1062X,SDG1XDDC801438,1.01.01.33R8";
  fixture f(o);
  REQUIRE(!f.ready());
  f.emu.inject(fault::siglent);
  CHECK(f.query("*IDN?") == o.idn);
  CHECK(f.emu.stats().requests == 2);
  CHECK(f.query("ECHO? next") == "next");
  CHECK(f.t->describe().find("max packet 64") != std::string::npos);
}

TEST_CASE("usbtmc: Rigol exact-multiple transfers without a short packet do not hang") {
  if (!usbtmc_emulator::available()) return;
  fixture f(full_speed());
  REQUIRE(!f.ready());
  f.emu.inject(fault::rigol, 3);
  int zlps = f.emu.stats().zlps;
  CHECK(f.query("LEN? 52") == std::string(51, 'A'));      // 12 + 52 = 64
  CHECK(f.query("LEN? 116") == std::string(115, 'A'));    // 128
  CHECK(f.query("LEN? 2036") == std::string(2035, 'A'));  // 2048
  CHECK(f.emu.stats().zlps == zlps);
  CHECK(f.query("*IDN?") == "SEMILAB,USBTMC-EMU,MY12345678,1.0");
}

TEST_CASE("usbtmc: wrong bTag is an error; the link resynchronises") {
  if (!usbtmc_emulator::available()) return;
  fixture f;
  REQUIRE(!f.ready());
  f.emu.inject(fault::wrong_tag);
  auto [ec, reply] = f.exchange("ECHO? one", true);
  CHECK(ec == make_error_code(errc::stray_data));
  CHECK(reply.empty());
  CHECK_FALSE(f.t->ready_now());
  int clears = f.emu.stats().initiate_clear;
  CHECK(f.query("ECHO? two") == "two");
  CHECK(f.emu.stats().initiate_clear == clears + 1);
  CHECK(f.t->self_resyncs() == 1);
}

TEST_CASE("usbtmc: a stalled Bulk-IN is cleared (CLEAR_HALT)") {
  if (!usbtmc_emulator::available()) return;
  fixture f;
  REQUIRE(!f.ready());
  f.emu.inject(fault::stall);
  auto [ec, reply] = f.exchange("ECHO? one", true);
  CHECK(ec == sys(boost::system::errc::broken_pipe));
  int halts = f.emu.stats().clear_halt_in;
  CHECK(f.query("ECHO? two") == "two");
  CHECK(f.emu.stats().clear_halt_in > halts);
}

TEST_CASE("usbtmc: timeout -> abort Bulk-IN + clear; the late reply never reaches the next query") {
  if (!usbtmc_emulator::available()) return;
  fixture f;
  REQUIRE(!f.ready());
  f.emu.inject(fault::hang);
  auto started = std::chrono::steady_clock::now();
  auto [ec, reply] = f.exchange("ECHO? late", true, 150ms);
  auto took = std::chrono::steady_clock::now() - started;
  CHECK(f.timed_out);
  CHECK(ec == asio::error::operation_aborted);
  CHECK(took < 150ms + 850ms);  // interrupt() completes the operation promptly (slack: ASan, 2 busy cores)
  CHECK(f.emu.stats().discarded >= 1);  // the Bulk-IN URB was cancelled
  auto before = f.emu.stats();
  CHECK(f.query("ECHO? mine") == "mine");
  auto after = f.emu.stats();
  CHECK(after.initiate_abort_in == before.initiate_abort_in + 1);
  REQUIRE(!after.abort_in_tags.empty());
  // The aborted bTag is the REQUEST's, the second Bulk-OUT header of the failed exchange.
  CHECK(after.abort_in_tags.back() == before.out_tags.back());
  CHECK(after.check_abort_in >= before.check_abort_in + 2);  // PENDING, then SUCCESS
  CHECK(after.initiate_clear == before.initiate_clear + 1);
  CHECK(after.check_clear >= before.check_clear + 2);
  CHECK(after.clear_halt_out > before.clear_halt_out);
  CHECK(f.query("ECHO? again") == "again");
}

TEST_CASE("usbtmc: interrupt() while idle marks the link dirty; close() ends a hung read") {
  if (!usbtmc_emulator::available()) return;
  fixture f;
  REQUIRE(!f.ready());
  bool posted = false;
  asio::post(f.strand, [&] {
    f.t->interrupt();
    posted = true;
  });
  f.drive([&] { return posted; }, 1s);
  CHECK_FALSE(f.t->ready_now());
  int clears = f.emu.stats().initiate_clear;
  CHECK(f.query("ECHO? x") == "x");
  CHECK(f.emu.stats().initiate_clear == clears + 1);

  f.emu.inject(fault::hang);
  std::optional<error_code> r;
  int requests = f.emu.stats().requests;
  asio::post(f.strand, [&] {
    f.t->async_exchange("ECHO? y", true, [&](error_code ec, std::string) { r = ec; });
  });
  f.wait_requests(requests + 1);
  asio::post(f.strand, [&] { f.t->close(); });
  f.drive([&] { return r.has_value(); }, 1s);
  CHECK(*r == asio::error::operation_aborted);
  CHECK_FALSE(f.t->is_open());
  CHECK(f.query("ECHO? reopened") == "reopened");
}

TEST_CASE("usbtmc: READ_STATUS_BYTE, with and without an Interrupt-IN endpoint; device clear") {
  if (!usbtmc_emulator::available()) return;
  for (bool intr : {true, false}) {
    CAPTURE(intr);
    usbtmc_emulator::options o;
    o.interrupt_in = intr;
    fixture f(o);
    REQUIRE(!f.ready());
    f.emu.set_status_byte(0x50);
    auto [ec, stb] = f.read_stb();
    CHECK(!ec);
    CHECK(stb == 0x50);
    f.emu.set_status_byte(0x04);
    CHECK(f.read_stb().second == 0x04);
    CHECK(f.emu.stats().read_status_byte == 2);
    CHECK(f.t->ready_now());

    std::optional<error_code> r;
    int clears = f.emu.stats().initiate_clear;
    asio::post(f.strand, [&] { f.t->async_clear([&](error_code e) { r = e; }); });
    f.drive([&] { return r.has_value(); }, 2s);
    CHECK(!*r);
    CHECK(f.emu.stats().initiate_clear == clears + 1);
    CHECK(f.query("ECHO? ok") == "ok");
  }
}

TEST_CASE("usbtmc: unplug -> error; replug -> found again by VID/PID/serial") {
  if (!usbtmc_emulator::available()) return;
  fixture f;
  CHECK(f.query("*IDN?") == "SEMILAB,USBTMC-EMU,MY12345678,1.0");
  f.emu.inject(fault::hang);
  std::optional<std::pair<error_code, std::string>> r;
  int requests = f.emu.stats().requests;
  asio::post(f.strand, [&] {
    f.t->async_exchange("ECHO? lost", true,
                        [&](error_code ec, std::string s) { r.emplace(ec, s); });
  });
  f.wait_requests(requests + 1);
  f.emu.unplug();
  f.drive([&] { return r.has_value(); }, 1s);
  CHECK(r->first == sys(boost::system::errc::no_such_device));
  CHECK_FALSE(f.t->is_open());
  CHECK(f.ready(500ms) == sys(boost::system::errc::no_such_device));  // nothing to find
  CHECK_FALSE(f.t->is_open());

  f.emu.replug();
  REQUIRE(!f.ready());
  CHECK(f.t->describe().find(" dev 6 ") != std::string::npos);
  CHECK(f.query("*IDN?") == "SEMILAB,USBTMC-EMU,MY12345678,1.0");
}

TEST_CASE("usbtmc: a serial number that does not match is not opened") {
  if (!usbtmc_emulator::available()) return;
  fixture f({}, "OTHER");
  auto ec = f.ready(1s);
  CHECK(ec == sys(boost::system::errc::no_such_device));
  CHECK_FALSE(f.t->is_open());
}
