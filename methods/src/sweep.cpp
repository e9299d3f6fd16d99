#include <cmath>
#include <semilab/methods/sweep.hpp>
#include <string>

namespace semilab::methods {

std::string_view to_string(sweep_mode m) noexcept {
  switch (m) {
    case sweep_mode::linear:
      return "linear";
    case sweep_mode::log:
      return "log";
    case sweep_mode::list:
      return "list";
  }
  return "?";
}

result<std::vector<double>> sweep_points(const sweep_spec& s) {
  std::vector<double> pts;
  if (s.mode == sweep_mode::list) {
    if (s.values.empty()) return make_error(errc::bad_input, "sweep: list sweep without values");
    for (double v : s.values)
      if (!std::isfinite(v)) return make_error(errc::bad_input, "sweep: list value not finite");
    pts = s.values;
  } else {
    if (!std::isfinite(s.start) || !std::isfinite(s.stop))
      return make_error(errc::bad_input, "sweep: start and stop must be finite");
    if (s.points < 2)
      return make_error(errc::bad_input, "sweep: " + std::string(to_string(s.mode)) +
                                             " sweep needs at least 2 points");
    if (s.points > kMaxSweepPoints)
      return make_error(errc::bad_input,
                        "sweep: more than " + std::to_string(kMaxSweepPoints) + " points");
    const double last = static_cast<double>(s.points - 1);
    if (s.mode == sweep_mode::linear) {
      for (std::size_t i = 0; i < s.points; ++i)
        pts.push_back(s.start + (s.stop - s.start) * (static_cast<double>(i) / last));
    } else {
      if (s.start == 0 || s.stop == 0 || (s.start > 0) != (s.stop > 0))
        return make_error(errc::bad_input,
                          "sweep: log sweep ends must be non-zero and of the same sign");
      const double sg = s.start > 0 ? 1.0 : -1.0;
      const double a = std::log10(std::fabs(s.start)), b = std::log10(std::fabs(s.stop));
      for (std::size_t i = 0; i < s.points; ++i)
        pts.push_back(sg * std::pow(10.0, a + (b - a) * (static_cast<double>(i) / last)));
    }
    pts.front() = s.start;  // exact ends, no rounding drift
    pts.back() = s.stop;
  }
  if (s.dual) {
    const std::size_t n = pts.size();
    for (std::size_t i = n - 1; i-- > 0;) pts.push_back(pts[i]);
  }
  if (pts.size() > kMaxSweepPoints)
    return make_error(errc::bad_input,
                      "sweep: more than " + std::to_string(kMaxSweepPoints) + " points");
  return pts;
}

}  // namespace semilab::methods
