// Capability interfaces (capabilities.hpp) against the simulators over TCP: the 2450 buffered
// sweep on a diode, the 2400 sweep with its status word, compliance before output on, ramps seen
// by the simulator as steps, abort mid-sweep, output off re-applied after a dropped connection,
// the E4980A bias list sweep of a MOS capacitor, the 34461A, *OPC? and *ESR?.
#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <semilab/drivers/capabilities.hpp>
#include <semilab/sim/e4980a.hpp>
#include <semilab/sim/keithley2400.hpp>
#include <semilab/sim/keithley2450.hpp>
#include <semilab/sim/keysight34461a.hpp>
#include <semilab/sim/server.hpp>

#include <optional>
#include <thread>

namespace asio = boost::asio;
using namespace semilab::drivers;
using boost::system::error_code;
using namespace std::chrono_literals;
namespace sim = semilab::sim;

namespace {

struct sim_fixture {
  asio::io_context sim_io;
  std::unique_ptr<sim::sim_server> server;
  std::thread thread;

  explicit sim_fixture(std::unique_ptr<sim::sim_instrument> inst) {
    server = std::make_unique<sim::sim_server>(
        sim_io, std::move(inst), asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
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
void drive_until(asio::io_context& io, Pred pred, std::chrono::milliseconds limit = 30s) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!pred() && std::chrono::steady_clock::now() < until) {
    if (io.stopped()) io.restart();
    io.run_one_for(20ms);
  }
  REQUIRE_MESSAGE(pred(), "operation did not complete within its bound");
}

struct client {
  asio::io_context io;
  asio::strand<asio::io_context::executor_type> strand = asio::make_strand(io);
  scpi_session session;

  explicit client(const tcp_socket_resource& res) : session(strand, res, opts()) {}
  static scpi_session::options opts() {
    scpi_session::options o;
    o.connect_timeout = 1000ms;
    o.io_timeout = 2000ms;
    return o;
  }

  // Runs an asynchronous call on the strand and waits for its result.
  template <class R, class Start>
  R await(Start start) {
    std::optional<R> out;
    asio::post(strand, [&] { start([&](R r) { out.emplace(std::move(r)); }); });
    drive_until(io, [&] { return out.has_value(); });
    return std::move(*out);
  }
  result<void> done(std::function<void(done_handler)> start) {
    return await<result<void>>(std::move(start));
  }
  void write(std::string cmd) {
    bool ok = false;
    asio::post(strand, [&] { session.async_write(cmd, [&](error_code ec) { ok = !ec; }); });
    drive_until(io, [&] { return ok; });
  }
  // Writes have no acknowledgement: a query makes sure the simulator executed them before a
  // test looks at its log.
  void sync() {
    auto r = done([&](done_handler h) { async_wait_complete(session, 5000ms, h); });
    REQUIRE(r.has_value());
  }
  void sleep(std::chrono::milliseconds d) {
    asio::steady_timer t(io, d);
    bool fired = false;
    t.async_wait([&](error_code) { fired = true; });
    drive_until(io, [&] { return fired; });
  }
};

std::string message(const result<void>& r) { return r ? "ok" : r.error().message; }
template <class T>
std::string message(const result<T>& r) {
  return r ? "ok" : r.error().message;
}

// Compliance, output on at `level` on a source_measure (voltage source).
void power_up(client& c, source_measure& sm, double ilim, double level) {
  auto f = c.done([&](done_handler h) { sm.async_set_function(source_function::voltage, h); });
  REQUIRE_MESSAGE(f.has_value(), message(f));
  auto l = c.done([&](done_handler h) { sm.async_set_compliance(ilim, h); });
  REQUIRE_MESSAGE(l.has_value(), message(l));
  auto n = c.done([&](done_handler h) { sm.async_set_nplc(0.1, h); });
  REQUIRE_MESSAGE(n.has_value(), message(n));
  auto s = c.done([&](done_handler h) { sm.async_set_level(level, h); });
  REQUIRE_MESSAGE(s.has_value(), message(s));
  auto on = c.done([&](done_handler h) { sm.async_output_on(h); });
  REQUIRE_MESSAGE(on.has_value(), message(on));
}

using sweep_result = result<std::vector<smu_point>>;

}  // namespace

TEST_CASE("*OPC? helper and *ESR? power-on bit") {
  sim_fixture s(sim::make_sim_instrument("34461a", 1));
  client c(s.resource());
  auto esr = c.await<result<esr_bits>>([&](auto h) { async_read_esr(c.session, h); });
  REQUIRE(esr.has_value());
  CHECK(esr->power_on());  // a freshly started instrument
  auto again = c.await<result<esr_bits>>([&](auto h) { async_read_esr(c.session, h); });
  REQUIRE(again.has_value());
  CHECK(!again->power_on());  // read clears it
  auto opc = c.done([&](done_handler h) { async_wait_complete(c.session, 1000ms, h); });
  CHECK_MESSAGE(opc.has_value(), message(opc));
}

TEST_CASE("keithley2450: buffered sweep of a diode (linear and list) read back with :TRAC:DATA?") {
  auto inst = std::make_unique<sim::keithley2450>(7);
  auto* dut = inst.get();
  sim_fixture s(std::move(inst));
  client c(s.resource());
  const auto* model = find_model("keithley2450");
  REQUIRE(model);
  REQUIRE(model->source_measure);
  source_measure sm(c.session, *model);
  power_up(c, sm, 0.1, 0.0);

  auto r = c.await<sweep_result>(
      [&](auto h) { sm.async_sweep_linear(0.0, 1.0, 21, 0ms, h); });
  REQUIRE_MESSAGE(r.has_value(), message(r));
  REQUIRE(r->size() == 21);
  for (std::size_t i = 0; i < r->size(); ++i) {
    const auto& p = (*r)[i];
    CHECK(p.source.value.to_double() == doctest::Approx(0.05 * static_cast<double>(i)));
    CHECK(!p.in_compliance());
    CHECK(!p.over_range());
  }
  // Diode shape: negligible current below ~0.4 V, exponential rise, then series-R limited.
  CHECK(std::fabs((*r)[4].measure.value.to_double()) < 1e-8);  // 0.2 V
  for (std::size_t i = 12; i < 21; ++i)
    CHECK((*r)[i].measure.value.to_double() > (*r)[i - 1].measure.value.to_double());
  CHECK((*r)[18].measure.value.to_double() ==
        doctest::Approx(sim::keithley2450::diode_current(0.9)).epsilon(2e-3));
  CHECK(sm.level() == doctest::Approx(1.0));  // the source stays at the last level

  // Into compliance: with a 1 mA limit the upper points are clamped and flagged.
  auto lim = c.done([&](done_handler h) { sm.async_set_compliance(1e-3, h); });
  REQUIRE(lim.has_value());
  std::vector<double> list{1.0, 0.9, 0.8, 0.7, 0.6, 0.5};
  auto l = c.await<sweep_result>([&](auto h) { sm.async_sweep_list(list, 0ms, h); });
  REQUIRE_MESSAGE(l.has_value(), message(l));
  REQUIRE(l->size() == list.size());
  CHECK(l->front().in_compliance());
  CHECK(l->front().measure.value.to_double() == doctest::Approx(1e-3).epsilon(2e-3));
  CHECK(!l->back().in_compliance());
  CHECK(l->back().source.value.to_double() == doctest::Approx(0.5));

  // Single point: source and reading from :READ? "defbuffer1",SOUR,READ.
  auto p = c.await<result<smu_point>>([&](auto h) { sm.async_measure(h); });
  REQUIRE_MESSAGE(p.has_value(), message(p));
  CHECK(p->source.value.to_double() == doctest::Approx(0.5));
  CHECK(p->measure.value.to_double() ==
        doctest::Approx(sim::keithley2450::diode_current(0.5)).epsilon(5e-3));

  // Refusals: too few points, a level beyond the source's range.
  auto few = c.await<sweep_result>([&](auto h) { sm.async_sweep_linear(0, 1, 1, 0ms, h); });
  REQUIRE(!few.has_value());
  CHECK(few.error().code == make_error_code(errc::bad_setting));
  auto far = c.done([&](done_handler h) { sm.async_set_level(500, h); });
  REQUIRE(!far.has_value());
  CHECK(far.error().code == make_error_code(errc::bad_setting));
  auto off = c.done([&](done_handler h) { sm.async_output_off(h); });
  CHECK(off.has_value());
  c.sync();
  auto ev = dut->log().events();
  REQUIRE(!ev.empty());
  CHECK(!ev.back().output);
}

TEST_CASE("keithley2450: compliance must be set before the output goes on") {
  auto inst = std::make_unique<sim::keithley2450>(3);
  auto* dut = inst.get();
  sim_fixture s(std::move(inst));
  client c(s.resource());
  source_measure sm(c.session, *find_model("keithley2450"));
  auto on = c.done([&](done_handler h) { sm.async_output_on(h); });
  REQUIRE(!on.has_value());
  CHECK(on.error().code == make_error_code(errc::bad_setting));
  CHECK(on.error().message.find("compliance") != std::string::npos);
  CHECK(!sm.output_on());
  c.sync();
  for (const auto& e : dut->log().events()) {
    CHECK(!e.output);  // the output never went on
    if (e.what == sim::smu_event::kind::command) CHECK(e.command != ":OUTP ON");
  }
  CHECK(sm.safety_offs() == 1);  // a new driver switches the unknown output off first

  auto lim = c.done([&](done_handler h) { sm.async_set_compliance(1e-3, h); });
  REQUIRE(lim.has_value());
  // Changing the source function forgets the limit (it limits the other quantity now).
  auto fn = c.done([&](done_handler h) { sm.async_set_function(source_function::current, h); });
  REQUIRE(fn.has_value());
  CHECK(!sm.compliance_set());
  auto on2 = c.done([&](done_handler h) { sm.async_output_on(h); });
  CHECK(!on2.has_value());
  auto vlim = c.done([&](done_handler h) { sm.async_set_compliance(2.0, h); });  // volts
  REQUIRE(vlim.has_value());
  auto on3 = c.done([&](done_handler h) { sm.async_output_on(h); });
  CHECK_MESSAGE(on3.has_value(), message(on3));
  CHECK(sm.output_on());
  auto off = c.done([&](done_handler h) { sm.async_output_off(h); });
  CHECK(off.has_value());
  // The model's capability set: a voltmeter call on an SMU is "not supported", not a failure.
  voltmeter vm(c.session, *find_model("keithley2450"));
  auto rd = c.await<result<reading>>([&](auto h) { vm.async_read(h); });
  REQUIRE(!rd.has_value());
  CHECK(rd.error().code == make_error_code(errc::not_supported));
}

TEST_CASE("keithley2450: destroying the driver with the output on sends a last :OUTP OFF") {
  auto inst = std::make_unique<sim::keithley2450>(4);
  auto* dut = inst.get();
  sim_fixture s(std::move(inst));
  client c(s.resource());
  auto sm = std::make_unique<source_measure>(c.session, *find_model("keithley2450"));
  power_up(c, *sm, 0.01, 0.3);
  REQUIRE(sm->output_on());
  sm.reset();
  c.sync();  // queued behind the last write
  auto ev = dut->log().events();
  REQUIRE(!ev.empty());
  CHECK(ev.back().what == sim::smu_event::kind::output);
  CHECK(!ev.back().output);
}

TEST_CASE("keithley2450: a 0 -> 10 V change with 1 V ramp steps reaches the instrument as steps") {
  auto inst = std::make_unique<sim::keithley2450>(5);
  auto* dut = inst.get();
  sim_fixture s(std::move(inst));
  client c(s.resource());
  c.write(":SYST:DUT RES");  // 1 kOhm: 10 mA at 10 V
  source_measure sm(c.session, *find_model("keithley2450"));
  sm.set_ramp({1.0, 20ms});
  power_up(c, sm, 0.1, 0.0);
  auto before = dut->log().events().size();
  auto r = c.done([&](done_handler h) { sm.async_set_level(10.0, h); });
  REQUIRE_MESSAGE(r.has_value(), message(r));
  c.sync();
  auto ev = dut->log().events();
  std::vector<double> levels;
  std::vector<std::chrono::steady_clock::time_point> times;
  for (std::size_t i = before; i < ev.size(); ++i)
    if (ev[i].what == sim::smu_event::kind::level) {
      CHECK(ev[i].output);
      levels.push_back(ev[i].level);
      times.push_back(ev[i].time);
    }
  REQUIRE(levels.size() == 10);
  double prev = 0;
  for (std::size_t i = 0; i < levels.size(); ++i) {
    CHECK(levels[i] == doctest::Approx(static_cast<double>(i + 1)));
    CHECK(levels[i] - prev <= 1.0 + 1e-9);
    prev = levels[i];
    // The dwell starts after *OPC? confirmed the previous step, so it is a strict lower bound.
    if (i > 0) CHECK(times[i] - times[i - 1] >= 20ms);
  }
  auto p = c.await<result<smu_point>>([&](auto h) { sm.async_measure(h); });
  REQUIRE(p.has_value());
  CHECK(p->measure.value.to_double() == doctest::Approx(0.01).epsilon(1e-2));
  // A sweep whose points are further apart than the ramp step is refused.
  auto coarse = c.await<sweep_result>([&](auto h) { sm.async_sweep_linear(0, 10, 3, 0ms, h); });
  REQUIRE(!coarse.has_value());
  CHECK(coarse.error().code == make_error_code(errc::bad_setting));
  // Output off ramps down first.
  before = dut->log().events().size();
  auto off = c.done([&](done_handler h) { sm.async_output_off(h); });
  REQUIRE(off.has_value());
  c.sync();
  ev = dut->log().events();
  std::vector<double> down;
  for (std::size_t i = before; i < ev.size(); ++i)
    if (ev[i].what == sim::smu_event::kind::level) down.push_back(ev[i].level);
  REQUIRE(down.size() == 10);
  CHECK(down.back() == doctest::Approx(0.0));
  CHECK(!ev.back().output);
}

TEST_CASE("keithley2450: abort mid-sweep stops the sweep and leaves the output off") {
  auto inst = std::make_unique<sim::keithley2450>(9);
  auto* dut = inst.get();
  sim_fixture s(std::move(inst));
  client c(s.resource());
  source_measure sm(c.session, *find_model("keithley2450"));
  power_up(c, sm, 0.1, 0.0);
  // 100 points x (20 ms delay + 0.1 PLC) ~ 2.2 s.
  std::optional<sweep_result> sweep;
  asio::post(c.strand, [&] {
    sm.async_sweep_linear(0.0, 0.99, 100, 20ms, [&](sweep_result r) { sweep.emplace(std::move(r)); });
  });
  c.sleep(400ms);
  std::optional<result<void>> aborted;
  auto t0 = std::chrono::steady_clock::now();
  asio::post(c.strand, [&] { sm.abort([&](result<void> r) { aborted.emplace(std::move(r)); }); });
  drive_until(c.io, [&] { return sweep.has_value() && aborted.has_value(); });
  CHECK(std::chrono::steady_clock::now() - t0 < 1500ms);
  REQUIRE(!sweep->has_value());
  CHECK(sweep->error().code == boost::asio::error::operation_aborted);
  CHECK_MESSAGE(aborted->has_value(), message(*aborted));
  CHECK(!sm.output_on());
  c.sync();
  auto ev = dut->log().events();
  std::size_t off_at = ev.size();
  std::size_t levels_on = 0;
  for (std::size_t i = 0; i < ev.size(); ++i) {
    if (ev[i].what == sim::smu_event::kind::output && !ev[i].output && off_at == ev.size() &&
        levels_on > 0)
      off_at = i;
    if (ev[i].what == sim::smu_event::kind::level && ev[i].output) ++levels_on;
  }
  REQUIRE(off_at < ev.size());
  CHECK(levels_on > 0);
  CHECK(levels_on < 100);  // stopped mid-sweep
  for (std::size_t i = off_at; i < ev.size(); ++i) CHECK(!ev[i].output);
  c.sleep(300ms);  // nothing runs on afterwards
  auto later = dut->log().events();
  for (std::size_t i = ev.size(); i < later.size(); ++i)
    CHECK(later[i].what == semilab::sim::smu_event::kind::command);  // only our own queries
}

TEST_CASE("keithley2450: a dropped connection gets :OUTP OFF before anything else on reconnect") {
  auto inst = std::make_unique<sim::keithley2450>(11);
  auto* dut = inst.get();
  sim_fixture s(std::move(inst));
  client c(s.resource());
  source_measure sm(c.session, *find_model("keithley2450"));
  power_up(c, sm, 0.1, 0.5);
  REQUIRE(sm.output_on());
  auto offs = sm.safety_offs();
  sim::fault_config drop;
  drop.drop_after = 1;
  s.server->set_faults(drop);
  auto before = dut->log().events().size();
  auto p = c.await<result<smu_point>>([&](auto h) { sm.async_measure(h); });  // then dropped
  s.server->set_faults({});
  c.sleep(100ms);
  // The next state-changing calls: each either fails (link down, output off pending) or finds
  // the new connection; neither may change the level before the output is off.
  result<void> r = make_error(errc::timeout, "not run");
  for (int i = 0; i < 3 && sm.output_on(); ++i)
    r = c.done([&](done_handler h) { sm.async_set_level(0.6, h); });
  CHECK(!sm.output_on());
  CHECK(sm.safety_offs() == offs + 1);
  CHECK(!sm.compliance_set());  // forgotten: the instrument may have been power cycled
  c.sync();
  auto ev = dut->log().events();
  std::string first_change;
  for (std::size_t i = before; i < ev.size(); ++i)
    if (ev[i].what == sim::smu_event::kind::command && ev[i].command.find('?') == std::string::npos) {
      first_change = ev[i].command;
      break;
    }
  CHECK(first_change == ":OUTP OFF");
  for (std::size_t i = before; i < ev.size(); ++i)
    if (ev[i].what == sim::smu_event::kind::level) CHECK(ev[i].level != doctest::Approx(0.6));
  CHECK(!ev.back().output);
  // Back to work only through the safety rules again.
  auto on = c.done([&](done_handler h) { sm.async_output_on(h); });
  CHECK(!on.has_value());
  (void)p;
}

TEST_CASE("keithley2400: sweep read back with :FETC?, compliance from the status word") {
  auto inst = std::make_unique<sim::keithley2400>(13);
  auto* dut = inst.get();
  sim_fixture s(std::move(inst));
  client c(s.resource());
  source_measure sm(c.session, *find_model("keithley2400"));
  power_up(c, sm, 1e-3, 0.0);
  auto r = c.await<sweep_result>([&](auto h) { sm.async_sweep_linear(0.0, 1.0, 11, 0ms, h); });
  REQUIRE_MESSAGE(r.has_value(), message(r));
  REQUIRE(r->size() == 11);
  CHECK(!(*r)[5].in_compliance());  // 0.5 V: far below 1 mA
  CHECK((*r)[5].measure.value.to_double() ==
        doctest::Approx(sim::keithley2450::diode_current(0.5)).epsilon(5e-3));
  CHECK(r->back().in_compliance());  // 1 V: clamped at 1 mA, status bit 3
  CHECK(r->back().measure.value.to_double() == doctest::Approx(1e-3).epsilon(2e-3));
  auto l = c.await<sweep_result>([&](auto h) { sm.async_sweep_list({0.9, 0.6, 0.3}, 0ms, h); });
  REQUIRE_MESSAGE(l.has_value(), message(l));
  REQUIRE(l->size() == 3);
  CHECK(l->back().source.value.to_double() == doctest::Approx(0.3).epsilon(1e-3));
  // Back in fixed mode: single points work again.
  auto p = c.await<result<smu_point>>([&](auto h) { sm.async_measure(h); });
  REQUIRE_MESSAGE(p.has_value(), message(p));
  CHECK(p->source.value.to_double() == doctest::Approx(0.3).epsilon(1e-3));
  // A list longer than the 2400 takes is refused before anything is sent.
  auto lng = c.await<sweep_result>(
      [&](auto h) { sm.async_sweep_list(std::vector<double>(101, 0.1), 0ms, h); });
  REQUIRE(!lng.has_value());
  CHECK(lng.error().code == make_error_code(errc::bad_setting));
  // Measure range: a reading beyond it is the over-range sentinel with status bit 0.
  auto rg = c.done([&](done_handler h) { sm.async_set_range(1e-6, h); });
  REQUIRE(rg.has_value());
  auto lv = c.done([&](done_handler h) { sm.async_set_level(0.7, h); });
  REQUIRE(lv.has_value());
  auto o = c.await<result<smu_point>>([&](auto h) { sm.async_measure(h); });
  REQUIRE(o.has_value());
  CHECK(o->over_range());
  auto off = c.done([&](done_handler h) { sm.async_output_off(h); });
  CHECK(off.has_value());
  c.sync();
  CHECK(!dut->log().events().back().output);
}

TEST_CASE("e4980a: DC-bias list sweep of a MOS capacitor, status decoded") {
  sim_fixture s(sim::make_sim_instrument("e4980a", 17));
  client c(s.resource());
  impedance_meter lcr(c.session, *find_model("e4980a"));
  impedance_config cfg;
  cfg.function = "CPD";
  cfg.frequency = 1e5;
  cfg.ac_level = 0.05;
  cfg.aperture = "SHOR";
  auto conf = c.done([&](done_handler h) { lcr.async_configure(cfg, h); });
  REQUIRE_MESSAGE(conf.has_value(), message(conf));
  std::vector<double> biases;
  for (int i = 0; i <= 20; ++i) biases.push_back(-3.0 + 0.25 * i);  // -3 .. +2 V
  auto r = c.await<result<std::vector<impedance_point>>>(
      [&](auto h) { lcr.async_bias_list_sweep(biases, h); });
  REQUIRE_MESSAGE(r.has_value(), message(r));
  REQUIRE(r->size() == biases.size());
  for (std::size_t i = 0; i < r->size(); ++i) {
    const auto& p = (*r)[i];
    CHECK(p.ok());
    CHECK(p.quality == 0);
    CHECK(p.bias == doctest::Approx(biases[i]));
    if (i > 0) CHECK(p.a.value.to_double() <= (*r)[i - 1].a.value.to_double() * 1.002);
  }
  // Accumulation near Cox, inversion near Cmin (high-frequency curve).
  CHECK(r->front().a.value.to_double() > 0.95 * sim::e4980a::kCox);
  CHECK(r->back().a.value.to_double() < 1.1 * sim::e4980a::kCmin);
  // Depletion in between: the flat-band region sits between the two.
  auto mid = (*r)[8].a.value.to_double();  // -1.0 V
  CHECK(mid < 0.9 * sim::e4980a::kCox);
  CHECK(mid > 1.5 * sim::e4980a::kCmin);
  auto p = c.await<result<impedance_point>>([&](auto h) { lcr.async_measure(h); });
  REQUIRE_MESSAGE(p.has_value(), message(p));
  CHECK(p->ok());
  CHECK(p->bias == 0.0);  // bias off again after the list
  CHECK(p->a.value.to_double() == doctest::Approx(sim::e4980a::capacitance(0.0)).epsilon(1e-2));
  cfg.function = "XYZ";
  auto bad = c.done([&](done_handler h) { lcr.async_configure(cfg, h); });
  REQUIRE(!bad.has_value());
  CHECK(bad.error().code == make_error_code(errc::bad_setting));
  // Beyond the model's limits: refused before anything is sent.
  auto far = c.await<result<std::vector<impedance_point>>>(
      [&](auto h) { lcr.async_bias_list_sweep(std::vector<double>(202, 0.0), h); });
  CHECK(!far.has_value());
}

TEST_CASE("34461a: voltmeter function, range, NPLC, read") {
  sim_fixture s(sim::make_sim_instrument("34461a", 19));
  client c(s.resource());
  voltmeter vm(c.session, *find_model("34461a"));
  voltmeter_config cfg;
  cfg.range = 10;
  cfg.nplc = 1;
  auto conf = c.done([&](done_handler h) { vm.async_configure(cfg, h); });
  REQUIRE_MESSAGE(conf.has_value(), message(conf));
  auto r = c.await<result<reading>>([&](auto h) { vm.async_read(h); });
  REQUIRE_MESSAGE(r.has_value(), message(r));
  CHECK(r->channel == "volt");
  CHECK(r->unit == "V");
  CHECK(r->value.to_double() ==
        doctest::Approx(sim::keysight34461a::midpoint_volts(25.0)).epsilon(2e-2));
  cfg.function = "RES";
  cfg.range = 0;
  auto res = c.done([&](done_handler h) { vm.async_configure(cfg, h); });
  REQUIRE_MESSAGE(res.has_value(), message(res));
  auto o = c.await<result<reading>>([&](auto h) { vm.async_read(h); });
  REQUIRE(o.has_value());
  CHECK(o->unit == "Ohm");
  CHECK(o->value.to_double() ==
        doctest::Approx(sim::keysight34461a::two_wire_ohms(25.0)).epsilon(2e-2));
  // 0.1 V range on a 2.5 V signal: over-range sentinel flagged.
  cfg.function = "VOLT:DC";
  cfg.range = 0.1;
  auto small = c.done([&](done_handler h) { vm.async_configure(cfg, h); });
  REQUIRE(small.has_value());
  auto ov = c.await<result<reading>>([&](auto h) { vm.async_read(h); });
  REQUIRE(ov.has_value());
  CHECK((ov->quality & semilab::schemas::quality::over_range) != 0);
  cfg.nplc = 1000;
  auto bad = c.done([&](done_handler h) { vm.async_configure(cfg, h); });
  REQUIRE(!bad.has_value());
  CHECK(bad.error().code == make_error_code(errc::bad_setting));
}
