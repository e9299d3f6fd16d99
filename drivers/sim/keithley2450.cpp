#include <semilab/sim/keithley2450.hpp>

#include <algorithm>
#include <cmath>
#include <optional>

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
  if (sweep_.running) stop_sweep();
  if (output_) log_.output(false, volts_);
  nplc_ = 1.0;
  range_ = 0;
  list_.clear();
  sweep_levels_.clear();
  sweep_delay_ = 0;
  buffer_.clear();
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

std::chrono::milliseconds keithley2450::pending_time() {
  advance();
  return sweep_.remaining(std::chrono::steady_clock::now());
}

void keithley2450::set_output(bool on) {
  advance();
  if (!on && sweep_.running) stop_sweep();  // output off aborts a running sweep
  if (on != output_) log_.output(on, source_voltage_mode_ ? volts_ : amps_);
  output_ = on;
}

void keithley2450::apply_level(double v) {
  (source_voltage_mode_ ? volts_ : amps_) = v;
  log_.level(v, output_);
}

void keithley2450::stop_sweep() { sweep_.running = false; }

void keithley2450::advance() {
  if (!sweep_.running) return;
  auto n = sweep_.due(std::chrono::steady_clock::now());
  for (std::size_t k = 0; k < n; ++k) {
    apply_level(sweep_.levels[sweep_.done]);
    buffer_.push_back(take_reading());
    ++sweep_.done;
  }
  if (sweep_.done == sweep_.levels.size()) sweep_.running = false;
}

keithley2450::buffer_entry keithley2450::take_reading() {
  buffer_entry e;
  e.source = source_voltage_mode_ ? volts_ : amps_;
  e.reading = measure(sense_current_);
  e.rel = std::chrono::duration<double>(std::chrono::steady_clock::now() - buffer_t0_).count();
  return e;
}

bool keithley2450::format_entries(const std::vector<buffer_entry>& entries, std::size_t first,
                                  std::size_t count, const std::vector<std::string>& elements,
                                  std::string& out) {
  std::vector<std::string> names;
  for (const auto& el : elements) {
    std::string a = upper_ascii(el);
    if (a == "READ" || a == "READING") a = "READ";
    else if (a == "SOUR" || a == "SOURCE") a = "SOUR";
    else if (a == "REL" || a == "RELATIVE") a = "REL";
    else {
      push_error(-224, "Illegal parameter value");
      return false;
    }
    names.push_back(a);
  }
  if (names.empty()) names.push_back("READ");
  out.clear();
  for (std::size_t i = first; i < first + count; ++i) {
    for (const auto& n : names) {
      if (!out.empty()) out.push_back(',');
      const auto& e = entries[i];
      out += format_nr3(n == "READ" ? e.reading : n == "SOUR" ? e.source : e.rel);
    }
  }
  return true;
}

bool keithley2450::configure_sweep(const scpi_command& cmd, bool list) {
  auto num = [&](std::size_t i) { return plain_number(cmd.args[i]); };
  double max = source_voltage_mode_ ? kMaxVolts : kMaxAmps;
  std::vector<double> levels;
  std::size_t delay_arg = 0;
  if (!list) {
    if (cmd.args.size() < 3 || cmd.args.size() > 9) {
      push_error(cmd.args.size() < 3 ? -109 : -108,
                 cmd.args.size() < 3 ? "Missing parameter" : "Parameter not allowed");
      return false;
    }
    auto start = num(0), stop = num(1), points = num(2);
    if (!start || !stop || !points) {
      push_error(-104, "Data type error");
      return false;
    }
    if (std::fabs(*start) > max || std::fabs(*stop) > max || *points < 2 || *points > 100000 ||
        *points != std::floor(*points)) {
      push_error(-222, "Parameter data out of range");
      return false;
    }
    levels = linear_levels(*start, *stop, static_cast<std::size_t>(*points));
    delay_arg = 3;
  } else {
    if (cmd.args.empty() || cmd.args.size() > 5) {
      push_error(cmd.args.empty() ? -109 : -108,
                 cmd.args.empty() ? "Missing parameter" : "Parameter not allowed");
      return false;
    }
    if (!list_levels(num(0), list_, levels)) return false;
    delay_arg = 1;
  }
  return store_sweep(cmd, delay_arg, levels, sweep_levels_, sweep_delay_);
}

double keithley2450::measure(bool want_current) {
  if (!output_) {
    tripped_ = false;
    return noisy(0.0);
  }
  double v = 0;
  double i = 0;
  if (source_voltage_mode_) {
    i = dut_current(dut_, volts_);
    tripped_ = std::fabs(i) >= ilim_;
    if (tripped_) {
      i = std::copysign(ilim_, i);  // the source drops its voltage to hold the limit
      v = std::clamp(dut_voltage(dut_, i), -std::fabs(volts_), std::fabs(volts_));
    } else {
      v = volts_;
    }
  } else {
    v = dut_voltage(dut_, amps_);
    tripped_ = std::fabs(v) >= vlim_;
    if (tripped_) {
      v = std::copysign(vlim_, v);
      i = dut_current(dut_, v);
    } else {
      i = amps_;
    }
  }
  double out = noisy(want_current ? i : v);
  if (range_ > 0 && std::fabs(out) > 1.05 * range_) return 9.9e37;  // over-range
  return out;
}

scpi_instrument::outcome keithley2450::handle(const scpi_command& cmd,
                                              std::optional<std::string>& reply) {
  auto is = [&](std::string_view pattern, bool query) {
    return cmd.query == query && header_matches(cmd, pattern);
  };
  advance();
  log_.command(cmd.text, output_);
  if (is(":SYSTem:DUT", false)) {
    if (!expect_args(cmd, 1)) return outcome::done;
    if (!parse_dut(cmd.args[0], dut_)) push_error(-224, "Illegal parameter value");
    return outcome::done;
  }
  if (is(":SOURce:SWEep:VOLTage:LINear", false) || is(":SOURce:SWEep:CURRent:LINear", false) ||
      is(":SOURce:SWEep:VOLTage:LIST", false) || is(":SOURce:SWEep:CURRent:LIST", false)) {
    bool volt = header_matches(cmd, ":SOURce:SWEep:VOLTage:LINear") ||
                header_matches(cmd, ":SOURce:SWEep:VOLTage:LIST");
    if (volt != source_voltage_mode_) {
      push_error(-221, "Settings conflict");
      return outcome::done;
    }
    configure_sweep(cmd, header_matches(cmd, ":SOURce:SWEep:VOLTage:LIST") ||
                             header_matches(cmd, ":SOURce:SWEep:CURRent:LIST"));
    return outcome::done;
  }
  if (handle_source_list(cmd, list_, kMaxVolts)) return outcome::done;
  if (is(":INITiate[:IMMediate]", false)) {
    if (!expect_args(cmd, 0)) return outcome::done;
    if (sweep_.running) {
      push_error(-221, "Settings conflict");  // trigger model already running
      return outcome::done;
    }
    if (!output_) {
      push_error(-221, "Settings conflict");
      return outcome::done;
    }
    auto per = std::chrono::duration<double>(sweep_delay_ + nplc_ / 50.0);
    std::vector<double> levels =
        sweep_levels_.empty() ? std::vector<double>{source_voltage_mode_ ? volts_ : amps_}
                              : sweep_levels_;
    sweep_.start(std::move(levels),
                 std::chrono::duration_cast<std::chrono::nanoseconds>(per));
    return outcome::done;
  }
  if (is(":ABORt", false)) {
    if (expect_args(cmd, 0)) stop_sweep();
    return outcome::done;
  }
  if (is(":TRACe:ACTual", true)) {
    if (cmd.args.size() <= 1) reply = std::to_string(buffer_.size());
    else push_error(-108, "Parameter not allowed");
    return outcome::done;
  }
  if (is(":TRACe:CLEar", false)) {
    if (cmd.args.size() > 1) {
      push_error(-108, "Parameter not allowed");
      return outcome::done;
    }
    buffer_.clear();
    buffer_t0_ = std::chrono::steady_clock::now();
    return outcome::done;
  }
  if (is(":TRACe:DATA", true)) {
    auto range = trace_range(cmd, buffer_.size());
    if (!range) return outcome::done;
    if (cmd.args.size() > 2 && upper_ascii(unquote(cmd.args[2])) != "DEFBUFFER1") {
      push_error(-224, "Illegal parameter value");
      return outcome::done;
    }
    std::vector<std::string> elements(cmd.args.begin() + std::min<std::ptrdiff_t>(3, static_cast<std::ptrdiff_t>(cmd.args.size())),
                                      cmd.args.end());
    std::string out;
    if (format_entries(buffer_, range->first, range->count, elements, out)) reply = std::move(out);
    return outcome::done;
  }
  if (handle_sense_settings(cmd, nplc_, range_, kMaxVolts)) return outcome::done;
  if (is("[:SENSe]:CURRent[:DC]:NPLCycles", true) || is("[:SENSe]:VOLTage[:DC]:NPLCycles", true)) {
    if (expect_args(cmd, 0)) reply = format_nr3(nplc_);
    return outcome::done;
  }
  if (handle_source_function(cmd, reply, source_voltage_mode_) != source_function_cmd::none)
    return outcome::done;
  if (auto l = handle_source_level(cmd, reply, volts_, amps_, kMaxVolts, kMaxAmps, format_nr3);
      l.handled) {
    if (l.applied && l.voltage == source_voltage_mode_)
      log_.level(l.voltage ? volts_ : amps_, output_);
    return outcome::done;
  }
  if (handle_source_limits(cmd, reply, ilim_, vlim_, kMaxAmps, kMaxVolts, kDefaultIlim,
                           kDefaultVlim))
    return outcome::done;
  if (is("[:SOURce]:VOLTage:ILIMit[:LEVel]:TRIPped", true) ||
      is("[:SOURce]:CURRent:VLIMit[:LEVel]:TRIPped", true)) {
    if (expect_args(cmd, 0)) reply = bool_reply(tripped_);
    return outcome::done;
  }
  if (handle_sense_function(cmd, reply, sense_current_, true)) return outcome::done;
  if (is(":OUTPut[:STATe]", true)) {
    if (expect_args(cmd, 0)) reply = bool_reply(output_);
    return outcome::done;
  }
  if (is(":OUTPut[:STATe]", false)) {
    if (auto on = bool_arg(cmd)) set_output(*on);
    return outcome::done;
  }
  // :READ? ["<buffer>"[,<elements>]]: one new reading into the buffer; without elements the
  // reply is the reading alone.
  if (is(":READ", true)) {
    if (!cmd.args.empty() && upper_ascii(unquote(cmd.args[0])) != "DEFBUFFER1") {
      push_error(-224, "Illegal parameter value");
      return outcome::done;
    }
    buffer_.push_back(take_reading());
    std::vector<std::string> elements(cmd.args.begin() + (cmd.args.empty() ? 0 : 1), cmd.args.end());
    std::string out;
    if (format_entries(buffer_, buffer_.size() - 1, 1, elements, out)) reply = std::move(out);
    return outcome::done;
  }
  if (is(":MEASure", true)) {
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
