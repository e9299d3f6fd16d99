// Register maps: TOML through the declared-once helper, validation across keys, codecs.
#include <semilab/drivers/modbus_error.hpp>
#include <semilab/drivers/modbus_map.hpp>
#include <semilab/schemas/config_map.hpp>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <set>

#ifndef SEMILAB_MODBUS_PROFILE_DIR
#define SEMILAB_MODBUS_PROFILE_DIR ""
#endif

namespace semilab::drivers::modbus {
namespace cfg = semilab::schemas::config;

std::string_view name_of(table t) noexcept {
  switch (t) {
    case table::coil: return "coil";
    case table::discrete: return "discrete";
    case table::input: return "input";
    case table::holding: return "holding";
  }
  return "?";
}

std::string_view name_of(value_type t) noexcept {
  constexpr std::string_view k[] = {"bool", "u16", "i16", "u32", "i32",
                                    "u64",  "i64", "f32", "f64", "string"};
  return k[static_cast<std::size_t>(t)];
}

std::string_view name_of(word_order o) noexcept {
  constexpr std::string_view k[] = {"ABCD", "CDAB", "BADC", "DCBA"};
  return k[static_cast<std::size_t>(o)];
}

namespace {

unsigned words_of(value_type t) noexcept {
  switch (t) {
    case value_type::boolean:
    case value_type::u16:
    case value_type::i16: return 1;
    case value_type::u32:
    case value_type::i32:
    case value_type::f32: return 2;
    case value_type::u64:
    case value_type::i64:
    case value_type::f64: return 4;
    case value_type::string: return 0;
  }
  return 0;
}

bool is_integer(value_type t) noexcept {
  return t == value_type::u16 || t == value_type::i16 || t == value_type::u32 ||
         t == value_type::i32 || t == value_type::u64 || t == value_type::i64;
}
bool is_signed(value_type t) noexcept {
  return t == value_type::i16 || t == value_type::i32 || t == value_type::i64;
}

// The point as read from TOML, before cross-key validation.
struct raw_point {
  point p;
  std::string table_text, type_text, order_text = "ABCD";
  std::optional<std::int64_t> address, reg, bit;
  std::int64_t length = 0;
  double min = std::numeric_limits<double>::quiet_NaN();
  double max = std::numeric_limits<double>::quiet_NaN();
};

constexpr double kBig = std::numeric_limits<double>::max();

template <class T>
cfg::option<raw_point> opt_int(std::string_view key, std::optional<std::int64_t> raw_point::*m,
                               std::string_view doc, std::int64_t lo, std::int64_t hi) {
  return {key, "integer", "(none)", "", doc,
          [m, lo, hi](raw_point& s, const toml::node& n) -> std::optional<std::string> {
            if (!n.is_integer()) return "expected an integer";
            auto v = *n.value<std::int64_t>();
            if (v < lo || v > hi)
              return "must be between " + std::to_string(lo) + " and " + std::to_string(hi);
            s.*m = v;
            return std::nullopt;
          }};
}

template <class M>
cfg::option<raw_point> opt_point_double(std::string_view key, M member, std::string_view def,
                                        std::string_view unit, std::string_view doc, double lo,
                                        double hi) {
  return {key, "float", def, unit, doc,
          [member, lo, hi](raw_point& s, const toml::node& n) -> std::optional<std::string> {
            if (!n.is_number()) return "expected a number";
            double v = *n.value<double>();
            if (!(v >= lo && v <= hi)) return "out of range";
            member(s) = v;
            return std::nullopt;
          }};
}

cfg::option<raw_point> opt_point_string(std::string_view key, std::string_view def,
                                        std::string_view doc,
                                        std::string& (*member)(raw_point&)) {
  return {key, "string", def, "", doc,
          [member](raw_point& s, const toml::node& n) -> std::optional<std::string> {
            if (!n.is_string()) return "expected a string";
            member(s) = *n.value<std::string>();
            return std::nullopt;
          }};
}

const std::vector<cfg::option<raw_point>>& point_options() {
  static const std::vector<cfg::option<raw_point>> k = {
      opt_point_string("name", "", "point name, unique in the map",
                       [](raw_point& r) -> std::string& { return r.p.name; }),
      opt_point_string("table", "(from register)", "coil, discrete, input or holding",
                       [](raw_point& r) -> std::string& { return r.table_text; }),
      opt_int<std::int64_t>("address", &raw_point::address, "0-based PDU address", 0, 65535),
      opt_int<std::int64_t>("register", &raw_point::reg,
                            "1-based address with table prefix (40001 = holding 0)", 1, 465536),
      opt_point_string("type", "", "bool, u16, i16, u32, i32, u64, i64, f32, f64, string",
                       [](raw_point& r) -> std::string& { return r.type_text; }),
      opt_int<std::int64_t>("bit", &raw_point::bit, "bit of a register for a bool (0 = LSB)", 0,
                            15),
      {"length", "integer", "0", "registers", "string length in registers",
       [](raw_point& s, const toml::node& n) -> std::optional<std::string> {
         if (!n.is_integer()) return "expected an integer";
         auto v = *n.value<std::int64_t>();
         if (v < 1 || v > 125) return "must be between 1 and 125";
         s.length = v;
         return std::nullopt;
       }},
      opt_point_string("order", "ABCD", "ABCD, CDAB, BADC or DCBA",
                       [](raw_point& r) -> std::string& { return r.order_text; }),
      opt_point_double("scale", [](raw_point& r) -> double& { return r.p.scale; }, "1", "",
                       "value = raw * scale + offset", -kBig, kBig),
      opt_point_double("offset", [](raw_point& r) -> double& { return r.p.offset; }, "0", "",
                       "value = raw * scale + offset", -kBig, kBig),
      opt_point_string("unit", "\"\"", "unit of the engineering value (SI)",
                       [](raw_point& r) -> std::string& { return r.p.unit; }),
      opt_point_double("interval", [](raw_point& r) -> double& { return r.p.interval_s; },
                       "device interval", "s", "poll interval of this point", 0.001, 86400),
      opt_point_double("deadband", [](raw_point& r) -> double& { return r.p.deadband; }, "0",
                       "unit", "report only changes larger than this", 0, kBig),
      {"writable", "bool", "false", "", "setpoint: may be written",
       [](raw_point& s, const toml::node& n) -> std::optional<std::string> {
         if (!n.is_boolean()) return "expected true or false";
         s.p.writable = *n.value<bool>();
         return std::nullopt;
       }},
      opt_point_double("min", [](raw_point& r) -> double& { return r.min; }, "(none)", "unit",
                       "lowest value a write may set", -kBig, kBig),
      opt_point_double("max", [](raw_point& r) -> double& { return r.max; }, "(none)", "unit",
                       "highest value a write may set", -kBig, kBig),
      opt_point_string("readback", "(this point)", "point read after a write to verify it",
                       [](raw_point& r) -> std::string& { return r.p.readback; }),
  };
  return k;
}

const std::vector<cfg::option<device_map>>& device_options() {
  static const std::vector<cfg::option<device_map>> k = {
      cfg::string_opt<device_map>("name", &device_map::name, "\"\"", "device or profile name"),
      cfg::string_opt<device_map>("description", &device_map::description, "\"\"",
                                  "what the device is"),
      cfg::int_opt<device_map>("max_registers", &device_map::max_registers, "125", "registers",
                               "largest register read request the device accepts", 1, 125),
      cfg::int_opt<device_map>("max_bits", &device_map::max_bits, "2000", "bits",
                               "largest coil/discrete read request", 1, 2000),
      cfg::int_opt<device_map>("max_gap", &device_map::max_gap, "0", "registers",
                               "unmapped registers a read may span to merge two points", 0, 1999),
      cfg::double_opt<device_map>("interval", &device_map::interval_s, "1.0", "s",
                                  "default poll interval", 0.001, 86400),
      cfg::double_opt<device_map>("timeout", &device_map::timeout_s, "0.5", "s",
                                  "response timeout", 0.001, 60),
  };
  return k;
}

std::optional<table> parse_table(std::string_view s) {
  if (s == "coil") return table::coil;
  if (s == "discrete") return table::discrete;
  if (s == "input") return table::input;
  if (s == "holding") return table::holding;
  return std::nullopt;
}
std::optional<value_type> parse_type(std::string_view s) {
  for (unsigned i = 0; i <= static_cast<unsigned>(value_type::string); ++i)
    if (name_of(static_cast<value_type>(i)) == s) return static_cast<value_type>(i);
  return std::nullopt;
}
std::optional<word_order> parse_order(std::string_view s) {
  for (unsigned i = 0; i < 4; ++i)
    if (name_of(static_cast<word_order>(i)) == s) return static_cast<word_order>(i);
  return std::nullopt;
}

// 40001 -> holding 0; 400001 -> holding 0; 30010 -> input 9.
std::optional<std::pair<table, std::uint16_t>> parse_register(std::int64_t r) {
  std::int64_t prefix, offs;
  if (r >= 100000) {
    prefix = r / 100000;
    offs = r % 100000;
  } else {
    prefix = r / 10000;
    offs = r % 10000;
  }
  if (offs < 1 || offs > 65536) return std::nullopt;
  table t;
  switch (prefix) {
    case 0: t = table::coil; break;
    case 1: t = table::discrete; break;
    case 3: t = table::input; break;
    case 4: t = table::holding; break;
    default: return std::nullopt;
  }
  return std::pair{t, static_cast<std::uint16_t>(offs - 1)};
}

std::string at(std::string_view file, const toml::node& n, std::string_view key) {
  return cfg::where(file, n.source()) + ": " + std::string(key) + ": ";
}

// Cross-key checks of one point. `where` prefixes "file:line:col: point[i]." .
std::optional<std::string> finish_point(raw_point& r, const device_map& m) {
  point& p = r.p;
  if (p.name.empty()) return "name: must not be empty";
  auto type = parse_type(r.type_text);
  if (!type) return "type: unknown type '" + r.type_text +
                    "' (bool, u16, i16, u32, i32, u64, i64, f32, f64, string)";
  p.type = *type;
  auto order = parse_order(r.order_text);
  if (!order) return "order: unknown word order '" + r.order_text + "' (ABCD, CDAB, BADC, DCBA)";
  p.order = *order;
  std::optional<table> tab;
  if (!r.table_text.empty()) {
    tab = parse_table(r.table_text);
    if (!tab) return "table: unknown table '" + r.table_text + "' (coil, discrete, input, holding)";
  }
  if (r.address && r.reg) return "register: give either address or register, not both";
  if (r.reg) {
    auto pr = parse_register(*r.reg);
    if (!pr)
      return "register: " + std::to_string(*r.reg) +
             " is not in 00001-09999, 10001-19999, 30001-39999, 40001-49999 (or 6-digit) notation";
    if (tab && *tab != pr->first)
      return "register: " + std::to_string(*r.reg) + " is a " + std::string(name_of(pr->first)) +
             " register but table = \"" + r.table_text + "\"";
    tab = pr->first;
    p.address = pr->second;
  } else if (r.address) {
    p.address = static_cast<std::uint16_t>(*r.address);
  } else {
    return "address: required (or register)";
  }
  if (!tab) return "table: required when address is given";
  p.tab = *tab;
  if (is_bit_table(p.tab)) {
    if (p.type != value_type::boolean)
      return "type: " + std::string(name_of(p.tab)) + " points are bool";
    if (r.bit) return "bit: only for bool points inside a register";
  } else if (p.type == value_type::boolean) {
    if (!r.bit) return "bit: required for a bool inside a " + std::string(name_of(p.tab)) +
                       " register (0..15)";
    p.bit = static_cast<unsigned>(*r.bit);
  } else if (r.bit) {
    return "bit: only for bool points";
  }
  if (p.type == value_type::string) {
    if (r.length == 0) return "length: required for a string (registers)";
    p.length = static_cast<unsigned>(r.length);
    if (r.order_text != "ABCD" && r.order_text != "BADC")
      return "order: strings are ABCD (high byte first) or BADC (bytes swapped)";
  } else if (r.length != 0) {
    return "length: only for string points";
  }
  if ((p.type == value_type::boolean || p.type == value_type::string) &&
      (p.scale != 1.0 || p.offset != 0.0))
    return "scale: only for numeric points";
  if (p.scale == 0.0) return "scale: must not be 0";
  if (static_cast<unsigned>(p.address) + p.count() > 65536u)
    return "address: point ends past address 65535";
  unsigned limit = is_bit_table(p.tab) ? m.max_bits : m.max_registers;
  if (p.count() > limit)
    return "length: point covers " + std::to_string(p.count()) +
           " registers, more than the device's max_registers " + std::to_string(limit);
  if (!std::isnan(r.min)) p.min = r.min;
  if (!std::isnan(r.max)) p.max = r.max;
  if (p.min && p.max && *p.min > *p.max) return "min: greater than max";
  if ((p.min || p.max) && !p.writable) return "min: only for writable points";
  if (p.writable) {
    if (p.tab == table::input || p.tab == table::discrete)
      return "writable: " + std::string(name_of(p.tab)) + " points are read-only";
    if (p.bit)
      return "writable: a bit inside a register cannot be written without read-modify-write, "
             "which a device may race; map the bit's register or use a coil";
  }
  return std::nullopt;
}

std::string exc_text(const std::exception& e) { return e.what(); }

// Decimals of a decimal step (0.1 -> 1, 0.25 -> 2, 5 -> 0); -1 when it has none within 9.
// Powers of ten as pow(10, d) gives them (exact in a double), without a libm call per decode.
constexpr double kPow10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};

int decimals_of(double x) {
  for (int d = 0; d <= 9; ++d) {
    double y = x * kPow10[d];
    if (std::fabs(y - std::round(y)) <= 1e-9 * std::max(1.0, std::fabs(y))) return d;
  }
  return -1;
}

}  // namespace

unsigned point::count() const noexcept {
  if (is_bit_table(tab)) return 1;
  if (type == value_type::string) return length;
  return words_of(type);
}

bool point::exact_integer() const noexcept {
  return is_integer(type) && scale == 1.0 && offset == 0.0;
}

const point* device_map::find(std::string_view n) const noexcept {
  for (const auto& p : points)
    if (p.name == n) return &p;
  return nullptr;
}

std::optional<std::size_t> device_map::index_of(std::string_view n) const noexcept {
  for (std::size_t i = 0; i < points.size(); ++i)
    if (points[i].name == n) return i;
  return std::nullopt;
}

result<device_map> parse_map(std::string_view text, std::string_view file) {
  toml::table root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    return make_error(errc::bad_map,
                      cfg::where(file, e.source()) + ": " + std::string(e.description()));
  } catch (const std::exception& e) {
    return make_error(errc::bad_map, std::string(file) + ": " + exc_text(e));
  }
  device_map m;
  m.source = std::string(file);
  for (auto&& [k, node] : root) {
    if (k.str() != "device" && k.str() != "point")
      return make_error(errc::bad_map, cfg::where(file, k.source()) + ": " + std::string(k.str()) +
                                           ": unknown key (expected [device] and [[point]])");
  }
  if (auto* dn = root.get("device")) {
    auto* dt = dn->as_table();
    if (!dt) return make_error(errc::bad_map, at(file, *dn, "device") + "expected a table");
    const auto& opts = device_options();
    if (auto e = cfg::read_table(m, *dt, std::span(opts), file, "device"))
      return make_error(errc::bad_map, e->message);
  }
  auto* pn = root.get("point");
  if (!pn) return make_error(errc::bad_map, std::string(file) + ": point: no [[point]] defined");
  auto* arr = pn->as_array();
  if (!arr) return make_error(errc::bad_map, at(file, *pn, "point") + "expected [[point]] tables");
  std::set<std::string, std::less<>> names;
  std::vector<std::size_t> with_readback;
  const auto& opts = point_options();
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const toml::node& n = *arr->get(i);
    std::string path = "point[" + std::to_string(i) + "]";
    auto* t = n.as_table();
    if (!t) return make_error(errc::bad_map, at(file, n, path) + "expected a table");
    raw_point r;
    if (auto e = cfg::read_table(r, *t, std::span(opts), file, path))
      return make_error(errc::bad_map, e->message);
    if (auto why = finish_point(r, m)) {
      // Name the key's own line when the key is present, else the point's.
      std::string key = why->substr(0, why->find(':'));
      const toml::node* at_node = t->get(key);
      return make_error(errc::bad_map, cfg::where(file, (at_node ? *at_node : n).source()) + ": " +
                                           path + "." + *why);
    }
    r.p.line = n.source().begin.line;
    if (!names.insert(r.p.name).second)
      return make_error(errc::bad_map, cfg::where(file, t->get("name")->source()) + ": " + path +
                                           ".name: duplicate point name '" + r.p.name + "'");
    if (!r.p.readback.empty()) with_readback.push_back(i);
    m.points.push_back(std::move(r.p));
  }
  for (auto i : with_readback) {
    const auto& p = m.points[i];
    const auto* target = m.find(p.readback);
    const toml::node* kn = arr->get(i)->as_table()->get("readback");
    std::string where = cfg::where(file, kn->source()) + ": point[" + std::to_string(i) + "].readback: ";
    if (!target)
      return make_error(errc::bad_map, where + "unknown point '" + p.readback + "'");
    if (!p.writable) return make_error(errc::bad_map, where + "only for writable points");
  }
  return m;
}

result<device_map> load_map(const std::string& path) {
  toml::table ignored;
  std::string text;
  {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return make_error(errc::bad_map, path + ": cannot open: " +
                                                 std::generic_category().message(errno));
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    std::fclose(f);
  }
  return parse_map(text, path);
}

std::vector<std::string> profile_dirs() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("SEMILAB_MODBUS_PROFILES"); env && *env) dirs.emplace_back(env);
  if (std::string_view(SEMILAB_MODBUS_PROFILE_DIR).size()) dirs.emplace_back(SEMILAB_MODBUS_PROFILE_DIR);
  return dirs;
}

result<device_map> load_profile(std::string_view name) {
  bool ok = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
  });
  if (!ok)
    return make_error(errc::unknown_profile,
                      "profile '" + std::string(name) + "': names are letters, digits, - and _");
  std::string searched;
  for (const auto& d : profile_dirs()) {
    auto p = std::filesystem::path(d) / (std::string(name) + ".toml");
    std::error_code ec;
    if (std::filesystem::is_regular_file(p, ec)) return load_map(p.string());
    searched += (searched.empty() ? "" : ", ") + d;
  }
  return make_error(errc::unknown_profile, "no Modbus profile '" + std::string(name) +
                                               "' (searched: " + searched + ")");
}

std::vector<std::uint16_t> to_words(std::uint64_t raw, unsigned words, word_order o) {
  std::vector<std::uint16_t> w(words);
  for (unsigned i = 0; i < words; ++i)
    w[i] = static_cast<std::uint16_t>(raw >> (16 * (words - 1 - i)));
  if (o == word_order::cdab || o == word_order::dcba) std::reverse(w.begin(), w.end());
  if (o == word_order::badc || o == word_order::dcba)
    for (auto& x : w) x = static_cast<std::uint16_t>((x << 8) | (x >> 8));
  return w;
}

std::uint64_t from_words(std::span<const std::uint16_t> regs, word_order o) {
  // In place of a reordered copy: no allocation on the poll path.
  const bool swap_bytes = o == word_order::badc || o == word_order::dcba;
  const bool reverse = o == word_order::cdab || o == word_order::dcba;
  const std::size_t n = regs.size();
  std::uint64_t raw = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t x = regs[reverse ? n - 1 - i : i];
    if (swap_bytes) x = static_cast<std::uint16_t>((x << 8) | (x >> 8));
    raw = (raw << 16) | x;
  }
  return raw;
}

std::string to_text(const value& v) {
  struct visitor {
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(std::int64_t i) const { return std::to_string(i); }
    std::string operator()(std::uint64_t u) const { return std::to_string(u); }
    std::string operator()(double d) const {
      char buf[64];
      auto r = std::to_chars(buf, buf + sizeof buf, d);
      return std::string(buf, r.ptr);
    }
    std::string operator()(const std::string& s) const { return s; }
  };
  return std::visit(visitor{}, v);
}

std::optional<double> as_double(const value& v) noexcept {
  if (auto* b = std::get_if<bool>(&v)) return *b ? 1.0 : 0.0;
  if (auto* i = std::get_if<std::int64_t>(&v)) return static_cast<double>(*i);
  if (auto* u = std::get_if<std::uint64_t>(&v)) return static_cast<double>(*u);
  if (auto* d = std::get_if<double>(&v)) return *d;
  return std::nullopt;
}

result<value> parse_value(const point& p, std::string_view text) {
  auto bad = [&](std::string why) {
    return make_error(errc::bad_value, "point '" + p.name + "': '" + std::string(text) + "': " + why);
  };
  if (p.type == value_type::boolean) {
    if (text == "true" || text == "1" || text == "on") return value{true};
    if (text == "false" || text == "0" || text == "off") return value{false};
    return bad("expected true/false, on/off or 1/0");
  }
  if (p.type == value_type::string) return value{std::string(text)};
  const char* b = text.data();
  const char* e = text.data() + text.size();
  if (p.exact_integer()) {
    if (p.type == value_type::u64) {
      std::uint64_t u = 0;
      auto r = std::from_chars(b, e, u);
      if (r.ec != std::errc{} || r.ptr != e) return bad("expected an unsigned 64-bit integer");
      return value{u};
    }
    std::int64_t i = 0;
    auto r = std::from_chars(b, e, i);
    if (r.ec != std::errc{} || r.ptr != e) return bad("expected an integer");
    return value{i};
  }
  double d = 0;
  auto r = std::from_chars(b, e, d);
  if (r.ec != std::errc{} || r.ptr != e || !std::isfinite(d)) return bad("expected a number");
  return value{d};
}

result<value> decode(const point& p, std::span<const std::uint16_t> regs) {
  if (regs.size() != p.count() || is_bit_table(p.tab))
    return make_error(errc::bad_value, "point '" + p.name + "': expected " +
                                           std::to_string(p.count()) + " registers, got " +
                                           std::to_string(regs.size()));
  auto scaled = [&](double raw) -> value { return raw * p.scale + p.offset; };
  // Integer registers scaled by a decimal step (0.1, 0.01, offset 273.15) carry exactly that many
  // decimals: round there so 282 x 0.1 reads 28.2, not 28.200000000000003.
  auto scaled_int = [&](double raw) -> value {
    double v = raw * p.scale + p.offset;
    int d = std::max(decimals_of(p.scale), decimals_of(p.offset));
    if (d < 0) return v;
    double f = kPow10[d];
    double r = std::round(v * f) / f;
    return std::isfinite(r) ? r : v;
  };
  switch (p.type) {
    case value_type::boolean: return value{((regs[0] >> *p.bit) & 1u) != 0};
    case value_type::string: {
      std::string s;
      for (auto w : regs) {
        auto hi = static_cast<char>(w >> 8), lo = static_cast<char>(w & 0xff);
        if (p.order == word_order::badc) std::swap(hi, lo);
        s += hi;
        s += lo;
      }
      while (!s.empty() && (s.back() == '\0' || s.back() == ' ')) s.pop_back();
      for (auto& c : s)
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
      return value{std::move(s)};
    }
    case value_type::f32: {
      auto f = std::bit_cast<float>(static_cast<std::uint32_t>(from_words(regs, p.order)));
      return scaled(static_cast<double>(f));
    }
    case value_type::f64: return scaled(std::bit_cast<double>(from_words(regs, p.order)));
    default: break;
  }
  std::uint64_t raw = from_words(regs, p.order);
  std::int64_t sraw = 0;
  switch (p.type) {
    case value_type::i16: sraw = static_cast<std::int16_t>(raw); break;
    case value_type::i32: sraw = static_cast<std::int32_t>(raw); break;
    case value_type::i64: sraw = static_cast<std::int64_t>(raw); break;
    default: break;
  }
  if (is_signed(p.type)) {
    if (p.exact_integer()) return value{sraw};
    return scaled_int(static_cast<double>(sraw));
  }
  if (p.exact_integer()) {
    if (p.type == value_type::u64) return value{raw};
    return value{static_cast<std::int64_t>(raw)};
  }
  return scaled_int(static_cast<double>(raw));
}

result<std::vector<std::uint16_t>> encode(const point& p, const value& v) {
  auto fail = [&](errc e, std::string why) { return make_error(e, "point '" + p.name + "': " + why); };
  if (is_bit_table(p.tab)) return fail(errc::bad_value, "coil/discrete points are written as bits");
  if (p.type == value_type::string) {
    auto* s = std::get_if<std::string>(&v);
    if (!s) return fail(errc::bad_value, "expected text");
    if (s->size() > 2 * p.length)
      return fail(errc::out_of_range, "text longer than " + std::to_string(2 * p.length) + " bytes");
    std::vector<std::uint16_t> w(p.length, 0);
    for (std::size_t i = 0; i < s->size(); ++i) {
      auto byte = static_cast<std::uint16_t>(static_cast<unsigned char>((*s)[i]));
      bool high = (i % 2 == 0) != (p.order == word_order::badc);
      w[i / 2] = static_cast<std::uint16_t>(w[i / 2] | (high ? byte << 8 : byte));
    }
    return w;
  }
  if (p.type == value_type::boolean) return fail(errc::bad_value, "bits inside registers are read-only");
  auto eng = as_double(v);
  if (!eng) return fail(errc::bad_value, "expected a number");
  if (p.min && *eng < *p.min)
    return fail(errc::out_of_range, to_text(v) + " is below min " + to_text(*p.min));
  if (p.max && *eng > *p.max)
    return fail(errc::out_of_range, to_text(v) + " is above max " + to_text(*p.max));
  unsigned words = words_of(p.type);
  if (p.type == value_type::f32) {
    double raw = (*eng - p.offset) / p.scale;
    if (std::isfinite(raw) && std::fabs(raw) > std::numeric_limits<float>::max())
      return fail(errc::out_of_range, to_text(v) + " does not fit f32");
    return to_words(std::bit_cast<std::uint32_t>(static_cast<float>(raw)), 2, p.order);
  }
  if (p.type == value_type::f64)
    return to_words(std::bit_cast<std::uint64_t>((*eng - p.offset) / p.scale), 4, p.order);
  // Integers: exact when given exactly, else inverse-scaled and rounded.
  std::uint64_t bits = 0;
  const bool sgn = is_signed(p.type);
  const unsigned width = 16 * words;
  if (p.exact_integer() && !std::holds_alternative<double>(v)) {
    if (auto* u = std::get_if<std::uint64_t>(&v)) {
      if (sgn && *u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) )
        return fail(errc::out_of_range, to_text(v) + " does not fit " + std::string(name_of(p.type)));
      if (!sgn && width < 64 && *u >> width)
        return fail(errc::out_of_range, to_text(v) + " does not fit " + std::string(name_of(p.type)));
      bits = *u;
    } else {
      std::int64_t i = std::holds_alternative<bool>(v) ? (std::get<bool>(v) ? 1 : 0)
                                                       : std::get<std::int64_t>(v);
      if (sgn) {
        std::int64_t lo = width == 64 ? std::numeric_limits<std::int64_t>::min() : -(std::int64_t{1} << (width - 1));
        std::int64_t hi = width == 64 ? std::numeric_limits<std::int64_t>::max() : (std::int64_t{1} << (width - 1)) - 1;
        if (i < lo || i > hi)
          return fail(errc::out_of_range, to_text(v) + " does not fit " + std::string(name_of(p.type)));
      } else if (i < 0 || (width < 64 && (static_cast<std::uint64_t>(i) >> width) != 0)) {
        return fail(errc::out_of_range, to_text(v) + " does not fit " + std::string(name_of(p.type)));
      }
      bits = static_cast<std::uint64_t>(i);
    }
  } else {
    double raw = std::nearbyint((*eng - p.offset) / p.scale);
    double lo = sgn ? -std::ldexp(1.0, static_cast<int>(width) - 1) : 0.0;
    double hi = sgn ? std::ldexp(1.0, static_cast<int>(width) - 1) : std::ldexp(1.0, static_cast<int>(width));
    if (!(raw >= lo && raw < hi))
      return fail(errc::out_of_range, to_text(v) + " gives raw " + to_text(raw) + ", outside " +
                                          std::string(name_of(p.type)));
    bits = sgn ? static_cast<std::uint64_t>(static_cast<std::int64_t>(raw))
               : static_cast<std::uint64_t>(raw);
  }
  if (width < 64) bits &= (std::uint64_t{1} << width) - 1;
  return to_words(bits, words, p.order);
}

bool deadband_filter::should_report(std::size_t index, const value& v) {
  auto& last = last_.at(index);
  const double db = map_->points[index].deadband;
  bool report = true;
  if (last && db > 0) {
    auto a = as_double(*last), b = as_double(v);
    if (a && b && !std::holds_alternative<bool>(v)) report = std::fabs(*b - *a) > db;
    else report = *last != v;
  }
  if (report) last = v;
  return report;
}

}  // namespace semilab::drivers::modbus
