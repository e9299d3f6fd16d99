// Single-peak Levenberg–Marquardt fit (K. Levenberg 1944, D. Marquardt 1963; the damping on the
// diagonal of JᵀJ as in Numerical Recipes §15.5). At most 6 parameters: the normal equations
// are solved directly by Gaussian elimination with partial pivoting.
#include <semilab/parsers/edge.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <numbers>

namespace semilab::parsers {

void throw_exception_from_error(const analysis_error& e, const boost::source_location&) {
  throw std::runtime_error(e.reason);
}

namespace {
constexpr double kLn2 = std::numbers::ln2;
constexpr std::size_t kMaxP = 6;
using vec = std::array<double, kMaxP>;
using mat = std::array<vec, kMaxP>;

// Solves a·x = b for the leading n×n block; false when singular.
bool solve(mat a, vec b, std::size_t n, vec& x) {
  for (std::size_t c = 0; c < n; ++c) {
    std::size_t piv = c;
    for (std::size_t r = c + 1; r < n; ++r)
      if (std::fabs(a[r][c]) > std::fabs(a[piv][c])) piv = r;
    if (!(std::fabs(a[piv][c]) > 1e-300)) return false;
    std::swap(a[c], a[piv]);
    std::swap(b[c], b[piv]);
    for (std::size_t r = c + 1; r < n; ++r) {
      double f = a[r][c] / a[c][c];
      for (std::size_t k = c; k < n; ++k) a[r][k] -= f * a[c][k];
      b[r] -= f * b[c];
    }
  }
  for (std::size_t c = n; c-- > 0;) {
    double s = b[c];
    for (std::size_t k = c + 1; k < n; ++k) s -= a[c][k] * x[k];
    x[c] = s / a[c][c];
  }
  return true;
}

struct model {
  peak_shape shape;
  double xm;  // baseline reference point (window mean), fixed during the fit
  std::size_t np() const { return shape == peak_shape::pseudo_voigt ? 6 : 5; }
  // p = {A, center, fwhm, b0, b1, eta}
  double eval(const vec& p, double x, vec* grad) const {
    const double u = (x - p[1]) / p[2];
    const double g = std::exp(-4 * kLn2 * u * u);
    const double l = 1.0 / (1.0 + 4 * u * u);
    const double eta = shape == peak_shape::gaussian ? 0.0 : shape == peak_shape::lorentzian ? 1.0 : p[5];
    const double prof = eta * l + (1 - eta) * g;
    if (grad) {
      const double dprof = eta * (-8 * u * l * l) + (1 - eta) * (-8 * kLn2 * u * g);
      (*grad)[0] = prof;
      (*grad)[1] = p[0] * dprof * (-1.0 / p[2]);
      (*grad)[2] = p[0] * dprof * (-u / p[2]);
      (*grad)[3] = 1;
      (*grad)[4] = x - xm;
      (*grad)[5] = p[0] * (l - g);
    }
    return p[0] * prof + p[3] + p[4] * (x - xm);
  }
};

double chi2(const model& m, const vec& p, std::span<const double> x, std::span<const double> y) {
  double s = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    double r = y[i] - m.eval(p, x[i], nullptr);
    s += r * r;
  }
  return s;
}
}  // namespace

analysis_result<peak_fit> fit_peak(std::span<const double> xs, std::span<const double> ys, const peak_fit_options& opt) {
  if (xs.size() != ys.size()) return analysis_error{"x and y differ in length"};
  std::vector<double> x, y;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    if (xs[i] < opt.x_min || xs[i] > opt.x_max) continue;
    if (!std::isfinite(xs[i]) || !std::isfinite(ys[i])) return analysis_error{"non-finite value at point " + std::to_string(i)};
    x.push_back(xs[i]);
    y.push_back(ys[i]);
  }
  model m{opt.shape, 0};
  if (x.size() < m.np() + 3) return analysis_error{"fewer than " + std::to_string(m.np() + 3) + " points in the fit window"};
  // Sort by x (files may list descending energies, e.g. XPS binding energy).
  std::vector<std::size_t> idx(x.size());
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](auto a, auto b) { return x[a] < x[b]; });
  {
    std::vector<double> x2(x.size()), y2(y.size());
    for (std::size_t i = 0; i < idx.size(); ++i) { x2[i] = x[idx[i]]; y2[i] = y[idx[i]]; }
    x.swap(x2);
    y.swap(y2);
  }
  const std::size_t n = x.size();
  if (!(x.back() > x.front())) return analysis_error{"fit window has no x extent"};
  for (double v : x) m.xm += v;
  m.xm /= static_cast<double>(n);

  // Initial values: baseline through the means of the three outermost points on each side.
  const std::size_t e = std::min<std::size_t>(3, n / 4);
  double xl = 0, yl = 0, xr = 0, yr = 0;
  for (std::size_t i = 0; i < e; ++i) {
    xl += x[i]; yl += y[i]; xr += x[n - 1 - i]; yr += y[n - 1 - i];
  }
  xl /= static_cast<double>(e); yl /= static_cast<double>(e); xr /= static_cast<double>(e); yr /= static_cast<double>(e);
  const double b1 = (yr - yl) / (xr - xl);
  auto base = [&](double xv) { return yl + b1 * (xv - xl); };
  std::size_t imax = 0;
  for (std::size_t i = 1; i < n; ++i)
    if (y[i] - base(x[i]) > y[imax] - base(x[imax])) imax = i;
  const double a0 = y[imax] - base(x[imax]);
  if (!(a0 > 0)) return analysis_error{"no peak above the baseline in the fit window"};
  auto cross = [&](std::size_t i, int dir) {
    while (true) {
      if ((dir < 0 && i == 0) || (dir > 0 && i + 1 >= n)) return x[i];
      const std::size_t j = dir < 0 ? i - 1 : i + 1;
      double hj = y[j] - base(x[j]), hi = y[i] - base(x[i]);
      if (hj < a0 / 2) return x[i] + (x[j] - x[i]) * (hi - a0 / 2) / (hi - hj);
      i = j;
    }
  };
  double w0 = cross(imax, +1) - cross(imax, -1);
  const double span = x.back() - x.front();
  if (!(w0 > 0)) w0 = span / static_cast<double>(n) * 3;
  vec p{a0, x[imax], w0, base(x[imax]) + b1 * (m.xm - x[imax]), b1, 0.5};
  const std::size_t np = m.np();

  double lambda = 1e-3;
  double c2 = chi2(m, p, x, y);
  int it = 0;
  mat jtj{};
  for (; it < opt.max_iterations; ++it) {
    jtj = {};
    vec jtr{};
    for (std::size_t i = 0; i < n; ++i) {
      vec g{};
      double r = y[i] - m.eval(p, x[i], &g);
      for (std::size_t a = 0; a < np; ++a) {
        jtr[a] += g[a] * r;
        for (std::size_t b = 0; b <= a; ++b) jtj[a][b] += g[a] * g[b];
      }
    }
    for (std::size_t a = 0; a < np; ++a)
      for (std::size_t b = a + 1; b < np; ++b) jtj[a][b] = jtj[b][a];
    bool improved = false;
    double new_c2 = c2;
    for (int tries = 0; tries < 30 && !improved; ++tries) {
      mat aug = jtj;
      for (std::size_t a = 0; a < np; ++a) aug[a][a] += lambda * (jtj[a][a] > 0 ? jtj[a][a] : 1.0);
      vec d{};
      if (!solve(aug, jtr, np, d)) {
        lambda *= 10;
        continue;
      }
      vec q = p;
      for (std::size_t a = 0; a < np; ++a) q[a] += d[a];
      if (np == 6) q[5] = std::clamp(q[5], 0.0, 1.0);
      if (!(q[2] > 0) || q[2] > 10 * span || q[1] < x.front() - span || q[1] > x.back() + span) {
        lambda *= 10;
        continue;
      }
      new_c2 = chi2(m, q, x, y);
      if (std::isfinite(new_c2) && new_c2 <= c2) {
        p = q;
        improved = true;
        lambda = std::max(lambda / 10, 1e-12);
      } else {
        lambda *= 10;
      }
    }
    if (!improved) break;  // no step lowers χ² any more: at the minimum (or stuck)
    const double rel = (c2 - new_c2) / std::max(c2, 1e-300);
    c2 = new_c2;
    if (rel < 1e-12) break;
  }
  if (!(p[0] > 0)) return analysis_error{"fit converged to a non-positive peak"};
  if (p[1] < x.front() || p[1] > x.back()) return analysis_error{"fitted centre lies outside the fit window"};

  peak_fit f;
  f.center = p[1];
  f.fwhm = std::fabs(p[2]);
  f.amplitude = p[0];
  f.eta = opt.shape == peak_shape::gaussian ? 0.0 : opt.shape == peak_shape::lorentzian ? 1.0 : p[5];
  const double area_g = p[0] * f.fwhm * std::sqrt(std::numbers::pi / (4 * kLn2));
  const double area_l = p[0] * f.fwhm * std::numbers::pi / 2;
  f.area = f.eta * area_l + (1 - f.eta) * area_g;
  f.baseline_slope = p[4];
  f.baseline_offset = p[3] + p[4] * (p[1] - m.xm);
  f.rms_residual = std::sqrt(c2 / static_cast<double>(n));
  f.iterations = it;
  f.points = n;
  // Parameter σ from (JᵀJ)⁻¹ · χ²/(n − p).
  const double s2 = c2 / static_cast<double>(n - np);
  for (std::size_t k : {std::size_t{1}, std::size_t{2}}) {
    vec unit{}, col{};
    unit[k] = 1;
    if (solve(jtj, unit, np, col) && col[k] >= 0) (k == 1 ? f.center_sigma : f.fwhm_sigma) = std::sqrt(col[k] * s2);
  }
  return f;
}

}  // namespace semilab::parsers
