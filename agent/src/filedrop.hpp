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
//
// filedrop_driver runs one filedrop for one [[filedrop]] table of the agent configuration on its
// own named thread ("fd-<id>"): reading, hashing, compressing and parsing a large file blocks,
// so none of it runs on the io_context. Its records go through the recorder (outbox first, like
// every reading). Once the outbox committed a file's records, the file is appended to a ledger
// (<archive_dir>/ledger-<id>.txt: mtime, size, sha256, path) so that an agent restart does not
// take the same unchanged file again; a file whose records were not committed is taken again.
#include "cli_analyze.hpp"

#include <semilab/schemas/record.hpp>
#include <semilab/schemas/signing.hpp>

#include <boost/system/result.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>

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
  std::string pattern = "*";  // fnmatch glob on the file name
  std::string format;         // forced parser ("" or "auto": detected from the content)
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
  std::filesystem::file_time_type mtime{};
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

using schemas::sha256_hex;  // file hashes: schemas/signing.hpp
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

  // Marks a file as handled (from the ledger of an earlier run): not taken again unless its
  // size or mtime differ. forget() makes it eligible again (its records were not stored).
  void mark_done(const std::filesystem::path& p, std::uintmax_t size, std::filesystem::file_time_type mtime);
  void forget(const std::filesystem::path& p);

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

struct filedrop_config;
class recorder;

struct filedrop_stats {
  std::uint64_t files = 0;         // files whose records the outbox committed
  std::uint64_t parse_errors = 0;  // of them, files that did not parse (archived and sent anyway)
  std::uint64_t failures = 0;      // read/archive failures (retried), outbox refusals
  std::uint64_t skipped_ledger = 0;  // files found in the ledger at start
  std::size_t pending = 0;
  bool inotify = false;
  std::string fallback_reason;
};

class filedrop_driver {
 public:
  // `rec` must outlive the driver. Nothing happens before start().
  filedrop_driver(const filedrop_config& cfg, recorder& rec);
  ~filedrop_driver();  // stop()
  filedrop_driver(const filedrop_driver&) = delete;
  filedrop_driver& operator=(const filedrop_driver&) = delete;

  // Creates the archive directory, reads the ledger, starts the thread. An error (archive not
  // writable) is returned and nothing runs.
  [[nodiscard]] std::string start();
  // Wakes the thread and joins it; a file being ingested is finished first. Idempotent.
  void stop();
  [[nodiscard]] const filedrop_config& config() const { return *cfg_; }
  [[nodiscard]] filedrop_stats stats() const;

 private:
  // What the outbox's completions touch (on the writer thread): shared, so that a completion
  // arriving after the driver is gone (outbox drained at shutdown) is harmless.
  struct shared_state {
    std::string id;
    std::filesystem::path ledger;
    std::mutex mu;  // everything below, and appends to the ledger
    filedrop_stats stats;
    std::vector<std::filesystem::path> retry;  // outbox refused their records: take them again
    void append_ledger(const ingested_file& f);
  };
  void run();
  void load_ledger();

  std::unique_ptr<filedrop_config> cfg_;
  recorder& rec_;
  std::unique_ptr<filedrop> fd_;
  std::shared_ptr<shared_state> st_;
  std::thread thread_;
  int wake_fd_ = -1;  // eventfd: stop() writes it
  std::atomic<bool> stopping_{false};
  std::map<std::filesystem::path, std::string> last_failure_;  // driver thread only
};

}  // namespace semilab::agent
