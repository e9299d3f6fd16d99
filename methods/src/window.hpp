#pragma once
// Fit-window selection shared by the methods: which points enter, and the rule that a flagged
// point inside the window fails the extraction.
#include <span>
#include <string_view>

#include "fit.hpp"

namespace semilab::methods::detail {

// indices (sweep order) of the unflagged points for which in_window(point) holds. Fails with
// flagged_in_window when a flagged point's sweep position lies between the first and last
// selected point; counts flagged points left outside in *excluded.
template <class Pred>
result<std::vector<std::size_t>> select_window(std::span<const sample> pts, Pred in_window,
                                               std::string_view method, std::size_t* excluded) {
  std::vector<std::size_t> idx;
  for (std::size_t i = 0; i < pts.size(); ++i)
    if (!flagged(pts[i]) && in_window(pts[i])) idx.push_back(i);
  std::size_t out = 0;
  for (std::size_t i = 0; i < pts.size(); ++i) {
    if (!flagged(pts[i])) continue;
    if (!idx.empty() && i > idx.front() && i < idx.back()) {
      const auto q = effective_quality(pts[i]);
      return make_error(errc::flagged_in_window,
                        std::string(method) + ": point " + std::to_string(i) +
                            " (x = " + fmt(pts[i].x) + ", y = " + fmt(pts[i].y) + ") is " +
                            ((q & schemas::quality::compliance) ? "compliance" : "over-range") +
                            "-flagged inside the fit window");
    }
    ++out;
  }
  if (excluded) *excluded = out;
  return idx;
}

}  // namespace semilab::methods::detail
