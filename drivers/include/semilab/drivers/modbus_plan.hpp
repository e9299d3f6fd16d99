#pragma once
// Coalescing: the points to poll become the fewest read requests that respect the protocol
// limits (125 registers, 2000 bits), the device's max_registers / max_bits and max_gap (unused
// registers a request may span between two points). Greedy left to right over each table sorted
// by address is optimal for this interval cover: a request is only closed when the next point
// cannot join it.
#include <semilab/drivers/modbus_map.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace semilab::drivers::modbus {

struct read_request {
  table tab = table::holding;
  std::uint16_t start = 0;
  std::uint16_t count = 0;           // registers or bits
  std::vector<std::size_t> points;   // indices into device_map::points
};

// Plans reads of `which` (indices into map.points; all points when empty).
[[nodiscard]] std::vector<read_request> plan_reads(const device_map& map,
                                                   std::span<const std::size_t> which = {});

// Requests one-request-per-point would need (what coalescing saves against).
[[nodiscard]] std::size_t naive_request_count(const device_map& map,
                                              std::span<const std::size_t> which = {});

// Per-point intervals: points are grouped by interval (a point's own `interval`, else
// `base_interval_s`); each group is due on its own fixed-rate clock. take_due() returns the union
// of the groups due now, which is then read as one coalesced plan, so a slow group never costs a
// request of its own when it falls due with a fast one. A group that fell behind (a poll took
// longer than its interval) is due again one interval after it was taken, never in a burst.
// An interval of 0 means "always due" (back to back, for benches).
class poll_schedule {
 public:
  using clock = std::chrono::steady_clock;
  poll_schedule() = default;
  poll_schedule(const device_map& map, double base_interval_s, clock::time_point start);

  // Indices (ascending) of the points due at `now`; advances their groups. Empty when none is due.
  [[nodiscard]] std::vector<std::size_t> take_due(clock::time_point now);
  // The same into `out` (cleared first), reusing its storage.
  void take_due(clock::time_point now, std::vector<std::size_t>& out);
  [[nodiscard]] clock::time_point next_due() const noexcept;
  // True when the fastest group is among those taken by the last take_due().
  [[nodiscard]] bool last_had_fastest() const noexcept { return last_had_fastest_; }

  struct group {
    clock::duration period{};
    clock::time_point next{};
    std::vector<std::size_t> points;
  };
  [[nodiscard]] const std::vector<group>& groups() const noexcept { return groups_; }

 private:
  std::vector<group> groups_;  // fastest first
  bool last_had_fastest_ = false;
};

}  // namespace semilab::drivers::modbus
