#include <array>
#include <cmath>
#include <numbers>
#include <semilab/sim/e4980a.hpp>

namespace semilab::sim {
namespace {
constexpr std::array<std::string_view, 15> kFunctions = {"CPD", "CPQ",  "CPG", "CPRP", "CSD",
                                                         "CSQ", "CSRS", "LPD", "LPQ",  "LSD",
                                                         "LSQ", "RX",   "ZTD", "ZTR",  "GB"};
}  // namespace

e4980a::e4980a(std::uint64_t seed) : rng_(seed) {}

void e4980a::reset() {
  function_ = "CPD";
  freq_ = 1000.0;
  level_ = 1.0;
  bias_ = 0.0;
  bias_on_ = false;
  init_cont_ = true;
  triggered_ = false;
  list_page_ = false;
  list_bias_.clear();
  aperture_ = std::chrono::milliseconds{20};
  averages_ = 1;
  list_result_.clear();
  list_ready_ = false;
}

std::chrono::milliseconds e4980a::pending_time() {
  auto now = std::chrono::steady_clock::now();
  return list_done_at_ > now ? std::chrono::ceil<std::chrono::milliseconds>(list_done_at_ - now)
                             : std::chrono::milliseconds{0};
}

std::string e4980a::format_error(int code, std::string_view text) const {
  return format_number("%+.0f", static_cast<double>(code)) + ",\"" + std::string(text) + "\"";
}

double e4980a::capacitance(double bias_volts) noexcept {
  // Accumulation (bias << Vfb): Cox; inversion (bias >> Vfb): Cmin (HF curve, no minority
  // carrier response). A logistic step is a smooth stand-in for the depletion solution.
  double x = (bias_volts - kFlatBand) / kTransitionWidth;
  return kCmin + (kCox - kCmin) / (1.0 + std::exp(x));
}

std::complex<double> e4980a::impedance(double freq_hz, double bias_volts) noexcept {
  double w = 2 * std::numbers::pi * freq_hz;
  std::complex<double> y(kLeakage, w * capacitance(bias_volts));
  return kSeriesResistance + 1.0 / y;
}

bool e4980a::function_values(std::string_view f, std::complex<double> z, double freq_hz, double& a,
                             double& b) noexcept {
  double w = 2 * std::numbers::pi * freq_hz;
  std::complex<double> y = 1.0 / z;
  double cp = y.imag() / w, gp = y.real();
  double cs = -1.0 / (w * z.imag()), rs = z.real();
  double lp = -1.0 / (w * y.imag()), ls = z.imag() / w;
  double dp = gp / std::fabs(y.imag()), ds = rs / std::fabs(z.imag());
  if (f == "CPD") {
    a = cp;
    b = dp;
  } else if (f == "CPQ") {
    a = cp;
    b = 1 / dp;
  } else if (f == "CPG") {
    a = cp;
    b = gp;
  } else if (f == "CPRP") {
    a = cp;
    b = 1 / gp;
  } else if (f == "CSD") {
    a = cs;
    b = ds;
  } else if (f == "CSQ") {
    a = cs;
    b = 1 / ds;
  } else if (f == "CSRS") {
    a = cs;
    b = rs;
  } else if (f == "LPD") {
    a = lp;
    b = dp;
  } else if (f == "LPQ") {
    a = lp;
    b = 1 / dp;
  } else if (f == "LSD") {
    a = ls;
    b = ds;
  } else if (f == "LSQ") {
    a = ls;
    b = 1 / ds;
  } else if (f == "RX") {
    a = z.real();
    b = z.imag();
  } else if (f == "ZTD") {
    a = std::abs(z);
    b = std::arg(z) * 180 / std::numbers::pi;
  } else if (f == "ZTR") {
    a = std::abs(z);
    b = std::arg(z);
  } else if (f == "GB") {
    a = y.real();
    b = y.imag();
  } else
    return false;
  return true;
}

std::string e4980a::fetch() { return fetch_at(bias_on_ ? bias_ : 0.0); }

std::string e4980a::fetch_at(double bias) {
  auto z = impedance(freq_, bias);
  double a = 0, b = 0;
  (void)function_values(function_, z, freq_, a, b);  // function_ is always one of kFunctions
  int status = 0;
  if (std::abs(z) > kMaxImpedance || level_ <= 0) {
    status = 1;
    a = b = kOverload;
  } else {
    // Noise grows as the test signal shrinks (1 V rms reference).
    std::normal_distribution<double> noise(0.0, kNoiseRelative * std::sqrt(1.0 / level_));
    a *= 1 + noise(rng_);
    b += std::fabs(b) * noise(rng_);
  }
  return format_number("%+.5E", a) + "," + format_number("%+.5E", b) + "," +
         format_number("%+.0f", status);
}

bool e4980a_dialect::handle_source_set(const scpi_command& cmd, double& freq, double& level,
                                       double& bias, bool& bias_on) {
  if (cmd.query) return false;
  if (header_matches(cmd, "[:SOURce]:FREQuency[:CW]")) {
    if (auto v = number_arg(cmd, 20.0, 2e6, 1000.0)) freq = *v;
    return true;
  }
  if (header_matches(cmd, "[:SOURce]:VOLTage[:LEVel]")) {
    if (auto v = number_arg(cmd, 0.0, 20.0, 1.0)) level = *v;
    return true;
  }
  if (header_matches(cmd, "[:SOURce]:BIAS:VOLTage[:LEVel]")) {
    if (auto v = number_arg(cmd, -40.0, 40.0, 0.0)) bias = *v;
    return true;
  }
  if (header_matches(cmd, "[:SOURce]:BIAS:STATe")) {
    if (auto on = bool_arg(cmd)) bias_on = *on;
    return true;
  }
  return false;
}

bool e4980a_dialect::list_arg_count_ok(const scpi_command& cmd) {
  if (!cmd.args.empty() && cmd.args.size() <= 201) return true;
  push_error(cmd.args.empty() ? -109 : -108,
             cmd.args.empty() ? "Missing parameter" : "Parameter not allowed");
  return false;
}

scpi_instrument::outcome e4980a::handle(const scpi_command& cmd,
                                        std::optional<std::string>& reply) {
  auto is = [&](std::string_view pattern, bool query) {
    return cmd.query == query && header_matches(cmd, pattern);
  };
  if (is("[:SENSe]:FUNCtion:IMPedance[:TYPE]", true)) {
    if (expect_args(cmd, 0)) reply = function_;
    return outcome::done;
  }
  if (is("[:SENSe]:FUNCtion:IMPedance[:TYPE]", false)) {
    if (!expect_args(cmd, 1)) return outcome::done;
    std::string f = upper_ascii(cmd.args[0]);
    bool known = false;
    for (auto k : kFunctions) known = known || k == f;
    if (known)
      function_ = f;
    else
      push_error(-224, "Illegal parameter value");
    return outcome::done;
  }
  if (is("[:SOURce]:FREQuency[:CW]", true)) {
    if (expect_args(cmd, 0)) reply = format_number("%+.6E", freq_);
    return outcome::done;
  }
  if (is("[:SOURce]:VOLTage[:LEVel]", true)) {
    if (expect_args(cmd, 0)) reply = format_number("%+.6E", level_);
    return outcome::done;
  }
  if (is("[:SOURce]:BIAS:VOLTage[:LEVel]", true)) {
    if (expect_args(cmd, 0)) reply = format_number("%+.6E", bias_);
    return outcome::done;
  }
  if (is("[:SOURce]:BIAS:STATe", true)) {
    if (expect_args(cmd, 0)) reply = bool_reply(bias_on_);
    return outcome::done;
  }
  if (handle_source_set(cmd, freq_, level_, bias_, bias_on_)) return outcome::done;
  if (is(":INITiate:CONTinuous", true)) {
    if (expect_args(cmd, 0)) reply = bool_reply(init_cont_);
    return outcome::done;
  }
  if (is(":INITiate:CONTinuous", false)) {
    if (auto on = bool_arg(cmd)) init_cont_ = *on;
    return outcome::done;
  }
  if (is(":INITiate[:IMMediate]", false) || is(":TRIGger[:IMMediate]", false) ||
      is("*TRG", false)) {
    if (!expect_args(cmd, 0)) return outcome::done;
    triggered_ = true;
    if (list_page_ && !list_bias_.empty()) {
      // The whole list in one trigger (SEQ); results are ready when the time has passed.
      list_result_ = list_reply(list_bias_, bias_on_, [&](double b) { return fetch_at(b); });
      list_ready_ = true;
      list_done_at_ = std::chrono::steady_clock::now() +
                      aperture_ * static_cast<std::int64_t>(averages_ * list_bias_.size());
    }
    return outcome::done;
  }
  if (is(":DISPlay:PAGE", false)) {
    if (!expect_args(cmd, 1)) return outcome::done;
    std::string p = upper_ascii(cmd.args[0]);
    if (p == "LIST") list_page_ = true;
    else if (p == "MEAS" || p == "MEASUREMENT" || p == "BNUM" || p == "BCO" || p == "LSET" ||
             p == "MSET" || p == "CSET" || p == "LTAB" || p == "SYST")
      list_page_ = false;
    else push_error(-224, "Illegal parameter value");
    return outcome::done;
  }
  if (is(":LIST:MODE", false)) {
    if (!expect_args(cmd, 1)) return outcome::done;
    std::string m = upper_ascii(cmd.args[0]);
    if (m != "SEQ" && m != "SEQUENCE" && m != "STEP") push_error(-224, "Illegal parameter value");
    return outcome::done;
  }
  if (is(":LIST:BIAS:VOLTage", false)) {
    if (!list_arg_count_ok(cmd)) return outcome::done;
    std::vector<double> values;
    for (const auto& a : cmd.args) {
      scpi_command one;
      one.args = {a};
      auto v = number_arg(one, -40.0, 40.0, 0.0);
      if (!v) return outcome::done;
      values.push_back(*v);
    }
    list_bias_ = std::move(values);
    list_ready_ = false;
    return outcome::done;
  }
  if (is(":APERture", false)) {
    if (cmd.args.empty() || cmd.args.size() > 2) {
      push_error(cmd.args.empty() ? -109 : -108,
                 cmd.args.empty() ? "Missing parameter" : "Parameter not allowed");
      return outcome::done;
    }
    std::string a = upper_ascii(cmd.args[0]);
    std::chrono::milliseconds t{0};
    if (a == "SHOR" || a == "SHORT") t = std::chrono::milliseconds{5};
    else if (a == "MED" || a == "MEDIUM") t = std::chrono::milliseconds{20};
    else if (a == "LONG") t = std::chrono::milliseconds{100};
    else {
      push_error(-224, "Illegal parameter value");
      return outcome::done;
    }
    unsigned avg = 1;
    if (cmd.args.size() == 2) {
      scpi_command one;
      one.args = {cmd.args[1]};
      auto v = number_arg(one, 1, 256, 1);
      if (!v) return outcome::done;
      avg = static_cast<unsigned>(*v);
    }
    aperture_ = t;
    averages_ = avg;
    return outcome::done;
  }
  if (is(":TRIGger:SOURce", false)) {
    if (!expect_args(cmd, 1)) return outcome::done;
    std::string s = upper_ascii(cmd.args[0]);
    if (s != "INT" && s != "INTERNAL" && s != "BUS" && s != "EXT" && s != "EXTERNAL" && s != "HOLD")
      push_error(-224, "Illegal parameter value");
    return outcome::done;
  }
  if (is(":FETCh[:IMPedance][:FORMatted]", true)) {
    if (!expect_args(cmd, 0)) return outcome::done;
    if (list_page_) {
      if (!list_ready_) {
        push_error(-230, "Data corrupt or stale");
        return outcome::done;
      }
      hold_reply(pending_time());  // a fetch before the list finished waits for it
      reply = list_result_;
      return outcome::done;
    }
    if (!init_cont_ && !triggered_) {
      push_error(-230, "Data corrupt or stale");
      return outcome::done;
    }
    triggered_ = false;
    reply = fetch();
    return outcome::done;
  }
  return outcome::unknown;
}

}  // namespace semilab::sim
