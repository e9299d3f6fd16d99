#include <algorithm>
#include <array>
#include <cmath>
#include <semilab/sim/keysight34461a.hpp>
#include <semilab/sim/smu.hpp>  // plain_number

namespace semilab::sim {
namespace {
constexpr std::array<double, 5> kVoltRanges = {0.1, 1.0, 10.0, 100.0, 1000.0};
constexpr std::array<double, 7> kOhmRanges = {1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8};
constexpr std::array<double, 5> kNplc = {0.02, 0.2, 1.0, 10.0, 100.0};

template <std::size_t N>
double round_up(const std::array<double, N>& steps, double v) {
  for (double s : steps)
    if (v <= s * (1 + 1e-9)) return s;
  return steps.back();
}

}  // namespace

keysight34461a::keysight34461a(std::uint64_t seed) : rng_(seed) {}

void keysight34461a::reset() {
  function_ = function::dcv;
  range_ = 0;
  nplc_ = 10;
  initiated_ = false;
}

std::string keysight34461a::format_error(int code, std::string_view text) const {
  return format_number("%+.0f", static_cast<double>(code)) + ",\"" + std::string(text) + "\"";
}

double keysight34461a::thermistor(double celsius) noexcept {
  double t = celsius + 273.15;
  return kR25 * std::exp(kBeta * (1.0 / t - 1.0 / 298.15));
}

double keysight34461a::midpoint_volts(double celsius) noexcept {
  double r2 = thermistor(celsius);
  double loaded = r2 * kInputResistance / (r2 + kInputResistance);
  return kReference * loaded / (kR1 + loaded);
}

double keysight34461a::two_wire_ohms(double celsius) noexcept {
  double r2 = thermistor(celsius);
  return kR1 * r2 / (kR1 + r2);
}

std::string keysight34461a::measure() {
  // The thermistor drifts by a bounded random walk (0.01 degC steps, kept within 24..26 degC).
  std::normal_distribution<double> step(0.0, 0.01);
  celsius_ = std::clamp(celsius_ + step(rng_), 24.0, 26.0);
  ++readings_;
  double value = function_ == function::dcv ? midpoint_volts(celsius_) : two_wire_ohms(celsius_);
  // Noise falls with integration time: 1 ppm of reading at 100 PLC, 30 ppm at 0.02 PLC.
  double ppm = 1.0 + 29.0 * (1.0 - std::log10(nplc_ / 0.02) / std::log10(100.0 / 0.02));
  std::normal_distribution<double> noise(0.0, ppm * 1e-6 * std::fabs(value));
  value += noise(rng_);
  if (range_ > 0 && std::fabs(value) > 1.2 * range_) value = kOverRange;
  return format_number("%+.8E", value);
}

bool keysight34461a::apply_range(const scpi_command& cmd, function f) {
  if (cmd.args.size() > 2) {
    push_error(-108, "Parameter not allowed");
    return false;
  }
  double r = 0;
  if (!cmd.args.empty()) {
    std::string a = upper_ascii(cmd.args[0]);
    if (a == "AUTO" || a == "DEF" || a == "DEFAULT")
      r = 0;
    else if (a == "MIN" || a == "MINIMUM")
      r = f == function::dcv ? kVoltRanges.front() : kOhmRanges.front();
    else if (a == "MAX" || a == "MAXIMUM")
      r = f == function::dcv ? kVoltRanges.back() : kOhmRanges.back();
    else if (auto v = plain_number(a); v && *v > 0) {
      if (*v > (f == function::dcv ? 1000.0 : 1e8) * 1.2) {
        push_error(-222, "Data out of range");
        return false;
      }
      r = f == function::dcv ? round_up(kVoltRanges, *v) : round_up(kOhmRanges, *v);
    } else {
      push_error(-104, "Data type error");
      return false;
    }
  }
  function_ = f;
  range_ = r;
  return true;
}

scpi_instrument::outcome keysight34461a::handle(const scpi_command& cmd,
                                                std::optional<std::string>& reply) {
  auto is = [&](std::string_view pattern, bool query) {
    return cmd.query == query && header_matches(cmd, pattern);
  };
  if (is(":CONFigure:VOLTage[:DC]", false)) {
    apply_range(cmd, function::dcv);
    return outcome::done;
  }
  if (is(":CONFigure:RESistance", false)) {
    apply_range(cmd, function::res);
    return outcome::done;
  }
  if (is(":CONFigure", true)) {
    if (!expect_args(cmd, 0)) return outcome::done;
    std::string range =
        format_number("%+.8E", range_ > 0 ? range_ : (function_ == function::dcv ? 10.0 : 1e4));
    reply = std::string(function_ == function::dcv ? "\"VOLT " : "\"RES ") + range +
            ",+3.00000000E-06\"";
    return outcome::done;
  }
  if (is(":MEASure:VOLTage[:DC]", true)) {
    if (apply_range(cmd, function::dcv)) reply = measure();
    return outcome::done;
  }
  if (is(":MEASure:RESistance", true)) {
    if (apply_range(cmd, function::res)) reply = measure();
    return outcome::done;
  }
  if (is("[:SENSe]:VOLTage[:DC]:NPLCycles", false) || is("[:SENSe]:RESistance:NPLCycles", false)) {
    if (auto v = number_arg(cmd, 0.02, 100.0, 10.0)) nplc_ = round_up(kNplc, *v);
    return outcome::done;
  }
  if (is("[:SENSe]:VOLTage[:DC]:NPLCycles", true) || is("[:SENSe]:RESistance:NPLCycles", true)) {
    if (expect_args(cmd, 0)) reply = format_number("%+.8E", nplc_);
    return outcome::done;
  }
  if (is("[:SENSe]:VOLTage[:DC]:RANGe[:UPPer]", false)) {
    apply_range(cmd, function::dcv);
    return outcome::done;
  }
  if (is("[:SENSe]:VOLTage[:DC]:RANGe:AUTO", false)) {
    if (auto on = bool_arg(cmd); on && *on)
      range_ = 0;
    else if (on)
      range_ = range_ > 0 ? range_ : 10.0;
    return outcome::done;
  }
  if (is(":TRIGger:SOURce", false)) {
    if (!expect_args(cmd, 1)) return outcome::done;
    std::string s = upper_ascii(cmd.args[0]);
    if (s != "IMM" && s != "IMMEDIATE" && s != "BUS" && s != "EXT" && s != "EXTERNAL" &&
        s != "INT" && s != "INTERNAL")
      push_error(-224, "Illegal parameter value");
    return outcome::done;
  }
  if (is(":INITiate[:IMMediate]", false)) {
    if (expect_args(cmd, 0)) initiated_ = true;
    return outcome::done;
  }
  if (is(":READ", true)) {
    if (expect_args(cmd, 0)) reply = measure();
    return outcome::done;
  }
  if (is(":FETCh", true)) {
    if (!expect_args(cmd, 0)) return outcome::done;
    if (!initiated_) {
      push_error(-230, "Data corrupt or stale");
      return outcome::done;
    }
    reply = measure();
    return outcome::done;
  }
  return outcome::unknown;
}

}  // namespace semilab::sim
