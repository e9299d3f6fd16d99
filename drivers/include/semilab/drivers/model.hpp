#pragma once
// Instrument models as data: one generic SCPI driver, one profile per model, one explicit
// registry table (src/model.cpp). No static self-registration; check_registry() runs at start-up
// and a duplicate name is an error. See drivers/ADDING_A_DRIVER.md.
#include <semilab/drivers/error.hpp>
#include <semilab/schemas/record.hpp>

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace semilab::drivers {

// One value from one poll.
struct reading {
  std::string channel;       // e.g. "curr"
  std::string unit;          // SI symbol, e.g. "A"
  schemas::decimal value;    // every digit the instrument reported
  std::uint32_t quality = 0; // schemas::quality bits
  friend bool operator==(const reading&, const reading&) = default;
};

// A numeric model setting (from the agent configuration), declared once with its default and
// its valid range, so validation and docs come from the same table.
struct setting_spec {
  std::string_view key;
  std::string_view default_text;
  std::string_view unit;
  double min = 0;
  double max = 0;
  std::string_view doc;
};

struct setting_value {
  std::string text;  // as configured (validated); substituted verbatim into commands
  double number = 0;
};

// Validated settings: every key of the profile present, nothing else.
class model_settings {
 public:
  void set(std::string key, setting_value v) { values_[std::move(key)] = std::move(v); }
  // Precondition: key is declared by the profile (resolve_settings guarantees it).
  [[nodiscard]] const setting_value& get(std::string_view key) const;
  [[nodiscard]] double number(std::string_view key) const { return get(key).number; }
  [[nodiscard]] const std::map<std::string, setting_value, std::less<>>& all() const noexcept {
    return values_;
  }

 private:
  std::map<std::string, setting_value, std::less<>> values_;
};

// Parses one poll reply. Must not throw or crash on any input; errors are errc::bad_reply with
// a message quoting the reply (see quote_reply).
using parse_fn = result<std::vector<reading>> (*)(std::string_view reply,
                                                  const model_settings& settings);

// ---- Capability command tables (capabilities.hpp). Templates use placeholders: {func} (VOLT or
// CURR: the source function), {sense} (CURR or VOLT: the measured quantity), {value}, {start},
// {stop}, {points}, {delay} (seconds), {list} (comma-separated levels), {nplc}, {function},
// {frequency}, {level}, {aperture}. An empty string means "not needed on this model".

// How a source-measure reading is laid out in a reply.
enum class smu_reply_format {
  source_reading,  // 2450 buffer elements SOUR,READ: "<source>,<reading>" per point
  volt_curr_stat,  // 2400 :FORM:ELEM VOLT,CURR,STAT: "<V>,<I>,<status word>" per point
};

struct source_measure_commands {
  double max_volts = 0;  // source limits of the model
  double max_amps = 0;
  std::size_t max_sweep_points = 0;
  std::size_t list_chunk = 0;          // levels per list command (the rest with list_append)
  std::string_view source_function;    // {func}
  std::string_view sense_function;     // {sense}
  std::string_view source_level;       // {func} {value}
  std::string_view source_level_query; // {func}
  std::string_view limit_for_voltage_source;  // compliance in A, {value}
  std::string_view limit_for_current_source;  // compliance in V, {value}
  std::string_view sense_range;        // {sense} {value}
  std::string_view sense_autorange;    // {sense}
  std::string_view nplc;               // {sense} {value}
  std::string_view output_on;
  std::string_view output_off;
  std::string_view output_query;
  std::string_view abort;
  std::span<const std::string_view> point_setup;  // before single points and sweeps
  std::string_view point_query;
  smu_reply_format format = smu_reply_format::source_reading;
  std::span<const std::string_view> linear_sweep;  // {func} {start} {stop} {points} {delay}
  std::string_view list_first;                     // {func} {list}
  std::string_view list_append;                    // {func} {list}; empty: one command only
  std::span<const std::string_view> list_sweep;    // {func} {points} {delay}
  std::string_view sweep_start;
  std::string_view sweep_fetch;                    // {points}
  std::span<const std::string_view> sweep_restore; // {func}
};

struct impedance_commands {
  std::span<const std::string_view> functions;  // accepted :FUNC:IMP values
  double min_frequency = 0, max_frequency = 0, max_ac_level = 0, max_bias = 0;
  std::size_t max_list_points = 0;
  std::span<const std::string_view> configure;  // {function} {frequency} {level} {aperture}
  std::string_view bias_level;                  // {value}
  std::string_view bias_on;
  std::string_view bias_off;
  std::string_view trigger;
  std::string_view fetch;                       // single point: "<A>,<B>,<status>"
  std::span<const std::string_view> list_setup; // before the list
  std::string_view list_bias;                   // {list}
  std::string_view list_fetch;                  // "<A>,<B>,<status>,<compare>" per point
  std::span<const std::string_view> list_restore;
};

struct voltmeter_function {
  std::string_view name;     // as configured, e.g. "VOLT:DC"
  std::string_view channel;  // reading channel, e.g. "volt"
  std::string_view unit;     // SI symbol
  double max_range = 0;
};

struct voltmeter_commands {
  std::span<const voltmeter_function> functions;
  std::string_view configure;       // {function} {value} (range)
  std::string_view configure_auto;  // {function}
  std::string_view nplc;            // {function} {value}
  std::span<const std::string_view> setup;
  std::string_view read;
};

struct model_profile {
  std::string_view name;         // registry key, e.g. "keithley2450"
  std::string_view idn_pattern;  // glob (* and ?), case-insensitive, against the *IDN? reply
  std::span<const setting_spec> settings;
  // Sent in order after each (re)connect; "{key}" is replaced by the setting's text.
  std::span<const std::string_view> init;
  std::string_view poll_query;
  parse_fn parse = nullptr;
  std::string_view description;
  // Capabilities (capabilities.hpp): null when the model does not have it.
  const source_measure_commands* source_measure = nullptr;
  const impedance_commands* impedance = nullptr;
  const voltmeter_commands* voltmeter = nullptr;
};

// The registry, in declaration order.
[[nodiscard]] std::span<const model_profile> models() noexcept;
[[nodiscard]] const model_profile* find_model(std::string_view name) noexcept;

// Start-up check of a registry table: empty or duplicate names, missing parse function or poll
// query, duplicate setting keys, defaults outside their range, init placeholders without a
// setting. errc::duplicate_model for duplicates, errc::bad_setting otherwise.
[[nodiscard]] result<void> check_registry(std::span<const model_profile> table);

// Validates configured settings against the profile: unknown keys, non-numbers and out-of-range
// values are errc::bad_setting naming the model and the setting; absent keys take defaults.
[[nodiscard]] result<model_settings> resolve_settings(
    const model_profile& model, const std::map<std::string, std::string>& configured);

// The init commands with placeholders substituted.
[[nodiscard]] std::vector<std::string> render_init(const model_profile& model,
                                                   const model_settings& settings);

[[nodiscard]] bool idn_matches(const model_profile& model, std::string_view idn) noexcept;

// Reply text for error messages: at most 64 characters, non-printable bytes as \xNN, "..." when
// cut. Instrument replies are outside input; never put them raw into logs.
[[nodiscard]] std::string quote_reply(std::string_view reply);

// Parses a SCPI error-queue entry `<code>,"<text>"` (code 0 or +0 = empty).
struct scpi_error_entry {
  int code = 0;
  std::string text;
};
[[nodiscard]] result<scpi_error_entry> parse_error_entry(std::string_view reply);

namespace keithley2450 {
// Exposed for tests and for the simulator's documentation.
inline constexpr double kOverRange = 9.9e37;
inline constexpr double kComplianceFraction = 0.999;
[[nodiscard]] result<std::vector<reading>> parse_read(std::string_view reply,
                                                      const model_settings& settings);
}  // namespace keithley2450

namespace keithley2400 {
inline constexpr std::uint32_t kStatusOverflow = 1u << 0;    // status word bit 0, OFLO
inline constexpr std::uint32_t kStatusCompliance = 1u << 3;  // status word bit 3, in compliance
// :READ? with :FORM:ELEM VOLT,CURR,STAT: channels volt (V) and curr (A).
[[nodiscard]] result<std::vector<reading>> parse_read(std::string_view reply,
                                                      const model_settings& settings);
}  // namespace keithley2400

namespace e4980a {
inline constexpr int kStatusNormal = 0;
inline constexpr int kStatusOverload = 1;
inline constexpr int kStatusSourceOverload = 3;
inline constexpr int kStatusAlcUnregulated = 4;
// :FETC? with :FUNC:IMP CPD: channels cp (F) and d (unit "1").
[[nodiscard]] result<std::vector<reading>> parse_fetch(std::string_view reply,
                                                       const model_settings& settings);
}  // namespace e4980a

namespace keysight34461a {
// READ? in DC volts: channel volt (V).
[[nodiscard]] result<std::vector<reading>> parse_read(std::string_view reply,
                                                      const model_settings& settings);
}  // namespace keysight34461a

}  // namespace semilab::drivers
