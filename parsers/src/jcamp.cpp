// JCAMP-DX spectra (McDonald & Wilks, Appl. Spectrosc. 42, 151 (1988): JCAMP-DX for infrared;
// ASDF compression in §5 of that paper and of the IUPAC 5.01 recommendations).
#include "text.hpp"

#include <semilab/parsers/formats.hpp>

#include <cmath>

namespace semilab::parsers {
namespace {
using detail::line_ref;

// Labels compare without blanks, '-', '/', '_' and case (JCAMP-DX 4.24 §4.2).
std::string normalise_label(std::string_view l) {
  std::string r;
  for (char c : l) {
    if (c == ' ' || c == '-' || c == '/' || c == '_' || c == '\t') continue;
    r.push_back(c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c);
  }
  return r;
}

enum class tok_kind { affn, sqz, dif, dup };
struct token {
  tok_kind kind;
  double value;  // affn/sqz: value; dif: difference; dup: repeat count
};

// Pseudo-digits: SQZ '@'=0 'A'..'I'=1..9 'a'..'i'=-1..-9; DIF '%'=0 'J'..'R'=1..9 'j'..'r'=-1..-9;
// DUP 'S'..'Z'=1..8 's'=9. The pseudo-digit is the first digit of the number; ordinary digits
// (and a '.') follow.
bool pseudo(char c, tok_kind& k, int& d) {
  if (c == '@') { k = tok_kind::sqz; d = 0; return true; }
  if (c >= 'A' && c <= 'I') { k = tok_kind::sqz; d = c - 'A' + 1; return true; }
  if (c >= 'a' && c <= 'i') { k = tok_kind::sqz; d = -(c - 'a' + 1); return true; }
  if (c == '%') { k = tok_kind::dif; d = 0; return true; }
  if (c >= 'J' && c <= 'R') { k = tok_kind::dif; d = c - 'J' + 1; return true; }
  if (c >= 'j' && c <= 'r') { k = tok_kind::dif; d = -(c - 'j' + 1); return true; }
  if (c >= 'S' && c <= 'Z') { k = tok_kind::dup; d = c - 'S' + 1; return true; }
  if (c == 's') { k = tok_kind::dup; d = 9; return true; }
  return false;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Tokenises one data line. Returns an error message (empty on success).
std::string tokenise(std::string_view t, std::vector<token>& out) {
  std::size_t i = 0;
  while (i < t.size()) {
    char c = t[i];
    if (c == ' ' || c == '\t' || c == ',' || c == ';') { ++i; continue; }
    tok_kind k;
    int d = 0;
    if (pseudo(c, k, d)) {
      std::size_t j = i + 1;
      while (j < t.size() && (is_digit(t[j]) || t[j] == '.')) ++j;
      std::string digits = std::to_string(d < 0 ? -d : d);
      digits.append(t.substr(i + 1, j - i - 1));
      auto v = detail::parse_double(digits);
      if (!v) return "bad ASDF number '" + std::string(t.substr(i, j - i)) + "'";
      double val = d < 0 ? -*v : *v;
      if (k == tok_kind::dup && (val < 1 || val != std::floor(val) || val > 1e7))
        return "bad DUP count '" + std::string(t.substr(i, j - i)) + "'";
      out.push_back({k, val});
      i = j;
      continue;
    }
    if (c == '+' || c == '-' || c == '.' || is_digit(c)) {
      std::size_t j = i + 1;
      // An exponent needs an explicit sign ("1.5E+03"): a bare 'E'/'e' after digits is the SQZ
      // pseudo-digit +5/-5 that starts the next ordinate ("1000E5" is X 1000, Y 55).
      while (j < t.size()) {
        if (is_digit(t[j]) || t[j] == '.') {
          ++j;
        } else if ((t[j] == 'E' || t[j] == 'e') && j + 2 < t.size() &&
                   (t[j + 1] == '+' || t[j + 1] == '-') && is_digit(t[j + 2])) {
          j += 3;
        } else {
          break;
        }
      }
      auto v = detail::parse_double(t.substr(i, j - i));
      if (!v) return "bad number '" + std::string(t.substr(i, j - i)) + "'";
      out.push_back({tok_kind::affn, *v});
      i = j;
      continue;
    }
    if (c == '?') {  // JCAMP "missing value": not representable here
      return "missing value '?' is not supported";
    }
    return std::string("unexpected character '") + c + "'";
  }
  return {};
}

}  // namespace

result<spectrum> parse_jcamp(std::string_view bytes) {
  auto lines = detail::split_lines(bytes);
  spectrum s;
  s.format = "jcamp-dx";
  std::optional<double> firstx, lastx, xfactor, yfactor, npoints;
  std::string xunits, yunits;
  const line_ref* table_line = nullptr;
  std::string table;
  std::size_t data_begin = 0, data_end = 0;
  bool found_title = false;

  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string_view t = lines[i].text;
    auto cmt = t.find("$$");
    if (cmt != std::string_view::npos) t = t.substr(0, cmt);
    t = detail::trim(t);
    if (t.substr(0, 2) != "##") continue;
    auto eq = t.find('=');
    if (eq == std::string_view::npos) return detail::error_at(lines[i], "label without '='");
    std::string label = normalise_label(t.substr(2, eq - 2));
    std::string value(detail::trim(t.substr(eq + 1)));
    if (label == "TITLE") found_title = true;
    if (label == "END") break;
    if (label == "NTUPLES") return detail::error_at(lines[i], "NTUPLES (multi-page) JCAMP-DX is not supported");
    if (label == "XYDATA" || label == "XYPOINTS" || label == "PEAKTABLE") {
      if (table_line) return detail::error_at(lines[i], "more than one data table");
      table_line = &lines[i];
      table = normalise_label(value);
      data_begin = i + 1;
      data_end = data_begin;
      while (data_end < lines.size() && detail::trim(lines[data_end].text).substr(0, 2) != "##") ++data_end;
      i = data_end - 1;
      continue;
    }
    auto num = [&](std::optional<double>& dst) -> bool {
      dst = detail::parse_double(value);
      return dst.has_value();
    };
    bool ok = true;
    if (label == "FIRSTX") ok = num(firstx);
    else if (label == "LASTX") ok = num(lastx);
    else if (label == "XFACTOR") ok = num(xfactor);
    else if (label == "YFACTOR") ok = num(yfactor);
    else if (label == "NPOINTS") ok = num(npoints);
    else if (label == "XUNITS") xunits = value;
    else if (label == "YUNITS") yunits = value;
    if (!ok) return detail::error_at(lines[i], "##" + label + " is not a number: '" + value.substr(0, 40) + "'");
    s.meta.emplace_back(label, value);
  }
  if (!found_title) return parse_error{0, lines.empty() ? std::size_t{0} : std::size_t{1}, "not JCAMP-DX: no ##TITLE= label"};
  if (!table_line) return parse_error{bytes.size(), lines.size(), "no ##XYDATA= or ##XYPOINTS= table"};
  s.x_label = "x";
  s.x_unit = xunits;
  s.y_labels = {"y"};
  s.y_units = {yunits};
  s.y.resize(1);
  auto& y = s.y[0];
  const double xf = xfactor.value_or(1.0), yf = yfactor.value_or(1.0);

  if (table == "(XY..XY)") {
    for (std::size_t i = data_begin; i < data_end; ++i) {
      std::vector<token> toks;
      if (auto e = tokenise(lines[i].text, toks); !e.empty()) return detail::error_at(lines[i], e);
      for (const auto& tk : toks)
        if (tk.kind != tok_kind::affn) return detail::error_at(lines[i], "ASDF characters in an (XY..XY) table");
      if (toks.size() % 2) return detail::error_at(lines[i], "odd number of values in an (XY..XY) table");
      for (std::size_t k = 0; k < toks.size(); k += 2) {
        if (s.x.size() >= kMaxPoints) return detail::error_at(lines[i], "too many points");
        s.x.push_back(toks[k].value * xf);
        y.push_back(toks[k + 1].value * yf);
      }
    }
    if (npoints && static_cast<double>(s.x.size()) != *npoints)
      return detail::error_at(*table_line, "##NPOINTS=" + std::to_string(static_cast<long long>(*npoints)) +
                                               " but the table holds " + std::to_string(s.x.size()));
    return s;
  }
  if (table != "(X++(Y..Y))") return detail::error_at(*table_line, "unsupported table form '" + table + "'");
  if (!firstx || !lastx || !npoints) return detail::error_at(*table_line, "(X++(Y..Y)) needs ##FIRSTX, ##LASTX and ##NPOINTS");
  if (*npoints < 1 || *npoints > static_cast<double>(kMaxPoints) || *npoints != std::floor(*npoints))
    return detail::error_at(*table_line, "##NPOINTS out of range");
  const auto n = static_cast<std::size_t>(*npoints);
  const double dx = n > 1 ? (*lastx - *firstx) / static_cast<double>(n - 1) : 0.0;

  bool prev_dif = false;  // previous line ended in DIF form: its last Y is repeated as a check
  for (std::size_t i = data_begin; i < data_end; ++i) {
    const auto& l = lines[i];
    if (detail::trim(l.text).empty()) continue;
    std::vector<token> toks;
    if (auto e = tokenise(l.text, toks); !e.empty()) return detail::error_at(l, e);
    if (toks.empty()) continue;
    if (toks[0].kind != tok_kind::affn && toks[0].kind != tok_kind::sqz)
      return detail::error_at(l, "line does not start with an X value");
    const double xline = toks[0].value * xf;
    std::vector<double> ys;          // Y values of this line in file units
    bool last_dif = false;           // the last Y value was produced by a DIF token
    double last_delta = 0;
    for (std::size_t k = 1; k < toks.size(); ++k) {
      const auto& tk = toks[k];
      switch (tk.kind) {
        case tok_kind::affn:
        case tok_kind::sqz:
          ys.push_back(tk.value);
          last_dif = false;
          break;
        case tok_kind::dif:
          if (ys.empty()) return detail::error_at(l, "DIF value without a preceding Y value on the line");
          ys.push_back(ys.back() + tk.value);
          last_dif = true;
          last_delta = tk.value;
          break;
        case tok_kind::dup: {
          if (ys.empty()) return detail::error_at(l, "DUP without a preceding value");
          if (ys.size() + static_cast<std::size_t>(tk.value) > n + 2) return detail::error_at(l, "DUP count exceeds ##NPOINTS");
          for (int r = 1; r < static_cast<int>(tk.value); ++r)
            ys.push_back(last_dif ? ys.back() + last_delta : ys.back());
          break;
        }
      }
    }
    std::size_t start = 0;
    if (prev_dif && !y.empty()) {
      // Y-check: the first ordinate repeats the last one of the previous line.
      if (ys.empty()) return detail::error_at(l, "missing Y check value after a DIF line");
      if (std::fabs(ys[0] * yf - y.back()) > 1e-9 * std::max(1.0, std::fabs(y.back())))
        return detail::error_at(l, "Y check value " + std::to_string(ys[0]) + " differs from the previous line's last value " +
                                       std::to_string(y.back() / yf));
      start = 1;
    }
    // The line's X must be the abscissa of its first Y (one point of slack for rounding).
    const double expect_idx = static_cast<double>(y.size() - start);
    if (dx != 0 && std::fabs((xline - *firstx) / dx - expect_idx) > 1.0)
      return detail::error_at(l, "X value " + std::to_string(xline) + " does not match point " + std::to_string(y.size() - start));
    for (std::size_t k = start; k < ys.size(); ++k) {
      if (y.size() >= n) return detail::error_at(l, "more ordinates than ##NPOINTS=" + std::to_string(n));
      y.push_back(ys[k] * yf);
    }
    prev_dif = last_dif;
  }
  if (y.size() != n)
    return detail::error_at(*table_line, "##NPOINTS=" + std::to_string(n) + " but the table holds " + std::to_string(y.size()));
  s.x.resize(n);
  for (std::size_t i = 0; i < n; ++i) s.x[i] = *firstx + dx * static_cast<double>(i);
  return s;
}

}  // namespace semilab::parsers
