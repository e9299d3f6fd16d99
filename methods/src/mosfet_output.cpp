// MOSFET output characteristics ID(VDS) at fixed VGS: on-resistance from the linear region,
// saturation current, output conductance and Early voltage from the saturation region.
#include <algorithm>
#include <cmath>
#include <semilab/methods/mosfet.hpp>

#include "fit.hpp"
#include "window.hpp"

namespace semilab::methods {

using namespace detail;

result<extraction> analyze_mosfet_output(std::span<const idvd_point> points,
                                         const mosfet_output_options& opt) {
  constexpr std::string_view m = "mosfet-idvd";
  const double sgn = opt.polarity == channel::n ? 1.0 : -1.0;
  if (!(opt.vds_lin > 0))
    return make_error(errc::bad_input, "mosfet-idvd: vds_lin must be > 0");
  if (points.empty()) return make_error(errc::insufficient_data, "mosfet-idvd: no points");
  for (const auto& p : points)
    if (!std::isfinite(p.vgs) || !std::isfinite(p.vds))
      return make_error(errc::bad_input, "mosfet-idvd: VGS and VDS must be finite");

  // The curves, by VGS (values within 1 uV are one curve).
  std::vector<double> curves;
  for (const auto& p : points)
    if (std::none_of(curves.begin(), curves.end(),
                     [&](double v) { return std::fabs(v - p.vgs) <= 1e-6; }))
      curves.push_back(p.vgs);
  double vgs = 0;
  if (std::isfinite(opt.vgs)) {
    auto it = std::find_if(curves.begin(), curves.end(),
                           [&](double v) { return std::fabs(v - opt.vgs) <= 1e-6; });
    if (it == curves.end())
      return make_error(errc::bad_input,
                        "mosfet-idvd: no curve at VGS = " + fmt(opt.vgs) + " V in the data");
    vgs = *it;
  } else {
    vgs = *std::max_element(curves.begin(), curves.end(),
                            [&](double a, double b) { return sgn * a < sgn * b; });
  }

  // The curve in sweep order, mirrored into n-channel coordinates.
  std::vector<sample> c;
  for (const auto& p : points)
    if (std::fabs(p.vgs - vgs) <= 1e-6) c.push_back({sgn * p.vds, sgn * p.id, p.quality});
  std::vector<double> xs;
  for (const auto& s : c) xs.push_back(s.x);
  if (monotonic(xs) == 0)
    return make_error(errc::non_monotonic,
                      "mosfet-idvd: VDS of the curve at VGS = " + fmt(vgs) +
                          " V is not strictly monotonic (analyse each direction separately)");
  double vmax = 0;
  for (const auto& s : c)
    if (!flagged(s)) vmax = std::max(vmax, s.x);
  if (!(vmax > 0))
    return make_error(errc::bad_input, std::string("mosfet-idvd: no VDS of the ") +
                                           (sgn > 0 ? "positive" : "negative") +
                                           " polarity in the curve");
  const double vsat = std::isfinite(opt.vds_sat) ? sgn * opt.vds_sat : 0.7 * vmax;
  if (!(vsat > opt.vds_lin))
    return make_error(errc::bad_input, "mosfet-idvd: the saturation window (|VDS| >= " +
                                           fmt(std::fabs(vsat)) +
                                           " V) must lie above the linear one (|VDS| <= " +
                                           fmt(opt.vds_lin) + " V)");

  extraction ex;
  ex.method = std::string(m);
  ex.version = std::string(kMosfetOutputVersion);
  ex.parameters.push_back(param("vgs", vgs, "V"));
  ex.parameters.push_back(param("curves", static_cast<double>(curves.size()), "1"));

  // Linear region: quadratic through the small-VDS points; the VDS coefficient is 1/Ron.
  std::size_t excl_lin = 0;
  auto lin = select_window(
      c, [&](const sample& s) { return s.x >= 0 && s.x <= opt.vds_lin; }, m, &excl_lin);
  if (!lin) return lin.error();
  if (lin->size() < 4)
    return make_error(errc::insufficient_data,
                      "mosfet-idvd: " + std::to_string(lin->size()) +
                          " points with 0 <= |VDS| <= " + fmt(opt.vds_lin) +
                          " V; at least 4 needed for r_on (raise vds_lin or step finer)");
  std::vector<std::vector<double>> X;
  std::vector<double> Y;
  double lo = INFINITY, hi = -INFINITY;
  for (auto i : *lin) {
    X.push_back({1.0, c[i].x, c[i].x * c[i].x});
    Y.push_back(c[i].y);
    lo = std::min(lo, c[i].x);
    hi = std::max(hi, c[i].x);
  }
  auto q = least_squares(X, Y);
  if (!q) return make_error(errc::degenerate_fit, "mosfet-idvd: linear-region fit is singular");
  const double g0 = q->beta[1], se_g0 = q->se(1);
  if (!(g0 > 0))
    return make_error(errc::bad_input,
                      "mosfet-idvd: ID does not rise with VDS near 0 V: the channel is off at "
                      "VGS = " + fmt(vgs) + " V");
  ex.parameters.push_back(param("r_on", 1 / g0, "ohm", se_g0 / (g0 * g0)));
  ex.windows.push_back({"VDS", sgn * lo, sgn * hi, lin->size()});

  // Saturation: straight line through the high-VDS points.
  std::size_t excl_sat = 0;
  auto sat = select_window(
      c, [&](const sample& s) { return s.x >= vsat; }, m, &excl_sat);
  if (!sat) return sat.error();
  if (sat->size() < 3)
    return make_error(errc::insufficient_data,
                      "mosfet-idvd: " + std::to_string(sat->size()) + " points with |VDS| >= " +
                          fmt(std::fabs(vsat)) + " V; at least 3 needed for the saturation fit");
  std::vector<double> sx, sy;
  for (auto i : *sat) {
    sx.push_back(c[i].x);
    sy.push_back(c[i].y);
  }
  auto f = fit_line(sx, sy);
  if (!f) return make_error(errc::degenerate_fit, "mosfet-idvd: saturation fit is singular");
  const double xe = *std::max_element(sx.begin(), sx.end());
  const double idsat = f->intercept + f->slope * xe;
  const double se_idsat = std::sqrt(std::max(
      0.0, f->se_intercept * f->se_intercept + xe * xe * f->se_slope * f->se_slope + 2 * xe * f->cov));
  ex.parameters.push_back(param("id_sat", sgn * idsat, "A", se_idsat));
  ex.parameters.push_back(param("vds_id_sat", sgn * xe, "V"));
  ex.parameters.push_back(param("g_ds", f->slope, "S", f->se_slope));
  ex.windows.push_back({"VDS", sgn * *std::min_element(sx.begin(), sx.end()), sgn * xe, sx.size()});
  if (f->slope > 0) {
    ex.parameters.push_back(param("r_out", 1 / f->slope, "ohm", f->se_slope / (f->slope * f->slope)));
    // VA = a/g: d/da = 1/g, d/dg = -a/g^2.
    const double a = f->intercept, g = f->slope;
    const double va = a / g;
    const double var = f->se_intercept * f->se_intercept / (g * g) +
                       a * a * f->se_slope * f->se_slope / (g * g * g * g) -
                       2 * a * f->cov / (g * g * g);
    if (va > 0)
      ex.parameters.push_back(param("v_early", va, "V", std::sqrt(std::max(0.0, var))));
    else
      ex.warnings.push_back("saturation line meets ID = 0 at positive VDS: no Early voltage");
  } else {
    ex.warnings.push_back("output conductance not positive in the saturation window: no r_out, "
                          "no Early voltage");
  }
  if (f->slope > 0.5 * g0)
    ex.warnings.push_back("no saturation: the slope above |VDS| = " + fmt(std::fabs(vsat)) +
                          " V is more than half the linear-region slope (raise VDS or vds_sat)");
  if (excl_lin + excl_sat > 0)
    ex.warnings.push_back(std::to_string(std::max(excl_lin, excl_sat)) +
                          " flagged point(s) outside the fit windows excluded");
  return ex;
}

}  // namespace semilab::methods
