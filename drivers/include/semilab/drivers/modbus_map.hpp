#pragma once
// Modbus register maps as data. A map file (TOML) has one optional [device] table and one
// [[point]] per value:
//
//   [device]
//   name = "eurotherm3200"   max_registers = 125   max_gap = 0   interval = 1.0   timeout = 0.5
//   [[point]]
//   name = "pv"  table = "holding"  address = 1  type = "i16"  scale = 0.1  unit = "degC"
//   [[point]]
//   name = "sp"  register = 40003  type = "i16"  scale = 0.1  writable = true  min = 0  max = 1200
//
// `address` is the 0-based PDU address; `register` the 1-based notation with a table prefix
// (00001 coil, 10001 discrete, 30001 input, 40001 holding; 6-digit 400001 also accepted).
// value = raw * scale + offset. Word orders name the bytes of a big-endian value:
// 32-bit ABCD = [AB, CD], CDAB = [CD, AB], BADC = [BA, DC], DCBA = [DC, BA]; for 64-bit values
// the same names mean big-endian, words reversed, bytes swapped within words, fully little-endian.
// Every error names file:line:col: point[i].key (or device.key): reason.
#include <semilab/drivers/error.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace semilab::drivers::modbus {

enum class table : std::uint8_t { coil, discrete, input, holding };
enum class value_type : std::uint8_t { boolean, u16, i16, u32, i32, u64, i64, f32, f64, string };
enum class word_order : std::uint8_t { abcd, cdab, badc, dcba };

[[nodiscard]] std::string_view name_of(table t) noexcept;
[[nodiscard]] std::string_view name_of(value_type t) noexcept;
[[nodiscard]] std::string_view name_of(word_order o) noexcept;
[[nodiscard]] constexpr bool is_bit_table(table t) noexcept {
  return t == table::coil || t == table::discrete;
}

struct point {
  std::string name;
  table tab = table::holding;
  std::uint16_t address = 0;          // 0-based PDU address
  value_type type = value_type::u16;
  std::optional<unsigned> bit;        // bool inside a register (0 = least significant)
  unsigned length = 0;                // string length in registers
  word_order order = word_order::abcd;
  double scale = 1.0;
  double offset = 0.0;
  std::string unit;
  double interval_s = 0.0;  // 0: the device interval
  double deadband = 0.0;    // absolute, in engineering units; 0 = report every change
  bool writable = false;
  std::optional<double> min, max;  // engineering units, checked on writes
  std::string readback;            // point read after a write to verify it ("" = this point)
  unsigned line = 0;               // line in the map file, for messages

  // Registers (or bits, for coil/discrete) this point covers.
  [[nodiscard]] unsigned count() const noexcept;
  // True when the value is an exact integer (integer type, scale 1, offset 0).
  [[nodiscard]] bool exact_integer() const noexcept;
};

struct device_map {
  std::string source;  // file the map came from ("" for text)
  std::string name;
  std::string description;
  unsigned max_registers = 125;  // per read request, 1..125
  unsigned max_bits = 2000;      // per read request, 1..2000
  unsigned max_gap = 0;          // unused registers/bits a request may span between points
  double interval_s = 1.0;       // default poll interval
  double timeout_s = 0.5;        // response timeout
  std::vector<point> points;

  [[nodiscard]] const point* find(std::string_view name) const noexcept;
  [[nodiscard]] std::optional<std::size_t> index_of(std::string_view name) const noexcept;
  [[nodiscard]] double interval_of(const point& p) const noexcept {
    return p.interval_s > 0 ? p.interval_s : interval_s;
  }
};

// Parses map text; `file` is used in messages. Errors: errc::bad_map (modbus_error.hpp).
[[nodiscard]] result<device_map> parse_map(std::string_view text, std::string_view file);
[[nodiscard]] result<device_map> load_map(const std::string& path);

// Profiles are map files named NAME.toml in $SEMILAB_MODBUS_PROFILES (if set), then the directory
// compiled in (the source tree's drivers/profiles/modbus). Errors: errc::unknown_profile.
[[nodiscard]] result<device_map> load_profile(std::string_view name);
[[nodiscard]] std::vector<std::string> profile_dirs();

// A decoded value: exact integers stay integers (u64 above 2^53 is exact), scaled values are
// doubles, strings are text.
using value = std::variant<bool, std::int64_t, std::uint64_t, double, std::string>;

// Text of a value: integers exactly, doubles in the shortest form that round-trips.
[[nodiscard]] std::string to_text(const value& v);
// Parses `text` as a value for `p` (bool: true/false/1/0; integers exact when p.exact_integer()).
[[nodiscard]] result<value> parse_value(const point& p, std::string_view text);

// Decodes the registers of a register point (regs.size() == p.count()).
[[nodiscard]] result<value> decode(const point& p, std::span<const std::uint16_t> regs);
// Encodes an engineering value into the point's registers (inverse scale, rounding for integer
// types, raw-range and min/max checks). Not for bit-table points (write the bool directly).
[[nodiscard]] result<std::vector<std::uint16_t>> encode(const point& p, const value& v);

// Words of an n-word (1..4) big-endian raw value in the given order, and back.
[[nodiscard]] std::vector<std::uint16_t> to_words(std::uint64_t raw, unsigned words, word_order o);
[[nodiscard]] std::uint64_t from_words(std::span<const std::uint16_t> regs, word_order o);

// Numeric view of a value (bool 0/1, integers converted); nullopt for strings.
[[nodiscard]] std::optional<double> as_double(const value& v) noexcept;

// Deadband: with deadband 0 every value is reported; otherwise a value is reported when it moved
// by more than the deadband since the last reported one (always the first time; strings and bools
// when they changed).
class deadband_filter {
 public:
  explicit deadband_filter(const device_map& map) : map_(&map), last_(map.points.size()) {}
  [[nodiscard]] bool should_report(std::size_t index, const value& v);

 private:
  const device_map* map_;
  std::vector<std::optional<value>> last_;
};

}  // namespace semilab::drivers::modbus
