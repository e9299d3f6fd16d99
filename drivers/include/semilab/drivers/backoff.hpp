#pragma once
// Reconnect delays: exponential from `initial` doubling up to `max`, with jitter so that many
// agents (or instruments behind one gateway) do not reconnect in lock-step. Each delay is drawn
// uniformly from [d/2, d] where d is the current exponential step ("equal jitter": never less
// than half the step, so a dead instrument is not hammered). reset() after a success.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace semilab::drivers {

class reconnect_backoff {
 public:
  static constexpr std::chrono::milliseconds kInitial{100};
  static constexpr std::chrono::milliseconds kMax{30000};

  explicit reconnect_backoff(std::uint64_t seed = std::random_device{}(),
                             std::chrono::milliseconds initial = kInitial,
                             std::chrono::milliseconds max = kMax) noexcept
      : rng_(seed), initial_(initial), max_(max), step_(initial) {}

  // The delay before the next attempt; grows the step for the one after.
  std::chrono::milliseconds next() noexcept {
    auto d = step_;
    step_ = std::min(max_, step_ * 2);
    ++failures_;
    std::uniform_int_distribution<std::int64_t> pick(d.count() / 2, d.count());
    return std::chrono::milliseconds(pick(rng_));
  }
  void reset() noexcept {
    step_ = initial_;
    failures_ = 0;
  }
  [[nodiscard]] unsigned failures() const noexcept { return failures_; }

 private:
  std::mt19937_64 rng_;
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds max_;
  std::chrono::milliseconds step_;
  unsigned failures_ = 0;
};

}  // namespace semilab::drivers
