#include <algorithm>
#include <cmath>
#include <semilab/methods/mosfet.hpp>

#include "fit.hpp"
#include "window.hpp"

namespace semilab::methods {

using namespace detail;

namespace {

// Linear interpolation of y at x0 (x increasing); log_y interpolates ln y.
std::optional<double> interp(const std::vector<double>& x, const std::vector<double>& y, double x0,
                             bool log_y) {
  for (std::size_t i = 0; i + 1 < x.size(); ++i) {
    if (x0 >= x[i] && x0 <= x[i + 1]) {
      const double t = (x0 - x[i]) / (x[i + 1] - x[i]);
      if (log_y) {
        if (!(y[i] > 0 && y[i + 1] > 0)) return std::nullopt;
        return std::exp(std::log(y[i]) + t * (std::log(y[i + 1]) - std::log(y[i])));
      }
      return y[i] + t * (y[i + 1] - y[i]);
    }
  }
  return std::nullopt;
}

}  // namespace

result<extraction> analyze_mosfet_transfer(std::span<const sample> points,
                                           const mosfet_options& opt) {
  constexpr std::string_view m = "mosfet-idvg";
  const double sgn = opt.polarity == channel::n ? 1.0 : -1.0;
  if (!(std::isfinite(opt.vds) && opt.vds != 0))
    return make_error(errc::bad_input, "mosfet-idvg: vds must be given and non-zero");
  if (opt.vds * sgn < 0)
    return make_error(errc::bad_input, "mosfet-idvg: vds " + fmt(opt.vds) +
                                           " V has the wrong sign "
                                           "for a " +
                                           (sgn > 0 ? "n" : "p") + "-channel device");
  if (opt.ss_window < 3)
    return make_error(errc::bad_input, "mosfet-idvg: ss_window must be at least 3 points");
  if ((opt.width > 0) != (opt.length > 0))
    return make_error(errc::bad_input, "mosfet-idvg: give both width and length, or neither");

  std::size_t excluded = 0;
  auto sel = select_window(
      points, [](const sample&) { return true; }, m, &excluded);
  if (!sel) return sel.error();
  if (sel->size() < 5)
    return make_error(errc::insufficient_data, "mosfet-idvg: " + std::to_string(sel->size()) +
                                                   " usable points; at least 5 needed");
  // Mirrored into n-channel coordinates.
  std::vector<double> vg, id;
  for (auto i : *sel) {
    vg.push_back(sgn * points[i].x);
    id.push_back(sgn * points[i].y);
  }
  const int dir = monotonic(vg);
  if (dir == 0)
    return make_error(errc::non_monotonic,
                      "mosfet-idvg: VGS is not strictly monotonic (analyse each direction of a "
                      "dual sweep separately)");
  if (dir < 0) {
    std::reverse(vg.begin(), vg.end());
    std::reverse(id.begin(), id.end());
  }
  const double vds = sgn * opt.vds;
  const double step = (vg.back() - vg.front()) / static_cast<double>(vg.size() - 1);
  const std::size_t half = step < 5e-3 ? 2 : 1;  // short smoothing window for fine steps

  extraction ex;
  ex.method = std::string(m);
  ex.version = std::string(kMosfetVersion);
  if (excluded > 0)
    ex.warnings.push_back(std::to_string(excluded) +
                          " flagged point(s) at the sweep ends excluded");

  // ELR at gm,max.
  auto gm = local_slope(vg, id, half);
  std::size_t im = 0;
  for (std::size_t i = 0; i < gm.size(); ++i)
    if (std::isfinite(gm[i]) && (!std::isfinite(gm[im]) || gm[i] > gm[im])) im = i;
  if (!(gm[im] > 0))
    return make_error(errc::bad_input, "mosfet-idvg: transconductance is nowhere positive");
  if (im == 0 || im + 1 == vg.size())
    ex.warnings.push_back("gm,max at the end of the sweep: extend the VGS range");
  const double von = vg[im] - id[im] / gm[im];
  const double vth_gm = opt.vds_half ? von - vds / 2 : von;
  ex.parameters.push_back(param("gm_max", gm[im], "S"));
  ex.parameters.push_back(param("vgs_gm_max", sgn * vg[im], "V"));
  ex.parameters.push_back(param("v_intercept", sgn * von, "V"));
  ex.parameters.push_back(param("vth_gm", sgn * vth_gm, "V"));
  ex.parameters.push_back(param("vds_half", opt.vds_half ? 1.0 : 0.0, "1"));
  {
    const std::size_t lo = im >= half ? im - half : 0, hi = std::min(vg.size() - 1, im + half);
    ex.windows.push_back({"VGS", sgn * vg[lo], sgn * vg[hi], hi - lo + 1});
  }

  // Constant current, interpolated in ln ID.
  const double scale = opt.width > 0 ? opt.width / opt.length : 1.0;
  if (opt.width <= 0)
    ex.warnings.push_back("no W/L given: constant-current criterion is id0 itself");
  const double level = opt.id0 * scale;
  std::optional<double> vth_cc;
  for (std::size_t i = 0; i + 1 < vg.size(); ++i)
    if (id[i] > 0 && id[i + 1] > 0 && id[i] < level && id[i + 1] >= level) {
      const double t =
          (std::log(level) - std::log(id[i])) / (std::log(id[i + 1]) - std::log(id[i]));
      vth_cc = vg[i] + t * (vg[i + 1] - vg[i]);
      break;
    }
  if (vth_cc)
    ex.parameters.push_back(param("vth_cc", sgn * *vth_cc, "V"));
  else
    ex.warnings.push_back("ID never crosses the constant-current level " + fmt(level) +
                          " A: no vth_cc");

  // Subthreshold swing: minimum of dVGS/dlog10 ID over sliding windows between 10x the noise
  // floor and ID(Vth)/10.
  double floor = opt.noise_floor;
  if (!(floor > 0)) {
    floor = INFINITY;
    for (double v : id)
      if (v > 0) floor = std::min(floor, v);
  }
  const auto id_vth = interp(vg, id, vth_gm, true);
  const double top = id_vth ? *id_vth / 10 : (vth_cc ? level / 10 : 0);
  std::optional<line_fit> best;
  std::size_t best_lo = 0;
  for (std::size_t lo = 0; lo + opt.ss_window <= vg.size(); ++lo) {
    std::vector<double> lx, ly;
    bool ok = true;
    for (std::size_t k = lo; k < lo + opt.ss_window; ++k) {
      if (!(id[k] > 10 * floor && id[k] < top)) {
        ok = false;
        break;
      }
      lx.push_back(std::log10(id[k]));
      ly.push_back(vg[k]);
    }
    if (!ok) continue;
    auto f = fit_line(lx, ly);
    if (f && f->slope > 0 && (!best || f->slope < best->slope)) {
      best = f;
      best_lo = lo;
    }
  }
  if (best) {
    ex.parameters.push_back(param("ss", best->slope, "V/dec", best->se_slope));
    ex.windows.push_back(
        {"VGS", sgn * vg[best_lo], sgn * vg[best_lo + opt.ss_window - 1], opt.ss_window});
    if (best->slope < std::log(10.0) * thermal_voltage(opt.temperature) * 0.98)
      ex.warnings.push_back("SS below the thermal limit ln10*kT/q: check noise and VGS steps");
  } else {
    ex.warnings.push_back("no subthreshold window of " + std::to_string(opt.ss_window) +
                          " points between 10x the noise floor and ID(Vth)/10: no ss");
  }

  // On/off.
  double ion = id.back();
  if (std::isfinite(opt.vgs_on)) {
    auto v = interp(vg, id, sgn * opt.vgs_on, false);
    if (!v)
      return make_error(errc::bad_input,
                        "mosfet-idvg: vgs_on " + fmt(opt.vgs_on) + " V is outside the sweep");
    ion = *v;
  }
  std::optional<double> ioff;
  if (std::isfinite(opt.vgs_off)) ioff = interp(vg, id, sgn * opt.vgs_off, true);
  if (!ioff) {
    if (std::isfinite(opt.vgs_off))
      ex.warnings.push_back(
          "vgs_off outside the sweep or ID not positive there: Ioff is the "
          "minimum ID");
    double mn = INFINITY;
    for (double v : id)
      if (v > 0) mn = std::min(mn, v);
    if (std::isfinite(mn)) ioff = mn;
  }
  ex.parameters.push_back(param("ion", std::fabs(ion), "A"));
  if (ioff && *ioff > 0) {
    ex.parameters.push_back(param("ioff", *ioff, "A"));
    auto p = param("on_off", std::fabs(ion) / *ioff, "1");
    if (opt.range_floor > 0 && *ioff <= opt.range_floor) {
      p.lower_bound = true;
      ex.warnings.push_back("Ioff at the current-range floor: on/off is a lower bound");
    }
    ex.parameters.push_back(p);
  } else {
    ex.warnings.push_back("no positive off current: no on/off ratio");
  }

  if (opt.width > 0 && opt.cox > 0) {
    ex.parameters.push_back(
        param("mobility", gm[im] * opt.length / (opt.width * opt.cox * vds), "m^2/(V*s)"));
  }
  return ex;
}

}  // namespace semilab::methods
