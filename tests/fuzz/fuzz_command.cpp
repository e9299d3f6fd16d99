// Fuzz target: commands on the cmd topic (outside input at the agent), with an HMAC and/or
// central's Ed25519 signature, through decoding and both verification paths.
#include <semilab/schemas/command.hpp>
#include <semilab/schemas/signing.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sc = semilab::schemas;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto pinned =
      sc::parse_public_key_hex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
          .value();
  std::string_view s(reinterpret_cast<const char*>(data), size);
  auto c = sc::decode_command(s);
  if (!c) return 0;
  (void)sc::verify_command(*c, "0123456789abcdef", 1'700'000'000'000'000'000);
  (void)sc::verify_command(*c, "", std::span(&pinned, 1), 1'700'000'000'000'000'000);
  // What decodes re-encodes to the same command.
  auto again = sc::decode_command(sc::encode_command(c->cmd, "0123456789abcdef"));
  if (!again || sc::canonical_bytes(again->cmd) != sc::canonical_bytes(c->cmd)) __builtin_trap();
  return 0;
}
