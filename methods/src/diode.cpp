#include <algorithm>
#include <cmath>
#include <numeric>
#include <semilab/methods/diode.hpp>

#include "fit.hpp"
#include "window.hpp"

namespace semilab::methods {

using namespace detail;

result<diode_result> analyze_diode(std::span<const sample> points, const diode_options& opt) {
  constexpr std::string_view m = "diode-iv";
  if (!(opt.temperature > 0))
    return make_error(errc::bad_input, "diode-iv: temperature must be > 0 K");
  const double vt = thermal_voltage(opt.temperature);
  auto in = [&](const sample& s) {
    const double i = s.y;
    if (!(i > 0)) return false;
    if (opt.i_min > 0 && i < opt.i_min) return false;
    if (opt.i_max > 0 && i > opt.i_max) return false;
    if (opt.noise_floor > 0 && i < 10 * opt.noise_floor) return false;
    return true;
  };
  std::size_t excluded = 0;
  auto sel = select_window(points, in, m, &excluded);
  if (!sel) return sel.error();
  auto idx = *sel;
  if (idx.size() < 5)
    return make_error(errc::insufficient_data,
                      "diode-iv: " + std::to_string(idx.size()) +
                          " usable forward points in the fit window; at least 5 needed");
  std::sort(idx.begin(), idx.end(), [&](auto a, auto b) { return points[a].y < points[b].y; });

  std::vector<std::vector<double>> x;
  std::vector<double> v, cur, lni;
  for (auto i : idx) {
    x.push_back({std::log(points[i].y), 1.0, points[i].y});
    v.push_back(points[i].x);
    cur.push_back(points[i].y);
    lni.push_back(std::log(points[i].y));
  }
  if (std::log(cur.back() / cur.front()) < std::log(10.0))
    return make_error(errc::insufficient_data,
                      "diode-iv: the fit window spans less than one decade of current");
  auto fit = least_squares(x, v);
  if (!fit) return make_error(errc::degenerate_fit, "diode-iv: V(ln I, 1, I) fit is singular");
  const double a = fit->beta[0], b = fit->beta[1], rs = fit->beta[2];
  if (!(a > 0))
    return make_error(errc::bad_input, "diode-iv: dV/dlnI is not positive (not a forward diode)");
  const double n = a / vt;
  const double i0 = std::exp(-b / a);
  const double di0_da = i0 * b / (a * a), di0_db = -i0 / a;
  const double var_i0 = di0_da * di0_da * fit->cov[0][0] + di0_db * di0_db * fit->cov[1][1] +
                        2 * di0_da * di0_db * fit->cov[0][1];

  diode_result out;
  out.ex.method = std::string(m);
  out.ex.version = std::string(kDiodeVersion);
  out.ex.parameters.push_back(param("n", n, "1", fit->se(0) / vt));
  out.ex.parameters.push_back(param("i0", i0, "A", std::sqrt(std::max(0.0, var_i0))));
  out.ex.parameters.push_back(param("rs", rs, "ohm", fit->se(2)));
  out.ex.windows.push_back({"I", cur.front(), cur.back(), cur.size()});
  if (excluded > 0)
    out.ex.warnings.push_back(std::to_string(excluded) +
                              " flagged point(s) outside the fit window excluded");
  if (rs < 0 && -rs > 2 * fit->se(2))
    out.ex.warnings.push_back("negative series resistance " + fmt(rs) +
                              " ohm: the window includes non-ideal (recombination or leakage) "
                              "points");

  // Local ideality n(V) = (1/Vt) dV/dlnI: a plateau marks the valid window.
  auto dv = local_slope(lni, v, 1);
  for (std::size_t k = 0; k < v.size(); ++k)
    if (std::isfinite(dv[k])) out.local_ideality.push_back({v[k], dv[k] / vt});

  if (opt.cheung) {
    std::vector<double> ci, cd, cv, cl;
    for (std::size_t k = 1; k + 1 < v.size(); ++k)  // interior points: central derivatives
      if (cur[k] >= opt.cheung_i_min && std::isfinite(dv[k])) {
        ci.push_back(cur[k]);
        cd.push_back(dv[k]);
        cv.push_back(v[k]);
        cl.push_back(lni[k]);
      }
    if (ci.size() >= 4) {
      auto f1 = fit_line(ci, cd);
      if (f1 && f1->intercept > 0) {
        const double nvt = f1->intercept;
        std::vector<double> h(ci.size());
        for (std::size_t k = 0; k < ci.size(); ++k) h[k] = cv[k] - nvt * cl[k];
        auto f2 = fit_line(ci, h);
        out.ex.parameters.push_back(param("n_cheung", nvt / vt, "1", f1->se_intercept / vt));
        out.ex.parameters.push_back(param("rs_cheung", f1->slope, "ohm", f1->se_slope));
        if (f2) {
          const double i0c = std::exp(-f2->intercept / nvt);
          out.ex.parameters.push_back(param("i0_cheung", i0c, "A", i0c * f2->se_intercept / nvt));
        }
        out.ex.windows.push_back({"I", ci.front(), ci.back(), ci.size()});
        if (std::fabs(nvt / vt - n) > 0.05 * n)
          out.ex.warnings.push_back("Cheung ideality " + fmt(nvt / vt) +
                                    " differs from the least-squares " + fmt(n) + " by > 5%");
      } else {
        out.ex.warnings.push_back("Cheung cross-check failed: dV/dlnI(I) intercept not positive");
      }
    } else {
      out.ex.warnings.push_back("Cheung cross-check skipped: fewer than 4 points above " +
                                fmt(opt.cheung_i_min) + " A");
    }
  }
  return out;
}

}  // namespace semilab::methods
