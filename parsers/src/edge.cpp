// Edge parameters: Bragg/Scherrer (Scherrer 1918; broadening subtraction for Gaussian profiles),
// Tauc (Tauc, Grigorovici & Vancu 1966), thin-film fringes at normal incidence, Raman Si line
// and XPS energy-scale references (ISO 15472).
#include <semilab/parsers/edge.hpp>

#include <algorithm>
#include <cmath>
#include <numbers>

namespace semilab::parsers {
namespace {
constexpr double kDeg = std::numbers::pi / 180.0;

struct line_fit {
  double slope = 0, intercept = 0, r2 = 0, rms = 0;
};
// Least squares y = slope·x + intercept over [lo, hi).
line_fit fit_line(const std::vector<double>& x, const std::vector<double>& y, std::size_t lo, std::size_t hi) {
  const double n = static_cast<double>(hi - lo);
  double sx = 0, sy = 0;
  for (std::size_t i = lo; i < hi; ++i) { sx += x[i]; sy += y[i]; }
  const double mx = sx / n, my = sy / n;
  double sxx = 0, sxy = 0, syy = 0;
  for (std::size_t i = lo; i < hi; ++i) {
    sxx += (x[i] - mx) * (x[i] - mx);
    sxy += (x[i] - mx) * (y[i] - my);
    syy += (y[i] - my) * (y[i] - my);
  }
  line_fit f;
  if (sxx <= 0) return f;
  f.slope = sxy / sxx;
  f.intercept = my - f.slope * mx;
  const double sse = std::max(0.0, syy - f.slope * sxy);
  f.r2 = syy > 0 ? 1 - sse / syy : 0;
  f.rms = std::sqrt(sse / n);
  return f;
}
}  // namespace

line_check raman_si_check(double measured, double tolerance, double reference) {
  line_check c;
  c.measured = measured;
  c.reference = reference;
  c.deviation = measured - reference;
  c.pass = std::isfinite(measured) && std::fabs(c.deviation) <= tolerance;
  return c;
}

double photon_energy_ev(double wavelength_nm) { return 1239.841984 / wavelength_nm; }

analysis_result<double> bragg_d_spacing(double two_theta_deg, double wavelength) {
  if (!(two_theta_deg > 0 && two_theta_deg < 180)) return analysis_error{"2θ must lie in (0°, 180°)"};
  if (!(wavelength > 0)) return analysis_error{"wavelength must be positive"};
  return wavelength / (2 * std::sin(two_theta_deg / 2 * kDeg));
}

analysis_result<double> scherrer_size(double two_theta_deg, double fwhm_obs_deg, double fwhm_inst_deg, double k, double wavelength) {
  if (!(two_theta_deg > 0 && two_theta_deg < 180)) return analysis_error{"2θ must lie in (0°, 180°)"};
  if (!(fwhm_inst_deg >= 0)) return analysis_error{"instrument FWHM must not be negative"};
  if (!(fwhm_obs_deg > fwhm_inst_deg)) return analysis_error{"observed FWHM not larger than the instrument FWHM: no size broadening"};
  if (!(k > 0) || !(wavelength > 0)) return analysis_error{"K and λ must be positive"};
  const double beta = std::sqrt(fwhm_obs_deg * fwhm_obs_deg - fwhm_inst_deg * fwhm_inst_deg) * kDeg;
  return k * wavelength / (beta * std::cos(two_theta_deg / 2 * kDeg));
}

analysis_result<tauc_result> tauc_band_gap(std::span<const double> energy, std::span<const double> alpha, const tauc_options& opt) {
  if (energy.size() != alpha.size()) return analysis_error{"energy and α differ in length"};
  if (opt.min_window < 3) return analysis_error{"min_window must be at least 3"};
  std::vector<std::pair<double, double>> pts;
  for (std::size_t i = 0; i < energy.size(); ++i) {
    if (!std::isfinite(energy[i]) || !std::isfinite(alpha[i]) || energy[i] <= 0) continue;
    const double a = std::max(alpha[i], 0.0) * energy[i];
    pts.emplace_back(energy[i], opt.transition == tauc_transition::direct_allowed ? a * a : std::sqrt(a));
  }
  std::sort(pts.begin(), pts.end());
  std::vector<double> x, y;
  for (auto& [e, t] : pts) { x.push_back(e); y.push_back(t); }
  const std::size_t n = x.size();
  if (n < opt.min_window) return analysis_error{"fewer points than the minimum window"};
  const double ymax = *std::max_element(y.begin(), y.end());
  if (!(ymax > 0)) return analysis_error{"no absorption"};
  const double floor = opt.min_fraction * ymax;

  // Steepest sufficiently linear window of min_window points, above the noise floor.
  std::size_t best = n;
  line_fit bf;
  for (std::size_t lo = 0; lo + opt.min_window <= n; ++lo) {
    const std::size_t hi = lo + opt.min_window;
    if (y[lo] < floor) continue;
    auto f = fit_line(x, y, lo, hi);
    if (f.slope <= 0 || f.r2 < opt.min_r2) continue;
    if (best == n || f.slope > bf.slope) { best = lo; bf = f; }
  }
  if (best == n) return analysis_error{"no window of " + std::to_string(opt.min_window) + " points with R² ≥ " + std::to_string(opt.min_r2)};
  // Grow the window one point at a time while the new point lies on the current line: within
  // 4·rms of the window's residuals (noise) or 0.2 % of the window's span (noise-free data).
  std::size_t lo = best, hi = best + opt.min_window;
  for (bool grew = true; grew;) {
    grew = false;
    auto f = fit_line(x, y, lo, hi);
    const double tol = std::max(4 * f.rms, 2e-3 * (y[hi - 1] - y[lo]));
    if (hi < n && std::fabs(y[hi] - (f.slope * x[hi] + f.intercept)) <= tol) { ++hi; grew = true; }
    f = fit_line(x, y, lo, hi);
    if (lo > 0 && y[lo - 1] >= floor && std::fabs(y[lo - 1] - (f.slope * x[lo - 1] + f.intercept)) <= tol) { --lo; grew = true; }
  }
  auto f = fit_line(x, y, lo, hi);
  if (f.r2 < opt.min_r2 || f.slope <= 0) return analysis_error{"selected window is not linear"};
  tauc_result r;
  r.slope = f.slope;
  r.r2 = f.r2;
  r.band_gap_ev = -f.intercept / f.slope;
  r.window_lo_ev = x[lo];
  r.window_hi_ev = x[hi - 1];
  r.window_points = hi - lo;
  return r;
}

analysis_result<double> fringe_thickness(std::span<const double> ext, double n_index) {
  if (ext.size() < 2) return analysis_error{"at least two extrema are needed"};
  if (!(n_index > 0)) return analysis_error{"refractive index must be positive"};
  std::vector<double> lam(ext.begin(), ext.end());
  for (double l : lam)
    if (!(l > 0) || !std::isfinite(l)) return analysis_error{"extremum wavelengths must be positive"};
  std::sort(lam.begin(), lam.end(), std::greater<>());  // order m rises as λ falls
  for (std::size_t i = 1; i < lam.size(); ++i)
    if (!(lam[i] < lam[i - 1])) return analysis_error{"two extrema at the same wavelength"};
  std::vector<double> k, inv;
  for (std::size_t i = 0; i < lam.size(); ++i) {
    k.push_back(static_cast<double>(i));
    inv.push_back(1.0 / lam[i]);
  }
  auto f = fit_line(k, inv, 0, k.size());
  if (!(f.slope > 0)) return analysis_error{"extrema do not form an interference series"};
  return 1.0 / (2 * n_index * f.slope);
}

std::vector<double> find_maxima(std::span<const double> x, std::span<const double> y, double min_prominence) {
  std::vector<double> out;
  const std::size_t n = std::min(x.size(), y.size());
  for (std::size_t i = 1; i + 1 < n; ++i) {
    if (!(y[i] > y[i - 1] && y[i] >= y[i + 1])) continue;
    double lmin = y[i], rmin = y[i];
    std::size_t j = i;
    // Each side walks until a higher point or until the prominence is already met.
    while (j > 0 && y[j - 1] <= y[i] && y[i] - lmin < min_prominence) lmin = std::min(lmin, y[--j]);
    j = i;
    while (j + 1 < n && y[j + 1] <= y[i] && y[i] - rmin < min_prominence) rmin = std::min(rmin, y[++j]);
    if (y[i] - std::max(lmin, rmin) < min_prominence) continue;
    // Parabola through the three points around the maximum.
    const double d = y[i - 1] - 2 * y[i] + y[i + 1];
    const double h = (x[i + 1] - x[i - 1]) / 2;
    const double off = d != 0 ? 0.5 * (y[i - 1] - y[i + 1]) / d : 0.0;
    out.push_back(x[i] + std::clamp(off, -1.0, 1.0) * h);
  }
  return out;
}

analysis_result<xps_check> xps_scale_check(std::string_view line, double measured, double tolerance) {
  for (const auto& r : kXpsReferences) {
    if (line != r.line) continue;
    xps_check c;
    c.line = r.line;
    c.measured = measured;
    c.reference = r.binding_energy_ev;
    c.shift = r.binding_energy_ev - measured;
    c.pass = std::isfinite(measured) && std::fabs(c.shift) <= tolerance;
    return c;
  }
  return analysis_error{"unknown XPS reference line '" + std::string(line) + "'"};
}

}  // namespace semilab::parsers
