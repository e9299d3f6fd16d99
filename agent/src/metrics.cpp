#include "metrics.hpp"

#include <charconv>
#include <cmath>

namespace semilab::agent::metrics {

void latency_histogram::observe(double seconds) noexcept {
  ++count;
  sum += seconds;
  for (std::size_t i = 0; i < kBounds.size(); ++i)
    if (seconds <= kBounds[i]) {
      ++buckets[i];
      return;
    }
  // Above the last bound: only in +Inf (count).
}

std::string escape_label(std::string_view v) {
  std::string s;
  s.reserve(v.size());
  for (char c : v) {
    if (c == '\\') s += "\\\\";
    else if (c == '"') s += "\\\"";
    else if (c == '\n') s += "\\n";
    else s += c;
  }
  return s;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general);
  return std::string(buf, r.ptr);
}

void exposition::family(std::string_view name, type t, std::string_view help) {
  name_ = name;
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  // HELP text escapes \ and newline only.
  for (char c : help) {
    if (c == '\\') out_ += "\\\\";
    else if (c == '\n') out_ += "\\n";
    else out_ += c;
  }
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += t == type::counter ? " counter\n" : t == type::gauge ? " gauge\n" : " histogram\n";
}

void exposition::line(std::string_view suffix, const labels& l,
                      const std::pair<std::string, std::string>* extra, double v) {
  out_ += name_;
  out_ += suffix;
  if (!l.empty() || extra) {
    out_ += '{';
    bool first = true;
    auto put = [&](const std::string& k, const std::string& val) {
      if (!first) out_ += ',';
      first = false;
      out_ += k;
      out_ += "=\"";
      out_ += escape_label(val);
      out_ += '"';
    };
    for (const auto& [k, val] : l) put(k, val);
    if (extra) put(extra->first, extra->second);
    out_ += '}';
  }
  out_ += ' ';
  out_ += format_value(v);
  out_ += '\n';
}

void exposition::sample(const labels& l, double v) { line("", l, nullptr, v); }

void exposition::histogram(const labels& l, const latency_histogram& h) {
  std::uint64_t cum = 0;
  for (std::size_t i = 0; i < h.kBounds.size(); ++i) {
    cum += h.buckets[i];
    std::pair<std::string, std::string> le{"le", format_value(h.kBounds[i])};
    line("_bucket", l, &le, static_cast<double>(cum));
  }
  std::pair<std::string, std::string> inf{"le", "+Inf"};
  line("_bucket", l, &inf, static_cast<double>(h.count));
  line("_sum", l, nullptr, h.sum);
  line("_count", l, nullptr, static_cast<double>(h.count));
}

}  // namespace semilab::agent::metrics
