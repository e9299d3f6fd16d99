#pragma once
// Coalescing: the points to poll become the fewest read requests that respect the protocol
// limits (125 registers, 2000 bits), the device's max_registers / max_bits and max_gap (unused
// registers a request may span between two points). Greedy left to right over each table sorted
// by address is optimal for this interval cover: a request is only closed when the next point
// cannot join it.
#include <semilab/drivers/modbus_map.hpp>

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

}  // namespace semilab::drivers::modbus
