#include <semilab/drivers/model.hpp>
#include <semilab/drivers/scpi_reply.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <set>

namespace semilab::drivers {
namespace {

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

std::optional<double> parse_number(std::string_view s) {
  if (s.empty()) return std::nullopt;
  if (s.front() == '+') s.remove_prefix(1);
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::string fmt_g(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// ----------------------------------------------------------------------------------------------
// Keithley 2450 SourceMeter, native SCPI command set (*LANG SCPI). Source voltage, measure
// current. Quirks (see drivers/DEVICES.md): :READ? returns only the measurement with the default
// buffer elements; overflow reads 9.9E37; the instrument clamps current at :SOUR:VOLT:ILIM and
// reports the clamped value, so compliance is inferred from |I| >= 0.999 * ilim.
// ----------------------------------------------------------------------------------------------
constexpr setting_spec kKeithley2450Settings[] = {
    {"bias", "0.6", "V", -210.0, 210.0, "source voltage applied after connect"},
    {"ilim", "0.1", "A", 1e-9, 1.05, "current limit (compliance) while sourcing voltage"},
};
constexpr std::string_view kKeithley2450Init[] = {
    ":SOUR:FUNC VOLT",        ":SOUR:VOLT {bias}", ":SOUR:VOLT:ILIM {ilim}",
    ":SENS:FUNC \"CURR\"",    ":OUTP ON",
};

// ----------------------------------------------------------------------------------------------
// Keithley 2400 SourceMeter (SCPI). Compliance is :SENS:CURR:PROT and is set before :OUTP ON.
// :READ? returns the :FORM:ELEM elements in the canonical order VOLT,CURR,RES,TIME,STAT
// whatever order was configured; we ask for VOLT,CURR,STAT. STAT is the status word as a
// number: bit 3 = in real compliance, bit 0 = over-range.
// ----------------------------------------------------------------------------------------------
constexpr setting_spec kKeithley2400Settings[] = {
    {"bias", "0.6", "V", -210.0, 210.0, "source voltage applied after connect"},
    {"ilim", "0.1", "A", 1e-9, 1.05, "current compliance (:SENS:CURR:PROT) while sourcing voltage"},
};
constexpr std::string_view kKeithley2400Init[] = {
    ":SOUR:FUNC VOLT",          ":SENS:FUNC \"CURR\"",        ":SENS:CURR:PROT {ilim}",
    ":SOUR:VOLT {bias}",        ":FORM:ELEM VOLT,CURR,STAT", ":OUTP ON",
};

// ----------------------------------------------------------------------------------------------
// Keysight (Agilent) E4980A LCR meter, function Cp-D. :FETC? returns "<Cp>,<D>,<status>";
// status +0 normal, +1 overload (values read 9.9E37), +3 signal source overloaded, +4 ALC
// unable to regulate, -1 no data. Continuous internal triggering so :FETC? always has data.
// ----------------------------------------------------------------------------------------------
constexpr setting_spec kE4980aSettings[] = {
    {"freq", "1000", "Hz", 20.0, 2e6, "test signal frequency"},
    {"level", "1.0", "V", 0.0, 20.0, "test signal level (rms)"},
    {"bias", "0", "V", -40.0, 40.0, "DC bias voltage (beyond +-2 V needs option 001)"},
};
constexpr std::string_view kE4980aInit[] = {
    ":FUNC:IMP CPD", ":FREQ {freq}",     ":VOLT {level}",   ":BIAS:VOLT {bias}",
    ":BIAS:STAT ON", ":TRIG:SOUR INT",   ":INIT:CONT ON",
};

// ----------------------------------------------------------------------------------------------
// Keysight 34461A DMM, DC volts. READ? = INIT + FETC? with TRIG:SOUR IMM; over-range reads
// +9.90000000E+37.
// ----------------------------------------------------------------------------------------------
constexpr setting_spec kKeysight34461aSettings[] = {
    {"range", "10", "V", 0.1, 1000.0, "DC voltage range (the meter picks the range >= this)"},
    {"nplc", "10", "PLC", 0.02, 100.0, "integration time in power-line cycles"},
};
constexpr std::string_view kKeysight34461aInit[] = {
    "CONF:VOLT:DC {range}", "VOLT:DC:NPLC {nplc}", "TRIG:SOUR IMM",
};

// ----------------------------------------------------------------------------------------------
// Keithley 7001 switch system with a 4-row matrix card: row 1 force HI, 2 force LO, 3 sense HI,
// 4 sense LO; the column is the sample contact or pad. [:ROUT]:CLOS (@r!c,...) closes crosspoints,
// [:ROUT]:OPEN:ALL opens every relay (the safe state after a connect). :ROUT:CLOS? lists the closed
// crosspoints as "(@r!c,...)"; the poll reports how many are closed.
// ----------------------------------------------------------------------------------------------
constexpr std::string_view kKeithley7001Init[] = {":ROUT:OPEN:ALL"};

result<std::vector<reading>> parse_7001_closed(std::string_view reply, const model_settings&) {
  std::string r = trim(reply);
  if (r.size() < 3 || r.compare(0, 2, "(@") != 0 || r.back() != ')')
    return make_error(errc::bad_reply, "keithley7001: :ROUT:CLOS? reply " + quote_reply(reply) +
                                           " is not a channel list (@...)");
  std::string_view list(r);
  list = list.substr(2, list.size() - 3);
  std::size_t closed = 0;
  while (!list.empty()) {
    auto comma = list.find(',');
    auto item = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    auto bang = item.find('!');
    if (bang == std::string_view::npos || !parse_number(item.substr(0, bang)) ||
        !parse_number(item.substr(bang + 1)))
      return make_error(errc::bad_reply, "keithley7001: :ROUT:CLOS? reply " + quote_reply(reply) +
                                             ": channel '" + std::string(item) +
                                             "' is not <row>!<column>");
    ++closed;
  }
  auto d = schemas::parse_decimal(std::to_string(closed));
  if (!d) return make_error(errc::bad_reply, "keithley7001: channel count not representable");
  return std::vector<reading>{reading{"closed", "1", *d, 0}};
}

// ----------------------------------------------------------------------------------------------
// Kepco BOP bipolar power supply driving an electromagnet: [:SOUR]:CURR <A>, :OUTP ON|OFF,
// :MEAS:CURR? (the coil current; the field is the magnet's tesla-per-amp times it). The init
// leaves the output on at the configured current (0 A by default: no field).
// ----------------------------------------------------------------------------------------------
constexpr setting_spec kKepcoBopSettings[] = {
    {"current", "0", "A", -20.0, 20.0, "coil current applied after connect"},
};
constexpr std::string_view kKepcoBopInit[] = {":CURR {current}", ":OUTP ON"};

result<std::vector<reading>> parse_bop_current(std::string_view reply, const model_settings&) {
  auto n = parse_number_reply(reply, "kepco-bop: :MEAS:CURR? reply");
  if (!n) return n.error();
  return std::vector<reading>{reading{"curr", "A", n->value, n->quality}};
}

// ----------------------------------------------------------------------------------------------
// Capability command tables (capabilities.hpp). Placeholders are listed in model.hpp.
// ----------------------------------------------------------------------------------------------

// Keithley 2450: sweeps are the trigger-model templates :SOUR:SWE:<func>:LIN|LIST, readings go
// to defbuffer1 and come back with :TRAC:DATA? in the element order asked for (SOUR,READ).
// The list is sent 100 levels per command, the rest appended with :SOUR:LIST:<func>:APP.
constexpr std::string_view kK2450Sweep[] = {
    ":TRAC:CLE \"defbuffer1\"",
    ":SOUR:SWE:{func}:LIN {start},{stop},{points},{delay},1,BEST,OFF,OFF,\"defbuffer1\"",
};
constexpr std::string_view kK2450ListSweep[] = {
    ":TRAC:CLE \"defbuffer1\"",
    ":SOUR:SWE:{func}:LIST 1,{delay},1,OFF,\"defbuffer1\"",
};
constexpr source_measure_commands kKeithley2450Smu = {
    .max_volts = 210.0,
    .max_amps = 1.05,
    .max_sweep_points = 10000,  // defbuffer1 holds 100000; one reply stays well under 1 MiB
    .list_chunk = 100,
    .source_function = ":SOUR:FUNC {func}",
    .sense_function = ":SENS:FUNC \"{sense}\"",
    .source_level = ":SOUR:{func} {value}",
    .source_level_query = ":SOUR:{func}?",
    .limit_for_voltage_source = ":SOUR:VOLT:ILIM {value}",
    .limit_for_current_source = ":SOUR:CURR:VLIM {value}",
    .sense_range = ":SENS:{sense}:RANG {value}",
    .sense_autorange = ":SENS:{sense}:RANG:AUTO ON",
    .nplc = ":SENS:{sense}:NPLC {value}",
    .output_on = ":OUTP ON",
    .output_off = ":OUTP OFF",
    .output_query = ":OUTP?",
    .abort = ":ABOR",
    .point_setup = {},
    .point_query = ":READ? \"defbuffer1\",SOUR,READ",
    .format = smu_reply_format::source_reading,
    .linear_sweep = kK2450Sweep,
    .list_first = ":SOUR:LIST:{func} {list}",
    .list_append = ":SOUR:LIST:{func}:APP {list}",
    .list_sweep = kK2450ListSweep,
    .sweep_start = ":INIT",
    .sweep_fetch = ":TRAC:DATA? 1,{points},\"defbuffer1\",SOUR,READ",
    .sweep_restore = {},
};

// Keithley 2400: sweeps are source modes (SWE, LIST) with the trigger count equal to the point
// count; :INIT fills the sample buffer, :FETC? returns every reading with the :FORM:ELEM
// elements (VOLT,CURR,STAT, always in canonical order). Lists hold at most 100 levels.
constexpr std::string_view kK2400PointSetup[] = {":FORM:ELEM VOLT,CURR,STAT"};
constexpr std::string_view kK2400Sweep[] = {
    ":SOUR:{func}:STAR {start}", ":SOUR:{func}:STOP {stop}", ":SOUR:SWE:SPAC LIN",
    ":SOUR:SWE:POIN {points}",   ":SOUR:{func}:MODE SWE",    ":TRIG:COUN {points}",
    ":SOUR:DEL {delay}",
};
constexpr std::string_view kK2400ListSweep[] = {
    ":SOUR:{func}:MODE LIST",
    ":TRIG:COUN {points}",
    ":SOUR:DEL {delay}",
};
constexpr std::string_view kK2400Restore[] = {":SOUR:{func}:MODE FIX", ":TRIG:COUN 1"};
constexpr source_measure_commands kKeithley2400Smu = {
    .max_volts = 210.0,
    .max_amps = 1.05,
    .max_sweep_points = 2500,  // trigger count / sample buffer limit
    .list_chunk = 100,
    .source_function = ":SOUR:FUNC {func}",
    .sense_function = ":SENS:FUNC \"{sense}\"",
    .source_level = ":SOUR:{func} {value}",
    .source_level_query = ":SOUR:{func}?",
    .limit_for_voltage_source = ":SENS:CURR:PROT {value}",
    .limit_for_current_source = ":SENS:VOLT:PROT {value}",
    .sense_range = ":SENS:{sense}:RANG {value}",
    .sense_autorange = ":SENS:{sense}:RANG:AUTO ON",
    .nplc = ":SENS:{sense}:NPLC {value}",
    .output_on = ":OUTP ON",
    .output_off = ":OUTP OFF",
    .output_query = ":OUTP?",
    .abort = ":ABOR",
    .point_setup = kK2400PointSetup,
    .point_query = ":READ?",
    .format = smu_reply_format::volt_curr_stat,
    .linear_sweep = kK2400Sweep,
    .list_first = ":SOUR:LIST:{func} {list}",
    .list_append = "",
    .list_sweep = kK2400ListSweep,
    .sweep_start = ":INIT",
    .sweep_fetch = ":FETC?",
    .sweep_restore = kK2400Restore,
};

// Keysight E4980A: bus trigger, one :TRIG:IMM per measurement; a DC-bias list sweep runs on the
// LIST display page in SEQ mode (one trigger runs the whole list), :FETC? then returns
// A,B,status,compare for every point.
constexpr std::string_view kE4980aFunctions[] = {"CPD", "CPQ",  "CPG", "CPRP", "CSD",
                                                 "CSQ", "CSRS", "LPD", "LPQ",  "LSD",
                                                 "LSQ", "RX",   "ZTD", "ZTR",  "GB"};
constexpr std::string_view kE4980aConfigure[] = {
    ":FUNC:IMP {function}", ":FREQ {frequency}",  ":VOLT {level}",    ":APER {aperture}",
    ":TRIG:SOUR BUS",       ":INIT:CONT ON",      ":DISP:PAGE MEAS",
};
constexpr std::string_view kE4980aListSetup[] = {":DISP:PAGE LIST", ":LIST:MODE SEQ"};
constexpr std::string_view kE4980aListRestore[] = {":DISP:PAGE MEAS"};
constexpr impedance_commands kE4980aImpedance = {
    .functions = kE4980aFunctions,
    .min_frequency = 20.0,
    .max_frequency = 2e6,
    .max_ac_level = 20.0,
    .max_bias = 40.0,  // option 001; +-2 V without it (the instrument then queues an error)
    .max_list_points = 201,
    .configure = kE4980aConfigure,
    .bias_level = ":BIAS:VOLT {value}",
    .bias_on = ":BIAS:STAT ON",
    .bias_off = ":BIAS:STAT OFF",
    .trigger = ":TRIG:IMM",
    .fetch = ":FETC?",
    .list_setup = kE4980aListSetup,
    .list_bias = ":LIST:BIAS:VOLT {list}",
    .list_fetch = ":FETC?",
    .list_restore = kE4980aListRestore,
};

// Keysight 34461A: CONF:<function> <range>|AUTO, <function>:NPLC, READ? (= INIT + FETC?).
constexpr voltmeter_function kKeysight34461aFunctions[] = {
    {"VOLT:DC", "volt", "V", 1000.0},
    {"RES", "res", "Ohm", 1e8},
};
constexpr std::string_view kKeysight34461aSetup[] = {"TRIG:SOUR IMM"};
constexpr voltmeter_commands kKeysight34461aVoltmeter = {
    .functions = kKeysight34461aFunctions,
    .configure = "CONF:{function} {value}",
    .configure_auto = "CONF:{function} AUTO",
    .nplc = "{function}:NPLC {value}",
    .setup = kKeysight34461aSetup,
    .read = "READ?",
};

// The registry: one explicit table. Add a model here (and a simulator in drivers/sim).
constexpr model_profile kModels[] = {
    {
        .name = "keithley2450",
        .idn_pattern = "KEITHLEY INSTRUMENTS*,MODEL 2450,*",
        .settings = kKeithley2450Settings,
        .init = kKeithley2450Init,
        .poll_query = ":READ?",
        .parse = &keithley2450::parse_read,
        .description = "Keithley 2450 SourceMeter: source bias voltage, measure current (A)",
        .source_measure = &kKeithley2450Smu,
    },
    {
        .name = "keithley2400",
        .idn_pattern = "KEITHLEY INSTRUMENTS*,MODEL 2400,*",
        .settings = kKeithley2400Settings,
        .init = kKeithley2400Init,
        .poll_query = ":READ?",
        .parse = &keithley2400::parse_read,
        .description = "Keithley 2400 SourceMeter: source bias voltage, measure voltage (V) and "
                       "current (A), compliance from the status word",
        .source_measure = &kKeithley2400Smu,
    },
    {
        .name = "e4980a",
        .idn_pattern = "*,E4980A,*",
        .settings = kE4980aSettings,
        .init = kE4980aInit,
        .poll_query = ":FETC?",
        .parse = &e4980a::parse_fetch,
        .description = "Keysight E4980A LCR meter: Cp (F) and D at a frequency, level and DC bias",
        .impedance = &kE4980aImpedance,
    },
    {
        .name = "34461a",
        .idn_pattern = "*,34461A,*",
        .settings = kKeysight34461aSettings,
        .init = kKeysight34461aInit,
        .poll_query = "READ?",
        .parse = &keysight34461a::parse_read,
        .description = "Keysight 34461A DMM: DC voltage (V)",
        .voltmeter = &kKeysight34461aVoltmeter,
    },
    {
        .name = "keithley7001",
        .idn_pattern = "KEITHLEY INSTRUMENTS*,MODEL 7001,*",
        .settings = {},
        .init = kKeithley7001Init,
        .poll_query = ":ROUT:CLOS?",
        .parse = &parse_7001_closed,
        .description = "Keithley 7001 switch system, 4-row matrix: number of closed crosspoints",
    },
    {
        .name = "kepco-bop",
        .idn_pattern = "KEPCO,BOP*",
        .settings = kKepcoBopSettings,
        .init = kKepcoBopInit,
        .poll_query = ":MEAS:CURR?",
        .parse = &parse_bop_current,
        .description = "Kepco BOP bipolar supply on an electromagnet: coil current (A)",
    },
};

bool glob_match(std::string_view pat, std::string_view s) noexcept {
  // Iterative glob with single-star backtracking; linear enough for IDN strings.
  std::size_t p = 0, i = 0, star = std::string_view::npos, mark = 0;
  auto eq = [](char a, char b) {
    return std::toupper(static_cast<unsigned char>(a)) == std::toupper(static_cast<unsigned char>(b));
  };
  while (i < s.size()) {
    if (p < pat.size() && (pat[p] == '?' || (pat[p] != '*' && eq(pat[p], s[i])))) {
      ++p;
      ++i;
    } else if (p < pat.size() && pat[p] == '*') {
      star = p++;
      mark = i;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      i = ++mark;
    } else {
      return false;
    }
  }
  while (p < pat.size() && pat[p] == '*') ++p;
  return p == pat.size();
}

}  // namespace

const setting_value& model_settings::get(std::string_view key) const {
  auto it = values_.find(key);
  // Broken invariant (profile code asking for an undeclared key), not outside input.
  if (it == values_.end()) std::abort();
  return it->second;
}

std::span<const model_profile> models() noexcept { return kModels; }

const model_profile* find_model(std::string_view name) noexcept {
  for (const auto& m : kModels)
    if (m.name == name) return &m;
  return nullptr;
}

result<void> check_registry(std::span<const model_profile> table) {
  std::set<std::string_view> names;
  for (const auto& m : table) {
    if (m.name.empty()) return make_error(errc::bad_setting, "model registry: entry without a name");
    if (!names.insert(m.name).second)
      return make_error(errc::duplicate_model,
                        "model registry: model '" + std::string(m.name) + "' registered twice");
    if (m.parse == nullptr || m.poll_query.empty())
      return make_error(errc::bad_setting,
                        "model '" + std::string(m.name) + "': no poll query or parse function");
    std::set<std::string_view> keys;
    for (const auto& s : m.settings) {
      if (!keys.insert(s.key).second)
        return make_error(errc::bad_setting, "model '" + std::string(m.name) + "': setting '" +
                                                 std::string(s.key) + "' declared twice");
      auto d = parse_number(s.default_text);
      if (!d || *d < s.min || *d > s.max)
        return make_error(errc::bad_setting, "model '" + std::string(m.name) + "': default of '" +
                                                 std::string(s.key) + "' invalid");
    }
    for (auto cmd : m.init) {
      for (auto open = cmd.find('{'); open != std::string_view::npos;
           open = cmd.find('{', open + 1)) {
        auto close = cmd.find('}', open);
        auto key = cmd.substr(open + 1, close == std::string_view::npos ? 0 : close - open - 1);
        if (close == std::string_view::npos || !keys.contains(key))
          return make_error(errc::bad_setting, "model '" + std::string(m.name) +
                                                   "': init command '" + std::string(cmd) +
                                                   "' uses an undeclared setting");
      }
    }
  }
  return {};
}

result<model_settings> resolve_settings(const model_profile& model,
                                        const std::map<std::string, std::string>& configured) {
  const std::string who = "model '" + std::string(model.name) + "': setting '";
  for (const auto& [key, text] : configured) {
    bool known = std::any_of(model.settings.begin(), model.settings.end(),
                             // init-capture: clang before 16 cannot capture a structured binding
                             [&k = key](const setting_spec& s) { return s.key == k; });
    if (!known) {
      std::string names;
      for (const auto& s : model.settings) names += (names.empty() ? "" : ", ") + std::string(s.key);
      return make_error(errc::bad_setting, who + key + "' is unknown (known: " + names + ")");
    }
  }
  model_settings out;
  for (const auto& s : model.settings) {
    auto it = configured.find(std::string(s.key));
    std::string text = trim(it == configured.end() ? s.default_text : std::string_view(it->second));
    auto v = parse_number(text);
    if (!v)
      return make_error(errc::bad_setting,
                        who + std::string(s.key) + "' = '" + text + "' is not a number");
    if (*v < s.min || *v > s.max)
      return make_error(errc::bad_setting, who + std::string(s.key) + "' = " + text +
                                               " is outside [" + fmt_g(s.min) + ", " +
                                               fmt_g(s.max) + "] " + std::string(s.unit));
    out.set(std::string(s.key), setting_value{std::move(text), *v});
  }
  return out;
}

std::vector<std::string> render_init(const model_profile& model, const model_settings& settings) {
  std::vector<std::string> out;
  for (auto cmd : model.init) {
    std::string s;
    std::size_t pos = 0;
    for (auto open = cmd.find('{'); open != std::string_view::npos; open = cmd.find('{', pos)) {
      auto close = cmd.find('}', open);  // check_registry guarantees it exists
      s.append(cmd.substr(pos, open - pos));
      s.append(settings.get(cmd.substr(open + 1, close - open - 1)).text);
      pos = close + 1;
    }
    s.append(cmd.substr(pos));
    out.push_back(std::move(s));
  }
  return out;
}

bool idn_matches(const model_profile& model, std::string_view idn) noexcept {
  while (!idn.empty() && std::isspace(static_cast<unsigned char>(idn.back()))) idn.remove_suffix(1);
  return glob_match(model.idn_pattern, idn);
}

std::string quote_reply(std::string_view reply) {
  constexpr std::size_t kMax = 64;
  std::string out = "'";
  std::size_t shown = 0;
  for (char c : reply) {
    if (shown == kMax) {
      out += "'... (" + std::to_string(reply.size()) + " bytes)";
      return out;
    }
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7F && c != '\\') {
      out.push_back(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", unsigned{u});
      out += buf;
    }
    ++shown;
  }
  return out + "'";
}

result<scpi_error_entry> parse_error_entry(std::string_view reply) {
  auto comma = reply.find(',');
  std::string code_text = trim(reply.substr(0, comma));
  std::string_view code_view = code_text;
  if (!code_view.empty() && code_view.front() == '+') code_view.remove_prefix(1);
  int code = 0;
  auto [p, ec] = std::from_chars(code_view.data(), code_view.data() + code_view.size(), code);
  if (code_view.empty() || ec != std::errc{} || p != code_view.data() + code_view.size())
    return make_error(errc::bad_reply, "error queue reply " + quote_reply(reply) +
                                           " does not start with an integer code");
  std::string text = comma == std::string_view::npos ? "" : trim(reply.substr(comma + 1));
  if (text.size() >= 2 && text.front() == '"' && text.back() == '"')
    text = text.substr(1, text.size() - 2);
  return scpi_error_entry{code, std::move(text)};
}

result<std::vector<reading>> keithley2450::parse_read(std::string_view reply,
                                                      const model_settings& settings) {
  auto d = schemas::parse_decimal(reply);
  if (!d)
    return make_error(errc::bad_reply,
                      "keithley2450: :READ? reply " + quote_reply(reply) + " is not a number");
  reading r{"curr", "A", *d, 0};
  double amps = d->to_double();
  if (!std::isfinite(amps) || std::fabs(amps) >= kOverRange) {
    r.quality |= schemas::quality::over_range;
  } else if (std::fabs(amps) >= settings.number("ilim") * kComplianceFraction) {
    r.quality |= schemas::quality::compliance;
  }
  return std::vector<reading>{std::move(r)};
}

result<std::vector<reading>> keithley2400::parse_read(std::string_view reply,
                                                      const model_settings&) {
  auto values = parse_number_list(reply, "keithley2400: :READ? reply");
  if (!values) return values.error();
  if (values->size() != 3)
    return make_error(errc::bad_reply, "keithley2400: :READ? reply " + quote_reply(reply) +
                                           " has " + std::to_string(values->size()) +
                                           " elements, expected VOLT,CURR,STAT");
  double stat = (*values)[2].value.to_double();
  if (!(stat >= 0 && stat < 16777216.0) || stat != std::floor(stat))
    return make_error(errc::bad_reply, "keithley2400: :READ? reply " + quote_reply(reply) +
                                           ": status word is not an integer");
  auto status = static_cast<std::uint32_t>(stat);
  std::uint32_t q = 0;
  if (status & kStatusCompliance) q |= schemas::quality::compliance;
  if (status & kStatusOverflow) q |= schemas::quality::over_range;
  reading v{"volt", "V", (*values)[0].value, q | (*values)[0].quality};
  reading i{"curr", "A", (*values)[1].value, q | (*values)[1].quality};
  return std::vector<reading>{std::move(v), std::move(i)};
}

result<std::vector<reading>> e4980a::parse_fetch(std::string_view reply, const model_settings&) {
  auto values = parse_number_list(reply, "e4980a: :FETC? reply");
  if (!values) return values.error();
  if (values->size() != 3)
    return make_error(errc::bad_reply, "e4980a: :FETC? reply " + quote_reply(reply) + " has " +
                                           std::to_string(values->size()) +
                                           " elements, expected <Cp>,<D>,<status>");
  const auto& st = (*values)[2].value;
  double sv = st.to_double();
  if (sv != std::floor(sv) || std::fabs(sv) > 100)
    return make_error(errc::bad_reply, "e4980a: :FETC? reply " + quote_reply(reply) +
                                           ": status is not an integer");
  std::uint32_t q = 0;
  switch (static_cast<int>(sv)) {
    case kStatusNormal: break;
    case kStatusOverload:
    case kStatusSourceOverload: q |= schemas::quality::over_range; break;
    case kStatusAlcUnregulated: q |= schemas::quality::non_traceable; break;
    default:
      return make_error(errc::bad_reply, "e4980a: :FETC? reply " + quote_reply(reply) +
                                             ": measurement status " + st.to_string() +
                                             " (no valid data)");
  }
  reading cp{"cp", "F", (*values)[0].value, q | (*values)[0].quality};
  reading d{"d", "1", (*values)[1].value, q | (*values)[1].quality};
  return std::vector<reading>{std::move(cp), std::move(d)};
}

result<std::vector<reading>> keysight34461a::parse_read(std::string_view reply,
                                                        const model_settings&) {
  auto n = parse_number_reply(reply, "34461a: READ? reply");
  if (!n) return n.error();
  return std::vector<reading>{reading{"volt", "V", n->value, n->quality}};
}

}  // namespace semilab::drivers
