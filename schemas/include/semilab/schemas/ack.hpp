#pragma once
// Ack message, central -> agent on semilab/v1/{site}/{agent}/ack. JSON, u64 fields as strings.
#include <semilab/schemas/frame.hpp>
#include <semilab/schemas/signing.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace semilab::schemas {

enum class reject_code : std::uint8_t {
  invalid_frame,   // malformed, checksum mismatch, over limits: resending the same bytes won't help
  agent_mismatch,  // agent id in the frame differs from the topic
  unsupported,     // frame version or codec central cannot read
  quota,           // central refuses for now (storage quota): retry later
  overload,        // central is overloaded: retry later
  internal,        // storage error at central: retry later
  bad_signature,   // signature missing, malformed, by a key not approved, or wrong: do not retry
  unapproved,      // central requires signatures and no key is approved for the agent yet: retry
};
std::string_view to_string(reject_code c) noexcept;
std::optional<reject_code> reject_code_from_string(std::string_view s) noexcept;
bool retryable(reject_code c) noexcept;

struct ack {
  std::string agent_id;
  std::uint64_t store_epoch = 0;
  std::uint64_t batch_id = 0;
  bool stored = true;                // true: ranges durably stored (new or already present)
  std::vector<seq_range> ranges;     // what is now durably stored at central
  reject_code code = reject_code::invalid_frame;  // when !stored
  bool retry = false;                // when !stored: whether resending may succeed
  std::string reason;                // when !stored: human-readable, no secrets
  std::string central_instance;      // which ingest instance answered
  // Ed25519 signature by the key every central instance shares ("kid", "sig" in the JSON);
  // both empty when central has no signing key. See sign_ack / verify_ack.
  std::string key_id;
  std::string signature;  // 128 lowercase hex digits
  // A rejection code this version does not know, and its retry flag, as received (the
  // signature covers them; `code` and `retry` then hold the safe local reading).
  std::string wire_code;
  bool wire_retry = false;
};

inline constexpr std::string_view kAckSigDomain = "semilab-ack-sig-v1";

std::string encode_ack(const ack& a);
result<ack> decode_ack(std::string_view json);

// The bytes an ack signature covers: every field but the signature itself, in a fixed order,
// each string length-prefixed ("semilab-ack-v1\n" then "len:bytes\n" per field), so no two acks
// share them.
std::string canonical_bytes(const ack& a);
// Sets key_id and signature.
void sign_ack(ack& a, const signing_key& key);
// Against the pinned central keys (agent side). An empty `pinned` is the caller's business:
// with no key pinned an agent takes unsigned acks (backward compatible).
pinned_verdict verify_ack(const ack& a, std::span<const ed25519_public_key> pinned);

}  // namespace semilab::schemas
