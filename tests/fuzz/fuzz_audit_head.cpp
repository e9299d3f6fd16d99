// Fuzz target: exported audit head files (read back from outside the database by `audit verify`).
#include <semilab/central/audit.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sc = semilab::schemas;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto pinned =
      sc::parse_public_key_hex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
          .value();
  std::string_view s(reinterpret_cast<const char*>(data), size);
  auto h = semilab::central::decode_head_file(s);
  if (!h) return 0;
  (void)sc::verify_pinned(std::span(&pinned, 1), h->key_id, h->signature,
                          semilab::central::kAuditHeadDomain, semilab::central::head_canonical(*h));
  auto again = semilab::central::decode_head_file(semilab::central::encode_head_file(*h));
  if (!again || semilab::central::head_canonical(*again) != semilab::central::head_canonical(*h))
    __builtin_trap();
  return 0;
}
