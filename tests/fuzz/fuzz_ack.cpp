// Fuzz target: ack and presence JSON (outside input at the agent).
#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/state.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  static const auto pinned = semilab::schemas::parse_public_key_hex(
                                  "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
                                  .value();
  auto a = semilab::schemas::decode_ack(s);
  if (a) {
    auto again = semilab::schemas::decode_ack(semilab::schemas::encode_ack(*a));
    if (!again || again->ranges != a->ranges) __builtin_trap();
    // The signature fields survive a round trip, and so do the bytes they cover.
    if (again->signature != a->signature ||
        semilab::schemas::canonical_bytes(*again) != semilab::schemas::canonical_bytes(*a))
      __builtin_trap();
    (void)semilab::schemas::verify_ack(*a, std::span(&pinned, 1));
  }
  (void)semilab::schemas::decode_presence(s);
  return 0;
}
