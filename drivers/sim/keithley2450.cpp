#include <semilab/sim/keithley2450.hpp>

#include <algorithm>
#include <cmath>

namespace semilab::sim {
namespace {

constexpr double kBoltzmann = 1.380649e-23;      // J/K
constexpr double kElementaryCharge = 1.602176634e-19;  // C
constexpr double kThermalVoltage = kBoltzmann * keithley2450::kTemperature / kElementaryCharge;
constexpr double kNVt = keithley2450::kIdeality * kThermalVoltage;

}  // namespace

keithley2450::keithley2450(std::uint64_t seed) : rng_(seed) {}

double keithley2450::diode_current(double volts) noexcept {
  // Solve I = Is * (exp((V - I*Rs) / (n*Vt)) - 1) for I. f(I) = I - Is*(...) is strictly
  // increasing; f(-Is) < 0 and f(max(0, V/Rs)) >= 0 bracket the root. exp() may overflow to inf
  // far from the root, which only moves the bracket.
  constexpr double is = kSaturationCurrent;
  double lo = -is;
  double hi = std::max(0.0, volts / kSeriesResistance);
  for (int i = 0; i < 200 && hi - lo > 0; ++i) {
    double mid = 0.5 * (lo + hi);
    double f = mid - is * (std::exp((volts - mid * kSeriesResistance) / kNVt) - 1.0);
    (f < 0 ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

double keithley2450::diode_voltage(double amps) noexcept {
  if (amps <= -kSaturationCurrent) return -1e9;  // reverse current beyond Is: clamp at the limit
  return kNVt * std::log1p(amps / kSaturationCurrent) + amps * kSeriesResistance;
}

void keithley2450::reset() {
  source_voltage_mode_ = true;
  sense_current_ = true;
  output_ = false;
  tripped_ = false;
  volts_ = 0;
  amps_ = 0;
  ilim_ = kDefaultIlim;
  vlim_ = kDefaultVlim;
}

double keithley2450::noisy(double v) {
  std::normal_distribution<double> noise(0.0, kNoiseRelative * std::fabs(v) + kNoiseFloor);
  return v + noise(rng_);
}

double keithley2450::measure(bool want_current) {
  if (!output_) {
    tripped_ = false;
    return noisy(0.0);
  }
  double v = 0;
  double i = 0;
  if (source_voltage_mode_) {
    i = diode_current(volts_);
    tripped_ = std::fabs(i) >= ilim_;
    if (tripped_) {
      i = std::copysign(ilim_, i);  // the source drops its voltage to hold the limit
      v = std::clamp(diode_voltage(i), -std::fabs(volts_), std::fabs(volts_));
    } else {
      v = volts_;
    }
  } else {
    v = diode_voltage(amps_);
    tripped_ = std::fabs(v) >= vlim_;
    if (tripped_) {
      v = std::copysign(vlim_, v);
      i = diode_current(v);
    } else {
      i = amps_;
    }
  }
  return noisy(want_current ? i : v);
}

scpi_instrument::outcome keithley2450::handle(const scpi_command& cmd,
                                              std::optional<std::string>& reply) {
  auto is = [&](std::string_view pattern, bool query) {
    return cmd.query == query && header_matches(cmd, pattern);
  };
  // SOURce is required for FUNCtion: a bare :FUNC belongs to SENSe (the default root).
  if (is(":SOURce:FUNCtion[:MODE]", true)) {
    if (expect_args(cmd, 0)) reply = source_voltage_mode_ ? "VOLT" : "CURR";
    return outcome::done;
  }
  if (is(":SOURce:FUNCtion[:MODE]", false)) {
    if (!expect_args(cmd, 1)) return outcome::done;
    std::string a = upper_ascii(cmd.args[0]);
    if (a == "VOLT" || a == "VOLTAGE") source_voltage_mode_ = true;
    else if (a == "CURR" || a == "CURRENT") source_voltage_mode_ = false;
    else push_error(-224, "Illegal parameter value");
    return outcome::done;
  }
  if (is("[:SOURce]:VOLTage[:LEVel][:IMMediate][:AMPLitude]", true)) {
    if (expect_args(cmd, 0)) reply = format_nr3(volts_);
    return outcome::done;
  }
  if (is("[:SOURce]:VOLTage[:LEVel][:IMMediate][:AMPLitude]", false)) {
    if (auto v = number_arg(cmd, -kMaxVolts, kMaxVolts, 0.0)) volts_ = *v;
    return outcome::done;
  }
  if (is("[:SOURce]:VOLTage:ILIMit[:LEVel]", true)) {
    if (expect_args(cmd, 0)) reply = format_nr3(ilim_);
    return outcome::done;
  }
  if (is("[:SOURce]:VOLTage:ILIMit[:LEVel]", false)) {
    if (auto v = number_arg(cmd, 1e-9, kMaxAmps, kDefaultIlim)) ilim_ = *v;
    return outcome::done;
  }
  if (is("[:SOURce]:VOLTage:ILIMit[:LEVel]:TRIPped", true) ||
      is("[:SOURce]:CURRent:VLIMit[:LEVel]:TRIPped", true)) {
    if (expect_args(cmd, 0)) reply = bool_reply(tripped_);
    return outcome::done;
  }
  if (is("[:SOURce]:CURRent[:LEVel][:IMMediate][:AMPLitude]", true)) {
    if (expect_args(cmd, 0)) reply = format_nr3(amps_);
    return outcome::done;
  }
  if (is("[:SOURce]:CURRent[:LEVel][:IMMediate][:AMPLitude]", false)) {
    if (auto v = number_arg(cmd, -kMaxAmps, kMaxAmps, 0.0)) amps_ = *v;
    return outcome::done;
  }
  if (is("[:SOURce]:CURRent:VLIMit[:LEVel]", true)) {
    if (expect_args(cmd, 0)) reply = format_nr3(vlim_);
    return outcome::done;
  }
  if (is("[:SOURce]:CURRent:VLIMit[:LEVel]", false)) {
    if (auto v = number_arg(cmd, 0.02, kMaxVolts, kDefaultVlim)) vlim_ = *v;
    return outcome::done;
  }
  if (is("[:SENSe]:FUNCtion[:ON]", true)) {
    if (expect_args(cmd, 0)) reply = sense_current_ ? "\"CURR:DC\"" : "\"VOLT:DC\"";
    return outcome::done;
  }
  if (is("[:SENSe]:FUNCtion[:ON]", false)) {
    if (!expect_args(cmd, 1)) return outcome::done;
    std::string a = upper_ascii(unquote(cmd.args[0]));
    if (a == "CURR" || a == "CURR:DC" || a == "CURRENT" || a == "CURRENT:DC") sense_current_ = true;
    else if (a == "VOLT" || a == "VOLT:DC" || a == "VOLTAGE" || a == "VOLTAGE:DC") sense_current_ = false;
    else push_error(-224, "Illegal parameter value");
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
  // :READ? takes optional buffer name and elements on the instrument; they are ignored here.
  if (is(":READ", true) || is(":MEASure", true)) {
    reply = format_nr3(measure(sense_current_));
    return outcome::done;
  }
  if (is(":MEASure:CURRent[:DC]", true) || is(":MEASure:VOLTage[:DC]", true)) {
    sense_current_ = header_matches(cmd, ":MEASure:CURRent[:DC]");
    reply = format_nr3(measure(sense_current_));
    return outcome::done;
  }
  return outcome::unknown;
}

}  // namespace semilab::sim
