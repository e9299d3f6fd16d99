// The Keithley 2400, Keysight E4980A and Keysight 34461A simulators at the command level, the
// common commands every simulator shares (nonce echo, *OPT?, PON), and the fault grammar.
#include <doctest/doctest.h>

#include <cmath>
#include <complex>
#include <numbers>
#include <semilab/drivers/model.hpp>
#include <semilab/drivers/scpi_reply.hpp>
#include <semilab/sim/e4980a.hpp>
#include <semilab/sim/keithley2400.hpp>
#include <semilab/sim/keithley2450.hpp>
#include <semilab/sim/keysight34461a.hpp>
#include <semilab/sim/server.hpp>

using namespace semilab::sim;

namespace {
std::string ask(sim_instrument& inst, std::string_view line) {
  auto r = execute_line(inst, line);
  REQUIRE_MESSAGE(r.has_value(), line);
  return *r;
}
void tell(sim_instrument& inst, std::string_view line) {
  auto r = execute_line(inst, line);
  CHECK_MESSAGE(!r.has_value(), line);
}
std::vector<double> numbers(const std::string& reply) {
  auto list = semilab::drivers::parse_number_list(reply);
  REQUIRE_MESSAGE(list.has_value(), reply);
  std::vector<double> out;
  for (const auto& n : *list) out.push_back(n.value.to_double());
  return out;
}
}  // namespace

TEST_CASE("common: nonce echo, *OPT?, PON after power-on, *CLS clears it, injected errors") {
  for (const auto& m : sim_models()) {
    CAPTURE(m.name);
    auto inst = m.make(1);
    CHECK(ask(*inst, ":SYSTem:NONCe? 17") == "17");
    CHECK(ask(*inst, ":SYST:NONC? a;:SYST:NONC? b") == "a;b");
    tell(*inst, ":SYST:NONC? bad!token");
    auto e = semilab::drivers::parse_error_entry(ask(*inst, ":SYST:ERR?"));
    REQUIRE(e.has_value());
    CHECK(e->code == -224);
    CHECK(!ask(*inst, "*OPT?").empty());
    // A new instrument has just been powered on.
    auto esr = semilab::drivers::parse_esr_reply(ask(*inst, "*ESR?"));
    REQUIRE(esr.has_value());
    CHECK(esr->power_on());
    CHECK(ask(*inst, "*ESR?") == "0");  // reading clears it
    inst->power_on();
    CHECK(semilab::drivers::parse_esr_reply(ask(*inst, "*ESR?"))->power_on());
    inst->power_on();
    tell(*inst, "*CLS");
    CHECK(ask(*inst, "*ESR?") == "0");
    inst->inject_error(-222);
    auto inj = semilab::drivers::parse_error_entry(ask(*inst, ":SYST:ERR?"));
    REQUIRE(inj.has_value());
    CHECK(inj->code == -222);
  }
}

TEST_CASE("keithley2400 sim: FORM:ELEM canonical order, status word, compliance bit") {
  auto inst = make_sim_instrument("keithley2400", 3);
  REQUIRE(inst);
  CHECK(ask(*inst, "*IDN?").rfind("KEITHLEY INSTRUMENTS INC.,MODEL 2400,", 0) == 0);
  CHECK(ask(*inst, ":SYST:ERR?") == "0,\"No error\"");
  // Default: all five elements; RES not measured reads 9.91E37.
  auto all = numbers(ask(*inst, ":READ?"));
  REQUIRE(all.size() == 5);
  CHECK(all[2] == doctest::Approx(9.91e37));
  // Given in any order, returned in canonical order VOLT,CURR,RES,TIME,STAT.
  tell(*inst, ":FORM:ELEM STAT,CURR,VOLT");
  CHECK(ask(*inst, ":FORM:ELEM?") == "VOLT,CURR,STAT");
  tell(*inst, ":SOUR:FUNC VOLT;:SENS:FUNC \"CURR\";:SENS:CURR:PROT 0.1;:SOUR:VOLT 0.6;:OUTP ON");
  std::string reply = ask(*inst, ":READ?");
  CHECK(reply[0] == '+');  // "%+.6E"
  auto v = numbers(reply);
  REQUIRE(v.size() == 3);
  CHECK(v[0] == doctest::Approx(0.6).epsilon(1e-3));
  CHECK(v[1] == doctest::Approx(keithley2450::diode_current(0.6)).epsilon(1e-3));
  auto stat = static_cast<unsigned>(v[2]);
  CHECK((stat & keithley2400::kStatCompliance) == 0);
  CHECK((stat & keithley2400::kStatVoltSource) != 0);
  CHECK((stat & keithley2400::kStatCurrMeas) != 0);
  // Into compliance: current clamps at the limit, bit 3 set.
  tell(*inst, ":SENS:CURR:PROT 1e-4;:SOUR:VOLT 2");
  v = numbers(ask(*inst, ":READ?"));
  CHECK(v[1] == doctest::Approx(1e-4).epsilon(1e-3));
  CHECK((static_cast<unsigned>(v[2]) & keithley2400::kStatCompliance) != 0);
  CHECK(ask(*inst, ":SENS:CURR:PROT:TRIP?") == "1");
  // Errors: bad element, out-of-range compliance.
  tell(*inst, ":FORM:ELEM VOLT,BOGUS");
  tell(*inst, ":SENS:CURR:PROT 5");
  CHECK(ask(*inst, ":SYST:ERR?") == "-224,\"Illegal parameter value\"");
  CHECK(ask(*inst, ":SYST:ERR?") == "-222,\"Parameter data out of range\"");
  tell(*inst, "*RST");
  CHECK(ask(*inst, ":OUTP?") == "0");
  CHECK(ask(*inst, ":FORM:ELEM?") == "VOLT,CURR,RES,TIME,STAT");
}

TEST_CASE("e4980a sim: MOS capacitor C-V, functions, :FETC? status and overload") {
  using e = semilab::sim::e4980a;
  // Accumulation, flat band, inversion.
  CHECK(e::capacitance(-5) == doctest::Approx(e::kCox).epsilon(1e-4));
  CHECK(e::capacitance(5) == doctest::Approx(e::kCmin).epsilon(1e-4));
  CHECK(e::capacitance(e::kFlatBand) == doctest::Approx((e::kCox + e::kCmin) / 2));
  // Cp-D of the model against a hand computation at 1 kHz, accumulation.
  double w = 2 * std::numbers::pi * 1000;
  double a = 0, b = 0;
  REQUIRE(e::function_values("CPD", e::impedance(1000, -5), 1000, a, b));
  CHECK(a == doctest::Approx(e::kCox).epsilon(1e-4));
  CHECK(b == doctest::Approx(e::kLeakage / (w * e::kCox) + w * e::kCox * e::kSeriesResistance)
                 .epsilon(1e-2));
  REQUIRE(e::function_values("CSRS", e::impedance(1e6, -5), 1e6, a, b));
  CHECK(b == doctest::Approx(e::kSeriesResistance).epsilon(1e-3));
  CHECK(!e::function_values("XYZ", e::impedance(1e3, 0), 1e3, a, b));

  auto inst = make_sim_instrument("e4980a", 5);
  REQUIRE(inst);
  CHECK(ask(*inst, ":SYST:ERR?") == "+0,\"No error\"");  // Keysight writes +0
  tell(*inst, ":FUNC:IMP CPD;:FREQ 1E5;:VOLT 0.5;:BIAS:VOLT -3;:BIAS:STAT ON;:INIT:CONT ON");
  CHECK(ask(*inst, ":FUNC:IMP?") == "CPD");
  std::string reply = ask(*inst, ":FETC?");
  auto v = numbers(reply);
  REQUIRE(v.size() == 3);
  CHECK(reply.substr(reply.rfind(',') + 1) == "+0");
  CHECK(v[0] == doctest::Approx(e::capacitance(-3)).epsilon(1e-3));
  // Depletion to inversion: the capacitance falls with bias.
  tell(*inst, ":BIAS:VOLT 3");
  CHECK(numbers(ask(*inst, ":FETC?"))[0] < 0.3 * v[0]);
  // Bias off: 0 V regardless of the bias level.
  tell(*inst, ":BIAS:STAT OFF");
  CHECK(numbers(ask(*inst, ":FETC?"))[0] == doctest::Approx(e::capacitance(0)).epsilon(1e-3));
  // 20 Hz on 20 pF is > 100 MOhm: overload, status +1, values 9.9E37.
  tell(*inst, ":BIAS:STAT ON;:FREQ 20");
  CHECK(ask(*inst, ":FETC?") == "+9.90000E+37,+9.90000E+37,+1");
  // Without continuous triggering, :FETC? has no data until a trigger.
  tell(*inst, ":INIT:CONT OFF");
  tell(*inst, ":FETC?");
  CHECK(ask(*inst, ":SYST:ERR?") == "-230,\"Data corrupt or stale\"");
  tell(*inst, ":TRIG");
  CHECK(numbers(ask(*inst, ":FETC?")).size() == 3);
  tell(*inst, ":FREQ 3E6");
  tell(*inst, ":FUNC:IMP XYZ");
  CHECK(ask(*inst, ":SYST:ERR?") == "-222,\"Parameter data out of range\"");
  CHECK(ask(*inst, ":SYST:ERR?") == "-224,\"Illegal parameter value\"");
}

TEST_CASE("34461a sim: resistor network, MEAS/READ/FETC, ranges and over-range") {
  using d = keysight34461a;
  CHECK(d::thermistor(25) == doctest::Approx(d::kR25));
  CHECK(d::thermistor(30) < d::kR25);  // NTC
  double mid = d::midpoint_volts(25);
  CHECK(mid == doctest::Approx(2.5 * (1 - 1e-3)).epsilon(1e-3));  // 10 MOhm loading
  CHECK(d::two_wire_ohms(25) == doctest::Approx(5e3));

  auto inst = make_sim_instrument("34461a", 9);
  REQUIRE(inst);
  CHECK(ask(*inst, ":SYST:ERR?") == "+0,\"No error\"");
  std::string r = ask(*inst, "MEAS:VOLT:DC?");
  CHECK(r.size() == std::string("+2.49987620E+00").size());
  CHECK(std::stod(r) == doctest::Approx(mid).epsilon(5e-3));
  CHECK(std::stod(ask(*inst, "MEAS:RES?")) == doctest::Approx(5e3).epsilon(5e-3));
  tell(*inst, "CONF:VOLT:DC 10");
  tell(*inst, "VOLT:DC:NPLC 1");
  tell(*inst, "TRIG:SOUR IMM");
  CHECK(std::stod(ask(*inst, "READ?")) == doctest::Approx(mid).epsilon(5e-3));
  CHECK(ask(*inst, "CONF?").rfind("\"VOLT +1.00000000E+01", 0) == 0);
  // 2.5 V on the 1 V range is over range.
  tell(*inst, "CONF:VOLT:DC 1");
  CHECK(ask(*inst, "READ?") == "+9.90000000E+37");
  // FETC? needs INIT first.
  tell(*inst, "*RST");
  tell(*inst, "FETC?");
  CHECK(ask(*inst, ":SYST:ERR?") == "-230,\"Data corrupt or stale\"");
  tell(*inst, "INIT");
  CHECK(std::stod(ask(*inst, "FETC?")) == doctest::Approx(mid).epsilon(5e-3));
  tell(*inst, "CONF:VOLT:DC 5000");
  tell(*inst, "CONF:VOLT:DC abc");
  CHECK(ask(*inst, ":SYST:ERR?") == "-222,\"Data out of range\"");
  CHECK(ask(*inst, ":SYST:ERR?") == "-104,\"Data type error\"");
}

TEST_CASE("fault grammar: hang, late, power-cycle-after, error") {
  fault_config f;
  CHECK(apply_fault_spec("hang", f).empty());
  CHECK(f.hang);
  CHECK(apply_fault_spec("late=300/4", f).empty());
  CHECK(f.late == std::chrono::milliseconds(300));
  CHECK(f.late_every == 4);
  CHECK(apply_fault_spec("power-cycle-after=7", f).empty());
  CHECK(f.power_cycle_after == 7);
  CHECK(apply_fault_spec("error=-222", f).empty());
  CHECK(apply_fault_spec("error=-113*3", f).empty());
  CHECK(f.errors == std::vector<int>{-222, -113, -113, -113});
  for (std::string_view bad : {"hang=1", "late=300", "late=300/0", "late=x/2", "error=0",
                               "error=abc", "error=-1*0", "error=-1*x", "power-cycle-after=-1"}) {
    fault_config g;
    CHECK_MESSAGE(!apply_fault_spec(bad, g).empty(), bad);
  }
  CHECK(kFaultGrammar.find("power-cycle-after=N") != std::string_view::npos);
  CHECK(kFaultGrammar.find(":SYSTem:NONCe?") != std::string_view::npos);
}
