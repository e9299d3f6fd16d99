// Fuzz target: SCPI number parsing (instrument replies).
#include <semilab/schemas/record.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  auto d = semilab::schemas::parse_decimal(s);
  if (d) {
    // The canonical text parses back to the same digits.
    auto again = semilab::schemas::parse_decimal(d->to_string());
    if (!again || !(*again == *d)) __builtin_trap();
  }
  return 0;
}
