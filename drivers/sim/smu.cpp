#include <semilab/sim/keithley2450.hpp>
#include <semilab/sim/scpi_parser.hpp>
#include <semilab/sim/smu.hpp>

#include <charconv>
#include <cmath>

namespace semilab::sim {
namespace {

constexpr double kThermalVoltage = 1.380649e-23 * 300.0 / 1.602176634e-19;

double softplus(double x) noexcept { return x > 30 ? x : std::log1p(std::exp(x)); }

double mosfet_current(double vgs) noexcept {
  double nvt = kMosfetNss * kThermalVoltage;
  double s = nvt * softplus((vgs - kMosfetVth - kMosfetVds / 2) / nvt);
  return kMosfetBeta * kMosfetVds * s;
}

}  // namespace

double dut_current(smu_dut dut, double volts) noexcept {
  switch (dut) {
    case smu_dut::diode: return keithley2450::diode_current(volts);
    case smu_dut::mosfet: return mosfet_current(volts);
    case smu_dut::resistor: return volts / kResistorOhms;
  }
  return 0;
}

double dut_voltage(smu_dut dut, double amps) noexcept {
  switch (dut) {
    case smu_dut::diode: return keithley2450::diode_voltage(amps);
    case smu_dut::resistor: return amps * kResistorOhms;
    case smu_dut::mosfet: {
      // Gate voltage that gives this drain current (monotonic): bisection over +-210 V.
      if (amps <= 0) return -210.0;
      double lo = -210.0, hi = 210.0;
      if (mosfet_current(hi) < amps) return hi;
      for (int i = 0; i < 200; ++i) {
        double mid = 0.5 * (lo + hi);
        (mosfet_current(mid) < amps ? lo : hi) = mid;
      }
      return 0.5 * (lo + hi);
    }
  }
  return 0;
}

bool parse_dut(std::string_view name, smu_dut& out) noexcept {
  std::string n = upper_ascii(name);
  if (n == "DIODE") out = smu_dut::diode;
  else if (n == "MOSFET") out = smu_dut::mosfet;
  else if (n == "RES" || n == "RESISTOR") out = smu_dut::resistor;
  else return false;
  return true;
}

void smu_log::level(double v, bool output) {
  std::lock_guard lock(mutex_);
  if (events_.size() < kMaxEvents)
    events_.push_back({std::chrono::steady_clock::now(), smu_event::kind::level, v, output, {}});
}

void smu_log::output(bool on, double level) {
  std::lock_guard lock(mutex_);
  if (events_.size() < kMaxEvents)
    events_.push_back({std::chrono::steady_clock::now(), smu_event::kind::output, level, on, {}});
}

void smu_log::command(std::string_view text, bool output) {
  std::lock_guard lock(mutex_);
  if (events_.size() < kMaxEvents)
    events_.push_back({std::chrono::steady_clock::now(), smu_event::kind::command, 0, output,
                       std::string(text)});
}

std::vector<smu_event> smu_log::events() const {
  std::lock_guard lock(mutex_);
  return events_;
}

std::vector<double> smu_log::levels_while_on() const {
  std::lock_guard lock(mutex_);
  std::vector<double> out;
  for (const auto& e : events_)
    if (e.what == smu_event::kind::level && e.output) out.push_back(e.level);
  return out;
}

void smu_log::clear() {
  std::lock_guard lock(mutex_);
  events_.clear();
}

std::optional<double> plain_number(std::string_view s) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size() || !std::isfinite(v))
    return std::nullopt;
  return v;
}

namespace {
bool is_cmd(const scpi_command& cmd, std::string_view pattern, bool query) {
  return cmd.query == query && header_matches(cmd, pattern);
}
}  // namespace

bool smu_instrument::handle_sense_settings(const scpi_command& cmd, double& nplc, double& range,
                                           double max_range) {
  if (is_cmd(cmd, "[:SENSe]:CURRent[:DC]:NPLCycles", false) ||
      is_cmd(cmd, "[:SENSe]:VOLTage[:DC]:NPLCycles", false)) {
    if (auto v = number_arg(cmd, 0.01, 10.0, 1.0)) nplc = *v;
    return true;
  }
  if (is_cmd(cmd, "[:SENSe]:CURRent[:DC]:RANGe[:UPPer]", false) ||
      is_cmd(cmd, "[:SENSe]:VOLTage[:DC]:RANGe[:UPPer]", false)) {
    if (auto v = number_arg(cmd, 1e-8, max_range, 1e-4)) range = *v;
    return true;
  }
  if (is_cmd(cmd, "[:SENSe]:CURRent[:DC]:RANGe:AUTO", false) ||
      is_cmd(cmd, "[:SENSe]:VOLTage[:DC]:RANGe:AUTO", false)) {
    if (auto on = bool_arg(cmd); on && *on) range = 0;
    return true;
  }
  return false;
}

smu_instrument::source_function_cmd smu_instrument::handle_source_function(
    const scpi_command& cmd, std::optional<std::string>& reply, bool& source_voltage) {
  if (is_cmd(cmd, ":SOURce:FUNCtion[:MODE]", true)) {
    if (expect_args(cmd, 0)) reply = source_voltage ? "VOLT" : "CURR";
    return source_function_cmd::handled;
  }
  if (is_cmd(cmd, ":SOURce:FUNCtion[:MODE]", false)) {
    if (!expect_args(cmd, 1)) return source_function_cmd::handled;
    std::string a = upper_ascii(cmd.args[0]);
    if (a == "VOLT" || a == "VOLTAGE") source_voltage = true;
    else if (a == "CURR" || a == "CURRENT") source_voltage = false;
    else push_error(-224, "Illegal parameter value");
    return source_function_cmd::set;
  }
  return source_function_cmd::none;
}

smu_instrument::level_cmd smu_instrument::handle_source_level(
    const scpi_command& cmd, std::optional<std::string>& reply, double& volts, double& amps,
    double max_volts, double max_amps, std::string (*fmt)(double)) {
  for (bool voltage : {true, false}) {
    std::string_view pattern = voltage ? "[:SOURce]:VOLTage[:LEVel][:IMMediate][:AMPLitude]"
                                       : "[:SOURce]:CURRent[:LEVel][:IMMediate][:AMPLitude]";
    double& level = voltage ? volts : amps;
    if (is_cmd(cmd, pattern, true)) {
      if (expect_args(cmd, 0)) reply = fmt(level);
      return {true, false, voltage, false};
    }
    if (is_cmd(cmd, pattern, false)) {
      double max = voltage ? max_volts : max_amps;
      auto v = number_arg(cmd, -max, max, 0.0);
      if (v) level = *v;
      return {true, true, voltage, v.has_value()};
    }
  }
  return {};
}

bool smu_instrument::handle_source_limits(const scpi_command& cmd,
                                          std::optional<std::string>& reply, double& ilim,
                                          double& vlim, double max_amps, double max_volts,
                                          double default_ilim, double default_vlim) {
  if (is_cmd(cmd, "[:SOURce]:VOLTage:ILIMit[:LEVel]", true)) {
    if (expect_args(cmd, 0)) reply = format_nr3(ilim);
    return true;
  }
  if (is_cmd(cmd, "[:SOURce]:VOLTage:ILIMit[:LEVel]", false)) {
    if (auto v = number_arg(cmd, 1e-9, max_amps, default_ilim)) ilim = *v;
    return true;
  }
  if (is_cmd(cmd, "[:SOURce]:CURRent:VLIMit[:LEVel]", true)) {
    if (expect_args(cmd, 0)) reply = format_nr3(vlim);
    return true;
  }
  if (is_cmd(cmd, "[:SOURce]:CURRent:VLIMit[:LEVel]", false)) {
    if (auto v = number_arg(cmd, 0.02, max_volts, default_vlim)) vlim = *v;
    return true;
  }
  return false;
}

bool smu_instrument::handle_sense_function(const scpi_command& cmd,
                                           std::optional<std::string>& reply,
                                           bool& sense_current, bool long_dc) {
  if (is_cmd(cmd, "[:SENSe]:FUNCtion[:ON]", true)) {
    if (expect_args(cmd, 0)) reply = sense_current ? "\"CURR:DC\"" : "\"VOLT:DC\"";
    return true;
  }
  if (!is_cmd(cmd, "[:SENSe]:FUNCtion[:ON]", false)) return false;
  if (!expect_args(cmd, 1)) return true;
  std::string a = upper_ascii(unquote(cmd.args[0]));
  if (a == "CURR" || a == "CURR:DC" || a == "CURRENT" || (long_dc && a == "CURRENT:DC"))
    sense_current = true;
  else if (a == "VOLT" || a == "VOLT:DC" || a == "VOLTAGE" || (long_dc && a == "VOLTAGE:DC"))
    sense_current = false;
  else
    push_error(-224, "Illegal parameter value");
  return true;
}

bool smu_instrument::handle_source_list(const scpi_command& cmd, std::vector<double>& list,
                                        double max_abs) {
  if (!is_cmd(cmd, "[:SOURce]:LIST:VOLTage", false) &&
      !is_cmd(cmd, "[:SOURce]:LIST:CURRent", false) &&
      !is_cmd(cmd, "[:SOURce]:LIST:VOLTage:APPend", false) &&
      !is_cmd(cmd, "[:SOURce]:LIST:CURRent:APPend", false))
    return false;
  bool append = cmd.nodes.back() == "APP" || cmd.nodes.back() == "APPEND";
  if (cmd.args.empty() || cmd.args.size() > 100) {
    push_error(cmd.args.empty() ? -109 : -108,
               cmd.args.empty() ? "Missing parameter" : "Parameter not allowed");
    return true;
  }
  std::vector<double> values;
  for (const auto& a : cmd.args) {
    auto v = plain_number(a);
    if (!v || std::fabs(*v) > max_abs) {
      push_error(v ? -222 : -104, v ? "Parameter data out of range" : "Data type error");
      return true;
    }
    values.push_back(*v);
  }
  if (!append) list.clear();
  list.insert(list.end(), values.begin(), values.end());
  return true;
}

std::vector<double> smu_instrument::linear_levels(double start, double stop, std::size_t n) {
  std::vector<double> levels;
  for (std::size_t k = 0; k < n; ++k)
    levels.push_back(k + 1 == n ? stop
                                : start + (stop - start) * static_cast<double>(k) /
                                              static_cast<double>(n - 1));
  return levels;
}

bool smu_instrument::list_levels(std::optional<double> index, const std::vector<double>& list,
                                 std::vector<double>& levels) {
  if (!index || *index < 1 || *index > static_cast<double>(list.size())) {
    push_error(-222, "Parameter data out of range");
    return false;
  }
  levels.assign(list.begin() + static_cast<std::ptrdiff_t>(*index) - 1, list.end());
  return true;
}

bool smu_instrument::store_sweep(const scpi_command& cmd, std::size_t delay_arg,
                                 std::vector<double>& levels, std::vector<double>& sweep_levels,
                                 double& sweep_delay) {
  double delay = 0;
  if (cmd.args.size() > delay_arg) {
    auto d = plain_number(cmd.args[delay_arg]);
    if (!d || *d < 0 || *d > 1e4) {
      push_error(-222, "Parameter data out of range");
      return false;
    }
    delay = *d;
  }
  sweep_levels = std::move(levels);
  sweep_delay = delay;
  return true;
}

std::optional<smu_instrument::buffer_range> smu_instrument::trace_range(const scpi_command& cmd,
                                                                        std::size_t buffer_size) {
  if (cmd.args.size() < 2) {
    push_error(-109, "Missing parameter");
    return std::nullopt;
  }
  auto first = plain_number(cmd.args[0]), last = plain_number(cmd.args[1]);
  if (!first || !last || *first < 1 || *last < *first ||
      *last > static_cast<double>(buffer_size)) {
    push_error(-222, "Parameter data out of range");
    return std::nullopt;
  }
  auto f = static_cast<std::size_t>(*first);
  return buffer_range{f - 1, static_cast<std::size_t>(*last) - f + 1};
}

}  // namespace semilab::sim
