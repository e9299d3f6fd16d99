// CSV/TSV columns as exported by spectrometer and diffractometer software (Excel-style, European
// locales with ';' and decimal comma, whitespace-separated .xy/.txt).
#include "text.hpp"

#include <semilab/parsers/formats.hpp>

#include <algorithm>

namespace semilab::parsers {
namespace {
using detail::line_ref;

std::vector<std::string_view> split_fields(std::string_view line, char delim) {
  std::vector<std::string_view> out;
  if (delim == ' ') {  // runs of blanks/tabs separate
    std::size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
      if (i >= line.size()) break;
      std::size_t j = i;
      while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
      out.push_back(line.substr(i, j - i));
      i = j;
    }
    return out;
  }
  std::size_t start = 0;
  for (std::size_t i = 0; i <= line.size(); ++i) {
    if (i == line.size() || line[i] == delim) {
      std::string_view f = detail::trim(line.substr(start, i - start));
      if (f.size() >= 2 && f.front() == '"' && f.back() == '"') f = f.substr(1, f.size() - 2);
      out.push_back(f);
      start = i + 1;
    }
  }
  // A trailing delimiter (common in Excel exports) is not an empty column.
  if (out.size() > 1 && out.back().empty()) out.pop_back();
  return out;
}

bool all_numeric(const std::vector<std::string_view>& f, bool comma) {
  if (f.size() < 2) return false;
  return std::all_of(f.begin(), f.end(), [&](auto s) { return detail::parse_double(s, comma).has_value(); });
}

// "Wavelength (nm)", "2Theta [deg]", "Intensity / counts" -> {label, unit}.
std::pair<std::string, std::string> split_unit(std::string_view h) {
  h = detail::trim(h);
  if (!h.empty() && (h.back() == ')' || h.back() == ']')) {
    char open = h.back() == ')' ? '(' : '[';
    auto p = h.rfind(open);
    if (p != std::string_view::npos && p > 0)
      return {std::string(detail::trim(h.substr(0, p))), std::string(detail::trim(h.substr(p + 1, h.size() - p - 2)))};
  }
  auto p = h.rfind(" / ");
  if (p != std::string_view::npos) return {std::string(detail::trim(h.substr(0, p))), std::string(detail::trim(h.substr(p + 3)))};
  return {std::string(h), ""};
}

}  // namespace

result<spectrum> parse_csv(std::string_view bytes) {
  auto lines = detail::split_lines(bytes);
  // Candidate data lines: non-empty, not comments. The delimiter and decimal mark are those that
  // explain the longest run of numeric lines (same field count >= 2) at the end of the file: the
  // data sit there, a free-form preamble and header before them. Ties go to the earlier
  // candidate in the order tab, ';', ',', blanks, and to the decimal point over the comma.
  std::vector<const line_ref*> body;
  for (const auto& l : lines) {
    auto t = detail::trim(l.text);
    if (!t.empty() && t.front() != '#') body.push_back(&l);
  }
  if (body.empty()) return parse_error{0, 0, "no data lines"};
  char delim = 0;
  bool comma = false;
  std::size_t best_run = 0;
  for (char d : {'\t', ';', ',', ' '}) {
    for (bool c : {false, true}) {
      if (c && d == ',') continue;
      std::size_t run = 0, cols = 0;
      for (std::size_t i = body.size(); i-- > 0;) {
        auto f = split_fields(body[i]->text, d);
        if (cols == 0) cols = f.size();
        if (f.size() != cols || !all_numeric(f, c)) break;
        ++run;
      }
      if (run > best_run) {
        best_run = run;
        delim = d;
        comma = c;
      }
    }
  }
  if (!delim) {
    const auto& l = *body.back();
    return detail::error_at(l, "no consistent delimiter with at least two numeric columns");
  }

  spectrum s;
  s.format = "csv";
  s.meta.emplace_back("delimiter", delim == '\t' ? "tab" : delim == ' ' ? "blank" : std::string(1, delim));
  s.meta.emplace_back("decimal", comma ? "comma" : "point");
  std::size_t cols = split_fields(body.back()->text, delim).size();
  std::vector<std::string_view> header;
  std::size_t first_data = 0;
  // Preamble: everything before the first numeric row. The last non-numeric line with the same
  // column count is the header; the rest is metadata "key<sep>value".
  for (; first_data < body.size(); ++first_data) {
    auto f = split_fields(body[first_data]->text, delim);
    if (f.size() == cols && all_numeric(f, comma)) break;
    if (f.size() == cols) header = f;
  }
  for (const auto& l : lines) {
    if (first_data < body.size() && l.offset >= body[first_data]->offset) break;
    auto t = detail::trim(l.text);
    if (!t.empty() && t.front() == '#') t = detail::trim(t.substr(1));
    const std::string seps = delim == ' ' ? std::string(":=") : std::string(1, delim) + ":=";
    auto p = t.find_first_of(seps);
    if (p != std::string_view::npos && p > 0)
      s.meta.emplace_back(std::string(detail::trim(t.substr(0, p))), std::string(detail::trim(t.substr(p + 1))));
  }
  if (!header.empty() && header.size() == cols) {
    std::tie(s.x_label, s.x_unit) = split_unit(header[0]);
    for (std::size_t c = 1; c < cols; ++c) {
      auto [lab, unit] = split_unit(header[c]);
      s.y_labels.push_back(std::move(lab));
      s.y_units.push_back(std::move(unit));
    }
  } else {
    s.x_label = "x";
    for (std::size_t c = 1; c < cols; ++c) {
      s.y_labels.push_back("y" + std::to_string(c));
      s.y_units.emplace_back();
    }
  }
  s.y.resize(cols - 1);
  for (std::size_t i = first_data; i < body.size(); ++i) {
    const auto& l = *body[i];
    auto f = split_fields(l.text, delim);
    if (f.size() != cols)
      return detail::error_at(l, "expected " + std::to_string(cols) + " columns, found " + std::to_string(f.size()));
    if (s.x.size() >= kMaxPoints) return detail::error_at(l, "too many points");
    for (std::size_t c = 0; c < cols; ++c) {
      auto v = detail::parse_double(f[c], comma);
      if (!v) return detail::error_at(l, "column " + std::to_string(c + 1) + ": not a number: '" + std::string(f[c].substr(0, 40)) + "'");
      if (c == 0) s.x.push_back(*v);
      else s.y[c - 1].push_back(*v);
    }
  }
  return s;
}

}  // namespace semilab::parsers
