#pragma once
// Instrument export files at central (0008_blobs.sql; agent side: agent/src/filedrop.hpp).
//
// A file-drop agent sends each file it takes as records with run id "file:<sha256>":
//   - one run_result "filedrop.file" whose text is JSON {name, folder, size, sha256, format,
//     parse_error?, analysis_error?, meta?},
//   - its parameters as run_result records (kept in `records` like any result),
//   - the raw bytes as blob records "blob:<i>/<n>", base64 text, in seq order.
// absorb_blobs() runs on the ingest thread after the group commit of the records and before the
// acks, in one transaction of its own: it writes a blob_files row per "filedrop.file" record,
// stages chunks per content hash (deduplicated across agents and redeliveries; nothing is staged
// for a content already stored), clears the text of the chunk records in `records` (the bytes are
// kept once), and assembles every content whose chunks are all there, checking its SHA-256. It
// is idempotent: on failure the caller rejects the batches as retryable and the agent resends.
// Malformed file records or chunks are counted and logged, never fatal (the records stay).
#include <semilab/central/storage.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace semilab::central {

struct blob_absorb_stats {
  std::uint64_t files = 0;       // blob_files rows written (new)
  std::uint64_t chunks = 0;      // chunk records seen
  std::uint64_t completed = 0;   // contents assembled and stored
  std::uint64_t malformed = 0;   // file records or chunks that could not be understood
  std::uint64_t mismatched = 0;  // assembled contents whose SHA-256 was not their name (kept staged)
};

// Quick test: does any record of these batches concern blobs? (No transaction otherwise.)
bool has_blob_records(std::span<const batch_to_store> batches);

// See above. `error` says why on failure (nothing of this call is kept then).
result<blob_absorb_stats> absorb_blobs(storage& db, std::span<const batch_to_store> batches,
                                       std::int64_t now_ns, std::string& error);

struct blob_file_row {
  std::string agent_id;
  std::uint64_t store_epoch = 0, record_seq = 0;
  std::string sha256;
  std::int64_t ts_ns = 0;
  std::string instrument, name, folder, format;
  std::uint64_t size = 0;
  std::optional<std::string> parse_error, analysis_error;
  std::string info;     // the record's JSON
  bool stored = false;  // the content is assembled (GET /api/v1/blobs/{sha256} serves it)
};

struct blob_query {
  std::string sha256, agent_id, instrument, format;  // "" = any
  std::optional<bool> parse_error;                   // true: only files that did not parse
  std::int64_t from_ns = INT64_MIN, to_ns = INT64_MAX;  // ts_ns, to exclusive
  std::size_t limit = 100;
};

// Newest first.
result<std::vector<blob_file_row>> list_blob_files(storage& db, const blob_query& q);
// The parameters the agent computed for one file: (channel, unit, value as text or number).
struct blob_parameter {
  std::string name, unit;
  std::optional<double> real;
  std::optional<std::int64_t> integer;
  std::optional<std::string> text;
};
result<std::vector<blob_parameter>> blob_parameters(storage& db, const blob_file_row& f);
// The content, or nullopt when it is not (yet) stored.
result<std::optional<std::string>> fetch_blob(storage& db, std::string_view sha256);

}  // namespace semilab::central
