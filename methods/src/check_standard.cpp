// Check standard: a reference resistor measured on a schedule (control chart, instrument health).
#include <algorithm>
#include <cmath>
#include <semilab/methods/resistivity.hpp>

#include "fit.hpp"

namespace semilab::methods {

using namespace detail;

result<extraction> analyze_check_standard(std::span<const sample> readings,
                                          const check_standard_options& opt) {
  if (!(opt.nominal > 0) || !std::isfinite(opt.nominal))
    return make_error(errc::bad_input, "check-standard: nominal must be > 0 ohm");
  if (!(opt.tolerance >= 0))
    return make_error(errc::bad_input, "check-standard: tolerance must not be negative");
  std::vector<double> i, v;
  std::size_t excluded = 0;
  for (const auto& s : readings) {
    if (flagged(s)) {
      ++excluded;
      continue;
    }
    i.push_back(s.x);
    v.push_back(s.y);
  }
  std::vector<double> levels = i;
  std::sort(levels.begin(), levels.end());
  levels.erase(std::unique(levels.begin(), levels.end()), levels.end());
  if (i.empty() || (levels.size() == 1 && levels[0] == 0))
    return make_error(errc::insufficient_data,
                      "check-standard: no unflagged reading with a non-zero current");
  double r = 0, se = 0;
  std::string how;
  if (levels.size() >= 2) {
    auto f = fit_line(i, v);
    if (!f) return make_error(errc::degenerate_fit, "check-standard: V(I) fit is singular");
    r = f->slope;
    se = f->se_slope;
    how = "slope of V(I) over " + std::to_string(levels.size()) + " current levels";
  } else {
    std::vector<double> ratio;
    for (std::size_t k = 0; k < i.size(); ++k) ratio.push_back(v[k] / i[k]);
    double mean = 0;
    for (double x : ratio) mean += x;
    mean /= static_cast<double>(ratio.size());
    double ss = 0;
    for (double x : ratio) ss += (x - mean) * (x - mean);
    r = mean;
    se = ratio.size() > 1
             ? std::sqrt(ss / static_cast<double>(ratio.size() - 1) / static_cast<double>(ratio.size()))
             : 0;
    how = "mean of V/I over " + std::to_string(ratio.size()) + " reading(s) at one current";
  }
  if (!(r > 0) || !std::isfinite(r))
    return make_error(errc::bad_input,
                      "check-standard: measured resistance " + fmt(r) + " ohm is not positive");
  extraction ex;
  ex.method = "check-standard";
  ex.version = std::string(kCheckStandardVersion);
  ex.parameters.push_back(param("r", r, "ohm", se));
  ex.parameters.push_back(param("nominal", opt.nominal, "ohm"));
  ex.parameters.push_back(param("deviation", r - opt.nominal, "ohm", se));
  const double rel = (r - opt.nominal) / opt.nominal;
  ex.parameters.push_back(param("deviation_rel", rel, "1", se / opt.nominal));
  ex.windows.push_back({"I", levels.front(), levels.back(), i.size()});
  if (levels.size() == 1 && i.size() == 1)
    ex.warnings.push_back("one reading at one current: no uncertainty from repeatability and no "
                          "cancellation of thermo-EMF offsets (measure at +I and -I)");
  if (excluded > 0) ex.warnings.push_back(std::to_string(excluded) + " flagged reading(s) excluded");
  if (opt.tolerance > 0 && std::fabs(rel) - se / opt.nominal > opt.tolerance)
    ex.warnings.push_back("out of tolerance: deviation " + fmt(rel * 1e6) + " ppm exceeds " +
                          fmt(opt.tolerance * 1e6) + " ppm (" + how + ")");
  return ex;
}

}  // namespace semilab::methods
