#pragma once
// Sweep points of a recipe: linear (by count), log (same-sign, non-zero ends), or an explicit
// list; dual appends the way back without repeating the turning point.
#include <cstddef>
#include <semilab/methods/error.hpp>
#include <string_view>
#include <vector>

namespace semilab::methods {

enum class sweep_mode { linear, log, list };

struct sweep_spec {
  sweep_mode mode = sweep_mode::linear;
  double start = 0;
  double stop = 0;
  std::size_t points = 0;      // linear and log: >= 2
  std::vector<double> values;  // list: >= 1
  bool dual = false;           // then back to the start
};

inline constexpr std::size_t kMaxSweepPoints = 100000;

// errc::bad_input with the reason (points < 2, log through zero, empty list, non-finite values,
// more than kMaxSweepPoints).
[[nodiscard]] result<std::vector<double>> sweep_points(const sweep_spec& s);

[[nodiscard]] std::string_view to_string(sweep_mode m) noexcept;

}  // namespace semilab::methods
