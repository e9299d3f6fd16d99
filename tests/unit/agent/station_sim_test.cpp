// Station simulator physics (drivers/sim/station.hpp): the shared device models against the
// reference values of measurement-methods.md §9, the coupling of instruments on one device, and
// the station file's errors.
#include <doctest/doctest.h>

#include <semilab/methods/analyze.hpp>
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

// ---- van der Pauw / Hall and TLM behind a switch matrix ------------------------------------------

namespace {

// What a run executor does for one configuration: route, source +I and -I, read the DMM.
void four_terminal(sim_instrument& matrix, sim_instrument& smu, sim_instrument& dmm, int a, int b, int c,
                   int d, double field, double amps, semilab::methods::data_table& t) {
  ask(matrix, ":ROUT:OPEN:ALL");
  ask(matrix, ":ROUT:CLOS (@1!" + std::to_string(a) + ",2!" + std::to_string(b) + ",3!" + std::to_string(c) +
                  ",4!" + std::to_string(d) + ")");
  for (double i : {amps, -amps}) {
    ask(smu, ":SOUR:CURR " + std::to_string(i));
    const double v = std::stod(ask(dmm, "READ?"));
    t.rows.push_back({double(a), double(b), double(c), double(d), field, i, v});
  }
}

}  // namespace

TEST_CASE("Hall station: matrix, magnet, SMU and DMM on one sample give its Rs, type, density, mobility") {
  station_device_params p;
  p.r_sheet = 780.19;  // T7: n-type, 1e13 cm^-2, 800 cm^2/V.s
  p.n_sheet = 1e17;
  p.hall_sign = -1;
  p.angle2 = 70;  // contacts off the square: R_A != R_B, a misalignment offset at B = 0
  p.angle4 = 250;
  p.tesla_per_amp = 0.1;
  auto dev = make("hall", p);
  auto matrix = make_station_instrument("keithley7001", dev, "matrix", 1);
  auto magnet = make_station_instrument("kepco-bop", dev, "magnet", 2);
  auto smu = make_station_instrument("keithley2450", dev, "force", 3);
  auto dmm = make_station_instrument("34461a", dev, "sense", 4);
  REQUIRE(matrix);
  REQUIRE(magnet);
  CHECK(ask(*matrix, "*IDN?").find("MODEL 7001") != std::string::npos);
  CHECK(ask(*magnet, "*IDN?").find("KEPCO") != std::string::npos);
  ask(*matrix, ":ROUT:CLOS (@1!1,2!3)");
  CHECK(ask(*matrix, ":ROUT:CLOS?") == "(@1!1,2!3)");
  ask(*matrix, ":ROUT:CLOS (@1!5)");  // no contact 5
  CHECK(ask(*matrix, ":SYST:ERR?").find("-224") != std::string::npos);

  ask(*smu, ":SOUR:FUNC CURR;:SENS:FUNC \"VOLT\";:SOUR:CURR:VLIM 20;:SOUR:CURR 1e-4;:OUTP ON");
  semilab::methods::data_table t;
  t.columns = {"i_from", "i_to", "v_plus", "v_minus", "b", "i", "v"};
  for (const auto& k : semilab::methods::vdp_configs())
    four_terminal(*matrix, *smu, *dmm, k.i_from, k.i_to, k.v_plus, k.v_minus, 0, 1e-4, t);
  for (double amps : {5.0, -5.0}) {  // +-0.5 T
    ask(*magnet, ":CURR " + std::to_string(amps) + ";:OUTP ON");
    CHECK(dev.field() == doctest::Approx(amps * 0.1));
    for (const auto& k : semilab::methods::hall_configs())
      four_terminal(*matrix, *smu, *dmm, k.i_from, k.i_to, k.v_plus, k.v_minus, amps * 0.1, 1e-4, t);
  }
  ask(*magnet, ":OUTP OFF");
  CHECK(dev.field() == 0);

  auto v = semilab::methods::analyze_table("vdp", t, {});
  REQUIRE(v.has_value());
  CHECK(v->value("r_sheet") == doctest::Approx(780.19).epsilon(1e-3));
  CHECK(std::fabs(v->value("r_a") / v->value("r_b") - 1) > 0.1);  // the asymmetry is there
  auto h = semilab::methods::analyze_table("hall", t, {{"thickness", "1e-6"}});
  REQUIRE(h.has_value());
  CHECK(h->find("carrier_type")->text == "n");
  CHECK(h->value("n_sheet") == doctest::Approx(1e17).epsilon(5e-3));
  CHECK(h->value("mobility") == doctest::Approx(0.08).epsilon(5e-3));

  // p-type sample: the sum changes sign.
  p.hall_sign = 1;
  auto dp = make("hall", p);
  auto mp = make_station_instrument("keithley7001", dp, "matrix", 1);
  auto gp = make_station_instrument("kepco-bop", dp, "magnet", 2);
  auto sp = make_station_instrument("keithley2450", dp, "force", 3);
  auto vp = make_station_instrument("34461a", dp, "sense", 4);
  ask(*sp, ":SOUR:FUNC CURR;:SENS:FUNC \"VOLT\";:SOUR:CURR:VLIM 20;:SOUR:CURR 1e-4;:OUTP ON");
  semilab::methods::data_table tp;
  tp.columns = t.columns;
  for (double amps : {5.0, -5.0}) {
    ask(*gp, ":CURR " + std::to_string(amps) + ";:OUTP ON");
    for (const auto& k : semilab::methods::hall_configs())
      four_terminal(*mp, *sp, *vp, k.i_from, k.i_to, k.v_plus, k.v_minus, amps * 0.1, 1e-4, tp);
  }
  auto hp = semilab::methods::analyze_table("hall", tp, {{"r_sheet", "780.19"}});
  REQUIRE(hp.has_value());
  CHECK(hp->find("carrier_type")->text == "p");

  // Open routing: the SMU runs into its voltage limit (compliance), nothing flows.
  ask(*matrix, ":ROUT:OPEN:ALL");
  CHECK(std::fabs(std::stod(ask(*smu, ":READ? \"defbuffer1\",READ"))) == doctest::Approx(20).epsilon(1e-3));
}

TEST_CASE("TLM station: pads behind the matrix give the structure's contact resistance and transfer length") {
  station_device_params p;
  p.r_sheet = 50;
  p.r_contact = 5;
  p.width = 100e-6;  // LT = Rc W / Rsh = 10 um
  p.gap1 = 5e-6;
  p.gap2 = 10e-6;
  p.gap3 = 20e-6;
  p.gap4 = 40e-6;
  auto dev = make("tlm", p);
  CHECK(dev.columns() == 5);
  CHECK(dev.tlm_resistance(2) == doctest::Approx(10 + 50 * 0.1));
  auto matrix = make_station_instrument("keithley7001", dev, "matrix", 1);
  auto smu = make_station_instrument("keithley2450", dev, "force", 2);
  auto dmm = make_station_instrument("34461a", dev, "sense", 3);
  ask(*smu, ":SOUR:FUNC CURR;:SENS:FUNC \"VOLT\";:SOUR:CURR:VLIM 10;:SOUR:CURR 1e-3;:OUTP ON");
  semilab::methods::data_table t;
  t.columns = {"d", "i", "v"};
  const double gaps[] = {5e-6, 10e-6, 20e-6, 40e-6};
  for (int k = 1; k <= 4; ++k) {
    ask(*matrix, ":ROUT:OPEN:ALL");
    ask(*matrix, ":ROUT:CLOS (@1!" + std::to_string(k) + ",2!" + std::to_string(k + 1) + ",3!" +
                     std::to_string(k) + ",4!" + std::to_string(k + 1) + ")");
    for (double i : {1e-3, -1e-3}) {
      ask(*smu, ":SOUR:CURR " + std::to_string(i));
      t.rows.push_back({gaps[k - 1], i, std::stod(ask(*dmm, "READ?"))});
    }
  }
  auto r = semilab::methods::analyze_table("tlm", t, {{"contact_width", "100e-6"}});
  REQUIRE(r.has_value());
  CHECK(r->value("r_contact") == doctest::Approx(5).epsilon(5e-3));
  CHECK(r->value("r_sheet") == doctest::Approx(50).epsilon(5e-3));
  CHECK(r->value("l_transfer") == doctest::Approx(10e-6).epsilon(1e-2));
  // Sensing across the pads beyond the forced pair: no current there, only the contact drop.
  ask(*matrix, ":ROUT:OPEN:ALL;:ROUT:CLOS (@1!2,2!3,3!1,4!2)");
  ask(*smu, ":SOUR:CURR 1e-3");
  CHECK(std::stod(ask(*dmm, "READ?")) == doctest::Approx(-5e-3).epsilon(1e-2));
}

TEST_CASE("station files: a Hall station served over TCP (matrix, magnet, SMU, DMM on one sample)") {
  std::string err;
  auto cfg = parse_station(R"(
[[device]]
name = "h1"
kind = "hall"
r_sheet = 780.19
n_sheet = 1e17
hall_sign = -1
angle2 = 80
tesla_per_amp = 0.1
[[instrument]]
id = "matrix"
model = "keithley7001"
device = "h1"
terminal = "matrix"
[[instrument]]
id = "magnet"
model = "kepco-bop"
device = "h1"
terminal = "magnet"
[[instrument]]
id = "smu"
model = "keithley2450"
device = "h1"
terminal = "force"
[[instrument]]
id = "dmm"
model = "34461a"
device = "h1"
terminal = "sense"
)", "hall.toml", err);
  INFO(err);
  REQUIRE(cfg.has_value());
  CHECK(cfg->devices[0].second.second.angle2 == doctest::Approx(80));
  boost::asio::io_context io;
  station st(io, *cfg, err);
  REQUIRE(st.ok());
  CHECK(st.endpoints().size() == 4);
  auto bad = parse_station("[[device]]\nname = \"t\"\nkind = \"tlm\"\ngap9 = 1\n[[instrument]]\nid = \"a\"\n"
                           "model = \"keithley7001\"\ndevice = \"t\"\nterminal = \"matrix\"\n",
                           "tlm.toml", err);
  CHECK(!bad.has_value());
  CHECK(err.find("tlm.toml:4:1: device[0].gap9: unknown device parameter") != std::string::npos);
  auto bad_term = parse_station("[[device]]\nname = \"t\"\nkind = \"tlm\"\n[[instrument]]\nid = \"a\"\n"
                                "model = \"kepco-bop\"\ndevice = \"t\"\nterminal = \"magnet\"\n",
                                "tlm.toml", err);
  CHECK(!bad_term.has_value());
  CHECK(err.find("a tlm has no terminal 'magnet' (matrix, force, sense)") != std::string::npos);
}
