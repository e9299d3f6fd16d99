#pragma once
// Ed25519 signatures of batch frames (OpenSSL 3 EVP). Wire format: schemas/WIRE.md, "Signature".
//
// The agent signs, with its own key, the exact header bytes of a frame (offset 0 through the
// SHA-256 checksum, which covers every header byte before it and the body as sent) behind a
// domain tag; the frame's length-prefixed signature field then carries
//   u8 algorithm (1 = Ed25519) | u8 key id length | key id (ASCII) | 64-byte signature.
// The key id is the first 8 bytes of SHA-256(raw 32-byte public key), lowercase hex, so central
// can pick the approved key and a stored batch names the key it can be re-verified with.
#include <semilab/schemas/error.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace semilab::schemas {

inline constexpr std::uint8_t kSigAlgEd25519 = 1;
inline constexpr std::size_t kEd25519PublicBytes = 32;
inline constexpr std::size_t kEd25519SignatureBytes = 64;
inline constexpr std::string_view kBatchSigDomain = "semilab-batch-sig-v1";

using ed25519_public_key = std::array<std::uint8_t, kEd25519PublicBytes>;
using ed25519_signature = std::array<std::uint8_t, kEd25519SignatureBytes>;

// The key id of a public key: 16 lowercase hex digits.
std::string key_id_of(const ed25519_public_key& pub);
// SHA-256 of `bytes` as 64 lowercase hex digits (file hashes, audit chain, token digests).
std::string sha256_hex(std::string_view bytes);
std::string public_key_hex(const ed25519_public_key& pub);
// 64 hex digits (either case) -> key; nullopt-like error (bad_value) otherwise.
result<ed25519_public_key> parse_public_key_hex(std::string_view hex);

// An Ed25519 private key. Move-only; never printed or logged.
class signing_key {
 public:
  signing_key();
  ~signing_key();
  signing_key(signing_key&&) noexcept;
  signing_key& operator=(signing_key&&) noexcept;

  static result<signing_key> generate();
  // PEM (PKCS#8) file as written by save(); `error` says why on failure (never the key).
  static result<signing_key> load(const std::filesystem::path& file, std::string& error);
  // Writes the PEM with mode 0600; refuses to replace an existing file.
  bool save(const std::filesystem::path& file, std::string& error) const;

  const ed25519_public_key& public_key() const noexcept { return pub_; }
  const std::string& key_id() const noexcept { return key_id_; }
  // Signature field for a frame whose header bytes (0 .. checksum inclusive) are `header`.
  std::vector<std::uint8_t> sign_header(std::span<const std::uint8_t> header) const;
  // Detached Ed25519 signature over `domain`, NUL, `message` (acks, commands, audit heads);
  // all zero when signing failed (never verifies).
  ed25519_signature sign(std::string_view domain, std::span<const std::uint8_t> message) const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  ed25519_public_key pub_{};
  std::string key_id_;
};

struct frame_signature {
  std::uint8_t algorithm = 0;
  std::string key_id;
  std::array<std::uint8_t, kEd25519SignatureBytes> sig{};
};

// Parses a frame's signature field (the bytes after its length prefix). An empty field is an
// error (bad_value) too: the caller checks `empty()` first when unsigned frames are allowed.
result<frame_signature> parse_signature_field(std::span<const std::uint8_t> field);

// The header bytes a frame's signature covers: offset 0 through the checksum. Requires a frame
// that frame_decoder accepted (sizes are taken from its tail); empty span otherwise.
std::span<const std::uint8_t> signed_header_bytes(std::span<const std::uint8_t> frame,
                                                  std::uint32_t body_len,
                                                  std::size_t signature_len);

// True when `sig` is a valid Ed25519 signature by `pub` over the domain tag and `header`.
bool verify_header_signature(const ed25519_public_key& pub, const frame_signature& sig,
                             std::span<const std::uint8_t> header);

// True when `sig` is a valid Ed25519 signature by `pub` over `domain`, NUL, `message`.
bool verify_detached(const ed25519_public_key& pub, std::string_view domain,
                     std::span<const std::uint8_t> message, const ed25519_signature& sig);
result<ed25519_signature> parse_signature_hex(std::string_view hex);

// Messages central signs with the key every central instance shares ([central] signing_key_file)
// and agents pin (acks, commands): how a received one fared against the pinned keys.
enum class pinned_verdict { ok, unsigned_message, unknown_key, bad_signature };
std::string_view to_string(pinned_verdict v) noexcept;
// `key_id` and `sig_hex` as carried by the message ("" = unsigned); `message` its canonical bytes.
pinned_verdict verify_pinned(std::span<const ed25519_public_key> pinned, std::string_view key_id,
                             std::string_view sig_hex, std::string_view domain,
                             std::string_view message);
// A comma- or whitespace-separated list of public keys (64 hex digits each), e.g. the agent's
// [sync] central_public_keys; bad_value when any item is not a key.
result<std::vector<ed25519_public_key>> parse_public_key_list(std::string_view list);

}  // namespace semilab::schemas
