// Small helpers shared by the API's translation units (api.cpp, api_login.cpp, ops_metrics.cpp):
// JSON replies and the Prometheus text format's numbers and label values.
#pragma once

#include <semilab/central/http.hpp>

#include <boost/json.hpp>

#include <charconv>
#include <cmath>
#include <string>
#include <string_view>

namespace semilab::central::detail {

inline http_response json_reply(unsigned status, const boost::json::value& v) {
  http_response r;
  r.status = status;
  r.body = boost::json::serialize(v);
  r.body += '\n';
  return r;
}

inline http_response error_reply(unsigned status, std::string_view message) {
  return json_reply(status, boost::json::object{{"error", message}});
}

// A sample value in the Prometheus text format: shortest round-trip digits, NaN, +Inf, -Inf.
inline std::string prom_number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, p) : std::string("NaN");
}

// A label value in the Prometheus text format: backslash, double quote and newline escaped.
inline std::string prom_label(std::string_view v) {
  std::string s;
  s.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') s += '\\';
    if (c == '\n') {
      s += "\\n";
      continue;
    }
    s += c;
  }
  return s;
}

}  // namespace semilab::central::detail
