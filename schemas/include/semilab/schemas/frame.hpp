#pragma once
// Batch frame: the versioned, self-describing unit that travels agent -> central.
// Layout and rules: schemas/WIRE.md. All limits are checked before any allocation sized by input.
#include <semilab/schemas/record.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace semilab::schemas {

class signing_key;  // signing.hpp

inline constexpr std::uint16_t kFrameVersion = 1;
inline constexpr std::size_t kMaxIdBytes = 64;

enum class codec : std::uint8_t { none = 0, zstd = 1 };

struct seq_range {
  std::uint64_t first = 0;
  std::uint64_t last = 0;  // inclusive
  std::uint64_t count() const noexcept { return last - first + 1; }
  friend bool operator==(const seq_range&, const seq_range&) = default;
};

// Collapses a strictly increasing list of sequence numbers into inclusive ranges.
std::vector<seq_range> ranges_of(std::span<const std::uint64_t> seqs);

struct frame_limits {
  std::size_t max_frame_bytes = 16u << 20;  // whole frame as received
  std::size_t max_body_bytes = 64u << 20;   // declared uncompressed body
  std::uint32_t max_records = 1'000'000;
  std::uint32_t max_ranges = 65'535;
};

using sha256_digest = std::array<std::uint8_t, 32>;

struct frame_header {
  std::uint16_t version = kFrameVersion;
  codec body_codec = codec::zstd;
  std::uint32_t dict_id = 0;  // 0 = no dictionary
  std::string agent_id;
  std::uint64_t store_epoch = 0;
  std::uint64_t batch_id = 0;  // agent-local batch number, echoed in the ack
  std::vector<seq_range> ranges;
  std::uint32_t record_count = 0;
  std::uint32_t uncompressed_len = 0;
  std::uint32_t body_len = 0;
  sha256_digest checksum{};  // over every header byte before it, plus the body
  std::vector<std::uint8_t> signature;  // length-prefixed; empty until signing is enabled
};

struct decoded_frame {
  frame_header header;
  std::vector<record> records;  // in seq order
};

struct batch {
  std::string agent_id;
  std::uint64_t store_epoch = 0;
  std::uint64_t batch_id = 0;
  std::vector<record> records;  // strictly increasing seq
};

// Reuses its zstd context: keep one per thread that encodes.
class frame_encoder {
 public:
  explicit frame_encoder(codec c = codec::zstd, int level = 3);
  ~frame_encoder();
  frame_encoder(const frame_encoder&) = delete;
  frame_encoder& operator=(const frame_encoder&) = delete;

  // With `signer`, the signature field carries its Ed25519 signature over the header bytes
  // (signing.hpp); without, it is empty.
  result<std::vector<std::uint8_t>> encode(const batch& b, const signing_key* signer = nullptr);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// Reuses its zstd context: keep one per thread that decodes.
class frame_decoder {
 public:
  explicit frame_decoder(frame_limits limits = {});
  ~frame_decoder();
  frame_decoder(const frame_decoder&) = delete;
  frame_decoder& operator=(const frame_decoder&) = delete;

  // Header only, checksum verified; no body decompression.
  result<frame_header> decode_header(std::span<const std::uint8_t> frame) const;
  result<decoded_frame> decode(std::span<const std::uint8_t> frame);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

std::string to_hex(std::span<const std::uint8_t> bytes);

}  // namespace semilab::schemas
