#pragma once
// Prometheus text exposition (format 0.0.4) and the fixed-bucket latency histogram the runners
// keep. The writer emits each family's # HELP / # TYPE once, then its samples; label values
// are escaped (\\, \", \n). Names are listed in docs/agent-status.md.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace semilab::agent::metrics {

// Cumulative histogram of durations in seconds. Bounds suit instrument round trips: 0.5 ms..10 s.
struct latency_histogram {
  static constexpr std::array<double, 14> kBounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                     0.05,   0.1,   0.25,   0.5,   1.0,  2.5,
                                                     5.0,   10.0};
  std::array<std::uint64_t, kBounds.size()> buckets{};  // per bucket (not cumulative)
  std::uint64_t count = 0;
  double sum = 0;
  void observe(double seconds) noexcept;
};

using labels = std::vector<std::pair<std::string, std::string>>;

class exposition {
 public:
  enum class type { counter, gauge, histogram };
  // Starts a family; samples added until the next family() belong to it.
  void family(std::string_view name, type t, std::string_view help);
  void sample(const labels& l, double v);
  void sample(double v) { sample({}, v); }
  void histogram(const labels& l, const latency_histogram& h);
  const std::string& text() const noexcept { return out_; }

 private:
  void line(std::string_view suffix, const labels& l, const std::pair<std::string, std::string>* extra,
            double v);
  std::string out_;
  std::string name_;
};

std::string escape_label(std::string_view v);
std::string format_value(double v);  // Go-style: +Inf, -Inf, NaN, shortest round-trip digits

}  // namespace semilab::agent::metrics
