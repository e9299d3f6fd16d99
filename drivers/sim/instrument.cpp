#include <semilab/sim/instrument.hpp>
#include <semilab/sim/e4980a.hpp>
#include <semilab/sim/keithley2400.hpp>
#include <semilab/sim/keithley2450.hpp>
#include <semilab/sim/keysight34461a.hpp>
#include <semilab/sim/station.hpp>

#include <charconv>
#include <cmath>
#include <cctype>
#include <cstdio>
#include <utility>

namespace semilab::sim {
namespace {

template <class T>
std::unique_ptr<sim_instrument> make(std::uint64_t seed) {
  return std::make_unique<T>(seed);
}

// A station instrument (station_instruments.cpp) on a device of its own, for the models that only
// make sense wired to a sample: the switch matrix and the magnet supply on the reference van der
// Pauw/Hall sample (station_device_params defaults).
template <const char* Model, const char* Terminal>
class standalone_station final : public sim_instrument {
 public:
  explicit standalone_station(std::uint64_t seed)
      : dev_(std::make_unique<station_device>("sample", "hall", station_device_params{})),
        inner_(make_station_instrument(Model, *dev_, Terminal, seed)) {}
  std::optional<std::string> execute(const scpi_command& cmd) override { return inner_->execute(cmd); }
  void power_on() override { inner_->power_on(); }
  void inject_error(int code) override { inner_->inject_error(code); }
  std::chrono::milliseconds take_reply_hold() override { return inner_->take_reply_hold(); }

 private:
  std::unique_ptr<station_device> dev_;  // before inner_: the instrument refers to it
  std::unique_ptr<sim_instrument> inner_;
};
constexpr char kModel7001[] = "keithley7001";
constexpr char kModelBop[] = "kepco-bop";
constexpr char kTerminalMatrix[] = "matrix";
constexpr char kTerminalMagnet[] = "magnet";

// The simulator table: one row per simulated model, named like the driver profile it serves.
constexpr sim_model_entry kSimModels[] = {
    {"keithley2450", &make<keithley2450>,
     "Keithley 2450 SourceMeter driving a diode (Shockley + series R), compliance, noise"},
    {"keithley2400", &make<keithley2400>,
     "Keithley 2400 SourceMeter driving the same diode; FORM:ELEM, status word with compliance"},
    {"e4980a", &make<e4980a>,
     "Keysight E4980A LCR meter measuring a MOS capacitor (C-V with DC bias), :FETC? with status"},
    {"34461a", &make<keysight34461a>,
     "Keysight 34461A DMM on a resistor network (divider with an NTC thermistor)"},
    {"keithley7001", &make<standalone_station<kModel7001, kTerminalMatrix>>,
     "Keithley 7001 switch matrix (rows force HI/LO, sense HI/LO) on a van der Pauw sample"},
    {"kepco-bop", &make<standalone_station<kModelBop, kTerminalMagnet>>,
     "Kepco BOP magnet supply (coil current, 0.1 T/A) over a van der Pauw sample"},
};

}  // namespace

std::string format_number(const char* fmt, double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

std::string_view scpi_instrument::standard_error_text(int code) noexcept {
  switch (code) {
    case -100: return "Command error";
    case -102: return "Syntax error";
    case -104: return "Data type error";
    case -108: return "Parameter not allowed";
    case -109: return "Missing parameter";
    case -113: return "Undefined header";
    case -200: return "Execution error";
    case -221: return "Settings conflict";
    case -222: return "Parameter data out of range";
    case -224: return "Illegal parameter value";
    case -230: return "Data corrupt or stale";
    case -310: return "System error";
    case -350: return "Queue overflow";
    case -410: return "Query INTERRUPTED";
    case -420: return "Query UNTERMINATED";
    default: return "Simulated error";
  }
}

std::string scpi_instrument::format_error(int code, std::string_view text) const {
  return std::to_string(code) + ",\"" + std::string(text) + "\"";
}

void scpi_instrument::power_on() {
  reset();
  errors_.clear();
  esr_ = kEsrPowerOn;
}

void scpi_instrument::inject_error(int code) { push_error(code, standard_error_text(code)); }

std::chrono::milliseconds scpi_instrument::take_reply_hold() {
  return std::exchange(hold_, std::chrono::milliseconds{0});
}

std::span<const sim_model_entry> sim_models() noexcept { return kSimModels; }

std::unique_ptr<sim_instrument> make_sim_instrument(std::string_view name, std::uint64_t seed) {
  for (const auto& m : kSimModels)
    if (m.name == name) return m.make(seed);
  return nullptr;
}

std::string format_nr3(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6E", v);
  return buf;
}

std::optional<std::string> execute_line(sim_instrument& inst, std::string_view line) {
  std::optional<std::string> out;
  for (const auto& cmd : parse_program(line)) {
    auto reply = inst.execute(cmd);
    if (!reply) continue;
    if (out) {
      out->push_back(';');
      out->append(*reply);
    } else {
      out = std::move(reply);
    }
  }
  return out;
}

void scpi_instrument::push_error(int code, std::string_view text) {
  // Standard event status bits: 2 QYE (-4xx), 3 DDE (-3xx), 4 EXE (-2xx), 5 CME (-1xx).
  if (code <= -100 && code > -200) esr_ |= 1u << 5;
  else if (code <= -200 && code > -300) esr_ |= 1u << 4;
  else if (code <= -300 && code > -400) esr_ |= 1u << 3;
  else if (code <= -400 && code > -500) esr_ |= 1u << 2;
  if (errors_.size() >= kErrorQueueCapacity) {
    errors_.back() = {-350, "Queue overflow"};
    return;
  }
  errors_.emplace_back(code, std::string(text));
}

bool scpi_instrument::expect_args(const scpi_command& cmd, std::size_t n) {
  if (cmd.args.size() < n) {
    push_error(-109, "Missing parameter");
    return false;
  }
  if (cmd.args.size() > n) {
    push_error(-108, "Parameter not allowed");
    return false;
  }
  return true;
}

std::optional<double> scpi_instrument::number_arg(const scpi_command& cmd, double lo, double hi,
                                                  double def) {
  if (!expect_args(cmd, 1)) return std::nullopt;
  std::string a = upper_ascii(cmd.args[0]);
  if (a == "DEF" || a == "DEFAULT") return def;
  if (a == "MIN" || a == "MINIMUM") return lo;
  if (a == "MAX" || a == "MAXIMUM") return hi;
  std::string_view s = a;
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size() || !std::isfinite(v)) {
    push_error(-104, "Data type error");
    return std::nullopt;
  }
  if (v < lo || v > hi) {
    push_error(-222, "Parameter data out of range");
    return std::nullopt;
  }
  return v;
}

std::optional<bool> scpi_instrument::bool_arg(const scpi_command& cmd) {
  if (!expect_args(cmd, 1)) return std::nullopt;
  std::string a = upper_ascii(cmd.args[0]);
  if (a == "ON" || a == "1") return true;
  if (a == "OFF" || a == "0") return false;
  push_error(-104, "Data type error");
  return std::nullopt;
}

std::optional<std::string> scpi_instrument::execute(const scpi_command& cmd) {
  if (cmd.malformed || cmd.nodes.empty()) {
    push_error(-102, "Syntax error");
    return std::nullopt;
  }
  auto is = [&](std::string_view pattern, bool query) {
    return cmd.query == query && header_matches(cmd, pattern);
  };
  // Common commands take no parameters here.
  auto no_args = [&] { return expect_args(cmd, 0); };
  if (is("*IDN", true)) return no_args() ? std::optional(idn()) : std::nullopt;
  if (is("*RST", false)) {
    if (no_args()) reset();
    return std::nullopt;
  }
  if (is("*CLS", false)) {
    if (no_args()) {
      errors_.clear();
      esr_ = 0;
    }
    return std::nullopt;
  }
  if (is("*OPC", true)) {
    if (!no_args()) return std::nullopt;
    hold_reply(pending_time());
    return std::optional<std::string>("1");
  }
  if (is("*OPC", false)) {
    if (no_args()) esr_ |= 1u;
    return std::nullopt;
  }
  if (is("*WAI", false)) {
    if (no_args()) hold_reply(pending_time());
    return std::nullopt;
  }
  if (is("*ESR", true)) {
    if (!no_args()) return std::nullopt;
    unsigned v = esr_;
    esr_ = 0;
    return std::to_string(v);
  }
  if (is("*OPT", true)) return no_args() ? std::optional(options()) : std::nullopt;
  if (is("*LANG", true)) return no_args() ? std::optional<std::string>("SCPI") : std::nullopt;
  if (is(":SYSTem:BLOCk", true)) {
    auto n = number_arg(cmd, 0, static_cast<double>(kMaxBlockBytes), 0);
    if (!n) return std::nullopt;
    auto len = static_cast<std::size_t>(*n);
    std::string digits = std::to_string(len);
    std::string out(1, '#');
    out += std::to_string(digits.size());
    out += digits;
    out.reserve(out.size() + len);
    for (std::size_t i = 0; i < len; ++i) out.push_back(static_cast<char>(i & 0xFF));
    return out;
  }
  if (is(":SYSTem:NONCe", true)) {
    if (!expect_args(cmd, 1)) return std::nullopt;
    const std::string& token = cmd.args[0];
    bool ok = !token.empty() && token.size() <= kMaxNonceBytes;
    for (char c : token) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_');
    if (!ok) {
      push_error(-224, "Illegal parameter value");
      return std::nullopt;
    }
    return token;
  }
  if (is(":SYSTem:ERRor[:NEXT]", true)) {
    if (!no_args()) return std::nullopt;
    if (errors_.empty()) return format_error(0, "No error");
    auto [code, text] = std::move(errors_.front());
    errors_.pop_front();
    return format_error(code, text);
  }
  if (is(":SYSTem:ERRor:COUNt", true))
    return no_args() ? std::optional(std::to_string(errors_.size())) : std::nullopt;
  if (is(":SYSTem:ERRor:CLEar", false)) {
    if (no_args()) errors_.clear();
    return std::nullopt;
  }
  std::optional<std::string> reply;
  if (handle(cmd, reply) == outcome::unknown) push_error(-113, "Undefined header");
  return reply;
}

}  // namespace semilab::sim
