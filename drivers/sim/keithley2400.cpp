#include <algorithm>
#include <cmath>
#include <semilab/sim/keithley2400.hpp>
#include <semilab/sim/keithley2450.hpp>

namespace semilab::sim {

keithley2400::keithley2400(std::uint64_t seed) : rng_(seed) {}

void keithley2400::reset() {
  source_voltage_mode_ = true;
  output_ = false;
  volts_ = 0;
  amps_ = 0;
  icomp_ = kDefaultCompliance;
  vcomp_ = 21.0;
  elements_ = volt | curr | res | time | stat;
}

double keithley2400::noisy(double v) {
  std::normal_distribution<double> noise(
      0.0, keithley2450::kNoiseRelative * std::fabs(v) + keithley2450::kNoiseFloor);
  return v + noise(rng_);
}

std::string keithley2400::read() {
  double v = 0;
  double i = 0;
  unsigned status =
      source_voltage_mode_ ? (kStatVoltSource | kStatCurrMeas) : (kStatCurrSource | kStatVoltMeas);
  if (output_) {
    if (source_voltage_mode_) {
      i = keithley2450::diode_current(volts_);
      v = volts_;
      if (std::fabs(i) >= icomp_) {
        status |= kStatCompliance;
        i = std::copysign(icomp_, i);
        v = std::clamp(keithley2450::diode_voltage(i), -std::fabs(volts_), std::fabs(volts_));
      }
    } else {
      i = amps_;
      v = keithley2450::diode_voltage(amps_);
      if (std::fabs(v) >= vcomp_) {
        status |= kStatCompliance;
        v = std::copysign(vcomp_, v);
        i = keithley2450::diode_current(v);
      }
    }
  }
  v = noisy(v);
  i = noisy(i);
  clock_s_ += 0.0215;  // one reading at 1 PLC with auto-zero, roughly
  std::string out;
  auto add = [&](unsigned bit, double value) {
    if (!(elements_ & bit)) return;
    if (!out.empty()) out.push_back(',');
    out += format_number("%+.6E", value);
  };
  add(volt, v);
  add(curr, i);
  add(res, kNotANumber);  // resistance is not a measured function here
  add(time, clock_s_);
  add(stat, static_cast<double>(status));
  return out;
}

scpi_instrument::outcome keithley2400::handle(const scpi_command& cmd,
                                              std::optional<std::string>& reply) {
  auto is = [&](std::string_view pattern, bool query) {
    return cmd.query == query && header_matches(cmd, pattern);
  };
  if (is(":SOURce:FUNCtion[:MODE]", true)) {
    if (expect_args(cmd, 0)) reply = source_voltage_mode_ ? "VOLT" : "CURR";
    return outcome::done;
  }
  if (is(":SOURce:FUNCtion[:MODE]", false)) {
    if (!expect_args(cmd, 1)) return outcome::done;
    std::string a = upper_ascii(cmd.args[0]);
    if (a == "VOLT" || a == "VOLTAGE")
      source_voltage_mode_ = true;
    else if (a == "CURR" || a == "CURRENT")
      source_voltage_mode_ = false;
    else
      push_error(-224, "Illegal parameter value");
    return outcome::done;
  }
  if (is("[:SOURce]:VOLTage[:LEVel][:IMMediate][:AMPLitude]", true)) {
    if (expect_args(cmd, 0)) reply = format_number("%+.6E", volts_);
    return outcome::done;
  }
  if (is("[:SOURce]:VOLTage[:LEVel][:IMMediate][:AMPLitude]", false)) {
    if (auto v = number_arg(cmd, -kMaxVolts, kMaxVolts, 0.0)) volts_ = *v;
    return outcome::done;
  }
  if (is("[:SOURce]:CURRent[:LEVel][:IMMediate][:AMPLitude]", true)) {
    if (expect_args(cmd, 0)) reply = format_number("%+.6E", amps_);
    return outcome::done;
  }
  if (is("[:SOURce]:CURRent[:LEVel][:IMMediate][:AMPLitude]", false)) {
    if (auto v = number_arg(cmd, -kMaxAmps, kMaxAmps, 0.0)) amps_ = *v;
    return outcome::done;
  }
  if (is("[:SENSe]:CURRent[:DC]:PROTection[:LEVel]", true)) {
    if (expect_args(cmd, 0)) reply = format_number("%+.6E", icomp_);
    return outcome::done;
  }
  if (is("[:SENSe]:CURRent[:DC]:PROTection[:LEVel]", false)) {
    if (auto v = number_arg(cmd, 1e-9, kMaxAmps, kDefaultCompliance)) icomp_ = *v;
    return outcome::done;
  }
  if (is("[:SENSe]:VOLTage[:DC]:PROTection[:LEVel]", true)) {
    if (expect_args(cmd, 0)) reply = format_number("%+.6E", vcomp_);
    return outcome::done;
  }
  if (is("[:SENSe]:VOLTage[:DC]:PROTection[:LEVel]", false)) {
    if (auto v = number_arg(cmd, 0.2, kMaxVolts, 21.0)) vcomp_ = *v;
    return outcome::done;
  }
  if (is("[:SENSe]:CURRent[:DC]:PROTection:TRIPped", true)) {
    if (expect_args(cmd, 0)) {
      bool tripped = output_ && source_voltage_mode_ &&
                     std::fabs(keithley2450::diode_current(volts_)) >= icomp_;
      reply = bool_reply(tripped);
    }
    return outcome::done;
  }
  if (is("[:SENSe]:FUNCtion[:ON]", false)) {
    // The 2400 measures what it does not source; "CURR" / "VOLT" are accepted and kept implicit.
    if (!expect_args(cmd, 1)) return outcome::done;
    std::string a = upper_ascii(unquote(cmd.args[0]));
    if (a != "CURR" && a != "CURR:DC" && a != "VOLT" && a != "VOLT:DC" && a != "CURRENT" &&
        a != "VOLTAGE")
      push_error(-224, "Illegal parameter value");
    return outcome::done;
  }
  if (is(":FORMat:ELEMents[:SENSe]", true)) {
    if (!expect_args(cmd, 0)) return outcome::done;
    std::string out;
    for (auto [bit, name] :
         {std::pair{volt, "VOLT"}, std::pair{curr, "CURR"}, std::pair{res, "RES"},
          std::pair{time, "TIME"}, std::pair{stat, "STAT"}}) {
      if (!(elements_ & bit)) continue;
      if (!out.empty()) out.push_back(',');
      out += name;
    }
    reply = out;
    return outcome::done;
  }
  if (is(":FORMat:ELEMents[:SENSe]", false)) {
    if (cmd.args.empty()) {
      push_error(-109, "Missing parameter");
      return outcome::done;
    }
    unsigned set = 0;
    for (const auto& arg : cmd.args) {
      std::string a = upper_ascii(arg);
      if (a == "VOLT" || a == "VOLTAGE")
        set |= volt;
      else if (a == "CURR" || a == "CURRENT")
        set |= curr;
      else if (a == "RES" || a == "RESISTANCE")
        set |= res;
      else if (a == "TIME")
        set |= time;
      else if (a == "STAT" || a == "STATUS")
        set |= stat;
      else {
        push_error(-224, "Illegal parameter value");
        return outcome::done;
      }
    }
    elements_ = set;
    return outcome::done;
  }
  if (is(":OUTPut[:STATe]", true)) {
    if (expect_args(cmd, 0)) reply = bool_reply(output_);
    return outcome::done;
  }
  if (is(":OUTPut[:STATe]", false)) {
    if (auto on = bool_arg(cmd)) output_ = *on;
    return outcome::done;
  }
  if (is(":READ", true) || is(":MEASure", true) || is(":MEASure:CURRent[:DC]", true)) {
    if (expect_args(cmd, 0)) reply = read();
    return outcome::done;
  }
  return outcome::unknown;
}

}  // namespace semilab::sim
