// Station instruments (station.hpp): a 2450-dialect SMU, an E4980A-dialect LCR meter and a
// 34461A-dialect DMM, each attached to one terminal of a shared station_device. The command
// handling follows the single-instrument simulators (keithley2450.cpp, e4980a.cpp,
// keysight34461a.cpp) for the subset the drivers send, sharing their dialect code
// (smu_instrument in smu.hpp, e4980a_dialect in e4980a.hpp); the physics comes from the device.
#include <semilab/sim/e4980a.hpp>
#include <semilab/sim/smu.hpp>
#include <semilab/sim/station.hpp>

#include <cmath>
#include <random>

namespace semilab::sim {
namespace {

// ---- source-measure unit, Keithley 2450 dialect ------------------------------------------------

class station_smu final : public smu_instrument {
 public:
  station_smu(station_device& dev, std::string terminal, std::uint64_t seed)
      : dev_(dev), terminal_(std::move(terminal)), rng_(seed) {
    publish();
  }

 protected:
  std::string idn() const override {
    return "KEITHLEY INSTRUMENTS,MODEL 2450,0" + std::to_string(4400000 + (seed_tag_ % 99999)) +
           ",1.7.12b";
  }
  void reset() override {
    sweep_.running = false;
    output_ = false;
    source_voltage_ = true;
    sense_current_ = true;
    volts_ = amps_ = 0;
    ilim_ = 1.05e-4;
    vlim_ = 21.0;
    nplc_ = 1;
    range_ = 0;
    list_.clear();
    sweep_levels_.clear();
    sweep_delay_ = 0;
    buffer_.clear();
    publish();
  }
  std::chrono::milliseconds pending_time() override {
    advance();
    return sweep_.remaining(std::chrono::steady_clock::now());
  }
  outcome handle(const scpi_command& cmd, std::optional<std::string>& reply) override;

 private:
  struct entry {
    double source = 0, reading = 0;
  };
  void publish() {
    dev_.drive(terminal_, {output_, source_voltage_, source_voltage_ ? volts_ : amps_, 0});
  }
  double noisy(double v, bool amps) {
    const auto& p = dev_.params();
    std::normal_distribution<double> n(0.0, p.noise_relative * std::fabs(v) +
                                                (amps ? p.noise_floor : 1e-8));
    return v + n(rng_);
  }
  double measure() {
    if (!output_) return noisy(0.0, sense_current_);
    double v = 0, i = 0;
    if (source_voltage_) {
      i = dev_.current(terminal_, volts_);
      v = volts_;
      if (std::fabs(i) >= ilim_) {
        i = std::copysign(ilim_, i);
        v = std::clamp(dev_.voltage(terminal_, i), -std::fabs(volts_), std::fabs(volts_));
      }
    } else {
      v = dev_.voltage(terminal_, amps_);
      i = amps_;
      if (std::fabs(v) >= vlim_) {
        v = std::copysign(vlim_, v);
        i = dev_.current(terminal_, v);
      }
    }
    double out = noisy(sense_current_ ? i : v, sense_current_);
    if (range_ > 0 && std::fabs(out) > 1.05 * range_) return 9.9e37;
    return out;
  }
  entry take() { return {source_voltage_ ? volts_ : amps_, measure()}; }
  void advance() {
    if (!sweep_.running) return;
    auto n = sweep_.due(std::chrono::steady_clock::now());
    for (std::size_t k = 0; k < n; ++k) {
      (source_voltage_ ? volts_ : amps_) = sweep_.levels[sweep_.done];
      publish();
      buffer_.push_back(take());
      ++sweep_.done;
    }
    if (sweep_.done == sweep_.levels.size()) sweep_.running = false;
  }
  bool format(std::size_t first, std::size_t count, const std::vector<std::string>& elements,
              std::string& out) {
    std::vector<int> which;  // 0 READ, 1 SOUR
    for (const auto& e : elements) {
      auto a = upper_ascii(e);
      if (a == "READ" || a == "READING") which.push_back(0);
      else if (a == "SOUR" || a == "SOURCE") which.push_back(1);
      else {
        push_error(-224, "Illegal parameter value");
        return false;
      }
    }
    if (which.empty()) which.push_back(0);
    out.clear();
    for (std::size_t i = first; i < first + count; ++i)
      for (int w : which) {
        if (!out.empty()) out.push_back(',');
        out += format_nr3(w == 0 ? buffer_[i].reading : buffer_[i].source);
      }
    return true;
  }
  bool configure_sweep(const scpi_command& cmd, bool list);

  station_device& dev_;
  std::string terminal_;
  std::mt19937_64 rng_;
  std::uint64_t seed_tag_ = static_cast<std::uint64_t>(std::hash<std::string>{}(terminal_));
  bool output_ = false, source_voltage_ = true, sense_current_ = true;
  double volts_ = 0, amps_ = 0, ilim_ = 1.05e-4, vlim_ = 21.0, nplc_ = 1, range_ = 0;
  std::vector<double> list_, sweep_levels_;
  double sweep_delay_ = 0;
  smu_sweep sweep_;
  std::vector<entry> buffer_;
};

bool station_smu::configure_sweep(const scpi_command& cmd, bool list) {
  std::vector<double> levels;
  std::size_t delay_arg = 0;
  if (!list) {
    if (cmd.args.size() < 3) {
      push_error(-109, "Missing parameter");
      return false;
    }
    auto start = plain_number(cmd.args[0]), stop = plain_number(cmd.args[1]),
         points = plain_number(cmd.args[2]);
    if (!start || !stop || !points || *points < 2 || *points > 100000) {
      push_error(-222, "Parameter data out of range");
      return false;
    }
    levels = linear_levels(*start, *stop, static_cast<std::size_t>(*points));
    delay_arg = 3;
  } else {
    auto index = cmd.args.empty() ? std::nullopt : plain_number(cmd.args[0]);
    if (!list_levels(index, list_, levels)) return false;
    delay_arg = 1;
  }
  return store_sweep(cmd, delay_arg, levels, sweep_levels_, sweep_delay_);
}

scpi_instrument::outcome station_smu::handle(const scpi_command& cmd,
                                             std::optional<std::string>& reply) {
  auto is = [&](std::string_view pattern, bool query) {
    return cmd.query == query && header_matches(cmd, pattern);
  };
  advance();
  if (is(":SOURce:SWEep:VOLTage:LINear", false) || is(":SOURce:SWEep:CURRent:LINear", false) ||
      is(":SOURce:SWEep:VOLTage:LIST", false) || is(":SOURce:SWEep:CURRent:LIST", false)) {
    bool volt = header_matches(cmd, ":SOURce:SWEep:VOLTage:LINear") ||
                header_matches(cmd, ":SOURce:SWEep:VOLTage:LIST");
    if (volt != source_voltage_) {
      push_error(-221, "Settings conflict");
      return outcome::done;
    }
    configure_sweep(cmd, cmd.nodes.back() == "LIST");
    return outcome::done;
  }
  if (handle_source_list(cmd, list_, 210.0)) return outcome::done;
  if (is(":INITiate[:IMMediate]", false)) {
    if (!expect_args(cmd, 0)) return outcome::done;
    if (sweep_.running || !output_) {
      push_error(-221, "Settings conflict");
      return outcome::done;
    }
    auto per = std::chrono::duration<double>(sweep_delay_ + nplc_ / 50.0);
    std::vector<double> levels = sweep_levels_.empty()
                                     ? std::vector<double>{source_voltage_ ? volts_ : amps_}
                                     : sweep_levels_;
    sweep_.start(std::move(levels), std::chrono::duration_cast<std::chrono::nanoseconds>(per));
    return outcome::done;
  }
  if (is(":ABORt", false)) {
    if (expect_args(cmd, 0)) sweep_.running = false;
    return outcome::done;
  }
  if (is(":TRACe:ACTual", true)) {
    reply = std::to_string(buffer_.size());
    return outcome::done;
  }
  if (is(":TRACe:CLEar", false)) {
    buffer_.clear();
    return outcome::done;
  }
  if (is(":TRACe:DATA", true)) {
    auto range = trace_range(cmd, buffer_.size());
    if (!range) return outcome::done;
    std::vector<std::string> elements(
        cmd.args.begin() + std::min<std::ptrdiff_t>(3, static_cast<std::ptrdiff_t>(cmd.args.size())),
        cmd.args.end());
    std::string out;
    if (format(range->first, range->count, elements, out)) reply = std::move(out);
    return outcome::done;
  }
  if (handle_sense_settings(cmd, nplc_, range_, 210.0)) return outcome::done;
  if (auto f = handle_source_function(cmd, reply, source_voltage_);
      f != source_function_cmd::none) {
    if (f == source_function_cmd::set) publish();
    return outcome::done;
  }
  if (auto l = handle_source_level(cmd, reply, volts_, amps_, 210.0, 1.05, format_nr3);
      l.handled) {
    if (l.set) publish();
    return outcome::done;
  }
  if (handle_source_limits(cmd, reply, ilim_, vlim_, 1.05, 210.0, 1.05e-4, 21.0))
    return outcome::done;
  // The station SMU does not take the long "CURRENT:DC" / "VOLTAGE:DC" forms.
  if (handle_sense_function(cmd, reply, sense_current_, false)) return outcome::done;
  if (is(":OUTPut[:STATe]", true)) {
    if (expect_args(cmd, 0)) reply = bool_reply(output_);
    return outcome::done;
  }
  if (is(":OUTPut[:STATe]", false)) {
    if (auto on = bool_arg(cmd)) {
      if (!*on) sweep_.running = false;  // output off aborts a running sweep
      output_ = *on;
      publish();
    }
    return outcome::done;
  }
  if (is(":READ", true)) {
    buffer_.push_back(take());
    std::vector<std::string> elements(cmd.args.begin() + (cmd.args.empty() ? 0 : 1), cmd.args.end());
    std::string out;
    if (format(buffer_.size() - 1, 1, elements, out)) reply = std::move(out);
    return outcome::done;
  }
  if (is(":MEASure", true) || is(":MEASure:CURRent[:DC]", true) || is(":MEASure:VOLTage[:DC]", true)) {
    reply = format_nr3(measure());
    return outcome::done;
  }
  return outcome::unknown;
}

// ---- LCR meter, Keysight E4980A dialect --------------------------------------------------------

class station_lcr final : public e4980a_dialect {
 public:
  station_lcr(station_device& dev, std::string terminal, std::uint64_t seed)
      : dev_(dev), terminal_(std::move(terminal)), rng_(seed) {}

 protected:
  std::string idn() const override { return "Keysight Technologies,E4980A,MY46109999,A.06.10"; }
  std::string options() const override { return "001"; }
  std::string format_error(int code, std::string_view text) const override {
    return format_number("%+.0f", static_cast<double>(code)) + ",\"" + std::string(text) + "\"";
  }
  void reset() override {
    function_ = "CPD";
    freq_ = 1000;
    level_ = 1;
    bias_ = 0;
    bias_on_ = false;
    list_page_ = false;
    list_bias_.clear();
    list_ready_ = false;
    aperture_ = std::chrono::milliseconds{20};
  }
  std::chrono::milliseconds pending_time() override {
    auto now = std::chrono::steady_clock::now();
    return done_at_ > now ? std::chrono::ceil<std::chrono::milliseconds>(done_at_ - now)
                          : std::chrono::milliseconds{0};
  }
  outcome handle(const scpi_command& cmd, std::optional<std::string>& reply) override;

 private:
  std::string point(double bias) {
    dev_.drive(terminal_, {true, true, bias, bias});
    auto z = dev_.impedance(terminal_, freq_, bias);
    double a = 0, b = 0;
    (void)e4980a::function_values(function_, z, freq_, a, b);
    std::normal_distribution<double> n(0.0, dev_.params().noise_relative);
    a *= 1 + n(rng_);
    b += std::fabs(b) * n(rng_);
    return format_number("%+.5E", a) + "," + format_number("%+.5E", b) + ",+0";
  }

  station_device& dev_;
  std::string terminal_;
  std::mt19937_64 rng_;
  std::string function_ = "CPD";
  double freq_ = 1000, level_ = 1, bias_ = 0;
  bool bias_on_ = false, list_page_ = false, list_ready_ = false;
  std::vector<double> list_bias_;
  std::string list_result_;
  std::chrono::milliseconds aperture_{20};
  std::chrono::steady_clock::time_point done_at_{};
};

scpi_instrument::outcome station_lcr::handle(const scpi_command& cmd,
                                             std::optional<std::string>& reply) {
  auto is = [&](std::string_view pattern, bool query) {
    return cmd.query == query && header_matches(cmd, pattern);
  };
  if (is("[:SENSe]:FUNCtion:IMPedance[:TYPE]", false)) {
    if (!expect_args(cmd, 1)) return outcome::done;
    double a = 0, b = 0;
    std::string f = upper_ascii(cmd.args[0]);
    if (e4980a::function_values(f, {1.0, -1.0}, 1e3, a, b)) function_ = f;
    else push_error(-224, "Illegal parameter value");
    return outcome::done;
  }
  if (is("[:SENSe]:FUNCtion:IMPedance[:TYPE]", true)) {
    reply = function_;
    return outcome::done;
  }
  if (handle_source_set(cmd, freq_, level_, bias_, bias_on_)) return outcome::done;
  if (is("[:SOURce]:BIAS:STATe", true)) {
    reply = bool_reply(bias_on_);
    return outcome::done;
  }
  if (is(":INITiate:CONTinuous", false) || is(":TRIGger:SOURce", false) || is(":LIST:MODE", false)) {
    (void)expect_args(cmd, 1);
    return outcome::done;
  }
  if (is(":APERture", false)) {
    if (cmd.args.empty()) {
      push_error(-109, "Missing parameter");
      return outcome::done;
    }
    auto a = upper_ascii(cmd.args[0]);
    aperture_ = std::chrono::milliseconds(a.starts_with("SHOR") ? 5 : a == "LONG" ? 100 : 20);
    return outcome::done;
  }
  if (is(":DISPlay:PAGE", false)) {
    if (expect_args(cmd, 1)) list_page_ = upper_ascii(cmd.args[0]) == "LIST";
    return outcome::done;
  }
  if (is(":LIST:BIAS:VOLTage", false)) {
    if (!list_arg_count_ok(cmd)) return outcome::done;
    std::vector<double> values;
    for (const auto& a : cmd.args) {
      auto v = plain_number(a);
      if (!v || std::fabs(*v) > 40) {
        push_error(-222, "Parameter data out of range");
        return outcome::done;
      }
      values.push_back(*v);
    }
    list_bias_ = std::move(values);
    list_ready_ = false;
    return outcome::done;
  }
  if (is(":INITiate[:IMMediate]", false) || is(":TRIGger[:IMMediate]", false) || is("*TRG", false)) {
    if (list_page_ && !list_bias_.empty()) {
      list_result_ = list_reply(list_bias_, bias_on_, [&](double b) { return point(b); });
      list_ready_ = true;
      done_at_ = std::chrono::steady_clock::now() +
                 std::chrono::milliseconds(1) * static_cast<std::int64_t>(list_bias_.size());
    }
    return outcome::done;
  }
  if (is(":FETCh[:IMPedance][:FORMatted]", true)) {
    if (list_page_) {
      if (!list_ready_) {
        push_error(-230, "Data corrupt or stale");
        return outcome::done;
      }
      hold_reply(pending_time());
      reply = list_result_;
      return outcome::done;
    }
    reply = point(bias_on_ ? bias_ : 0.0);
    return outcome::done;
  }
  return outcome::unknown;
}

// ---- DMM, Keysight 34461A dialect (DC volts on the terminal) ---------------------------------

class station_dmm final : public scpi_instrument {
 public:
  station_dmm(station_device& dev, std::string terminal, std::uint64_t seed)
      : dev_(dev), terminal_(std::move(terminal)), rng_(seed) {}

 protected:
  std::string idn() const override {
    return "Keysight Technologies,34461A,MY53229999,A.02.14-02.40-02.14-00.49-02-01";
  }
  std::string format_error(int code, std::string_view text) const override {
    return format_number("%+.0f", static_cast<double>(code)) + ",\"" + std::string(text) + "\"";
  }
  void reset() override { range_ = 0; }
  outcome handle(const scpi_command& cmd, std::optional<std::string>& reply) override {
    auto is = [&](std::string_view pattern, bool query) {
      return cmd.query == query && header_matches(cmd, pattern);
    };
    if (is(":CONFigure:VOLTage[:DC]", false)) {
      range_ = 0;
      if (!cmd.args.empty()) {
        auto a = upper_ascii(cmd.args[0]);
        if (a != "AUTO" && a != "DEF") {
          auto v = plain_number(a);
          if (!v || *v <= 0) {
            push_error(-222, "Data out of range");
            return outcome::done;
          }
          range_ = *v;
        }
      }
      return outcome::done;
    }
    if (is("[:SENSe]:VOLTage[:DC]:NPLC", false) || is(":TRIGger:SOURce", false)) {
      (void)expect_args(cmd, 1);
      return outcome::done;
    }
    if (is(":READ", true) || is(":MEASure:VOLTage[:DC]", true)) {
      double v = dev_.sensed_volts(terminal_);
      std::normal_distribution<double> n(0.0, dev_.params().noise_relative * std::fabs(v) + 1e-8);
      v += n(rng_);
      if (range_ > 0 && std::fabs(v) > 1.2 * range_) v = 9.9e37;
      reply = format_number("%+.8E", v);
      return outcome::done;
    }
    return outcome::unknown;
  }

 private:
  station_device& dev_;
  std::string terminal_;
  std::mt19937_64 rng_;
  double range_ = 0;
};

// ---- switch matrix, Keithley 7001 dialect ------------------------------------------------------
// Channels "row!column": rows 1 force HI, 2 force LO, 3 sense HI, 4 sense LO (station.hpp);
// columns the device's contacts or pads. :ROUTe:CLOSe (@r!c,...) closes (a row holds one column:
// the last one closed replaces the row's previous one), :ROUTe:OPEN (@...) | ALL opens,
// :ROUTe:CLOSe? lists the closed channels.
class station_matrix final : public scpi_instrument {
 public:
  station_matrix(station_device& dev, std::string terminal) : dev_(dev) { (void)terminal; }

 protected:
  std::string idn() const override { return "KEITHLEY INSTRUMENTS INC.,MODEL 7001,1234567,B06  /A02"; }
  void reset() override {
    for (int r = 1; r <= station_device::kMatrixRows; ++r) dev_.route(r, 0);
  }
  outcome handle(const scpi_command& cmd, std::optional<std::string>& reply) override {
    auto is = [&](std::string_view pattern, bool query) {
      return cmd.query == query && header_matches(cmd, pattern);
    };
    if (is("[:ROUTe]:CLOSe", true) || is("[:ROUTe]:CLOSe:STATe", true)) {
      std::string out;
      for (int r = 1; r <= station_device::kMatrixRows; ++r)
        if (dev_.route_of(r) > 0)
          out += (out.empty() ? "" : ",") + std::to_string(r) + "!" + std::to_string(dev_.route_of(r));
      reply = "(@" + out + ")";
      return outcome::done;
    }
    const bool close = is("[:ROUTe]:CLOSe", false);
    const bool open = is("[:ROUTe]:OPEN", false);
    if (is("[:ROUTe]:OPEN:ALL", false) || (open && cmd.args.size() == 1 && upper_ascii(cmd.args[0]) == "ALL")) {
      reset();
      return outcome::done;
    }
    if (close || open) {
      std::string list;
      for (const auto& a : cmd.args) list += (list.empty() ? "" : ",") + a;
      std::vector<std::pair<int, int>> ch;
      if (!parse_channels(list, ch)) {
        push_error(-224, "Illegal parameter value");
        return outcome::done;
      }
      for (auto [r, c] : ch) {
        if (close) dev_.route(r, c);
        else if (dev_.route_of(r) == c) dev_.route(r, 0);
      }
      return outcome::done;
    }
    return outcome::unknown;
  }

 private:
  // "(@1!2,3!4)" -> {(1,2), (3,4)}; rows and columns in range.
  bool parse_channels(std::string_view s, std::vector<std::pair<int, int>>& out) const {
    if (s.size() < 3 || s.substr(0, 2) != "(@" || s.back() != ')') return false;
    s = s.substr(2, s.size() - 3);
    while (!s.empty()) {
      auto comma = s.find(',');
      auto item = s.substr(0, comma);
      s = comma == std::string_view::npos ? std::string_view{} : s.substr(comma + 1);
      auto bang = item.find('!');
      if (bang == std::string_view::npos) return false;
      auto r = plain_number(std::string(item.substr(0, bang)));
      auto c = plain_number(std::string(item.substr(bang + 1)));
      if (!r || !c || *r != std::floor(*r) || *c != std::floor(*c)) return false;
      if (*r < 1 || *r > station_device::kMatrixRows || *c < 1 || *c > dev_.columns()) return false;
      out.emplace_back(static_cast<int>(*r), static_cast<int>(*c));
    }
    return !out.empty();
  }
  station_device& dev_;
};

// ---- magnet power supply, Kepco BOP dialect ------------------------------------------------------
// A bipolar current source into the electromagnet: [:SOURce]:CURRent <A>, :OUTPut ON|OFF,
// :MEASure:CURRent? (the coil current; the field is tesla_per_amp times it).
class station_magnet final : public scpi_instrument {
 public:
  station_magnet(station_device& dev, std::string terminal)
      : dev_(dev), terminal_(std::move(terminal)) {
    publish();
  }

 protected:
  std::string idn() const override { return "KEPCO,BOP 20-20M,E1234,1.74"; }
  void reset() override {
    amps_ = 0;
    output_ = false;
    publish();
  }
  outcome handle(const scpi_command& cmd, std::optional<std::string>& reply) override {
    auto is = [&](std::string_view pattern, bool query) {
      return cmd.query == query && header_matches(cmd, pattern);
    };
    if (is("[:SOURce]:CURRent[:LEVel][:IMMediate][:AMPLitude]", false)) {
      if (auto v = number_arg(cmd, -20.0, 20.0, 0.0)) amps_ = *v;
      publish();
      return outcome::done;
    }
    if (is("[:SOURce]:CURRent[:LEVel][:IMMediate][:AMPLitude]", true)) {
      reply = format_nr3(amps_);
      return outcome::done;
    }
    if (is(":OUTPut[:STATe]", false)) {
      if (auto b = bool_arg(cmd)) output_ = *b;
      publish();
      return outcome::done;
    }
    if (is(":OUTPut[:STATe]", true)) {
      reply = bool_reply(output_);
      return outcome::done;
    }
    if (is(":MEASure:CURRent[:DC]", true)) {
      reply = format_nr3(output_ ? amps_ : 0.0);
      return outcome::done;
    }
    return outcome::unknown;
  }

 private:
  void publish() { dev_.drive(terminal_, {output_, false, amps_, 0}); }
  station_device& dev_;
  std::string terminal_;
  double amps_ = 0;
  bool output_ = false;
};

}  // namespace

std::unique_ptr<sim_instrument> make_station_instrument(std::string_view model, station_device& dev,
                                                        std::string terminal, std::uint64_t seed) {
  if (model == "keithley2450") return std::make_unique<station_smu>(dev, std::move(terminal), seed);
  if (model == "e4980a") return std::make_unique<station_lcr>(dev, std::move(terminal), seed);
  if (model == "34461a") return std::make_unique<station_dmm>(dev, std::move(terminal), seed);
  if (model == "keithley7001") return std::make_unique<station_matrix>(dev, std::move(terminal));
  if (model == "kepco-bop") return std::make_unique<station_magnet>(dev, std::move(terminal));
  return nullptr;
}

}  // namespace semilab::sim
