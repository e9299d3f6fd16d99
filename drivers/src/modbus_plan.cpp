#include <semilab/drivers/modbus_plan.hpp>

#include <algorithm>
#include <numeric>

namespace semilab::drivers::modbus {

namespace {
std::vector<std::size_t> selection(const device_map& map, std::span<const std::size_t> which) {
  std::vector<std::size_t> idx(which.begin(), which.end());
  if (idx.empty()) {
    idx.resize(map.points.size());
    std::iota(idx.begin(), idx.end(), std::size_t{0});
  }
  std::sort(idx.begin(), idx.end());
  idx.erase(std::unique(idx.begin(), idx.end()), idx.end());
  return idx;
}
}  // namespace

std::vector<read_request> plan_reads(const device_map& map, std::span<const std::size_t> which) {
  auto idx = selection(map, which);
  std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
    const auto &pa = map.points[a], &pb = map.points[b];
    if (pa.tab != pb.tab) return pa.tab < pb.tab;
    return pa.address < pb.address;
  });
  std::vector<read_request> out;
  unsigned end = 0;  // one past the last register/bit of the open request
  for (auto i : idx) {
    const point& p = map.points[i];
    const unsigned limit = is_bit_table(p.tab) ? std::min(map.max_bits, 2000u)
                                               : std::min(map.max_registers, 125u);
    const unsigned p_end = static_cast<unsigned>(p.address) + p.count();
    if (!out.empty()) {
      auto& r = out.back();
      const bool same_table = r.tab == p.tab;
      const unsigned gap = p.address > end ? p.address - end : 0;
      const unsigned new_end = std::max(end, p_end);
      if (same_table && gap <= map.max_gap && new_end - r.start <= limit) {
        end = new_end;
        r.count = static_cast<std::uint16_t>(end - r.start);
        r.points.push_back(i);
        continue;
      }
    }
    out.push_back(read_request{p.tab, p.address, static_cast<std::uint16_t>(p.count()), {i}});
    end = p_end;
  }
  return out;
}

std::size_t naive_request_count(const device_map& map, std::span<const std::size_t> which) {
  return selection(map, which).size();
}

}  // namespace semilab::drivers::modbus
