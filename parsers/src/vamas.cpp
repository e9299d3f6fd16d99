// VAMAS surface-analysis transfer format, ISO 14976:1998 (W. A. Dench, L. B. Hazell, M. P. Seah,
// Surf. Interface Anal. 13, 63 (1988)). One value per line; a line's meaning follows from its
// position and from the experiment mode, technique and the block-parameter inclusion list.
// REGULAR scan mode only (xylib has the same limit).
#include "text.hpp"

#include <semilab/parsers/formats.hpp>

#include <algorithm>
#include <array>

namespace semilab::parsers {
namespace {
using detail::line_ref;

struct cursor {
  const std::vector<line_ref>& lines;
  std::size_t i = 0;
  std::size_t end_offset;
  parse_error err;

  bool next(std::string_view& out, std::string_view what) {
    if (i >= lines.size()) {
      err = parse_error{end_offset, lines.size() + 1, "file ends before " + std::string(what)};
      return false;
    }
    out = detail::trim(lines[i++].text);
    return true;
  }
  bool skip(long long n, std::string_view what) {
    std::string_view d;
    for (long long k = 0; k < n; ++k)
      if (!next(d, what)) return false;
    return true;
  }
  bool integer(long long& v, std::string_view what, long long lo, long long hi) {
    std::string_view t;
    if (!next(t, what)) return false;
    auto p = detail::parse_int(t);
    if (!p || *p < lo || *p > hi) {
      err = detail::error_at(lines[i - 1], std::string(what) + ": expected an integer in [" + std::to_string(lo) + ", " +
                                               std::to_string(hi) + "], got '" + std::string(t.substr(0, 40)) + "'");
      return false;
    }
    v = *p;
    return true;
  }
  bool real(double& v, std::string_view what) {
    std::string_view t;
    if (!next(t, what)) return false;
    auto p = detail::parse_double(t);
    if (!p) {
      err = detail::error_at(lines[i - 1], std::string(what) + ": not a number: '" + std::string(t.substr(0, 40)) + "'");
      return false;
    }
    v = *p;
    return true;
  }
  bool meta(spectrum& s, std::string key) {
    std::string_view t;
    if (!next(t, key)) return false;
    s.meta.emplace_back(std::move(key), std::string(t));
    return true;
  }
};

bool one_of(std::string_view v, std::initializer_list<std::string_view> set) {
  return std::find(set.begin(), set.end(), v) != set.end();
}

}  // namespace

result<std::vector<spectrum>> parse_vamas_blocks(std::string_view bytes) {
  auto lines = detail::split_lines(bytes);
  cursor c{lines, 0, bytes.size(), {}};
#define VAMAS_TRY(expr) \
  if (!(expr)) return c.err
  std::string_view t;
  VAMAS_TRY(c.next(t, "format identifier"));
  if (!t.starts_with("VAMAS Surface Chemical Analysis Standard Data Transfer Format"))
    return detail::error_at(lines[0], "not VAMAS: first line is not the ISO 14976 format identifier");
  spectrum head;
  VAMAS_TRY(c.meta(head, "institution"));
  VAMAS_TRY(c.meta(head, "instrument model"));
  VAMAS_TRY(c.meta(head, "operator"));
  VAMAS_TRY(c.meta(head, "experiment"));
  long long n = 0;
  VAMAS_TRY(c.integer(n, "number of comment lines", 0, 1'000'000));
  VAMAS_TRY(c.skip(n, "experiment comment"));
  std::string_view exp_mode, scan_mode;
  VAMAS_TRY(c.next(exp_mode, "experiment mode"));
  if (!one_of(exp_mode, {"MAP", "MAPDP", "MAPSV", "MAPSVDP", "NORM", "SDP", "SDPSV", "SEM", "NOEXP"}))
    return detail::error_at(lines[c.i - 1], "unknown experiment mode '" + std::string(exp_mode.substr(0, 20)) + "'");
  if (one_of(exp_mode, {"MAPSV", "MAPSVDP", "SEM"}))
    return detail::error_at(lines[c.i - 1], "experiment mode " + std::string(exp_mode) + " is not supported");
  VAMAS_TRY(c.next(scan_mode, "scan mode"));
  if (scan_mode != "REGULAR")
    return detail::error_at(lines[c.i - 1], "scan mode '" + std::string(scan_mode.substr(0, 20)) + "' is not supported (REGULAR only)");
  head.meta.emplace_back("experiment mode", std::string(exp_mode));
  head.meta.emplace_back("scan mode", std::string(scan_mode));
  if (one_of(exp_mode, {"MAP", "MAPDP", "NORM", "SDP"})) VAMAS_TRY(c.meta(head, "spectral regions"));
  if (one_of(exp_mode, {"MAP", "MAPDP"})) {
    VAMAS_TRY(c.meta(head, "analysis positions"));
    VAMAS_TRY(c.meta(head, "x coordinates"));
    VAMAS_TRY(c.meta(head, "y coordinates"));
  }
  long long nvar = 0;
  VAMAS_TRY(c.integer(nvar, "number of experimental variables", 0, 1000));
  for (long long k = 0; k < nvar; ++k) {
    VAMAS_TRY(c.meta(head, "experimental variable " + std::to_string(k + 1) + " label"));
    VAMAS_TRY(c.meta(head, "experimental variable " + std::to_string(k + 1) + " unit"));
  }
  // Inclusion list: n > 0 lists the included block parameters, n < 0 the excluded ones.
  std::array<bool, 40> inc{};
  VAMAS_TRY(c.integer(n, "parameter inclusion list length", -40, 40));
  inc.fill(n <= 0);
  for (long long k = 0; k < (n < 0 ? -n : n); ++k) {
    long long idx = 0;
    VAMAS_TRY(c.integer(idx, "parameter inclusion list entry", 1, 40));
    inc[static_cast<std::size_t>(idx - 1)] = n > 0;
  }
  VAMAS_TRY(c.integer(n, "number of manually entered items", 0, 1000));
  VAMAS_TRY(c.skip(n, "manually entered items"));
  long long exp_fue = 0, blk_fue = 0, nblocks = 0;
  VAMAS_TRY(c.integer(exp_fue, "future upgrade experiment entries", 0, 1000));
  VAMAS_TRY(c.integer(blk_fue, "future upgrade block entries", 0, 1000));
  VAMAS_TRY(c.skip(exp_fue, "future upgrade experiment entries"));
  VAMAS_TRY(c.integer(nblocks, "number of blocks", 1, 100000));
  if (!inc[30]) return detail::error_at(lines[c.i - 1], "abscissa parameters excluded from blocks: cannot build the x axis");
  if (!inc[31]) return detail::error_at(lines[c.i - 1], "corresponding variables excluded from blocks");

  std::vector<spectrum> out;
  for (long long b = 0; b < nblocks; ++b) {
    spectrum s;
    s.format = "vamas";
    s.meta = head.meta;
    VAMAS_TRY(c.meta(s, "block identifier"));
    VAMAS_TRY(c.meta(s, "sample identifier"));
    const char* date_keys[] = {"year", "month", "day", "hours", "minutes", "seconds", "hours in advance of GMT"};
    for (std::size_t k = 0; k < 7; ++k)
      if (inc[k]) VAMAS_TRY(c.meta(s, date_keys[k]));
    if (inc[7]) {
      VAMAS_TRY(c.integer(n, "number of block comment lines", 0, 1'000'000));
      VAMAS_TRY(c.skip(n, "block comment"));
    }
    std::string tech;
    if (inc[8]) {
      VAMAS_TRY(c.next(t, "technique"));
      tech = std::string(t);
      s.meta.emplace_back("technique", tech);
    }
    if (inc[9] && one_of(exp_mode, {"MAP", "MAPDP"})) {
      VAMAS_TRY(c.meta(s, "x coordinate"));
      VAMAS_TRY(c.meta(s, "y coordinate"));
    }
    if (inc[10]) VAMAS_TRY(c.skip(nvar, "experimental variable values"));
    if (inc[11]) VAMAS_TRY(c.meta(s, "analysis source label"));
    const bool sputter_tech = one_of(tech, {"FABMS", "FABMS energy spec", "ISS", "SIMS", "SIMS energy spec", "SNMS", "SNMS energy spec"});
    if (inc[12] && (one_of(exp_mode, {"MAPDP", "MAPSVDP", "SDP", "SDPSV"}) || sputter_tech))
      VAMAS_TRY(c.skip(3, "sputtering ion parameters"));
    if (inc[13]) VAMAS_TRY(c.meta(s, "analysis source characteristic energy"));
    if (inc[14]) VAMAS_TRY(c.meta(s, "analysis source strength"));
    if (inc[15]) VAMAS_TRY(c.skip(2, "analysis source beam width"));
    if (inc[16] && one_of(exp_mode, {"MAP", "MAPDP"})) VAMAS_TRY(c.skip(2, "field of view"));
    if (inc[18]) VAMAS_TRY(c.meta(s, "analysis source polar angle of incidence"));
    if (inc[19]) VAMAS_TRY(c.meta(s, "analysis source azimuth"));
    if (inc[20]) VAMAS_TRY(c.meta(s, "analyser mode"));
    if (inc[21]) VAMAS_TRY(c.meta(s, "analyser pass energy"));
    if (inc[22] && tech == "AES diff") VAMAS_TRY(c.skip(1, "differential width"));
    if (inc[23]) VAMAS_TRY(c.meta(s, "magnification of analyser transfer lens"));
    if (inc[24]) VAMAS_TRY(c.meta(s, "analyser work function"));
    if (inc[25]) VAMAS_TRY(c.meta(s, "target bias"));
    if (inc[26]) VAMAS_TRY(c.skip(2, "analysis width"));
    if (inc[27]) VAMAS_TRY(c.skip(2, "analyser take-off angles"));
    if (inc[28]) VAMAS_TRY(c.meta(s, "species label"));
    if (inc[29]) {
      VAMAS_TRY(c.meta(s, "transition label"));
      VAMAS_TRY(c.meta(s, "charge of detected particle"));
    }
    std::string_view xl, xu;
    double x0 = 0, dx = 0;
    VAMAS_TRY(c.next(xl, "abscissa label"));
    VAMAS_TRY(c.next(xu, "abscissa units"));
    VAMAS_TRY(c.real(x0, "abscissa start"));
    VAMAS_TRY(c.real(dx, "abscissa increment"));
    s.x_label = std::string(xl);
    s.x_unit = std::string(xu);
    long long ncor = 0;
    VAMAS_TRY(c.integer(ncor, "number of corresponding variables", 1, 64));
    for (long long k = 0; k < ncor; ++k) {
      VAMAS_TRY(c.next(t, "corresponding variable label"));
      s.y_labels.emplace_back(t);
      VAMAS_TRY(c.next(t, "corresponding variable unit"));
      s.y_units.emplace_back(t);
    }
    if (inc[32]) VAMAS_TRY(c.meta(s, "signal mode"));
    if (inc[33]) VAMAS_TRY(c.meta(s, "signal collection time"));
    if (inc[34]) VAMAS_TRY(c.meta(s, "number of scans"));
    if (inc[35]) VAMAS_TRY(c.meta(s, "signal time correction"));
    if (inc[36] && one_of(tech, {"AES diff", "AES dir", "EDX", "ELS", "UPS", "XPS", "XRF"}) &&
        one_of(exp_mode, {"MAPDP", "MAPSVDP", "SDP", "SDPSV"}))
      VAMAS_TRY(c.skip(7, "sputtering source parameters"));
    if (inc[37]) VAMAS_TRY(c.skip(2, "sample tilt"));
    if (inc[38]) VAMAS_TRY(c.meta(s, "sample rotation angle"));
    if (inc[39]) {
      long long np = 0;
      VAMAS_TRY(c.integer(np, "number of additional numeric parameters", 0, 10000));
      for (long long k = 0; k < np; ++k) {
        std::string_view lab, unit, val;
        VAMAS_TRY(c.next(lab, "additional parameter label"));
        VAMAS_TRY(c.next(unit, "additional parameter unit"));
        VAMAS_TRY(c.next(val, "additional parameter value"));
        s.meta.emplace_back(std::string(lab), std::string(val) + (unit.empty() ? "" : " " + std::string(unit)));
      }
    }
    VAMAS_TRY(c.skip(blk_fue, "future upgrade block entries"));
    long long nvals = 0;
    VAMAS_TRY(c.integer(nvals, "number of ordinate values", 0, static_cast<long long>(kMaxPoints)));
    if (nvals % ncor != 0)
      return detail::error_at(lines[c.i - 1], std::to_string(nvals) + " ordinate values is not a multiple of " +
                                                  std::to_string(ncor) + " corresponding variables");
    if (static_cast<std::size_t>(nvals) > lines.size() - std::min(lines.size(), c.i))
      return detail::error_at(lines[c.i - 1], "file ends before the declared " + std::to_string(nvals) + " ordinate values");
    VAMAS_TRY(c.skip(2 * ncor, "ordinate minimum/maximum"));
    s.y.assign(static_cast<std::size_t>(ncor), {});
    for (long long k = 0; k < nvals; ++k) {
      double v = 0;
      VAMAS_TRY(c.real(v, "ordinate value"));
      s.y[static_cast<std::size_t>(k % ncor)].push_back(v);
    }
    const auto npts = static_cast<std::size_t>(nvals / ncor);
    s.x.resize(npts);
    for (std::size_t k = 0; k < npts; ++k) s.x[k] = x0 + dx * static_cast<double>(k);
    s.meta.emplace_back("block", std::to_string(b + 1) + "/" + std::to_string(nblocks));
    out.push_back(std::move(s));
  }
  VAMAS_TRY(c.next(t, "end of experiment"));
  if (t != "end of experiment") return detail::error_at(lines[c.i - 1], "expected 'end of experiment'");
#undef VAMAS_TRY
  return out;
}

result<spectrum> parse_vamas(std::string_view bytes) {
  auto r = parse_vamas_blocks(bytes);
  if (!r) return r.error();
  return std::move(r->front());
}

}  // namespace semilab::parsers
