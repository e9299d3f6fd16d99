// Fuzz target: parse_sem_tiff (SEM TIFF files from a watched folder: outside input). Offsets,
// counts and IFD links are all attacker-chosen; the parser must stay inside the buffer.
#include <semilab/parsers/formats.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  auto r = semilab::parsers::parse_sem_tiff(s);
  if (r) {
    if (r->vendor.empty() && !r->meta.empty()) __builtin_trap();
    if (r->pixel_size_m && !std::isfinite(*r->pixel_size_m)) __builtin_trap();
  } else if (r.error().reason.empty()) {  // offsets may name a forged IFD position
    __builtin_trap();
  }
  return 0;
}
