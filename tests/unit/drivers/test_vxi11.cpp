// The VXI-11 transport (make_transport with a TCPIP INSTR resource) against the VXI-11 simulator
// (sim/vxi11_server.hpp), in-process on 127.0.0.1: the simulator on its own io_context thread,
// the transport on the test thread's io_context through a strand, driven as the session drives
// it (one operation at a time; a deadline timer that calls interrupt()). Also the simulator
// itself through a bare RPC client: the output queue shared by links, device_clear, readstb.
#include "oncrpc.hpp"
#include "vxi11_proto.hpp"

#include <semilab/drivers/transport.hpp>
#include <semilab/sim/keithley2450.hpp>
#include <semilab/sim/vxi11_server.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <doctest/doctest.h>

#include <thread>

namespace asio = boost::asio;
namespace rpc = semilab::drivers::oncrpc;
namespace vx = semilab::drivers::vxi11;
using namespace semilab::drivers;
using boost::system::error_code;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view kIdn = semilab::sim::keithley2450::kIdn;

struct vxi_sim {
  asio::io_context io;
  std::unique_ptr<semilab::sim::vxi11_server> server;
  std::thread thread;

  explicit vxi_sim(semilab::sim::fault_config faults = {}, semilab::sim::vxi11_options o = {}) {
    server = std::make_unique<semilab::sim::vxi11_server>(
        io, semilab::sim::make_sim_instrument("keithley2450", 1),
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0), faults, o);
    server->start();
    thread = std::thread([this] { io.run(); });
  }
  ~vxi_sim() {
    server->stop();
    thread.join();
  }
  std::uint16_t pm_port() const { return server->portmapper_endpoint().port(); }
};

// A port nobody listens on (bound, then closed).
std::uint16_t dead_port() {
  asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

template <class Pred>
void drive_until(asio::io_context& io, Pred pred, std::chrono::milliseconds limit = 5s) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!pred() && std::chrono::steady_clock::now() < until) {
    if (io.stopped()) io.restart();
    io.run_one_for(10ms);
  }
  REQUIRE_MESSAGE(pred(), "operation did not complete within its bound");
}

// The transport as the session uses it: one operation at a time, each with a deadline that
// interrupts the transport (the result is then errc::timeout, as the session reports it).
struct client {
  asio::io_context io;
  asio::strand<asio::io_context::executor_type> strand = asio::make_strand(io);
  std::unique_ptr<transport> t;

  explicit client(std::string_view resource_text, std::uint16_t pm_port,
                  transport_options opt = {}) {
    opt.portmapper_port = pm_port;
    auto res = parse_resource(resource_text);
    REQUIRE(res.has_value());
    auto made = make_transport(strand, *res, opt);
    REQUIRE(made.has_value());
    t = std::move(*made);
  }
  client(std::uint16_t pm_port, transport_options opt = {})
      : client("TCPIP0::127.0.0.1::inst0::INSTR", pm_port, opt) {}

  // Runs `start(done_callback)` with a deadline.
  template <class Start>
  error_code run(Start start, std::chrono::milliseconds deadline) {
    bool done = false;
    bool timed_out = false;
    error_code out;
    asio::steady_timer timer(strand, deadline);
    timer.async_wait([&](error_code ec) {
      if (ec || done) return;
      timed_out = true;
      t->interrupt();
    });
    start([&](error_code ec) {
      out = ec;
      done = true;
      timer.cancel();
    });
    drive_until(io, [&] { return done; }, deadline + 3s);
    if (timed_out) return make_error_code(errc::timeout);
    return out;
  }

  error_code ready(std::chrono::milliseconds deadline = 3s) {
    return run([&](auto done) { t->async_ready(done); }, deadline);
  }

  std::pair<error_code, std::string> exchange(std::string_view msg, bool read_reply,
                                              std::chrono::milliseconds deadline = 2s) {
    std::string reply;
    auto ec = run(
        [&](auto done) {
          t->async_exchange(msg, read_reply, [&, done](error_code e, std::string r) {
            reply = std::move(r);
            done(e);
          });
        },
        deadline);
    return {ec, reply};
  }

  // ready + exchange, as the session does for every operation.
  std::pair<error_code, std::string> query(std::string_view msg,
                                           std::chrono::milliseconds deadline = 2s) {
    if (!t->ready_now()) {
      if (auto ec = ready(); ec) return {ec, {}};
    }
    auto r = exchange(msg, true, deadline);
    if (r.first) t->interrupt();  // the session interrupts after any failed operation
    return r;
  }
  error_code write(std::string_view msg) {
    if (!t->ready_now()) {
      if (auto ec = ready(); ec) return ec;
    }
    return exchange(msg, false).first;
  }
  std::pair<error_code, std::uint8_t> read_stb() {
    std::uint8_t stb = 0;
    auto ec = run(
        [&](auto done) {
          t->async_read_stb([&, done](error_code e, std::uint8_t s) {
            stb = s;
            done(e);
          });
        },
        2s);
    return {ec, stb};
  }
  error_code clear() {
    return run([&](auto done) { t->async_clear(done); }, 2s);
  }
};

// A bare, blocking ONC RPC client for looking at the simulator from outside.
struct rpc_client {
  asio::io_context io;
  tcp::socket s{io};
  std::uint32_t xid = 100;

  explicit rpc_client(std::uint16_t port) {
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }
  std::string call(std::uint32_t prog, std::uint32_t vers, std::uint32_t proc,
                   const std::string& args) {
    ++xid;
    asio::write(s, asio::buffer(rpc::frame_record(rpc::encode_call(xid, prog, vers, proc, args))));
    rpc::record_assembler a(1 << 20);
    std::string rec;
    char buf[4096];
    while (a.next(rec) != rpc::record_assembler::status::complete) {
      std::size_t n = s.read_some(asio::buffer(buf));
      a.feed(std::string_view(buf, n));
    }
    rpc::reply r;
    auto ec = rpc::decode_reply(rec, xid, r);
    REQUIRE_MESSAGE(!ec, ec.message());
    return std::string(r.results);
  }
  std::string core(std::uint32_t proc, const std::string& args) {
    return call(vx::kCoreProgram, vx::kCoreVersion, proc, args);
  }
  std::int32_t create_link(std::string_view device) {
    vx::create_link_resp r;
    REQUIRE(vx::decode(core(vx::kCreateLink, vx::encode(vx::create_link_parms{9, false, 0, device})), r));
    REQUIRE(r.error == 0);
    return r.lid;
  }
};

std::uint16_t getport(std::uint16_t pm_port) {
  rpc_client pm(pm_port);
  std::uint16_t port = 0;
  REQUIRE(rpc::decode_getport_result(
      pm.call(rpc::kPmapProgram, rpc::kPmapVersion, rpc::kPmapProcGetport,
              rpc::encode_mapping({vx::kCoreProgram, vx::kCoreVersion, rpc::kIpprotoTcp, 0})),
      port));
  return port;
}

}  // namespace

TEST_CASE("vxi11: *IDN? through the portmapper and the core channel; describe()") {
  vxi_sim sim;
  client c(sim.pm_port());
  CHECK(!c.t->is_open());
  CHECK(c.t->describe().find("not connected") != std::string::npos);
  auto [ec, idn] = c.query("*IDN?");
  REQUIRE_MESSAGE(!ec, ec.message());
  CHECK(idn == kIdn);  // LF (and END) stripped
  CHECK(c.t->is_open());
  CHECK(c.t->ready_now());
  auto d = c.t->describe();
  CHECK(d.find("vxi11 127.0.0.1 device inst0 core port " +
               std::to_string(sim.server->core_endpoint().port()) + " link ") == 0);
  CHECK(d.find("maxRecvSize 4096") != std::string::npos);
  CHECK(sim.server->devices_seen() == std::vector<std::string>{"inst0"});
  CHECK(sim.server->clears() == 1u);  // a new link starts with device_clear
  // Several queries on the same link.
  for (int i = 0; i < 20; ++i) {
    auto tok = "t" + std::to_string(i);
    CHECK(c.query(":SYST:NONC? " + tok).second == tok);
  }
  CHECK(sim.server->links_created() == 1u);
}

TEST_CASE("vxi11: binary blocks with LF, CR and NUL come through intact, in several reads") {
  semilab::sim::vxi11_options o;
  o.max_read_chunk = 100;  // the instrument answers 100 bytes per device_read
  vxi_sim sim({}, o);
  client c(sim.pm_port());
  for (int n : {1, 10, 13, 255, 1000, 4097}) {
    auto [ec, reply] = c.query(":SYST:BLOC? " + std::to_string(n));
    REQUIRE_MESSAGE(!ec, ec.message());
    std::string digits = std::to_string(n);
    std::string header = "#" + std::to_string(digits.size()) + digits;
    REQUIRE(reply.size() == header.size() + static_cast<std::size_t>(n));
    CHECK(reply.substr(0, header.size()) == header);
    bool intact = true;
    for (int i = 0; i < n; ++i)
      intact = intact && static_cast<unsigned char>(reply[header.size() + static_cast<std::size_t>(i)]) ==
                             static_cast<unsigned char>(i % 256);
    CHECK_MESSAGE(intact, "block of " << n << " bytes");
  }
}

TEST_CASE("vxi11: a reply over max_reply_bytes fails as reply_too_long; the next query is clean") {
  vxi_sim sim;
  transport_options o;
  o.max_reply_bytes = 100;
  client c(sim.pm_port(), o);
  auto [ec, reply] = c.query(":SYST:BLOC? 500");
  CHECK(ec == errc::reply_too_long);
  CHECK(reply.empty());
  CHECK(!c.t->ready_now());
  CHECK(c.query(":SYST:NONC? after").second == "after");
}

TEST_CASE("vxi11: write-only, then a query; a command longer than maxRecvSize is split") {
  semilab::sim::vxi11_options o;
  o.max_recv_size = 64;
  vxi_sim sim({}, o);
  client c(sim.pm_port());
  REQUIRE(!c.write(":SOUR:VOLT 0.25"));
  CHECK(c.query(":SOUR:VOLT?").second == "2.500000E-01");
  std::string tok(64, 'x');
  tok[0] = 'a';
  tok[63] = 'z';
  CHECK(c.query(":SYSTem:NONCe? " + tok).second == tok);  // 79 bytes + LF: two device_writes
  CHECK(c.t->describe().find("maxRecvSize 64") != std::string::npos);
}

TEST_CASE("vxi11: read_stb shows MAV, device_clear empties the output queue") {
  vxi_sim sim;
  client c(sim.pm_port());
  REQUIRE(!c.ready());
  auto [ec0, stb0] = c.read_stb();
  REQUIRE_MESSAGE(!ec0, ec0.message());
  CHECK((stb0 & 0x10) == 0);
  REQUIRE(!c.exchange("*IDN?", false).first);  // a query whose reply nobody reads (yet)
  auto [ec1, stb1] = c.read_stb();
  REQUIRE(!ec1);
  CHECK((stb1 & 0x10) != 0);  // MAV
  REQUIRE(!c.clear());
  CHECK((c.read_stb().second & 0x10) == 0);
  // The cleared reply is gone: the next query gets its own.
  CHECK(c.query(":SYST:NONC? mine").second == "mine");
  // An undefined header queues an error: EAV.
  REQUIRE(!c.write(":NO:SUCH:CMD"));
  CHECK((c.read_stb().second & 0x04) != 0);
}

TEST_CASE("vxi11: GPIB gateway resource sends its device name to create_link") {
  vxi_sim sim;
  client c("TCPIP0::127.0.0.1::gpib0,22::INSTR", sim.pm_port());
  auto [ec, idn] = c.query("*IDN?");
  REQUIRE_MESSAGE(!ec, ec.message());
  CHECK(idn == kIdn);
  CHECK(sim.server->devices_seen() == std::vector<std::string>{"gpib0,22"});
  CHECK(c.t->describe().find("device gpib0,22") != std::string::npos);
}

TEST_CASE("vxi11: portmapper unreachable is a clear error, promptly") {
  client c(dead_port());
  auto t0 = std::chrono::steady_clock::now();
  auto ec = c.ready();
  CHECK(std::chrono::steady_clock::now() - t0 < 1s);
  CHECK(ec == vx::errc::portmapper_unreachable);
  CHECK(ec.message().find("portmapper") != std::string::npos);
  CHECK(!c.t->is_open());
  // Operations on a link that is not open fail at once (posted), they do not hang.
  CHECK(c.exchange("*IDN?", true).first == asio::error::not_connected);
}

TEST_CASE("vxi11: a portmapper that does not know VXI-11 is reported as such") {
  // The simulator's core channel port is a VXI-11 server, not a portmapper: GETPORT there is
  // PROG_UNAVAIL.
  vxi_sim sim;
  client c(sim.server->core_endpoint().port());
  auto ec = c.ready();
  CHECK(ec == rpc::rpc_errc::prog_unavail);
}

TEST_CASE("vxi11: after a timed-out query with a late reply, the next query gets its own (100/100)") {
  vxi_sim sim;
  client c(sim.pm_port());
  REQUIRE(c.query("*IDN?").second == kIdn);
  semilab::sim::fault_config late;
  late.late = 400ms;
  late.late_every = 1;
  int timeouts = 0, own = 0;
  for (int i = 0; i < 100; ++i) {
    sim.server->set_faults(late);
    auto a = "a" + std::to_string(i);
    auto [ec1, r1] = c.query(":SYST:NONC? " + a, 60ms);
    if (ec1) {
      CHECK(ec1 == errc::timeout);
      ++timeouts;
    } else {
      CHECK(r1 == a);  // a loaded machine may still be in time; then it must be our reply
    }
    sim.server->set_faults({});
    auto b = "b" + std::to_string(i);
    auto [ec2, r2] = c.query(":SYST:NONC? " + b, 2s);
    CHECK_MESSAGE(!ec2, ec2.message());
    if (r2 == b) ++own;
    CHECK(r2 == b);
  }
  CHECK(own == 100);
  CHECK(timeouts >= 90);
  MESSAGE("timeouts " << timeouts << ", own replies " << own << ", device_clears "
                      << sim.server->clears());
}

TEST_CASE("vxi11: interrupt during a hanging read completes promptly; the link recovers") {
  semilab::sim::fault_config hang;
  hang.hang = true;
  vxi_sim sim(hang);
  client c(sim.pm_port());
  REQUIRE(!c.ready());
  auto t0 = std::chrono::steady_clock::now();
  auto [ec, reply] = c.query("*IDN?", 200ms);
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(ec == errc::timeout);
  CHECK(took < 200ms + 300ms);
  MESSAGE("hanging query ended after "
          << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  CHECK(!c.t->is_open());
  CHECK(!c.t->ready_now());
  sim.server->set_faults({});
  CHECK(c.query(":SYST:NONC? back").second == "back");
  CHECK(sim.server->links_created() == 2u);
}

TEST_CASE("vxi11: the instrument drops the connection; the next operation opens a new link") {
  semilab::sim::fault_config drop;
  drop.drop_after = 1;
  vxi_sim sim(drop);
  client c(sim.pm_port());
  CHECK(c.query(":SYST:NONC? one").second == "one");
  // The server closes after its reply: ready_now() notices before anything is sent.
  drive_until(c.io, [&] { return !c.t->ready_now(); }, 2s);
  CHECK(c.query(":SYST:NONC? two").second == "two");
  CHECK(sim.server->links_created() == 2u);
}

TEST_CASE("vxi11: close() destroys the link; interrupt() on an idle link forces a new one") {
  vxi_sim sim;
  {
    client c(sim.pm_port());
    REQUIRE(c.query("*IDN?").second == kIdn);
    c.t->interrupt();  // nothing outstanding: only marks the link dirty
    CHECK(!c.t->ready_now());
    REQUIRE(c.query("*IDN?").second == kIdn);
    CHECK(sim.server->links_created() == 2u);
    CHECK(sim.server->clears() == 2u);
    c.t->close();
    CHECK(!c.t->is_open());
  }
  auto until = std::chrono::steady_clock::now() + 2s;
  while (sim.server->links_destroyed() < 1 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(5ms);
  CHECK(sim.server->links_destroyed() == 1u);
  until = std::chrono::steady_clock::now() + 2s;
  while (sim.server->links_active() != 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(5ms);
  CHECK(sim.server->links_active() == 0u);
}

TEST_CASE("vxi11: close() with an operation outstanding completes it with an error") {
  semilab::sim::fault_config hang;
  hang.hang = true;
  vxi_sim sim(hang);
  client c(sim.pm_port());
  REQUIRE(!c.ready());
  bool done = false;
  error_code got;
  c.t->async_exchange("*IDN?", true, [&](error_code ec, std::string) {
    got = ec;
    done = true;
  });
  c.io.poll();
  c.t->close();
  drive_until(c.io, [&] { return done; }, 1s);
  CHECK(got);
}

TEST_CASE("vxi11 simulator: one output queue shared by links; device_clear; several links") {
  vxi_sim sim;
  std::uint16_t core = getport(sim.pm_port());
  CHECK(core == sim.server->core_endpoint().port());

  rpc_client a(core), b(core);
  auto la = a.create_link("inst0");
  auto lb = b.create_link("gpib0,5");
  CHECK(la != lb);
  CHECK(sim.server->links_active() == 2u);

  // Link A asks, then goes away without reading.
  vx::device_write_resp wr;
  REQUIRE(vx::decode(a.core(vx::kDeviceWrite,
                            vx::encode(vx::device_write_parms{la, 1000, 0, vx::kFlagEnd, "*IDN?\n"})),
                     wr));
  CHECK(wr.error == 0);
  CHECK(wr.size == 6u);
  vx::device_error_resp de;
  REQUIRE(vx::decode(a.core(vx::kDestroyLink, vx::encode_link(la)), de));
  CHECK(de.error == 0);

  // Link B reads A's reply: the output queue belongs to the device, not to the link.
  vx::device_readstb_resp sr;
  REQUIRE(vx::decode(b.core(vx::kDeviceReadStb, vx::encode(vx::generic_parms{lb, 0, 0, 1000})), sr));
  CHECK((sr.stb & 0x10) != 0);
  auto raw = b.core(vx::kDeviceRead, vx::encode(vx::device_read_parms{lb, 1000, 1000, 0, 0, 0}));
  vx::device_read_resp rr;
  REQUIRE(vx::decode(raw, rr, 1000));
  CHECK(rr.error == 0);
  CHECK((rr.reason & vx::kReasonEnd) != 0);
  CHECK(rr.data == std::string(kIdn) + "\n");

  // termChrSet: the read stops at the term char with reason CHR.
  REQUIRE(vx::decode(b.core(vx::kDeviceWrite,
                            vx::encode(vx::device_write_parms{lb, 1000, 0, vx::kFlagEnd,
                                                              ":SYST:NONC? ab;:SYST:NONC? cd\n"})),
                     wr));
  raw = b.core(vx::kDeviceRead,
               vx::encode(vx::device_read_parms{lb, 1000, 1000, 0, vx::kFlagTermCharSet, ';'}));
  REQUIRE(vx::decode(raw, rr, 1000));
  CHECK(rr.data == "ab;");
  CHECK(rr.reason == vx::kReasonChr);
  // device_clear drops the rest; a read then times out (error 15) after its io_timeout.
  REQUIRE(vx::decode(b.core(vx::kDeviceClear, vx::encode(vx::generic_parms{lb, 0, 0, 1000})), de));
  CHECK(de.error == 0);
  raw = b.core(vx::kDeviceRead, vx::encode(vx::device_read_parms{lb, 1000, 50, 0, 0, 0}));
  REQUIRE(vx::decode(raw, rr, 1000));
  CHECK(rr.error == 15);
  CHECK(rr.data.empty());

  // Unknown link ids and procedures.
  REQUIRE(vx::decode(b.core(vx::kDeviceClear, vx::encode(vx::generic_parms{la, 0, 0, 1000})), de));
  CHECK(de.error == 4);
  CHECK(sim.server->devices_seen() == std::vector<std::string>{"inst0", "gpib0,5"});
}
