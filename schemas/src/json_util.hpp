#pragma once
// Small helpers for the JSON messages of the contract. u64 travels as a decimal string.
#include <boost/json.hpp>

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace semilab::schemas::detail {

inline std::string u64_str(std::uint64_t v) { return std::to_string(v); }

inline std::optional<std::uint64_t> get_u64(const boost::json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (!v || !v->is_string()) return std::nullopt;
  auto s = v->get_string();
  std::uint64_t out = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (ec != std::errc{} || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return out;
}

inline std::optional<std::string> get_str(const boost::json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (!v || !v->is_string()) return std::nullopt;
  return std::string(v->get_string());
}

inline std::optional<bool> get_bool(const boost::json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (!v || !v->is_bool()) return std::nullopt;
  return v->get_bool();
}

// Parses with a bounded depth and no exceptions.
inline std::optional<boost::json::object> parse_object(std::string_view json) {
  boost::system::error_code ec;
  boost::json::parse_options opt;
  opt.max_depth = 8;
  auto v = boost::json::parse(json, ec, {}, opt);
  if (ec || !v.is_object()) return std::nullopt;
  return std::move(v.as_object());
}

}  // namespace semilab::schemas::detail
