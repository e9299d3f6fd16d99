// Fuzz target: parse_vamas (instrument export files from a watched folder: outside input).
// Invariants on success: every y channel has one value per x, labels and units per channel.
#include <semilab/parsers/formats.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  auto r = semilab::parsers::parse_vamas(s);
  if (r) {
    if (r->y.empty() || r->y.size() != r->y_labels.size() || r->y.size() != r->y_units.size()) __builtin_trap();
    for (const auto& ch : r->y)
      if (ch.size() != r->x.size()) __builtin_trap();
  } else if (r.error().reason.empty() || r.error().offset > size) {
    __builtin_trap();
  }
  return 0;
}
