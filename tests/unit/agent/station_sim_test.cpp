// Station simulator physics (drivers/sim/station.hpp): the shared device models against the
// reference values of measurement-methods.md §9, the coupling of instruments on one device, and
// the station file's errors.
#include <doctest/doctest.h>

#include <semilab/sim/scpi_parser.hpp>
#include <semilab/sim/station.hpp>

#include <cmath>
#include <thread>

using namespace semilab::sim;

namespace {

station_device make(std::string kind, station_device_params p = {}) {
  return station_device("d", std::move(kind), p);
}

std::string ask(sim_instrument& inst, std::string_view line) {
  return execute_line(inst, line).value_or("");
}

}  // namespace

TEST_CASE("diode model reproduces T1: V(1 mA) = 0.9693 V, V(10 mA) = 1.1215 V") {
  auto d = make("diode");
  CHECK(d.current("anode", 0.9693) == doctest::Approx(1e-3).epsilon(2e-3));
  CHECK(d.current("anode", 1.1215) == doctest::Approx(1e-2).epsilon(2e-3));
  // Current source: the terminal voltage inverts the same curve.
  CHECK(d.voltage("anode", 1e-3) == doctest::Approx(0.9693).epsilon(1e-4));
}

TEST_CASE("MOSFET model reproduces T2a in the linear region and saturates at high VDS") {
  auto m = make("mosfet");
  CHECK(m.mosfet_drain_current(3.3, 0.05) == doctest::Approx(1.916e-4).epsilon(2e-3));
  CHECK(m.mosfet_drain_current(0.0, 0.05) == doctest::Approx(9.58e-14).epsilon(1e-2));
  // Saturation: beyond VDS = VGS - Vth the current stays (nearly) flat.
  double i_sat1 = m.mosfet_drain_current(1.5, 2.0), i_sat2 = m.mosfet_drain_current(1.5, 4.0);
  CHECK(i_sat1 == doctest::Approx(i_sat2).epsilon(1e-6));
  CHECK(i_sat1 == doctest::Approx(1.3813e-3 * 1.0 * 1.0 / 2).epsilon(2e-2));
}

TEST_CASE("two SMUs on one MOSFET: the drain current follows the gate SMU's level") {
  auto m = make("mosfet");
  auto gate = make_station_instrument("keithley2450", m, "gate", 1);
  auto drain = make_station_instrument("keithley2450", m, "drain", 2);
  REQUIRE(gate);
  REQUIRE(drain);
  ask(*drain, ":SOUR:FUNC VOLT;:SOUR:VOLT 0.05;:SOUR:VOLT:ILIM 0.01;:OUTP ON");
  ask(*gate, ":SOUR:FUNC VOLT;:SOUR:VOLT 0;:SOUR:VOLT:ILIM 1e-6;:OUTP ON");
  double off = std::stod(ask(*drain, ":READ? \"defbuffer1\",READ"));
  ask(*gate, ":SOUR:VOLT 3.3");
  double on = std::stod(ask(*drain, ":READ? \"defbuffer1\",READ"));
  CHECK(on == doctest::Approx(1.916e-4).epsilon(1e-3));
  CHECK(std::fabs(off) < 1e-12);
  // The gate SMU sees only the gate leakage (1 pS x 3.3 V).
  CHECK(std::fabs(std::stod(ask(*gate, ":READ? \"defbuffer1\",READ"))) < 1e-11);
  // Gate output off: the channel closes again.
  ask(*gate, ":OUTP OFF");
  CHECK(std::fabs(std::stod(ask(*drain, ":READ? \"defbuffer1\",READ"))) < 1e-12);
}

TEST_CASE("MOS capacitor model reproduces T3: accumulation, flat band, inversion") {
  station_device_params p;
  p.area = 1e-8;  // 1e-4 cm^2
  auto c = make("moscap", p);
  CHECK(c.moscap_capacitance(-10.0) == doctest::Approx(34.33e-12).epsilon(3e-3));
  CHECK(c.moscap_capacitance(-0.9) == doctest::Approx(14.61e-12).epsilon(3e-3));   // C_FB at VFB
  CHECK(c.moscap_capacitance(5.0) == doctest::Approx(3.10e-12).epsilon(1e-2));     // HF Cmin
  // Monotonic from accumulation to inversion.
  double prev = 1;
  for (double v = -5; v <= 3; v += 0.25) {
    double now = c.moscap_capacitance(v);
    CHECK(now <= prev * (1 + 1e-12));
    prev = now;
  }
  // The LCR meter on the gate reports Cp at the bias (CPG), list sweep included.
  auto lcr = make_station_instrument("e4980a", c, "gate", 3);
  ask(*lcr, ":FUNC:IMP CPG;:FREQ 100000;:DISP:PAGE LIST;:LIST:BIAS:VOLT -10,-0.9;:BIAS:STAT ON;:TRIG:IMM");
  auto reply = ask(*lcr, ":FETC?");
  double c_acc = std::stod(reply.substr(0, reply.find(',')));
  CHECK(c_acc == doctest::Approx(34.33e-12).epsilon(1e-3));
}

TEST_CASE("four-point geometry: SMU forcing current and DMM sensing see Rs/(4.5324 F2)") {
  station_device_params p;
  p.r_sheet = 100;
  p.spacing = 1e-3;
  p.diameter = 0.1;  // d/s = 100: V/I = 22.083 ohm (T5a)
  p.thermo_emf = 0;
  auto s = make("sheet", p);
  CHECK(s.sheet_ratio() == doctest::Approx(22.083).epsilon(1e-4));
  auto smu = make_station_instrument("keithley2450", s, "force", 4);
  auto dmm = make_station_instrument("34461a", s, "sense", 5);
  ask(*smu, ":SOUR:FUNC CURR;:SENS:FUNC \"VOLT\";:SOUR:CURR:VLIM 2;:SOUR:CURR 1e-3;:OUTP ON");
  CHECK(std::stod(ask(*smu, ":READ? \"defbuffer1\",READ")) == doctest::Approx(22.083e-3).epsilon(1e-3));
  CHECK(std::stod(ask(*dmm, "READ?")) == doctest::Approx(22.083e-3).epsilon(1e-3));
  ask(*smu, ":OUTP OFF");
  CHECK(std::fabs(std::stod(ask(*dmm, "READ?"))) < 1e-6);
}

TEST_CASE("station SMU sweeps run into the buffer; output off stops them") {
  auto d = make("diode");
  auto smu = make_station_instrument("keithley2450", d, "anode", 6);
  ask(*smu, ":SOUR:FUNC CURR;:SENS:FUNC \"VOLT\";:SOUR:CURR:VLIM 2;:SENS:VOLT:NPLC 0.01;:OUTP ON");
  ask(*smu, ":SOUR:LIST:CURR 1e-6,1e-4,1e-3;:TRAC:CLE \"defbuffer1\"");
  ask(*smu, ":SOUR:SWE:CURR:LIST 1,0,1,OFF,\"defbuffer1\";:INIT");
  auto hold = smu->take_reply_hold();
  (void)hold;
  // *OPC? is held for the sweep; here we just let the simulated time pass.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(ask(*smu, ":TRAC:ACT?") == "3");
  auto data = ask(*smu, ":TRAC:DATA? 1,3,\"defbuffer1\",SOUR,READ");
  CHECK(data.find("1.000000E-03") != std::string::npos);
  ask(*smu, ":OUTP OFF");
  CHECK(ask(*smu, ":OUTP?") == "0");
}

TEST_CASE("station files: devices, instruments and errors naming file:line") {
  std::string err;
  auto ok = parse_station(R"(
[[device]]
name = "m1"
kind = "mosfet"
vth = 0.45
[[instrument]]
id = "gate"
model = "keithley2450"
device = "m1"
terminal = "gate"
[[instrument]]
id = "drain"
model = "keithley2450"
device = "m1"
terminal = "drain"
listen = "127.0.0.1:0"
)", "st.toml", err);
  REQUIRE(ok.has_value());
  CHECK(ok->instruments.size() == 2);
  CHECK(ok->devices[0].second.second.vth == doctest::Approx(0.45));

  auto bad_terminal = parse_station(R"(
[[device]]
name = "m1"
kind = "mosfet"
[[instrument]]
id = "x"
model = "keithley2450"
device = "m1"
terminal = "source"
)", "st.toml", err);
  CHECK_FALSE(bad_terminal.has_value());
  CHECK(err.find("st.toml:5:") == 0);
  CHECK(err.find("no terminal 'source'") != std::string::npos);

  auto bad_key = parse_station("[[device]]\nname = \"d\"\nkind = \"diode\"\nvt = 1\n", "f.toml", err);
  CHECK_FALSE(bad_key.has_value());
  CHECK(err.find("f.toml:4:") == 0);
  CHECK(err.find("unknown device parameter") != std::string::npos);
}
