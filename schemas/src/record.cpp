#include <semilab/schemas/record.hpp>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>

namespace semilab::schemas {

std::string_view to_string(record_class c) noexcept {
  switch (c) {
    case record_class::event: return "event";
    case record_class::run_result: return "run_result";
    case record_class::telemetry: return "telemetry";
    case record_class::blob: return "blob";
  }
  return "unknown";
}

double decimal::to_double() const noexcept {
  // Exact fast path (Clinger): a mantissa of at most 2^53 and 10^|e| for |e| <= 22 are both
  // exact doubles, so one IEEE multiplication or division rounds correctly, giving the bits
  // strtod gives. Most instrument readings take it (central converts every decimal it stores).
  static constexpr double kPow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                      1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                      1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  constexpr std::int64_t kExact = std::int64_t{1} << 53;
  if (mantissa >= -kExact && mantissa <= kExact && exponent >= -22 && exponent <= 22) {
    const auto m = static_cast<double>(mantissa);
    return exponent >= 0 ? m * kPow10[exponent] : m / kPow10[-exponent];
  }
  // Otherwise strtod on the canonical text is correctly rounded; pow(10, e) * m is not.
  char buf[48];
  std::snprintf(buf, sizeof buf, "%lldE%d", static_cast<long long>(mantissa), exponent);
  return std::strtod(buf, nullptr);
}

std::string decimal::to_string() const {
  // Scientific notation keeping exactly the digits of the mantissa.
  std::uint64_t mag = mantissa < 0 ? 0 - static_cast<std::uint64_t>(mantissa)
                                   : static_cast<std::uint64_t>(mantissa);
  std::string digits = std::to_string(mag);
  int exp10 = exponent + static_cast<int>(digits.size()) - 1;
  std::string out;
  if (mantissa < 0) out += '-';
  out += digits[0];
  if (digits.size() > 1) {
    out += '.';
    out.append(digits, 1);
  }
  // "E%+03d" without printf (central formats every decimal it stores).
  out += 'E';
  out += exp10 < 0 ? '-' : '+';
  const unsigned a = static_cast<unsigned>(exp10 < 0 ? -exp10 : exp10);
  if (a >= 100) out += static_cast<char>('0' + a / 100);
  out += static_cast<char>('0' + a / 10 % 10);
  out += static_cast<char>('0' + a % 10);
  return out;
}

result<decimal> parse_decimal(std::string_view s) noexcept {
  auto bad = make_error_code(errc::bad_value);
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  if (s.empty()) return bad;
  std::size_t i = 0;
  bool neg = false;
  if (s[i] == '+' || s[i] == '-') neg = s[i++] == '-';
  std::uint64_t mant = 0;
  int digits = 0;  // significant digits kept (leading zeros skipped)
  int exp10 = 0;
  bool any = false, dot = false;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c == '.') {
      if (dot) return bad;
      dot = true;
      continue;
    }
    if (c < '0' || c > '9') break;
    any = true;
    if (mant == 0 && c == '0') {
      if (dot) --exp10;
      continue;
    }
    if (digits >= 18) return bad;  // more digits than an exact int64 mantissa holds
    mant = mant * 10 + static_cast<std::uint64_t>(c - '0');
    ++digits;
    if (dot) --exp10;
  }
  if (!any) return bad;
  if (i < s.size()) {
    if (s[i] != 'e' && s[i] != 'E') return bad;
    ++i;
    int e = 0;
    const char* first = s.data() + i;
    const char* last = s.data() + s.size();
    if (first < last && *first == '+') ++first;
    auto [p, ec] = std::from_chars(first, last, e);
    if (ec != std::errc{} || p != last || first == last) return bad;
    if (e < -400 || e > 400) return bad;
    exp10 += e;
  }
  // Zero keeps the reported precision via its exponent; e.g. "0.000" is {0, -3}.
  if (exp10 < std::numeric_limits<std::int8_t>::min() || exp10 > std::numeric_limits<std::int8_t>::max())
    return bad;
  decimal d;
  d.mantissa = neg ? -static_cast<std::int64_t>(mant) : static_cast<std::int64_t>(mant);
  d.exponent = static_cast<std::int8_t>(exp10);
  return d;
}

double value_as_double(const value& v) noexcept {
  struct visitor {
    double operator()(double d) const { return d; }
    double operator()(std::int64_t i) const { return static_cast<double>(i); }
    double operator()(const decimal& d) const { return d.to_double(); }
    double operator()(const std::string&) const { return std::numeric_limits<double>::quiet_NaN(); }
  };
  return std::visit(visitor{}, v);
}

}  // namespace semilab::schemas
