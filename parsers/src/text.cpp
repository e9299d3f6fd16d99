#include "text.hpp"

#include <semilab/parsers/formats.hpp>

#include <charconv>
#include <cmath>

namespace semilab::parsers {

std::string parse_error::to_string() const {
  std::string s;
  if (line != 0) s = "line " + std::to_string(line) + " (offset " + std::to_string(offset) + "): ";
  else s = "offset " + std::to_string(offset) + ": ";
  return s + reason;
}

void throw_exception_from_error(const parse_error& e, const boost::source_location&) {
  throw std::runtime_error(e.to_string());
}

std::optional<std::string_view> spectrum::find(std::string_view key) const {
  for (const auto& [k, v] : meta)
    if (k == key) return std::string_view(v);
  return std::nullopt;
}

namespace detail {

std::vector<line_ref> split_lines(std::string_view bytes) {
  std::vector<line_ref> out;
  std::size_t pos = 0;
  if (bytes.substr(0, 3) == "\xEF\xBB\xBF") pos = 3;
  std::size_t n = 1;
  while (pos < bytes.size()) {
    std::size_t end = bytes.find('\n', pos);
    std::size_t next = end == std::string_view::npos ? bytes.size() : end + 1;
    if (end == std::string_view::npos) end = bytes.size();
    std::string_view t = bytes.substr(pos, end - pos);
    if (!t.empty() && t.back() == '\r') t.remove_suffix(1);
    out.push_back({t, pos, n++});
    pos = next;
  }
  return out;
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

std::string to_upper(std::string_view s) {
  std::string r(s);
  for (auto& c : r)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return r;
}

std::optional<double> parse_double(std::string_view s, bool decimal_comma) noexcept {
  s = trim(s);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty() || s.size() > 64) return std::nullopt;
  char buf[65];
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (decimal_comma) {
      if (c == ',') c = '.';
      else if (c == '.') return std::nullopt;
    }
    buf[i] = c;
  }
  double v = 0;
  auto [p, ec] = std::from_chars(buf, buf + s.size(), v, std::chars_format::general);
  if (ec != std::errc{} || p != buf + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::optional<long long> parse_int(std::string_view s) noexcept {
  s = trim(s);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  long long v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}

parse_error error_at(const line_ref& l, std::string reason) {
  return parse_error{l.offset, l.number, std::move(reason)};
}
parse_error error_at(std::size_t offset, std::string reason) {
  return parse_error{offset, 0, std::move(reason)};
}

}  // namespace detail
}  // namespace semilab::parsers
