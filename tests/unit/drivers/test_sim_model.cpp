#include <semilab/drivers/model.hpp>
#include <semilab/sim/instrument.hpp>
#include <semilab/sim/keithley2450.hpp>
#include <semilab/sim/scpi_parser.hpp>
#include <semilab/sim/server.hpp>

#include <doctest/doctest.h>

#include <cmath>

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
double ask_number(sim_instrument& inst, std::string_view line) {
  return std::stod(ask(inst, line));
}
}  // namespace

TEST_CASE("scpi parser: compound messages, queries, arguments") {
  auto cmds = parse_program(":SOURce:VOLTage 1.5; :SOUR:VOLT:ILIM 1e-3;*IDN?;:SENS:FUNC \"CURR;X\"");
  REQUIRE(cmds.size() == 4);
  CHECK(cmds[0].nodes == std::vector<std::string>{"SOURCE", "VOLTAGE"});
  CHECK(cmds[0].args == std::vector<std::string>{"1.5"});
  CHECK(!cmds[0].query);
  CHECK(cmds[2].nodes == std::vector<std::string>{"*IDN"});
  CHECK(cmds[2].query);
  CHECK(cmds[3].args == std::vector<std::string>{"\"CURR;X\""});
  // Relative header after ';' continues in the previous branch.
  auto rel = parse_program(":SOUR:VOLT 1;ILIM 0.1;*CLS;VOLT?");
  REQUIRE(rel.size() == 4);
  CHECK(rel[1].nodes == std::vector<std::string>{"SOUR", "ILIM"});
  CHECK(rel[3].nodes == std::vector<std::string>{"SOUR", "VOLT"});
  CHECK(rel[3].query);
  CHECK(parse_program("  ;; ").empty());
  CHECK(parse_program(":SO%R:VOLT 1").front().malformed);
}

TEST_CASE("scpi parser: short and long forms, optional nodes, case") {
  auto one = [](std::string_view s) { return parse_program(s).front(); };
  constexpr std::string_view kPat = "[:SOURce]:VOLTage[:LEVel][:IMMediate][:AMPLitude]";
  CHECK(header_matches(one(":SOUR:VOLT 1"), kPat));
  CHECK(header_matches(one(":source:voltage:level 1"), kPat));
  CHECK(header_matches(one("VOLT:LEV:IMM:AMPL 1"), kPat));
  CHECK(header_matches(one(":SoUr:VoLt?"), kPat));
  CHECK(!header_matches(one(":SOURC:VOLT 1"), kPat));  // neither short nor long form
  CHECK(!header_matches(one(":SOUR:VOLT:ILIM 1"), kPat));
  CHECK(header_matches(one("*idn?"), "*IDN"));
  CHECK(unquote("\"CURR\"") == "CURR");
  CHECK(unquote("'VOLT'") == "VOLT");
}

TEST_CASE("keithley2450 sim: identity and common commands") {
  auto inst = make_sim_instrument("keithley2450", 1);
  REQUIRE(inst);
  CHECK(ask(*inst, "*IDN?") == "KEITHLEY INSTRUMENTS,MODEL 2450,04412345,1.7.12b");
  CHECK(ask(*inst, "*OPC?") == "1");
  CHECK(ask(*inst, "*LANG?") == "SCPI");
  CHECK(ask(*inst, ":SYST:ERR?") == "0,\"No error\"");
  CHECK(ask(*inst, "*IDN?;*OPC?") == "KEITHLEY INSTRUMENTS,MODEL 2450,04412345,1.7.12b;1");
  CHECK(make_sim_instrument("nope", 1) == nullptr);
}

TEST_CASE("keithley2450 sim: error queue is a FIFO with overflow") {
  auto inst = make_sim_instrument("keithley2450", 1);
  tell(*inst, ":BOGUS 1");
  tell(*inst, ":SOUR:VOLT 999");  // out of range
  tell(*inst, ":SOUR:VOLT abc");
  CHECK(ask(*inst, ":SYSTem:ERRor:COUNt?") == "3");
  CHECK(ask(*inst, ":SYST:ERR?") == "-113,\"Undefined header\"");
  CHECK(ask(*inst, ":SYSTem:ERRor:NEXT?") == "-222,\"Parameter data out of range\"");
  CHECK(ask(*inst, "SYST:ERR?") == "-104,\"Data type error\"");
  CHECK(ask(*inst, "SYST:ERR?") == "0,\"No error\"");

  for (int i = 0; i < 15; ++i) tell(*inst, "FOO");
  CHECK(ask(*inst, ":SYST:ERR:COUN?") == std::to_string(scpi_instrument::kErrorQueueCapacity));
  for (std::size_t i = 0; i + 1 < scpi_instrument::kErrorQueueCapacity; ++i)
    CHECK(ask(*inst, ":SYST:ERR?") == "-113,\"Undefined header\"");
  CHECK(ask(*inst, ":SYST:ERR?") == "-350,\"Queue overflow\"");
  CHECK(ask(*inst, ":SYST:ERR?") == "0,\"No error\"");

  tell(*inst, "FOO");
  tell(*inst, "*CLS");
  CHECK(ask(*inst, ":SYST:ERR?") == "0,\"No error\"");
  tell(*inst, "*IDN");  // query-only header used as a command
  tell(*inst, ":SOUR:VOLT");
  tell(*inst, "*RST 1");
  tell(*inst, ":SO%R 1");
  CHECK(ask(*inst, ":SYST:ERR?") == "-113,\"Undefined header\"");
  CHECK(ask(*inst, ":SYST:ERR?") == "-109,\"Missing parameter\"");
  CHECK(ask(*inst, ":SYST:ERR?") == "-108,\"Parameter not allowed\"");
  CHECK(ask(*inst, ":SYST:ERR?") == "-102,\"Syntax error\"");
}

TEST_CASE("keithley2450 sim: source settings and *RST") {
  auto inst = make_sim_instrument("keithley2450", 1);
  tell(*inst, ":SOUR:FUNC VOLT;:SOUR:VOLT 0.6;:SOUR:VOLT:ILIM 0.1;:SENS:FUNC \"CURR\";:OUTP ON");
  CHECK(ask(*inst, ":SOUR:VOLT?") == "6.000000E-01");
  CHECK(ask(*inst, ":SOURce:VOLTage:ILIMit?") == "1.000000E-01");
  CHECK(ask(*inst, ":OUTP?") == "1");
  CHECK(ask(*inst, ":SOUR:FUNC?") == "VOLT");
  CHECK(ask(*inst, ":SENS:FUNC?") == "\"CURR:DC\"");
  tell(*inst, ":OUTP OFF");
  CHECK(ask(*inst, ":OUTPut:STATe?") == "0");
  tell(*inst, ":OUTP 1");
  CHECK(ask(*inst, ":OUTP?") == "1");
  tell(*inst, "*RST");
  CHECK(ask(*inst, ":OUTP?") == "0");
  CHECK(ask(*inst, ":SOUR:VOLT?") == "0.000000E+00");
  CHECK(ask(*inst, ":SOUR:VOLT:ILIM?") == "1.050000E-04");
  CHECK(ask(*inst, ":SYST:ERR?") == "0,\"No error\"");
}

TEST_CASE("keithley2450 sim: diode physics, compliance, noise, output off") {
  using k = keithley2450;
  // Shockley check well below series-resistance effects: I = Is*(exp(V/(n*Vt)) - 1).
  double nvt = k::kIdeality * 1.380649e-23 * k::kTemperature / 1.602176634e-19;
  CHECK(k::diode_current(0.6) == doctest::Approx(1e-12 * std::expm1(0.6 / nvt)).epsilon(1e-6));
  CHECK(k::diode_current(0.0) == doctest::Approx(0.0).epsilon(1e-15));
  CHECK(k::diode_current(-5.0) == doctest::Approx(-1e-12).epsilon(1e-6));
  // The solution satisfies the implicit equation including the series resistance.
  double i = k::diode_current(1.5);
  CHECK(k::diode_voltage(i) == doctest::Approx(1.5).epsilon(1e-9));

  auto inst = make_sim_instrument("keithley2450", 42);
  tell(*inst, ":SOUR:VOLT 0.6;:SOUR:VOLT:ILIM 0.1;:OUTP ON");
  std::string reply = ask(*inst, ":READ?");
  CHECK(reply.size() == std::string("3.978270E-07").size());  // %.6E format
  double expected = k::diode_current(0.6);
  CHECK(std::stod(reply) == doctest::Approx(expected).epsilon(1e-3));
  CHECK(ask_number(*inst, ":MEAS:CURR?") == doctest::Approx(expected).epsilon(1e-3));
  CHECK(ask(*inst, ":SOUR:VOLT:ILIM:TRIP?") == "0");

  tell(*inst, ":SOUR:VOLT 5");  // far beyond the knee: clamped at the limit
  double clamped = ask_number(*inst, ":READ?");
  CHECK(clamped == doctest::Approx(0.1).epsilon(1e-3));
  CHECK(clamped >= 0.1 * semilab::drivers::keithley2450::kComplianceFraction);
  CHECK(ask(*inst, ":SOUR:VOLT:ILIM:TRIP?") == "1");

  tell(*inst, ":OUTP OFF");
  CHECK(std::fabs(ask_number(*inst, ":READ?")) < 1e-9);

  // Same seed, same readings; the noise is really there.
  auto a = make_sim_instrument("keithley2450", 7);
  auto b = make_sim_instrument("keithley2450", 7);
  tell(*a, ":SOUR:VOLT 0.7;:OUTP ON");
  tell(*b, ":SOUR:VOLT 0.7;:OUTP ON");
  std::string r1 = ask(*a, ":READ?");
  CHECK(r1 == ask(*b, ":READ?"));
  CHECK(ask(*a, ":READ?") != r1);
}

TEST_CASE("sim conformance: every driver model has a simulator") {
  for (const auto& m : semilab::drivers::models()) {
    auto inst = make_sim_instrument(m.name, 1);
    REQUIRE_MESSAGE(inst, "no simulator for driver model " << m.name);
    CHECK(semilab::drivers::idn_matches(m, ask(*inst, "*IDN?")));
    // The model's init sequence runs on its simulator without errors.
    auto settings = semilab::drivers::resolve_settings(m, {});
    REQUIRE(settings.has_value());
    for (const auto& cmd : semilab::drivers::render_init(m, *settings)) tell(*inst, cmd);
    auto entry = semilab::drivers::parse_error_entry(ask(*inst, ":SYST:ERR?"));
    REQUIRE(entry.has_value());
    CHECK_MESSAGE(entry->code == 0, m.name << " init left " << entry->code << " " << entry->text);
    auto parsed = m.parse(ask(*inst, m.poll_query), *settings);
    CHECK_MESSAGE(parsed.has_value(), m.name << ": " << (parsed ? "" : parsed.error().message));
    // The nonce echo exists on every simulated model.
    CHECK(ask(*inst, ":SYST:NONC? abc-123") == "abc-123");
  }
}

TEST_CASE("fault specs") {
  fault_config f;
  CHECK(apply_fault_spec("delay=250", f).empty());
  CHECK(apply_fault_spec("drop-after=3", f).empty());
  CHECK(apply_fault_spec("garbage-every=5", f).empty());
  fault_config expected;
  expected.delay = std::chrono::milliseconds(250);
  expected.drop_after = 3;
  expected.garbage_every = 5;
  CHECK(f == expected);
  CHECK(apply_fault_spec("delay=x", f).find("'delay=x'") != std::string::npos);
  CHECK(apply_fault_spec("explode=1", f).find("unknown fault") != std::string::npos);
  CHECK(apply_fault_spec("delay", f).find("integer") != std::string::npos);
  boost::asio::ip::tcp::endpoint ep;
  CHECK(parse_listen("127.0.0.1:0", ep));
  CHECK(ep.port() == 0);
  CHECK(parse_listen("[::1]:5025", ep));
  CHECK(ep.address().is_v6());
  CHECK(!parse_listen("localhost:5025", ep));
  CHECK(!parse_listen("127.0.0.1", ep));
  CHECK(!parse_listen("127.0.0.1:70000", ep));
}
