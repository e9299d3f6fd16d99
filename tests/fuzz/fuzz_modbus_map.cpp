// Fuzz target: Modbus register map files (TOML text from the user, outside input). Any text either
// parses into a map whose points are consistent, or fails with errc::bad_map and a message; it
// never crashes or throws. A parsed map is planned and its points' values round-trip as text.
#include <semilab/drivers/modbus_error.hpp>
#include <semilab/drivers/modbus_map.hpp>
#include <semilab/drivers/modbus_plan.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace mb = semilab::drivers::modbus;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto m = mb::parse_map(text, "fuzz.toml");
  if (!m) {
    if (m.error().code != mb::make_error_code(mb::errc::bad_map) || m.error().message.empty())
      std::abort();
    return 0;
  }
  for (const auto& p : m->points) {
    if (p.count() == 0 || static_cast<unsigned>(p.address) + p.count() > 65536u) std::abort();
    if (m->find(p.name) == nullptr) std::abort();
  }
  auto plan = mb::plan_reads(*m);
  std::size_t covered = 0;
  for (const auto& r : plan) {
    const unsigned limit = mb::is_bit_table(r.tab) ? 2000u : 125u;
    if (r.count == 0 || r.count > limit) std::abort();
    covered += r.points.size();
  }
  if (covered != m->points.size()) std::abort();
  (void)mb::poll_schedule(*m, 1.0, mb::poll_schedule::clock::time_point{});
  return 0;
}
