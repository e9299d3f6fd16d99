#include <algorithm>
#include <cmath>
#include <numbers>
#include <semilab/methods/cv.hpp>

#include "fit.hpp"
#include "window.hpp"

namespace semilab::methods {

using namespace detail;

namespace {

std::vector<sample> as_samples(std::span<const cv_point> pts) {
  std::vector<sample> s;
  s.reserve(pts.size());
  for (auto& p : pts) {
    sample x{p.v, p.c, p.quality};
    if (!(p.c > 0)) x.quality |= schemas::quality::over_range;  // no usable capacitance
    s.push_back(x);
  }
  return s;
}

}  // namespace

result<series_correction> correct_series_resistance(std::span<const cv_point> pts, double frequency,
                                                    std::size_t accumulation_index) {
  if (!(frequency > 0))
    return make_error(errc::bad_input, "cv: series correction needs the frequency (Hz)");
  if (accumulation_index >= pts.size())
    return make_error(errc::bad_input, "cv: accumulation index outside the data");
  const double w = 2 * std::numbers::pi * frequency;
  const auto& a = pts[accumulation_index];
  if (!std::isfinite(a.g))
    return make_error(errc::bad_input, "cv: series correction needs G at the accumulation point");
  const double rs = a.g / (a.g * a.g + w * w * a.c * a.c);
  series_correction out;
  out.rs = rs;
  for (auto p : pts) {
    if (!std::isfinite(p.g))
      return make_error(errc::bad_input, "cv: series correction needs G at every point");
    const double y2 = p.g * p.g + w * w * p.c * p.c;
    const double aa = p.g - y2 * rs;
    const double cc = y2 * p.c / (aa * aa + w * w * p.c * p.c);
    const double gc = y2 * aa / (aa * aa + w * w * p.c * p.c);
    p.c = cc;
    p.g = gc;
    out.corrected.push_back(p);
  }
  return out;
}

result<cv_mos_result> analyze_cv_mos(std::span<const cv_point> points, const cv_mos_options& opt) {
  constexpr std::string_view m = "cv-mos";
  if (!(opt.area > 0)) return make_error(errc::bad_input, "cv-mos: area (m^2) must be > 0");
  if (!(opt.temperature > 0) || !(opt.eps_ox > 0) || !(opt.eps_s > 0))
    return make_error(errc::bad_input, "cv-mos: temperature and permittivities must be > 0");
  std::vector<cv_point> pts(points.begin(), points.end());
  const double sgn = opt.type == substrate::p ? 1.0 : -1.0;  // n-type analysed mirrored in V

  const auto samples = as_samples(pts);
  std::size_t excluded = 0;
  auto sel = select_window(
      samples, [](const sample&) { return true; }, m, &excluded);
  if (!sel) return sel.error();
  if (sel->size() < 6)
    return make_error(errc::insufficient_data, "cv-mos: " + std::to_string(sel->size()) +
                                                   " usable points; at least 6 needed");
  std::vector<cv_point> use;
  for (auto i : *sel) use.push_back(pts[i]);
  for (auto& p : use) p.v *= sgn;
  std::vector<double> vx;
  for (auto& p : use) vx.push_back(p.v);
  const int dir = monotonic(vx);
  if (dir == 0)
    return make_error(errc::non_monotonic,
                      "cv-mos: VG is not strictly monotonic (analyse each "
                      "direction of a dual sweep separately)");
  if (dir < 0) std::reverse(use.begin(), use.end());

  cv_mos_result out;
  out.ex.method = std::string(m);
  out.ex.version = std::string(kCvMosVersion);
  if (excluded > 0)
    out.ex.warnings.push_back(std::to_string(excluded) + " flagged point(s) excluded");

  std::size_t iacc = 0;
  for (std::size_t i = 0; i < use.size(); ++i)
    if (use[i].c > use[iacc].c) iacc = i;
  if (opt.frequency > 0 && std::isfinite(use[iacc].g)) {
    auto corr = correct_series_resistance(use, opt.frequency, iacc);
    if (!corr) return corr.error();
    use = std::move(corr->corrected);
    out.ex.parameters.push_back(param("rs_series", corr->rs, "ohm"));
  }
  if (iacc > use.size() / 4)
    out.ex.warnings.push_back(
        "maximum capacitance not at the accumulation end of the sweep: "
        "Cox may be underestimated");

  const double eox = opt.eps_ox * constants::eps0, es = opt.eps_s * constants::eps0;
  const double a = opt.area, vt = thermal_voltage(opt.temperature);
  const double cox = use[iacc].c;
  out.ex.parameters.push_back(param("cox", cox, "F"));
  out.ex.parameters.push_back(param("c_ox_area", cox / a, "F/m^2"));
  out.ex.parameters.push_back(param("tox", eox * a / cox, "m"));  // CET (no QM correction)

  // Depletion side: after the accumulation point.
  std::vector<double> v, inv2, w;
  std::vector<cv_point> dep(use.begin() + static_cast<std::ptrdiff_t>(iacc), use.end());
  for (auto& p : dep) {
    v.push_back(p.v);
    inv2.push_back(1.0 / (p.c * p.c));
    w.push_back(es * a * (1.0 / p.c - 1.0 / cox));
  }
  if (dep.size() < 4)
    return make_error(errc::insufficient_data, "cv-mos: fewer than 4 points on the depletion side");
  auto d = local_slope(v, inv2, 1);
  std::vector<profile_point> prof;
  double wmax = 0;
  for (std::size_t i = 0; i < dep.size(); ++i) {
    wmax = std::max(wmax, w[i]);
    if (d[i] > 0) prof.push_back({w[i], 2.0 / (constants::q * es * a * a * d[i])});
  }
  if (prof.empty())
    return make_error(errc::bad_input,
                      "cv-mos: 1/C^2 never rises into depletion (wrong substrate "
                      "type or no depletion in the sweep)");
  // N at 90% of W_max -> Debye length -> the valid window [3 L_D, 0.95 W_max].
  const profile_point* at90 = &prof.front();
  for (auto& p : prof)
    if (std::fabs(p.w - 0.9 * wmax) < std::fabs(at90->w - 0.9 * wmax)) at90 = &p;
  const double n90 = at90->n;
  const double ld90 = std::sqrt(es * vt / (constants::q * n90));

  std::vector<double> fx, fy;
  const bool user_window = std::isfinite(opt.fit_v_lo) && std::isfinite(opt.fit_v_hi);
  double wlo = INFINITY, whi = -INFINITY;
  for (std::size_t i = 0; i < dep.size(); ++i) {
    bool in;
    if (user_window) {
      const double vv = sgn * v[i];
      in = vv >= std::min(opt.fit_v_lo, opt.fit_v_hi) && vv <= std::max(opt.fit_v_lo, opt.fit_v_hi);
    } else {
      in = w[i] >= 3 * ld90 && w[i] <= 0.95 * wmax;
    }
    if (!in) continue;
    fx.push_back(v[i]);
    fy.push_back(inv2[i]);
    wlo = std::min(wlo, w[i]);
    whi = std::max(whi, w[i]);
  }
  // A flagged point inside the 1/C^2 window fails the extraction.
  if (!fx.empty())
    for (auto& p : pts)
      if (flagged(sample{p.v, p.c, p.quality}) || !(p.c > 0)) {
        const double vv = sgn * p.v;
        if (vv > fx.front() && vv < fx.back())
          return make_error(errc::flagged_in_window, "cv-mos: point at VG = " + fmt(p.v) +
                                                         " V is flagged inside the 1/C^2 window");
      }
  if (fx.size() < 3)
    return make_error(errc::insufficient_data, "cv-mos: " + std::to_string(fx.size()) +
                                                   " points in the 1/C^2 window; at "
                                                   "least 3 needed");
  auto f = fit_line(fx, fy);
  if (!f || !(f->slope > 0))
    return make_error(errc::degenerate_fit, "cv-mos: 1/C^2(V) slope not positive in the window");
  const double nsub = 2.0 / (constants::q * es * a * a * f->slope);
  out.ex.parameters.push_back(param("n_sub", nsub, "m^-3", nsub * f->se_slope / f->slope));
  out.ex.windows.push_back({"VG", sgn * (sgn > 0 ? fx.front() : fx.back()),
                            sgn * (sgn > 0 ? fx.back() : fx.front()), fx.size()});
  for (auto& p : prof)
    if (p.w >= wlo && p.w <= whi) out.profile.push_back(p);

  // Flat band by the flat-band capacitance.
  const double n_fb = opt.doping > 0 ? opt.doping : nsub;
  const double ld = std::sqrt(es * vt / (constants::q * n_fb));
  const double cs = es * a / ld;
  const double cfb = cox * cs / (cox + cs);
  out.ex.parameters.push_back(param("l_debye", ld, "m"));
  out.ex.parameters.push_back(param("c_fb", cfb, "F"));
  std::optional<double> vfb;
  for (std::size_t i = 0; i + 1 < dep.size(); ++i)
    if (dep[i].c >= cfb && dep[i + 1].c <= cfb) {
      const double t = (dep[i].c - cfb) / (dep[i].c - dep[i + 1].c);
      vfb = v[i] + t * (v[i + 1] - v[i]);
      break;
    }
  if (!vfb)
    return make_error(errc::no_crossing, "cv-mos: C never crosses C_FB = " + fmt(cfb) + " F");
  out.ex.parameters.push_back(param("vfb", sgn * *vfb, "V"));
  out.ex.windows.push_back({"VG", sgn * *vfb, sgn * *vfb, 2});
  if (opt.doping <= 0 && !user_window && out.profile.size() >= 3) {
    double mn = INFINITY, mx = 0;
    for (auto& p : out.profile) {
      mn = std::min(mn, p.n);
      mx = std::max(mx, p.n);
    }
    if (mx > 1.2 * mn)
      out.ex.warnings.push_back(
          "doping profile varies by more than 20% in the valid window: "
          "report N(W), not one number");
  }
  return out;
}

result<extraction> analyze_cv_schottky(std::span<const cv_point> points,
                                       const cv_schottky_options& opt) {
  constexpr std::string_view m = "cv-schottky";
  if (!(opt.area > 0)) return make_error(errc::bad_input, "cv-schottky: area (m^2) must be > 0");
  if (!(opt.temperature > 0) || !(opt.nc > 0))
    return make_error(errc::bad_input, "cv-schottky: temperature and Nc must be > 0");
  const auto samples = as_samples(points);
  const bool window = std::isfinite(opt.v_lo) && std::isfinite(opt.v_hi);
  const double lo = std::min(opt.v_lo, opt.v_hi), hi = std::max(opt.v_lo, opt.v_hi);
  std::size_t excluded = 0;
  auto sel = select_window(
      samples, [&](const sample& s) { return !window || (s.x >= lo && s.x <= hi); }, m, &excluded);
  if (!sel) return sel.error();
  if (sel->size() < 3)
    return make_error(errc::insufficient_data,
                      "cv-schottky: " + std::to_string(sel->size()) +
                          " usable points in the window; at least 3 needed");
  std::vector<double> v, y;
  for (auto i : *sel) {
    v.push_back(samples[i].x);
    y.push_back(1.0 / (samples[i].y * samples[i].y));
  }
  if (monotonic(v) == 0)
    return make_error(errc::non_monotonic, "cv-schottky: V is not strictly monotonic");
  auto f = fit_line(v, y);
  if (!f) return make_error(errc::degenerate_fit, "cv-schottky: 1/C^2(V) fit is singular");
  if (!(f->slope < 0))
    return make_error(errc::bad_input,
                      "cv-schottky: 1/C^2 must fall with V (reverse bias "
                      "negative); slope is " +
                          fmt(f->slope));
  const double es = opt.eps_s * constants::eps0, a = opt.area;
  const double vt = thermal_voltage(opt.temperature);
  const double nd = -2.0 / (constants::q * es * a * a * f->slope);
  const double vi = -f->intercept / f->slope;
  const double dvi_da = f->intercept / (f->slope * f->slope), dvi_db = -1.0 / f->slope;
  const double var_vi = dvi_da * dvi_da * f->se_slope * f->se_slope +
                        dvi_db * dvi_db * f->se_intercept * f->se_intercept +
                        2 * dvi_da * dvi_db * f->cov;
  const double se_vi = std::sqrt(std::max(0.0, var_vi));
  extraction ex;
  ex.method = std::string(m);
  ex.version = std::string(kCvSchottkyVersion);
  ex.parameters.push_back(param("n_d", nd, "m^-3", nd * f->se_slope / -f->slope));
  ex.parameters.push_back(param("v_intercept", vi, "V", se_vi));
  ex.parameters.push_back(param("vbi", vi + vt, "V", se_vi));
  ex.parameters.push_back(param("phi_b", vi + vt + vt * std::log(opt.nc / nd), "V", se_vi));
  ex.windows.push_back({"V", *std::min_element(v.begin(), v.end()),
                        *std::max_element(v.begin(), v.end()), v.size()});
  if (excluded > 0) ex.warnings.push_back(std::to_string(excluded) + " flagged point(s) excluded");
  // Curvature check: residual relative to the 1/C^2 span.
  const double span = *std::max_element(y.begin(), y.end()) - *std::min_element(y.begin(), y.end());
  if (y.size() > 3 && span > 0 && std::sqrt(f->ssr / static_cast<double>(y.size())) > 0.01 * span)
    ex.warnings.push_back(
        "1/C^2 is curved (non-uniform doping, deep levels or edge capacitance): "
        "report N(W), not one number");
  return ex;
}

}  // namespace semilab::methods
