#pragma once
// File-drop ingestion (issue #11, measurement-methods.md §7): instruments whose vendor software
// exports files into a folder (often a share of the instrument PC).
//
// filedrop watches folders (inotify; a full directory scan on every poll() when inotify is off or
// unavailable, as on network shares where remote writes raise no events), waits until a file is
// stable (size and mtime unchanged for `stable_for`), then
//   1. reads it and hashes it (SHA-256),
//   2. archives the raw bytes content-addressed and zstd-compressed:
//      <archive_dir>/<sha[0..2]>/<sha>.zst (temp file, fsync, rename, fsync dir; an existing
//      archive of the same content is kept: deduplicated),
//   3. parses it (format detected as `semilab-agent analyze` does) and, when the folder names an
//      analysis kind, computes its parameters,
//   4. returns the records for the outbox, all with run_id "file:<sha256>":
//      - run_result "filedrop.file": JSON text {name, folder, size, sha256, format, parse_error
//        (only when parsing failed), analysis_error, meta (while it fits 4096 bytes)},
//      - run_result "<kind>.<parameter>" (double, unit), "<kind>.<parameter>.sigma",
//        "<kind>.<parameter>.pass" (int 0/1),
//      - blob "blob:<i>/<n>": the raw file in chunks of `blob_chunk_bytes`, base64 text.
// A file that fails to parse is still archived and returned with its parse error and blobs.
//
// A folder whose watch disappears (deleted, unmounted) switches the driver to polling.
// Threads: none of its own; the owner calls poll() (e.g. from a timer, or when fd() is readable)
// on one thread. Errors are values: a file that cannot be read or archived is reported for this
// poll and retried after it was stable again; nothing throws.
#include "cli_analyze.hpp"

#include <semilab/schemas/record.hpp>

#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace semilab::agent {

struct filedrop_folder {
  std::filesystem::path path;
  std::string kind;  // analysis kind (analyze_kinds()), empty: parse and archive only
};

struct filedrop_options {
  std::vector<filedrop_folder> folders;
  std::filesystem::path archive_dir;
  std::chrono::milliseconds stable_for{5000};
  bool use_inotify = true;  // false: scan every poll (network shares)
  std::string instrument = "filedrop";
  std::size_t blob_chunk_bytes = 3072;  // 3072 raw bytes -> 4096 base64 characters (kMaxTextBytes)
  std::uint64_t max_file_bytes = std::uint64_t{256} << 20;
  int zstd_level = 3;
  analyze_options analysis;
};

struct ingested_file {
  std::filesystem::path path;
  std::uint64_t size = 0;
  std::string sha256;  // lowercase hex
  std::filesystem::path archive;
  bool archived_new = false;  // false: the same content was already archived
  std::string format;         // detected format, "" when unknown
  std::string parse_error;    // empty when the file parsed
  std::string analysis_error;
  std::vector<schemas::record> records;
};

struct filedrop_failure {
  std::filesystem::path path;
  std::string reason;
};

// One outcome per file handled in a poll.
using filedrop_outcome = boost::system::result<ingested_file, filedrop_failure>;

[[nodiscard]] std::string sha256_hex(std::string_view bytes);
[[nodiscard]] std::string base64(std::string_view bytes);

class filedrop {
 public:
  using clock = std::chrono::steady_clock;
  using now_fn = std::function<clock::time_point()>;
  using wall_fn = std::function<std::int64_t()>;  // UTC ns for record timestamps

  explicit filedrop(filedrop_options opt, now_fn now = clock::now, wall_fn wall = {});
  ~filedrop();
  filedrop(const filedrop&) = delete;
  filedrop& operator=(const filedrop&) = delete;

  // True when inotify watches every folder; otherwise why not (polling is used).
  [[nodiscard]] bool inotify_active() const { return inotify_fd_ >= 0; }
  [[nodiscard]] const std::string& fallback_reason() const { return fallback_reason_; }
  // The inotify descriptor (non-blocking) to wait on, -1 when polling.
  [[nodiscard]] int fd() const { return inotify_fd_; }

  // Picks up changes, handles every file that has become stable, returns their outcomes.
  [[nodiscard]] std::vector<filedrop_outcome> poll();

  // Files seen but not yet stable.
  [[nodiscard]] std::size_t pending() const { return pending_.size(); }

 private:
  struct file_state {
    std::uintmax_t size = 0;
    std::filesystem::file_time_type mtime{};
    clock::time_point since{};
    std::size_t folder = 0;
  };
  void scan_all();
  void scan_folder(std::size_t i);
  void note(const std::filesystem::path& p, std::size_t folder);
  void drain_inotify();
  filedrop_outcome ingest(const std::filesystem::path& p, const file_state& st);

  filedrop_options opt_;
  now_fn now_;
  wall_fn wall_;
  int inotify_fd_ = -1;
  std::map<int, std::size_t> watch_folder_;  // watch descriptor -> folder index
  std::string fallback_reason_;
  bool rescan_ = true;
  std::map<std::filesystem::path, file_state> pending_;
  // Handled files by (size, mtime): not handled again until they change.
  std::map<std::filesystem::path, std::pair<std::uintmax_t, std::filesystem::file_time_type>> done_;
};

}  // namespace semilab::agent
