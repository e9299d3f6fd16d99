#pragma once
// Configuration declared once: each component lists its options (key, type, default, unit,
// description) in one table; read_table() validates a TOML table against it, fills the struct and
// reports "file:line:col: table.key: why". print_reference() renders the same table as docs.
// Include only from configuration translation units: toml++ is heavy.
#include <toml++/toml.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>

namespace semilab::schemas::config {

// A failed load: the message names file, line, key and reason.
struct load_error {
  std::string message;
};

inline std::string where(std::string_view file, const toml::source_region& src) {
  std::ostringstream os;
  os << file;
  if (src.begin.line != 0) os << ':' << src.begin.line << ':' << src.begin.column;
  return os.str();
}

inline std::string qualify(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : std::string(path) + "." + std::string(key);
}

template <class S>
struct option {
  std::string_view key;
  std::string_view type;
  std::string_view default_text;  // "" = required
  std::string_view unit;
  std::string_view doc;
  // Returns the reason when the node is not acceptable.
  std::function<std::optional<std::string>(S&, const toml::node&)> assign;
  bool required() const noexcept { return default_text.empty(); }
};

using check_fn_str = std::function<std::optional<std::string>(const std::string&)>;

template <class S>
option<S> string_opt(std::string_view key, std::string S::*m, std::string_view def,
                     std::string_view doc, check_fn_str check = {}) {
  return {key, "string", def, "", doc,
          [m, check](S& s, const toml::node& n) -> std::optional<std::string> {
            auto v = n.value<std::string>();
            if (!n.is_string() || !v) return "expected a string";
            if (check) {
              if (auto why = check(*v)) return why;
            }
            s.*m = *v;
            return std::nullopt;
          }};
}

template <class S, class Int>
option<S> int_opt(std::string_view key, Int S::*m, std::string_view def, std::string_view unit,
                  std::string_view doc, std::int64_t min, std::int64_t max) {
  return {key, "integer", def, unit, doc,
          [m, min, max](S& s, const toml::node& n) -> std::optional<std::string> {
            if (!n.is_integer()) return "expected an integer";
            auto v = *n.value<std::int64_t>();
            if (v < min || v > max)
              return "must be between " + std::to_string(min) + " and " + std::to_string(max);
            s.*m = static_cast<Int>(v);
            return std::nullopt;
          }};
}

template <class S>
option<S> double_opt(std::string_view key, double S::*m, std::string_view def,
                     std::string_view unit, std::string_view doc, double min, double max) {
  return {key, "float", def, unit, doc,
          [m, min, max](S& s, const toml::node& n) -> std::optional<std::string> {
            if (!n.is_number()) return "expected a number";
            auto v = *n.value<double>();
            if (!(v >= min && v <= max)) {
              std::ostringstream os;
              os << "must be between " << min << " and " << max;
              return os.str();
            }
            s.*m = v;
            return std::nullopt;
          }};
}

template <class S>
option<S> bool_opt(std::string_view key, bool S::*m, std::string_view def, std::string_view doc) {
  return {key, "bool", def, "", doc, [m](S& s, const toml::node& n) -> std::optional<std::string> {
            if (!n.is_boolean()) return "expected true or false";
            s.*m = *n.value<bool>();
            return std::nullopt;
          }};
}

// Validates `t` against `opts` and fills `out` (which holds the defaults already).
// Unknown keys and missing required keys are errors.
template <class S>
std::optional<load_error> read_table(S& out, const toml::table& t, std::span<const option<S>> opts,
                                     std::string_view file, std::string_view path) {
  for (auto&& [k, node] : t) {
    const option<S>* found = nullptr;
    for (auto& o : opts)
      if (o.key == k.str()) found = &o;
    if (!found)
      return load_error{where(file, k.source()) + ": " + qualify(path, k.str()) + ": unknown key"};
    if (auto why = found->assign(out, node))
      return load_error{where(file, node.source()) + ": " + qualify(path, k.str()) + ": " + *why};
  }
  for (auto& o : opts)
    if (o.required() && !t.contains(o.key))
      return load_error{where(file, t.source()) + ": " + qualify(path, o.key) +
                        ": required key is missing"};
  return std::nullopt;
}

// Markdown reference of one table of options.
template <class S>
std::string print_reference(std::string_view title, std::span<const option<S>> opts) {
  std::ostringstream os;
  os << "### " << title << "\n\n| key | type | default | unit | description |\n|---|---|---|---|---|\n";
  for (auto& o : opts)
    os << "| `" << o.key << "` | " << o.type << " | "
       << (o.required() ? std::string("(required)") : "`" + std::string(o.default_text) + "`")
       << " | " << o.unit << " | " << o.doc << " |\n";
  return os.str();
}

// Parses a file, turning toml++'s parse error into a load_error naming file:line:col.
// (Debian's toml++ is built with exceptions; none escapes this function.)
inline std::optional<load_error> parse_file(const std::string& file, toml::table& out) {
  try {
    out = toml::parse_file(file);
  } catch (const toml::parse_error& e) {
    return load_error{where(file, e.source()) + ": " + std::string(e.description())};
  } catch (const std::exception& e) {
    return load_error{file + ": " + e.what()};
  }
  return std::nullopt;
}

}  // namespace semilab::schemas::config
