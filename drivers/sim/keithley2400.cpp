#include <algorithm>
#include <cmath>
#include <semilab/sim/keithley2400.hpp>
#include <semilab/sim/keithley2450.hpp>

namespace semilab::sim {

keithley2400::keithley2400(std::uint64_t seed) : rng_(seed) {}

void keithley2400::reset() {
  sweep_.running = false;
  if (output_) log_.output(false, volts_);
  nplc_ = 1.0;
  range_ = 0;
  mode_ = source_mode::fixed;
  start_ = stop_ = 0;
  points_ = 2500;
  log_spacing_ = false;
  list_.clear();
  trigger_count_ = 1;
  source_delay_ = 0;
  samples_.clear();
  have_samples_ = false;
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

std::chrono::milliseconds keithley2400::pending_time() {
  advance();
  return sweep_.remaining(std::chrono::steady_clock::now());
}

void keithley2400::set_output(bool on) {
  advance();
  if (!on) sweep_.running = false;  // output off aborts a running sweep
  if (on != output_) log_.output(on, source_voltage_mode_ ? volts_ : amps_);
  output_ = on;
}

void keithley2400::advance() {
  if (!sweep_.running) return;
  auto n = sweep_.due(std::chrono::steady_clock::now());
  for (std::size_t k = 0; k < n; ++k) {
    double v = sweep_.levels[sweep_.done];
    (source_voltage_mode_ ? volts_ : amps_) = v;
    log_.level(v, output_);
    samples_.push_back(read());
    ++sweep_.done;
  }
  if (sweep_.done == sweep_.levels.size()) sweep_.running = false;
}

bool keithley2400::start_sweep() {
  if (sweep_.running) {
    push_error(-213, "Init ignored");
    return false;
  }
  if (!output_) {
    push_error(803, "Output disabled");
    return false;
  }
  std::vector<double> levels;
  if (mode_ == source_mode::fixed) {
    levels.assign(trigger_count_, source_voltage_mode_ ? volts_ : amps_);
  } else if (mode_ == source_mode::list) {
    levels = list_;
  } else {
    for (unsigned k = 0; k < points_; ++k) {
      double x = points_ == 1 ? 0.0 : static_cast<double>(k) / (points_ - 1);
      if (log_spacing_ && start_ > 0 && stop_ > 0)
        levels.push_back(start_ * std::pow(stop_ / start_, x));
      else
        levels.push_back(k + 1 == points_ ? stop_ : start_ + (stop_ - start_) * x);
    }
  }
  if (levels.empty() || levels.size() != trigger_count_) {
    push_error(-221, "Settings conflict");  // the trigger count must equal the sweep points
    return false;
  }
  samples_.clear();
  have_samples_ = true;
  auto per = std::chrono::duration<double>(source_delay_ + nplc_ / 50.0);
  sweep_.start(std::move(levels), std::chrono::duration_cast<std::chrono::nanoseconds>(per));
  return true;
}

std::string keithley2400::fetch() {
  // A fetch during a sweep waits for its end: finish it now and hold the reply until then.
  if (sweep_.running) {
    hold_reply(sweep_.remaining(std::chrono::steady_clock::now()));
    sweep_.per_point = std::chrono::nanoseconds{0};
    advance();
  }
  std::string out;
  for (const auto& r : samples_) {
    if (!out.empty()) out.push_back(',');
    out += r;
  }
  return out;
}

std::string keithley2400::read() {
  double v = 0;
  double i = 0;
  unsigned status =
      source_voltage_mode_ ? (kStatVoltSource | kStatCurrMeas) : (kStatCurrSource | kStatVoltMeas);
  if (output_) {
    if (source_voltage_mode_) {
      i = dut_current(dut_, volts_);
      v = volts_;
      if (std::fabs(i) >= icomp_) {
        status |= kStatCompliance;
        i = std::copysign(icomp_, i);
        v = std::clamp(dut_voltage(dut_, i), -std::fabs(volts_), std::fabs(volts_));
      }
    } else {
      i = amps_;
      v = dut_voltage(dut_, amps_);
      if (std::fabs(v) >= vcomp_) {
        status |= kStatCompliance;
        v = std::copysign(vcomp_, v);
        i = dut_current(dut_, v);
      }
    }
  }
  v = noisy(v);
  i = noisy(i);
  double& measured = source_voltage_mode_ ? i : v;
  if (range_ > 0 && std::fabs(measured) > 1.05 * range_) {
    measured = 9.9e37;
    status |= kStatOverflow;
  }
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
  advance();
  log_.command(cmd.text, output_);
  if (is(":SYSTem:DUT", false)) {
    if (!expect_args(cmd, 1)) return outcome::done;
    if (!parse_dut(cmd.args[0], dut_)) push_error(-224, "Illegal parameter value");
    return outcome::done;
  }
  if (is("[:SOURce]:VOLTage:MODE", false) || is("[:SOURce]:CURRent:MODE", false)) {
    if (!expect_args(cmd, 1)) return outcome::done;
    std::string a = upper_ascii(cmd.args[0]);
    if (a == "FIX" || a == "FIXED") mode_ = source_mode::fixed;
    else if (a == "SWE" || a == "SWEEP") mode_ = source_mode::sweep;
    else if (a == "LIST") mode_ = source_mode::list;
    else push_error(-224, "Illegal parameter value");
    return outcome::done;
  }
  if (is("[:SOURce]:VOLTage:STARt", false) || is("[:SOURce]:CURRent:STARt", false)) {
    if (auto v = number_arg(cmd, -kMaxVolts, kMaxVolts, 0.0)) start_ = *v;
    return outcome::done;
  }
  if (is("[:SOURce]:VOLTage:STOP", false) || is("[:SOURce]:CURRent:STOP", false)) {
    if (auto v = number_arg(cmd, -kMaxVolts, kMaxVolts, 0.0)) stop_ = *v;
    return outcome::done;
  }
  if (is("[:SOURce]:SWEep:POINts", false)) {
    if (auto v = number_arg(cmd, 2, 2500, 2500)) points_ = static_cast<unsigned>(*v);
    return outcome::done;
  }
  if (is("[:SOURce]:SWEep:SPACing", false)) {
    if (!expect_args(cmd, 1)) return outcome::done;
    std::string a = upper_ascii(cmd.args[0]);
    if (a == "LIN" || a == "LINEAR") log_spacing_ = false;
    else if (a == "LOG" || a == "LOGARITHMIC") log_spacing_ = true;
    else push_error(-224, "Illegal parameter value");
    return outcome::done;
  }
  if (is("[:SOURce]:LIST:VOLTage", false) || is("[:SOURce]:LIST:CURRent", false)) {
    if (cmd.args.empty() || cmd.args.size() > 100) {
      push_error(cmd.args.empty() ? -109 : -108,
                 cmd.args.empty() ? "Missing parameter" : "Parameter not allowed");
      return outcome::done;
    }
    std::vector<double> values;
    for (const auto& a : cmd.args) {
      scpi_command one;
      one.args = {a};
      auto v = number_arg(one, -kMaxVolts, kMaxVolts, 0.0);
      if (!v) return outcome::done;
      values.push_back(*v);
    }
    list_ = std::move(values);
    return outcome::done;
  }
  if (is(":TRIGger:COUNt", false)) {
    if (auto v = number_arg(cmd, 1, 2500, 1)) trigger_count_ = static_cast<unsigned>(*v);
    return outcome::done;
  }
  if (is("[:SOURce]:DELay", false)) {
    if (auto v = number_arg(cmd, 0, 9999.999, 0)) source_delay_ = *v;
    return outcome::done;
  }
  if (is(":INITiate[:IMMediate]", false)) {
    if (expect_args(cmd, 0)) start_sweep();
    return outcome::done;
  }
  if (is(":ABORt", false)) {
    if (expect_args(cmd, 0)) sweep_.running = false;
    return outcome::done;
  }
  if (is(":FETCh", true)) {
    if (!expect_args(cmd, 0)) return outcome::done;
    if (!have_samples_) {
      push_error(-230, "Data corrupt or stale");
      return outcome::done;
    }
    reply = fetch();
    return outcome::done;
  }
  if (handle_sense_settings(cmd, nplc_, range_, kMaxVolts)) return outcome::done;
  if (handle_source_function(cmd, reply, source_voltage_mode_) != source_function_cmd::none)
    return outcome::done;
  auto nr3_6 = [](double v) { return format_number("%+.6E", v); };
  if (auto l = handle_source_level(cmd, reply, volts_, amps_, kMaxVolts, kMaxAmps, nr3_6);
      l.handled) {
    if (l.applied && l.voltage == source_voltage_mode_)
      log_.level(l.voltage ? volts_ : amps_, output_);
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
    if (auto on = bool_arg(cmd)) set_output(*on);
    return outcome::done;
  }
  // :READ? = :INIT + :FETC?: one reading in fixed mode with a trigger count of 1, the whole
  // sweep otherwise (the reply held until the sweep would have ended).
  if (is(":READ", true)) {
    if (!expect_args(cmd, 0)) return outcome::done;
    if (mode_ == source_mode::fixed && trigger_count_ == 1) {
      reply = read();  // (the real 2400 refuses with the output off; see DEVICES.md)
      return outcome::done;
    }
    if (start_sweep()) reply = fetch();
    return outcome::done;
  }
  if (is(":MEASure", true) || is(":MEASure:CURRent[:DC]", true)) {
    if (expect_args(cmd, 0)) reply = read();
    return outcome::done;
  }
  return outcome::unknown;
}

}  // namespace semilab::sim
