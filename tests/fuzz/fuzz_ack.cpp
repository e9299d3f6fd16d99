// Fuzz target: ack and presence JSON (outside input at the agent).
#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/state.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  auto a = semilab::schemas::decode_ack(s);
  if (a) {
    auto again = semilab::schemas::decode_ack(semilab::schemas::encode_ack(*a));
    if (!again || again->ranges != a->ranges) __builtin_trap();
  }
  (void)semilab::schemas::decode_presence(s);
  return 0;
}
