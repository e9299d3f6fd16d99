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

// A zstd dictionary trained on the agent's own telemetry (schemas/WIRE.md "Dictionaries").
// `id` is the dictionary id zstd wrote into its header (ZDICT_getDictID), never 0; a frame
// compressed with it carries that id in its `dict_id` field.
struct zstd_dictionary {
  std::uint32_t id = 0;
  std::vector<std::uint8_t> bytes;
};
inline constexpr std::size_t kMaxDictionaryBytes = 256u << 10;

// Checks that `bytes` is a zstd dictionary whose header id is non-zero: the dictionary, or
// errc::bad_dictionary.
result<zstd_dictionary> make_dictionary(std::span<const std::uint8_t> bytes);

// Trains a dictionary of at most `dict_bytes` from `records` cut into samples of
// `records_per_sample` consecutive records, each encoded as a frame body would be (string table
// and all), so the dictionary learns what small live batches look like. errc::bad_dictionary
// when zstd cannot train (too few or too uniform samples).
result<zstd_dictionary> train_dictionary(std::span<const record> records,
                                         std::size_t records_per_sample = 16,
                                         std::size_t dict_bytes = 16u << 10);

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

  // Compress with this dictionary from now on (null: without). Only with codec::zstd. The
  // dictionary is copied into a prepared zstd CDict; frames carry its id.
  void set_dictionary(std::shared_ptr<const zstd_dictionary> dict);
  std::uint32_t dictionary_id() const noexcept;

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
  // A frame whose dictionary has not been added for its agent: errc::unknown_dictionary (the
  // caller fetches it and decodes again; the frame itself is not at fault).
  result<decoded_frame> decode(std::span<const std::uint8_t> frame);

  // Dictionaries are per agent: (agent id, dictionary id). At most kMaxDecoderDictionaries
  // are kept; the oldest added goes first.
  static constexpr std::size_t kMaxDecoderDictionaries = 256;
  boost::system::error_code add_dictionary(std::string_view agent_id, const zstd_dictionary& d);
  bool has_dictionary(std::string_view agent_id, std::uint32_t id) const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

std::string to_hex(std::span<const std::uint8_t> bytes);

// Central's request for a dictionary it lacks, on the agent's cmd topic (WIRE.md
// "Dictionaries"): {"v":1,"cmd":"dictionary","agent":"lab1-agent-01","id":"123456"}.
// The agent answers by publishing the dictionary's bytes on its dict topic.
struct dictionary_request {
  std::string agent_id;
  std::uint32_t dict_id = 0;
};
std::string encode_dictionary_request(const dictionary_request& r);
// errc::bad_json when the message is not a dictionary request of version 1 (it may be another
// command: the caller tries the other decoders).
result<dictionary_request> decode_dictionary_request(std::string_view json);

}  // namespace semilab::schemas
