#pragma once
// Commands central -> agent on semilab/v1/{site}/{agent}/cmd (schemas/WIRE.md, "Commands").
// JSON, u64 fields as strings, authenticated over the canonical bytes by
// - an Ed25519 signature ("kid", "sig") with the key every central instance shares
//   ([central] signing_key_file), which agents pin ([sync] central_public_keys), and/or
// - HMAC-SHA256 ("mac") with a secret shared by agent and central (command_key_file), the
//   original scheme, still accepted by an agent that pins no central key.
// An agent that pins a key requires the signature and ignores the MAC.
#include <semilab/schemas/error.hpp>
#include <semilab/schemas/signing.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace semilab::schemas {

// A command older (or further in the future) than this is refused as stale; the agent also
// refuses a nonce it has already accepted within the window.
inline constexpr std::chrono::seconds kCommandWindow{120};
inline constexpr std::size_t kCommandKeyMinBytes = 16;

// Re-send retained records [from, to] of store epoch `store_epoch` (central dedups).
struct replay_command {
  std::string agent_id;
  std::uint64_t store_epoch = 0;
  std::uint64_t from = 0;
  std::uint64_t to = 0;  // inclusive
  std::int64_t issued_ns = 0;  // UTC ns, by the issuer's clock
  std::string nonce;           // 32 lowercase hex digits, random per command
};

// The bytes the MAC covers, one field per line in a fixed order:
// "semilab-cmd-v1\nreplay\n{agent}\n{epoch}\n{from}\n{to}\n{issued_ns}\n{nonce}".
std::string canonical_bytes(const replay_command& c);
// HMAC-SHA256 of the canonical bytes, 64 lowercase hex digits.
std::string command_mac(const replay_command& c, std::string_view key);

inline constexpr std::string_view kCommandSigDomain = "semilab-cmd-sig-v1";

// The JSON message with its MAC.
std::string encode_command(const replay_command& c, std::string_view key);
// With a MAC when `hmac_key` is not empty and a signature when `signer` is given (at least one).
std::string encode_command(const replay_command& c, std::string_view hmac_key,
                           const signing_key* signer);

struct signed_replay_command {
  replay_command cmd;
  std::string mac;     // as received (hex); "" = none
  std::string key_id;  // "" = unsigned
  std::string sig;     // 128 hex digits; "" = unsigned
};
// Parses the JSON (bad_json when it is not a replay command of version 1, or carries neither a
// MAC nor a signature). Does not verify.
result<signed_replay_command> decode_command(std::string_view json);

enum class command_verdict { ok, bad_mac, stale, unsigned_command, bad_signature };
// Constant-time MAC comparison, then the freshness window against `now_ns`.
command_verdict verify_command(const signed_replay_command& c, std::string_view key,
                               std::int64_t now_ns);
// With pinned central keys: the Ed25519 signature must verify with one of them (the MAC is not
// looked at); without: the MAC with `hmac_key` (as above). Then the freshness window.
command_verdict verify_command(const signed_replay_command& c, std::string_view hmac_key,
                               std::span<const ed25519_public_key> pinned, std::int64_t now_ns);
std::string_view to_string(command_verdict v) noexcept;

// 16 random bytes from the OS, as hex.
std::string new_nonce();

// Reads the shared secret: the file's bytes with trailing whitespace removed, at least
// kCommandKeyMinBytes. On failure `error` says why (never the secret).
bool load_command_key(const std::filesystem::path& file, std::string& key, std::string& error);

}  // namespace semilab::schemas
