#include <cassert>
#include <cmath>
#include <cstdio>
#include <semilab/schemas/record.hpp>

#include "fit.hpp"

namespace semilab::methods {

bool flagged(const sample& s) noexcept {
  return (effective_quality(s) & (schemas::quality::compliance | schemas::quality::over_range)) !=
         0;
}

std::uint32_t effective_quality(const sample& s) noexcept {
  std::uint32_t q = s.quality;
  auto bad = [](double v) { return !std::isfinite(v) || std::fabs(v) >= 9.9e37; };
  if (bad(s.x) || bad(s.y)) q |= schemas::quality::over_range;
  return q;
}

const parameter* extraction::find(std::string_view name) const noexcept {
  for (auto& p : parameters)
    if (p.name == name) return &p;
  return nullptr;
}

double extraction::value(std::string_view name) const noexcept {
  const parameter* p = find(name);
  assert(p != nullptr);
  return p ? p->value : std::nan("");
}

customary_value to_customary(const parameter& p) {
  struct conv {
    std::string_view si;
    double factor;
    std::string_view unit;
  };
  static constexpr conv table[] = {
      {"m^-3", 1e-6, "cm^-3"},      {"m^-2", 1e-4, "cm^-2"},  {"m^2/(V*s)", 1e4, "cm^2/(V*s)"},
      {"V/dec", 1e3, "mV/dec"},     {"ohm*m", 1e2, "ohm*cm"}, {"m^3/C", 1e6, "cm^3/C"},
      {"ohm*m^2", 1e4, "ohm*cm^2"}, {"F", 1e12, "pF"},        {"F/m^2", 1e-4, "F/cm^2"},
  };
  customary_value out{p.value, p.uncertainty, p.unit};
  double f = 1;
  std::string_view unit = p.unit;
  for (auto& c : table)
    if (c.si == p.unit) {
      f = c.factor;
      unit = c.unit;
    }
  if (p.unit == "m") {  // oxide thicknesses and Debye lengths in nm, lengths in um
    const bool thin = std::fabs(p.value) < 1e-6;
    f = thin ? 1e9 : 1e6;
    unit = thin ? "nm" : "um";
  }
  out.value = p.value * f;
  if (p.uncertainty) out.uncertainty = *p.uncertainty * f;
  out.unit = std::string(unit);
  return out;
}

void apply_calibration(extraction& e, std::optional<std::chrono::sys_days> due,
                       std::chrono::sys_days today) {
  if (!due || *due >= today) return;
  e.quality |= schemas::quality::non_traceable;
  const std::chrono::year_month_day d{*due};
  char buf[96];
  std::snprintf(
      buf, sizeof buf, "instrument calibration was due %04d-%02u-%02u: result is not traceable",
      static_cast<int>(d.year()), static_cast<unsigned>(d.month()), static_cast<unsigned>(d.day()));
  e.warnings.emplace_back(buf);
}

namespace detail {

double lsq_fit::se(std::size_t j) const {
  return std::sqrt(std::max(0.0, cov[j][j]));
}

std::optional<lsq_fit> least_squares(const std::vector<std::vector<double>>& x,
                                     const std::vector<double>& y) {
  const std::size_t n = y.size();
  if (n == 0 || x.size() != n) return std::nullopt;
  const std::size_t k = x[0].size();
  if (k == 0 || n < k) return std::nullopt;
  // Columns, scaled to unit norm.
  std::vector<std::vector<double>> q(k, std::vector<double>(n));
  std::vector<double> scale(k, 0);
  for (std::size_t j = 0; j < k; ++j) {
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += x[i][j] * x[i][j];
    s = std::sqrt(s);
    if (!(s > 0) || !std::isfinite(s)) return std::nullopt;
    scale[j] = s;
    for (std::size_t i = 0; i < n; ++i) q[j][i] = x[i][j] / s;
  }
  // Modified Gram-Schmidt: Q (n x k), R (k x k upper).
  std::vector<std::vector<double>> r(k, std::vector<double>(k, 0));
  for (std::size_t j = 0; j < k; ++j) {
    for (std::size_t p = 0; p < j; ++p) {
      double d = 0;
      for (std::size_t i = 0; i < n; ++i) d += q[p][i] * q[j][i];
      r[p][j] = d;
      for (std::size_t i = 0; i < n; ++i) q[j][i] -= d * q[p][i];
    }
    double nn = 0;
    for (std::size_t i = 0; i < n; ++i) nn += q[j][i] * q[j][i];
    nn = std::sqrt(nn);
    if (nn < 1e-12) return std::nullopt;  // collinear columns
    r[j][j] = nn;
    for (std::size_t i = 0; i < n; ++i) q[j][i] /= nn;
  }
  std::vector<double> qty(k, 0);
  for (std::size_t j = 0; j < k; ++j)
    for (std::size_t i = 0; i < n; ++i) qty[j] += q[j][i] * y[i];
  // Back substitution R b = Q^T y; R^-1 for the covariance.
  std::vector<double> b(k, 0);
  for (std::size_t jj = k; jj-- > 0;) {
    double s = qty[jj];
    for (std::size_t p = jj + 1; p < k; ++p) s -= r[jj][p] * b[p];
    b[jj] = s / r[jj][jj];
  }
  std::vector<std::vector<double>> rinv(k, std::vector<double>(k, 0));
  for (std::size_t c = 0; c < k; ++c) {
    for (std::size_t jj = k; jj-- > 0;) {
      double s = (jj == c) ? 1.0 : 0.0;
      for (std::size_t p = jj + 1; p < k; ++p) s -= r[jj][p] * rinv[p][c];
      rinv[jj][c] = s / r[jj][jj];
    }
  }
  lsq_fit f;
  f.beta.resize(k);
  for (std::size_t j = 0; j < k; ++j) f.beta[j] = b[j] / scale[j];
  for (std::size_t i = 0; i < n; ++i) {
    double pred = 0;
    for (std::size_t j = 0; j < k; ++j) pred += f.beta[j] * x[i][j];
    f.ssr += (y[i] - pred) * (y[i] - pred);
  }
  f.dof = n - k;
  const double sigma2 = f.dof > 0 ? f.ssr / static_cast<double>(f.dof) : 0.0;
  f.cov.assign(k, std::vector<double>(k, 0));
  for (std::size_t a = 0; a < k; ++a)
    for (std::size_t c = 0; c < k; ++c) {
      double s = 0;
      for (std::size_t p = 0; p < k; ++p) s += rinv[a][p] * rinv[c][p];
      f.cov[a][c] = sigma2 * s / (scale[a] * scale[c]);
    }
  return f;
}

std::optional<line_fit> fit_line(const std::vector<double>& x, const std::vector<double>& y) {
  std::vector<std::vector<double>> m;
  m.reserve(x.size());
  for (double v : x) m.push_back({v, 1.0});
  auto f = least_squares(m, y);
  if (!f) return std::nullopt;
  line_fit l;
  l.slope = f->beta[0];
  l.intercept = f->beta[1];
  l.se_slope = f->se(0);
  l.se_intercept = f->se(1);
  l.cov = f->cov[0][1];
  l.ssr = f->ssr;
  l.n = x.size();
  return l;
}

std::vector<double> local_slope(const std::vector<double>& x, const std::vector<double>& y,
                                std::size_t half) {
  const std::size_t n = x.size();
  std::vector<double> d(n, std::nan(""));
  if (n < 2) return d;
  for (std::size_t i = 0; i < n; ++i) {
    std::size_t lo = i >= half ? i - half : 0;
    std::size_t hi = std::min(n - 1, i + half);
    double mx = 0, my = 0;
    for (std::size_t j = lo; j <= hi; ++j) {
      mx += x[j];
      my += y[j];
    }
    const double cnt = static_cast<double>(hi - lo + 1);
    mx /= cnt;
    my /= cnt;
    double sxy = 0, sxx = 0;
    for (std::size_t j = lo; j <= hi; ++j) {
      sxy += (x[j] - mx) * (y[j] - my);
      sxx += (x[j] - mx) * (x[j] - mx);
    }
    if (sxx > 0) d[i] = sxy / sxx;
  }
  return d;
}

int monotonic(const std::vector<double>& x) {
  if (x.size() < 2) return 0;
  bool inc = true, dec = true;
  for (std::size_t i = 1; i < x.size(); ++i) {
    if (!(x[i] > x[i - 1])) inc = false;
    if (!(x[i] < x[i - 1])) dec = false;
  }
  return inc ? 1 : (dec ? -1 : 0);
}

parameter param(std::string name, double value, std::string unit,
                std::optional<double> uncertainty) {
  parameter p;
  p.name = std::move(name);
  p.value = value;
  p.unit = std::move(unit);
  p.uncertainty = uncertainty;
  return p;
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace detail
}  // namespace semilab::methods
