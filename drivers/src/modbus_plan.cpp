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

poll_schedule::poll_schedule(const device_map& map, double base_interval_s,
                             clock::time_point start) {
  for (std::size_t i = 0; i < map.points.size(); ++i) {
    const double s = map.points[i].interval_s > 0 ? map.points[i].interval_s : base_interval_s;
    auto period = std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(std::max(s, 0.0)));
    auto it = std::find_if(groups_.begin(), groups_.end(), [&](const group& g) { return g.period == period; });
    if (it == groups_.end()) it = groups_.insert(groups_.end(), group{period, start, {}});
    it->points.push_back(i);
  }
  std::sort(groups_.begin(), groups_.end(),
            [](const group& a, const group& b) { return a.period < b.period; });
}

std::vector<std::size_t> poll_schedule::take_due(clock::time_point now) {
  std::vector<std::size_t> out;
  take_due(now, out);
  return out;
}

void poll_schedule::take_due(clock::time_point now, std::vector<std::size_t>& out) {
  out.clear();
  last_had_fastest_ = false;
  std::size_t taken = 0;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    auto& gr = groups_[g];
    if (gr.next > now) continue;
    if (g == 0) last_had_fastest_ = true;
    ++taken;
    out.insert(out.end(), gr.points.begin(), gr.points.end());
    gr.next += gr.period;
    if (gr.next <= now) gr.next = now + gr.period;  // fell behind: no burst of catch-up polls
  }
  if (taken > 1) std::sort(out.begin(), out.end());  // one group's points are in order already
}

poll_schedule::clock::time_point poll_schedule::next_due() const noexcept {
  auto t = clock::time_point::max();
  for (const auto& g : groups_) t = std::min(t, g.next);
  return t;
}

std::size_t naive_request_count(const device_map& map, std::span<const std::size_t> which) {
  return selection(map, which).size();
}

}  // namespace semilab::drivers::modbus
