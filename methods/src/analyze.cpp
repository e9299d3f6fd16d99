// Tabulated raw data -> the method's extraction (see analyze.hpp).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <semilab/methods/analyze.hpp>
#include <semilab/methods/cv.hpp>
#include <semilab/methods/diode.hpp>
#include <semilab/methods/mosfet.hpp>
#include <semilab/methods/resistivity.hpp>

#include "fit.hpp"

namespace semilab::methods {

using namespace detail;

namespace {

constexpr contact_config kVdp[] = {{2, 1, 3, 4}, {1, 2, 4, 3}, {4, 3, 1, 2}, {3, 4, 2, 1},
                                   {3, 2, 4, 1}, {2, 3, 1, 4}, {1, 4, 2, 3}, {4, 1, 3, 2}};
constexpr contact_config kHall[] = {{1, 3, 2, 4}, {3, 1, 4, 2}, {4, 2, 1, 3}, {2, 4, 3, 1}};

const std::vector<analysis_info>& table() {
  static const std::vector<analysis_info> t = {
      {"diode-iv",
       "diode I-V: n, I0, Rs by linear least squares on V(I); Cheung cross-check",
       "v, i",
       {{"temperature", "K", "300", false, "device temperature"},
        {"i_min", "A", "0", false, "fit window: lowest forward current (0 = none)"},
        {"i_max", "A", "0", false, "fit window: highest forward current (0 = none)"},
        {"noise_floor", "A", "0", false, "points below 10x this are excluded"},
        {"cheung", "", "true", false, "run the Cheung & Cheung cross-check"}}},
      {"mosfet-idvg",
       "MOSFET transfer: vth_gm (max-gm extrapolation), vth_cc, ss, gm_max, on_off, mobility",
       "vg (vgs), id",
       {{"vds", "V", "", true, "drain-source voltage of the sweep (signed)"},
        {"polarity", "", "n", false, "n or p channel"},
        {"vds_half", "", "true", false, "subtract VDS/2 from the max-gm intercept"},
        {"width", "m", "0", false, "channel width (constant-current scaling, mobility)"},
        {"length", "m", "0", false, "channel length"},
        {"cox", "F/m^2", "0", false, "oxide capacitance per area (mobility)"},
        {"id0", "A", "1e-7", false, "constant-current criterion per W/L"},
        {"vgs_on", "V", "", false, "Ion at this VGS (default: the last point)"},
        {"vgs_off", "V", "0", false, "Ioff at this VGS"},
        {"noise_floor", "A", "0", false, "SS window stays above 10x this"},
        {"range_floor", "A", "0", false, "Ioff at or below this makes on_off a lower bound"},
        {"temperature", "K", "300", false, "device temperature"}}},
      {"mosfet-idvd",
       "MOSFET output curves: r_on (linear region), id_sat, g_ds, r_out, v_early (saturation)",
       "vg (vgs), vd (vds), id",
       {{"polarity", "", "n", false, "n or p channel"},
        {"vgs", "V", "", false, "the curve analysed (default: the largest |VGS|)"},
        {"vds_lin", "V", "0.1", false, "linear window |VDS| <= this"},
        {"vds_sat", "V", "", false, "saturation window |VDS| >= this (default 0.7 max |VDS|)"}}},
      {"cv-mos",
       "MOS C-V: cox, tox (CET), vfb (flat-band capacitance), n_sub from 1/C^2",
       "v (vg), c (cp) [, g (gp): series-resistance correction with frequency]",
       {{"area", "m^2", "", true, "gate area"},
        {"polarity", "", "p", false, "substrate type p or n"},
        {"frequency", "Hz", "0", false, "measurement frequency (with g: Rs correction)"},
        {"doping", "m^-3", "0", false, "substrate doping for C_FB (0 = from the profile)"},
        {"fit_v_lo", "V", "", false, "1/C^2 window low end (default: valid profile window)"},
        {"fit_v_hi", "V", "", false, "1/C^2 window high end"},
        {"temperature", "K", "300", false, "device temperature"}}},
      {"cv-schottky",
       "Schottky C-V: n_d and vbi from 1/C^2, phi_b",
       "v (vg), c (cp)",
       {{"area", "m^2", "", true, "diode area"},
        {"temperature", "K", "300", false, "device temperature"},
        {"nc", "m^-3", "2.8e25", false, "effective density of states (phi_B)"},
        {"v_lo", "V", "", false, "fit window low end"},
        {"v_hi", "V", "", false, "fit window high end"}}},
      {"four-point",
       "collinear four-point probe: r_sheet (finite-size F2, thickness correction), resistivity",
       "i, v",
       {{"probe_spacing", "m", "", true, "probe spacing s"},
        {"diameter", "m", "0", false, "sample diameter (0 = infinite sheet)"},
        {"thickness", "m", "0", false, "layer thickness (resistivity)"},
        {"linearity_limit", "1", "0.01", false, "largest relative V(I) residual before a warning"}}},
      {"vdp",
       "van der Pauw: r_sheet (Newton, bisection fallback), r_a, r_b; reciprocity and geometry "
       "warnings",
       "i_from, i_to, v_plus, v_minus (contacts 1-4, counter-clockwise), i, v: the 8 NIST "
       "configurations or their current reversals",
       {{"thickness", "m", "0", false, "layer thickness (resistivity)"},
        {"reciprocity_limit", "1", "0.03", false, "reciprocal pairs' relative disagreement"},
        {"geometry_limit", "1", "2", false, "R_A/R_B beyond this: geometry warning"}}},
      {"hall",
       "Hall effect: carrier_type, n_sheet, mobility (field and current reversal)",
       "i_from, i_to, v_plus, v_minus, b (T), i, v: the 4 diagonal configurations at +B and -B; "
       "the 8 van der Pauw configurations too for r_sheet (else --param r_sheet)",
       {{"r_sheet", "ohm/sq", "", false, "sheet resistance (default: from the vdp rows)"},
        {"thickness", "m", "0", false, "layer thickness (density, Hall coefficient)"}}},
      {"tlm",
       "transfer length method: r_contact, r_sheet, l_transfer, rho_c",
       "d (gap, m), r  |  d, i, v",
       {{"contact_width", "m", "", true, "contact (pad) width W"}}},
      {"check-standard",
       "reference resistor: r, deviation from nominal (control chart)",
       "i, v",
       {{"nominal", "ohm", "", true, "certified value of the reference resistor"},
        {"tolerance", "1", "0", false, "relative tolerance (0 = no check)"}}},
  };
  return t;
}

struct ctx {
  std::string_view method;
  const data_table& t;
  const param_map& p;

  error bad(std::string msg) const { return make_error(errc::bad_input, std::string(method) + ": " + msg); }

  // Index of the first column named one of `names`; -1 when absent.
  int col(std::initializer_list<std::string_view> names) const {
    for (auto n : names)
      for (std::size_t k = 0; k < t.columns.size(); ++k)
        if (t.columns[k] == n) return static_cast<int>(k);
    return -1;
  }
  result<int> need(std::initializer_list<std::string_view> names) const {
    int c = col(names);
    if (c >= 0) return c;
    std::string list;
    for (auto n : names) list += (list.empty() ? "'" : " or '") + std::string(n) + "'";
    return bad("the data have no column " + list);
  }
  std::uint32_t q(std::size_t r) const { return r < t.quality.size() ? t.quality[r] : 0; }

  result<double> num(std::string_view key, double dflt) const {
    auto it = p.find(key);
    if (it == p.end()) return dflt;
    const std::string& s = it->second;
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v))
      return bad("parameter " + std::string(key) + ": '" + s + "' is not a number");
    return v;
  }
  result<double> required(std::string_view key) const {
    if (!p.contains(key)) return bad("parameter " + std::string(key) + " is required");
    return num(key, 0);
  }
  result<bool> flag(std::string_view key, bool dflt) const {
    auto it = p.find(key);
    if (it == p.end()) return dflt;
    const auto& s = it->second;
    if (s == "true" || s == "1" || s == "yes") return true;
    if (s == "false" || s == "0" || s == "no") return false;
    return bad("parameter " + std::string(key) + ": '" + s + "' is not true or false");
  }
  result<std::string> choice(std::string_view key, std::string_view dflt,
                             std::initializer_list<std::string_view> set) const {
    auto it = p.find(key);
    std::string v = it == p.end() ? std::string(dflt) : it->second;
    if (std::find(set.begin(), set.end(), v) != set.end()) return v;
    std::string list;
    for (auto s : set) list += (list.empty() ? "" : ", ") + std::string(s);
    return bad("parameter " + std::string(key) + ": '" + v + "' is not one of " + list);
  }
  // x/y samples of two columns.
  std::vector<sample> xy(int cx, int cy) const {
    std::vector<sample> s;
    for (std::size_t r = 0; r < t.rows.size(); ++r)
      s.push_back({t.rows[r][static_cast<std::size_t>(cx)], t.rows[r][static_cast<std::size_t>(cy)], q(r)});
    return s;
  }
};

#define SEMILAB_TRY(var, expr) \
  auto var##_r = (expr);       \
  if (!var##_r) return var##_r.error(); \
  auto var = *var##_r

result<extraction> diode(const ctx& c) {
  SEMILAB_TRY(cv, c.need({"v"}));
  SEMILAB_TRY(ci, c.need({"i"}));
  diode_options o;
  SEMILAB_TRY(t, c.num("temperature", o.temperature));
  SEMILAB_TRY(lo, c.num("i_min", 0));
  SEMILAB_TRY(hi, c.num("i_max", 0));
  SEMILAB_TRY(nf, c.num("noise_floor", 0));
  SEMILAB_TRY(ch, c.flag("cheung", true));
  o.temperature = t;
  o.i_min = lo;
  o.i_max = hi;
  o.noise_floor = nf;
  o.cheung = ch;
  auto pts = c.xy(cv, ci);
  auto r = analyze_diode(pts, o);
  if (!r) return r.error();
  return r->ex;
}

result<extraction> idvg(const ctx& c) {
  SEMILAB_TRY(cg, c.need({"vg", "vgs"}));
  SEMILAB_TRY(cd, c.need({"id"}));
  mosfet_options o;
  SEMILAB_TRY(vds, c.required("vds"));
  SEMILAB_TRY(pol, c.choice("polarity", "n", {"n", "p"}));
  SEMILAB_TRY(half, c.flag("vds_half", true));
  SEMILAB_TRY(w, c.num("width", 0));
  SEMILAB_TRY(l, c.num("length", 0));
  SEMILAB_TRY(cox, c.num("cox", 0));
  SEMILAB_TRY(id0, c.num("id0", o.id0));
  SEMILAB_TRY(on, c.num("vgs_on", NAN));
  SEMILAB_TRY(off, c.num("vgs_off", o.vgs_off));
  SEMILAB_TRY(nf, c.num("noise_floor", 0));
  SEMILAB_TRY(rf, c.num("range_floor", 0));
  SEMILAB_TRY(t, c.num("temperature", o.temperature));
  o.vds = vds;
  o.polarity = pol == "p" ? channel::p : channel::n;
  o.vds_half = half;
  o.width = w;
  o.length = l;
  o.cox = cox;
  o.id0 = id0;
  o.vgs_on = on;
  o.vgs_off = off;
  o.noise_floor = nf;
  o.range_floor = rf;
  o.temperature = t;
  auto pts = c.xy(cg, cd);
  return analyze_mosfet_transfer(pts, o);
}

result<extraction> idvd(const ctx& c) {
  SEMILAB_TRY(cg, c.need({"vg", "vgs"}));
  SEMILAB_TRY(cdv, c.need({"vd", "vds"}));
  SEMILAB_TRY(cd, c.need({"id"}));
  mosfet_output_options o;
  SEMILAB_TRY(pol, c.choice("polarity", "n", {"n", "p"}));
  SEMILAB_TRY(vgs, c.num("vgs", NAN));
  SEMILAB_TRY(lin, c.num("vds_lin", o.vds_lin));
  SEMILAB_TRY(sat, c.num("vds_sat", NAN));
  o.polarity = pol == "p" ? channel::p : channel::n;
  o.vgs = vgs;
  o.vds_lin = lin;
  o.vds_sat = sat;
  std::vector<idvd_point> pts;
  for (std::size_t r = 0; r < c.t.rows.size(); ++r) {
    const auto& row = c.t.rows[r];
    pts.push_back({row[static_cast<std::size_t>(cg)], row[static_cast<std::size_t>(cdv)],
                   row[static_cast<std::size_t>(cd)], c.q(r)});
  }
  return analyze_mosfet_output(pts, o);
}

result<std::vector<cv_point>> cv_points(const ctx& c, bool with_g) {
  SEMILAB_TRY(cv, c.need({"v", "vg"}));
  SEMILAB_TRY(cc, c.need({"c", "cp"}));
  const int cg = with_g ? c.col({"g", "gp"}) : -1;
  std::vector<cv_point> pts;
  for (std::size_t r = 0; r < c.t.rows.size(); ++r) {
    const auto& row = c.t.rows[r];
    pts.push_back({row[static_cast<std::size_t>(cv)], row[static_cast<std::size_t>(cc)],
                   cg >= 0 ? row[static_cast<std::size_t>(cg)] : NAN, c.q(r)});
  }
  return pts;
}

result<extraction> cv_mos(const ctx& c) {
  SEMILAB_TRY(pts, cv_points(c, true));
  cv_mos_options o;
  SEMILAB_TRY(area, c.required("area"));
  SEMILAB_TRY(pol, c.choice("polarity", "p", {"p", "n"}));
  SEMILAB_TRY(f, c.num("frequency", 0));
  SEMILAB_TRY(dop, c.num("doping", 0));
  SEMILAB_TRY(lo, c.num("fit_v_lo", NAN));
  SEMILAB_TRY(hi, c.num("fit_v_hi", NAN));
  SEMILAB_TRY(t, c.num("temperature", o.temperature));
  o.area = area;
  o.type = pol == "n" ? substrate::n : substrate::p;
  o.frequency = f;
  o.doping = dop;
  o.fit_v_lo = lo;
  o.fit_v_hi = hi;
  o.temperature = t;
  auto r = analyze_cv_mos(pts, o);
  if (!r) return r.error();
  return r->ex;
}

result<extraction> cv_schottky(const ctx& c) {
  SEMILAB_TRY(pts, cv_points(c, false));
  cv_schottky_options o;
  SEMILAB_TRY(area, c.required("area"));
  SEMILAB_TRY(t, c.num("temperature", o.temperature));
  SEMILAB_TRY(nc, c.num("nc", o.nc));
  SEMILAB_TRY(lo, c.num("v_lo", NAN));
  SEMILAB_TRY(hi, c.num("v_hi", NAN));
  o.area = area;
  o.temperature = t;
  o.nc = nc;
  o.v_lo = lo;
  o.v_hi = hi;
  return analyze_cv_schottky(pts, o);
}

result<extraction> four_point(const ctx& c) {
  SEMILAB_TRY(ci, c.need({"i"}));
  SEMILAB_TRY(cv, c.need({"v"}));
  four_point_geometry g;
  SEMILAB_TRY(s, c.required("probe_spacing"));
  SEMILAB_TRY(d, c.num("diameter", 0));
  SEMILAB_TRY(t, c.num("thickness", 0));
  SEMILAB_TRY(lim, c.num("linearity_limit", g.linearity_limit));
  g.spacing = s;
  g.diameter = d;
  g.thickness = t;
  g.linearity_limit = lim;
  auto pts = c.xy(ci, cv);
  return analyze_four_point(pts, g);
}

// Four-terminal rows (contacts, field, current, voltage).
struct four_terminal {
  contact_config k;
  double b = 0, i = 0, v = 0;
};

result<std::vector<four_terminal>> four_terminal_rows(const ctx& c, bool with_field,
                                                      std::size_t& flagged_rows) {
  SEMILAB_TRY(c1, c.need({"i_from"}));
  SEMILAB_TRY(c2, c.need({"i_to"}));
  SEMILAB_TRY(c3, c.need({"v_plus"}));
  SEMILAB_TRY(c4, c.need({"v_minus"}));
  SEMILAB_TRY(ci, c.need({"i"}));
  SEMILAB_TRY(cv, c.need({"v"}));
  int cb = c.col({"b"});
  if (with_field && cb < 0) return c.bad("the data have no column 'b' (field, T)");
  std::vector<four_terminal> out;
  flagged_rows = 0;
  for (std::size_t r = 0; r < c.t.rows.size(); ++r) {
    const auto& row = c.t.rows[r];
    auto at = [&](int k) { return row[static_cast<std::size_t>(k)]; };
    int ids[4];
    const int cols[4] = {c1, c2, c3, c4};
    for (int k = 0; k < 4; ++k) {
      const double x = at(cols[k]);
      if (!(x == 1 || x == 2 || x == 3 || x == 4))
        return c.bad("row " + std::to_string(r + 1) + ": contacts are numbered 1 to 4 (got " +
                     fmt(x) + ")");
      ids[k] = static_cast<int>(x);
    }
    if (ids[0] == ids[1] || ids[2] == ids[3])
      return c.bad("row " + std::to_string(r + 1) + ": current or voltage contacts repeat");
    if (flagged(sample{at(ci), at(cv), c.q(r)})) {
      ++flagged_rows;
      continue;
    }
    out.push_back({{ids[0], ids[1], ids[2], ids[3]}, cb >= 0 ? at(cb) : 0.0, at(ci), at(cv)});
  }
  return out;
}

// R of configuration k from the rows (same configuration, or with current and/or voltage
// reversed, signs folded in), optionally only rows whose field matches `field_sign` (+1, -1;
// 0 = any). Slope of V(I) when two or more currents (offsets cancel), else the mean of V/I.
struct r_value {
  double r = 0, se = 0;
  std::size_t n = 0;
};
std::optional<r_value> config_r(const std::vector<four_terminal>& rows, const contact_config& k,
                                int field_sign, double field_tol) {
  std::vector<double> is, vs;
  for (const auto& row : rows) {
    if (field_sign != 0 && !(row.b * field_sign > field_tol)) continue;
    const auto& x = row.k;
    double si = 0, sv = 0;
    if (x.i_from == k.i_from && x.i_to == k.i_to) si = 1;
    if (x.i_from == k.i_to && x.i_to == k.i_from) si = -1;
    if (x.v_plus == k.v_plus && x.v_minus == k.v_minus) sv = 1;
    if (x.v_plus == k.v_minus && x.v_minus == k.v_plus) sv = -1;
    if (si == 0 || sv == 0 || row.i == 0) continue;
    is.push_back(si * row.i);
    vs.push_back(sv * row.v);
  }
  if (is.empty()) return std::nullopt;
  auto lv = is;
  std::sort(lv.begin(), lv.end());
  lv.erase(std::unique(lv.begin(), lv.end()), lv.end());
  r_value out;
  out.n = is.size();
  if (lv.size() >= 2) {
    auto f = fit_line(is, vs);
    if (!f) return std::nullopt;
    out.r = f->slope;
    out.se = f->se_slope;
  } else {
    double m = 0;
    for (std::size_t j = 0; j < is.size(); ++j) m += vs[j] / is[j];
    out.r = m / static_cast<double>(is.size());
  }
  return out;
}

std::string config_name(const contact_config& k) {
  return "R" + std::to_string(k.i_from) + std::to_string(k.i_to) + "," + std::to_string(k.v_plus) +
         std::to_string(k.v_minus);
}

// van der Pauw from four-terminal rows; field_sign as in config_r (0 = any field).
result<extraction> vdp_from_rows(const ctx& c, const std::vector<four_terminal>& rows,
                                 double thickness) {
  vdp_options o;
  SEMILAB_TRY(rl, c.num("reciprocity_limit", o.reciprocity_limit));
  SEMILAB_TRY(gl, c.num("geometry_limit", o.geometry_limit));
  o.thickness = thickness;
  o.reciprocity_limit = rl;
  o.geometry_limit = gl;
  double r[8];
  double var_a = 0, var_b = 0;
  for (std::size_t j = 0; j < 8; ++j) {
    auto v = config_r(rows, kVdp[j], 0, 0);
    if (!v)
      return make_error(errc::insufficient_data,
                        std::string(c.method) + ": no reading of " + config_name(kVdp[j]) +
                            " (current " + std::to_string(kVdp[j].i_from) + "->" +
                            std::to_string(kVdp[j].i_to) + ", voltage " +
                            std::to_string(kVdp[j].v_plus) + "-" + std::to_string(kVdp[j].v_minus) +
                            ") nor of its reversal");
    r[j] = v->r;
    (j < 4 ? var_a : var_b) += v->se * v->se;
  }
  vdp_readings rd{r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]};
  auto ex = analyze_van_der_pauw(rd, o);
  if (!ex) return ex;
  // Uncertainty of R_A, R_B: the fits' standard errors and the spread of the four readings
  // (reciprocity), then propagated through the van der Pauw equation.
  auto spread = [](const double* x) {
    double m = (x[0] + x[1] + x[2] + x[3]) / 4, ss = 0;
    for (int k = 0; k < 4; ++k) ss += (x[k] - m) * (x[k] - m);
    return ss / 3 / 4;
  };
  const double ua = std::sqrt(var_a / 16 + spread(r)), ub = std::sqrt(var_b / 16 + spread(r + 4));
  const double ra = ex->value("r_a"), rb = ex->value("r_b"), rs = ex->value("r_sheet");
  auto rs_at = [&](double a, double b) {
    auto s = solve_van_der_pauw(a, b);
    return s ? s->r_sheet : rs;
  };
  const double ha = std::max(ua, ra * 1e-9), hb = std::max(ub, rb * 1e-9);
  const double da = (rs_at(ra + ha, rb) - rs_at(ra - ha, rb)) / (2 * ha);
  const double db = (rs_at(ra, rb + hb) - rs_at(ra, rb - hb)) / (2 * hb);
  const double urs = std::hypot(da * ua, db * ub);
  for (auto& p : ex->parameters) {
    if (p.name == "r_a") p.uncertainty = ua;
    if (p.name == "r_b") p.uncertainty = ub;
    if (p.name == "r_sheet") p.uncertainty = urs;
    if (p.name == "resistivity") p.uncertainty = urs * thickness;
  }
  return ex;
}

void note_flagged(result<extraction>& ex, std::size_t flagged_rows) {
  if (ex && flagged_rows > 0)
    ex->warnings.push_back(std::to_string(flagged_rows) +
                           " compliance or over-range row(s) excluded");
}

result<extraction> vdp(const ctx& c) {
  std::size_t flagged_rows = 0;
  SEMILAB_TRY(rows, four_terminal_rows(c, false, flagged_rows));
  SEMILAB_TRY(t, c.num("thickness", 0));
  auto ex = vdp_from_rows(c, rows, t);
  note_flagged(ex, flagged_rows);
  return ex;
}

result<extraction> hall(const ctx& c) {
  std::size_t flagged_rows = 0;
  SEMILAB_TRY(rows, four_terminal_rows(c, true, flagged_rows));
  SEMILAB_TRY(t, c.num("thickness", 0));
  double bmax = 0, imax = 0;
  for (const auto& r : rows) {
    bmax = std::max(bmax, std::fabs(r.b));
    imax = std::max(imax, std::fabs(r.i));
  }
  if (!(bmax > 0)) return c.bad("no row with a non-zero field b");
  const double tol = 0.5 * bmax;  // rows at +B / -B: within half the largest field
  double bp = 0, bn = 0;
  std::size_t np = 0, nn = 0;
  for (const auto& r : rows) {
    if (r.b > tol) bp += r.b, ++np;
    if (r.b < -tol) bn += r.b, ++nn;
  }
  if (np == 0 || nn == 0) return c.bad("Hall needs rows at +B and at -B (field reversal)");
  const double field = 0.5 * (bp / static_cast<double>(np) - bn / static_cast<double>(nn));
  double v[8];
  for (std::size_t j = 0; j < 4; ++j)
    for (int s = 0; s < 2; ++s) {
      auto r = config_r(rows, kHall[j], s == 0 ? 1 : -1, tol);
      if (!r)
        return make_error(errc::insufficient_data,
                          std::string(c.method) + ": no reading with current " +
                              std::to_string(kHall[j].i_from) + "->" +
                              std::to_string(kHall[j].i_to) + ", voltage " +
                              std::to_string(kHall[j].v_plus) + "-" +
                              std::to_string(kHall[j].v_minus) + " at " + (s == 0 ? "+B" : "-B"));
      v[2 * j + static_cast<std::size_t>(s)] = r->r * imax;  // Hall voltage at the current I
    }
  hall_readings h{imax, field, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]};
  hall_options o;
  o.thickness = t;
  std::optional<extraction> vd;
  if (c.p.contains("r_sheet")) {
    SEMILAB_TRY(rs, c.num("r_sheet", 0));
    if (!(rs > 0)) return c.bad("parameter r_sheet must be > 0");
    o.r_sheet = rs;
  } else {
    // van der Pauw rows: those at zero field when they cover the 8 configurations, else all
    // (the adjacent configurations carry no Hall voltage).
    std::vector<four_terminal> zero;
    for (const auto& r : rows)
      if (std::fabs(r.b) <= 1e-3 * bmax) zero.push_back(r);
    auto e = vdp_from_rows(c, zero, t);
    if (!e) e = vdp_from_rows(c, rows, t);
    if (e) {
      vd = *e;
      o.r_sheet = e->value("r_sheet");
      if (auto* p = e->find("r_sheet"); p && p->uncertainty) o.r_sheet_u = *p->uncertainty;
    }
  }
  auto ex = analyze_hall(h, o);
  if (!ex) return ex;
  if (vd) {
    for (const auto& p : vd->parameters)
      if (p.name == "r_sheet" || p.name == "r_a" || p.name == "r_b" || p.name == "resistivity")
        ex->parameters.push_back(p);
    for (const auto& w : vd->warnings) ex->warnings.push_back("vdp: " + w);
  } else if (o.r_sheet > 0) {
    ex->parameters.push_back(param("r_sheet", o.r_sheet, "ohm/sq"));
  } else {
    ex->warnings.push_back("the rows do not cover the 8 van der Pauw configurations: give "
                           "--param r_sheet for the mobility");
  }
  ex->parameters.push_back(param("field", field, "T"));
  ex->parameters.push_back(param("current", imax, "A"));
  note_flagged(ex, flagged_rows);
  return ex;
}

result<extraction> tlm(const ctx& c) {
  SEMILAB_TRY(cd, c.need({"d"}));
  SEMILAB_TRY(w, c.required("contact_width"));
  const int cr = c.col({"r"});
  std::vector<sample> pts;
  if (cr >= 0) {
    pts = c.xy(cd, cr);
  } else {
    SEMILAB_TRY(ci, c.need({"i"}));
    SEMILAB_TRY(cv, c.need({"v"}));
    // Per gap: the slope of V(I) when two or more currents (offsets cancel), else V/I.
    std::vector<double> gaps;
    for (const auto& row : c.t.rows) {
      const double d = row[static_cast<std::size_t>(cd)];
      if (std::none_of(gaps.begin(), gaps.end(), [&](double g) { return g == d; })) gaps.push_back(d);
    }
    for (double g : gaps) {
      std::vector<sample> s;
      std::uint32_t q = 0;
      for (std::size_t r = 0; r < c.t.rows.size(); ++r) {
        const auto& row = c.t.rows[r];
        if (row[static_cast<std::size_t>(cd)] != g) continue;
        sample x{row[static_cast<std::size_t>(ci)], row[static_cast<std::size_t>(cv)], c.q(r)};
        if (flagged(x)) {
          q |= effective_quality(x);
          continue;
        }
        if (x.x != 0) s.push_back(x);
      }
      std::vector<double> is, vs;
      for (auto& x : s) {
        is.push_back(x.x);
        vs.push_back(x.y);
      }
      auto lv = is;
      std::sort(lv.begin(), lv.end());
      lv.erase(std::unique(lv.begin(), lv.end()), lv.end());
      double r = NAN;
      if (lv.size() >= 2) {
        if (auto f = fit_line(is, vs)) r = f->slope;
      } else if (!is.empty()) {
        r = 0;
        for (std::size_t j = 0; j < is.size(); ++j) r += vs[j] / is[j];
        r /= static_cast<double>(is.size());
      }
      if (!std::isfinite(r)) q |= schemas::quality::over_range;
      pts.push_back({g, std::isfinite(r) ? r : 0.0, q});
    }
  }
  return analyze_tlm(pts, w);
}

result<extraction> check_standard(const ctx& c) {
  SEMILAB_TRY(ci, c.need({"i"}));
  SEMILAB_TRY(cv, c.need({"v"}));
  check_standard_options o;
  SEMILAB_TRY(nom, c.required("nominal"));
  SEMILAB_TRY(tol, c.num("tolerance", 0));
  o.nominal = nom;
  o.tolerance = tol;
  auto pts = c.xy(ci, cv);
  return analyze_check_standard(pts, o);
}

#undef SEMILAB_TRY

}  // namespace

std::span<const analysis_info> analysis_methods() { return table(); }

const analysis_info* find_analysis(std::string_view method) noexcept {
  for (const auto& m : table())
    if (m.method == method) return &m;
  return nullptr;
}

std::span<const contact_config> vdp_configs() noexcept { return kVdp; }
std::span<const contact_config> hall_configs() noexcept { return kHall; }

result<extraction> analyze_table(std::string_view method, const data_table& t,
                                 const param_map& params) {
  const analysis_info* info = find_analysis(method);
  if (!info) {
    std::string list;
    for (const auto& m : table()) list += (list.empty() ? "" : ", ") + std::string(m.method);
    return make_error(errc::bad_input, "unknown method '" + std::string(method) + "' (" + list + ")");
  }
  for (const auto& entry : params) {
    const std::string& k = entry.first;
    if (std::none_of(info->params.begin(), info->params.end(),
                     [&k](const param_info& pi) { return pi.key == k; })) {
      std::string list;
      for (const auto& pi : info->params) list += (list.empty() ? "" : ", ") + std::string(pi.key);
      return make_error(errc::bad_input, std::string(method) + ": unknown parameter '" + k +
                                             "' (known: " + list + ")");
    }
  }
  for (std::size_t r = 0; r < t.rows.size(); ++r)
    if (t.rows[r].size() != t.columns.size())
      return make_error(errc::bad_input, std::string(method) + ": row " + std::to_string(r + 1) +
                                             " has " + std::to_string(t.rows[r].size()) +
                                             " values for " + std::to_string(t.columns.size()) +
                                             " columns");
  if (t.rows.empty()) return make_error(errc::insufficient_data, std::string(method) + ": no data rows");
  ctx c{info->method, t, params};
  if (method == "diode-iv") return diode(c);
  if (method == "mosfet-idvg") return idvg(c);
  if (method == "mosfet-idvd") return idvd(c);
  if (method == "cv-mos") return cv_mos(c);
  if (method == "cv-schottky") return cv_schottky(c);
  if (method == "four-point") return four_point(c);
  if (method == "vdp") return vdp(c);
  if (method == "hall") return hall(c);
  if (method == "tlm") return tlm(c);
  return check_standard(c);
}

}  // namespace semilab::methods
