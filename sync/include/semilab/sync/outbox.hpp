#pragma once
// The agent's durable outbox: every record is committed here before anything else happens to it.
// One named writer thread owns the SQLite connection; every request is a job on its queue, and
// all inserts and acks found on the queue at a wake-up share one transaction (group commit).
// Completions run on the writer thread: callers post them to their own strand.
#include <semilab/schemas/frame.hpp>
#include <semilab/schemas/record.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace semilab::sync {

template <class T>
using result = boost::system::result<T>;

enum class durability {
  full,    // synchronous=FULL: a committed record survives a power cut
  normal,  // synchronous=NORMAL (WAL): survives a process crash (kill -9), may lose the last
           // commits on power loss
};

// What happens to a priority class when the outbox is at its quota.
enum class full_policy {
  pause,        // new records of the class are refused (never get a seq); nothing stored is lost
  drop_oldest,  // the oldest held records of the class are evicted to make room
};

// Disk quota, counted in stored bytes (the `bytes` estimate of each held row, dead letters
// included; docs/ARCHITECTURE.md "Disk quota"). Events and run results are never dropped: they
// may use `reserve_bytes` above `max_bytes` that lower classes cannot, and may evict records of
// lower classes whose policy is drop_oldest. Telemetry and blobs follow their policy.
struct quota_options {
  std::uint64_t max_bytes = 0;          // 0 = no quota
  std::uint64_t reserve_bytes = 0;      // extra room for events and run results only
  full_policy telemetry = full_policy::pause;
  full_policy blob = full_policy::drop_oldest;
};

// Acked records kept after central's ack (table `retained`), for replays after central restored
// a backup. Off when either bound is 0. Pruned in the writer's transactions: older than
// `max_age` since the ack, and oldest seq first above `max_bytes` (the same `bytes` estimate as
// the quota). Retained bytes also count against the quota, and under its pressure retained rows
// are evicted (oldest seq first, counter "evicted.quota.retained") before any held record is
// paused or dropped (docs/ARCHITECTURE.md "Retention").
struct retention_options {
  std::chrono::seconds max_age{0};
  std::uint64_t max_bytes = 0;
  bool enabled() const noexcept { return max_age.count() > 0 && max_bytes > 0; }
};

struct outbox_options {
  std::filesystem::path path;  // the database file; its directory must exist
  std::string agent_id;        // the outbox belongs to one agent; another id is refused
  durability sync_mode = durability::full;
  std::size_t max_group = 50'000;  // records per transaction at most
  quota_options quota{};
  // Background PRAGMA quick_check on its own read connection (0 = only on I/O errors).
  std::chrono::seconds integrity_interval{3600};
  retention_options retention{};
};

// Persisted accounting. produced = acked + held + dropped at every commit.
struct outbox_counters {
  std::uint64_t produced = 0;
  std::uint64_t acked = 0;
  std::uint64_t held = 0;          // in the outbox, dead letters included
  std::uint64_t dead_letters = 0;  // of `held`: rejected permanently by central, kept aside
  std::uint64_t dropped = 0;
  std::uint64_t held_bytes = 0;
  std::int64_t oldest_ts_ns = 0;  // 0 when empty: timestamp of the oldest held record
  // Persisted per reason and class: "dropped.quota.telemetry" (evicted after being stored, part
  // of `dropped`), "refused.quota.telemetry" (intake paused: never stored, never produced),
  // "unrecoverable.corrupt_outbox.all" (records of a corrupt outbox moved aside: another epoch),
  // "notices" (drop notices written).
  std::map<std::string, std::uint64_t> by_reason;
  std::uint64_t refused = 0;  // sum of refused.* (not part of produced)
  std::uint32_t paused_classes = 0;  // bit per record_class whose intake is paused now
  std::uint64_t integrity_checks = 0;  // background checks run since start
  // Acked records in the retention window (not part of `held`), persisted.
  std::uint64_t retained = 0;
  std::uint64_t retained_bytes = 0;
};

struct dead_letter_entry {
  std::uint64_t seq = 0;
  schemas::record_class cls = schemas::record_class::telemetry;
  std::int64_t ts_ns = 0;
  std::string instrument;
  std::string channel;
  std::string reason;
  int attempts = 0;
  std::int64_t moved_ns = 0;
};

// Cursor per priority class: the highest seq already handed out of that class.
using class_cursors = std::array<std::uint64_t, schemas::kRecordClassCount>;
// Records of each class one read may return at most (on top of the read's total).
using class_limits = std::array<std::size_t, schemas::kRecordClassCount>;
inline constexpr class_limits kNoClassLimits{SIZE_MAX, SIZE_MAX, SIZE_MAX, SIZE_MAX};

class outbox {
 public:
  using insert_done = std::function<void(boost::system::error_code, schemas::seq_range assigned)>;
  using ack_done = std::function<void(boost::system::error_code, std::uint64_t deleted)>;
  using read_done =
      std::function<void(boost::system::error_code, std::vector<schemas::record> records)>;
  // Same, with the store epoch the records belong to (the outbox may be replaced at run time).
  using read_epoch_done = std::function<void(boost::system::error_code,
                                             std::vector<schemas::record> records,
                                             std::uint64_t store_epoch)>;

  // Opens or creates the database (WAL, migrations, store epoch, a cheap consistency check).
  // A corrupt or unreadable database is moved aside (`<path>.corrupt-<unix time>`, kept for
  // forensics) and a new one is created with a new store epoch; its first record is an event
  // `outbox_replaced` saying why. Other failures: an error, `error` naming file and reason.
  static result<std::unique_ptr<outbox>> open(const outbox_options& opts, std::string& error);
  // Reads counters from a database without starting a writer (works while a daemon runs).
  static result<outbox_counters> read_status(const std::filesystem::path& path, std::string& error);

  // For the CLI, with or without a running daemon (SQLite locking keeps one writer at a time; a
  // running engine finds retried records on its next rescan).
  static result<std::vector<dead_letter_entry>> list_dead_letters(const std::filesystem::path& path,
                                                                  std::size_t limit,
                                                                  std::string& error);
  static result<std::uint64_t> retry_dead_letters_in(const std::filesystem::path& path,
                                                     std::string& error);

  ~outbox();  // drains the queue, then stops the writer thread
  outbox(const outbox&) = delete;
  outbox& operator=(const outbox&) = delete;

  // Changes when a corrupt outbox is replaced at run time.
  std::uint64_t store_epoch() const noexcept;
  const std::string& agent_id() const noexcept { return agent_id_; }

  // Assigns seq numbers (contiguous within one call) and commits. `done` runs after the commit.
  // With a quota, records of a paused class are refused: `done` gets errc::quota and the range
  // of the records that were stored (empty when none); the refusal is counted and announced.
  void enqueue(std::vector<schemas::record> records, insert_done done);
  // Blocking variant for tools and benchmarks. Never call it from the writer thread.
  result<schemas::seq_range> enqueue_wait(std::vector<schemas::record> records);

  // Deletes the acknowledged ranges (records central stored durably). With `epoch` non-zero,
  // nothing is deleted unless it is still the outbox's epoch (it may have been replaced).
  void ack(std::vector<schemas::seq_range> ranges, ack_done done, std::uint64_t epoch = 0);

  // Moves records central rejected permanently into the dead-letter table (still held, not
  // resent) so they never block the queue. `done` gets the number of records moved.
  void dead_letter(std::vector<schemas::seq_range> ranges, std::string reason, int attempts,
                   ack_done done, std::uint64_t epoch = 0);
  // Moves every dead letter back into the outbox with its seq (the on_committed handler runs, so
  // a running engine rescans and sends them).
  void retry_dead_letters(ack_done done);

  // Up to `max` records above the cursors, highest-priority class first, returned in seq order.
  void read(class_cursors after, std::size_t max, read_done done);
  void read(class_cursors after, std::size_t max, read_epoch_done done);
  // Same, at most limits[c] records of class c (blob chunks: a few per batch, engine.cpp).
  void read(class_cursors after, std::size_t max, const class_limits& limits, read_epoch_done done);

  // Up to `max` retained (acked) records with seq in [from, to], in seq order, for a replay;
  // `store_epoch` says which outbox they came from (the caller checks it is the one asked for).
  void read_retained(std::uint64_t from, std::uint64_t to, std::size_t max, read_epoch_done done);

  // Asks the background checker for a PRAGMA quick_check now (also done on any I/O error).
  // A corrupt outbox is moved aside and replaced (new epoch) with an outbox_replaced event, a
  // drop notice of the unrecoverable records and an alarm.
  void request_integrity_check();

  // zstd dictionaries (schemas/WIRE.md "Dictionaries"), kept in the outbox database. `done`
  // runs on the writer thread with every stored dictionary, newest first.
  using dictionaries_done =
      std::function<void(boost::system::error_code, std::vector<schemas::zstd_dictionary>)>;
  // Stores `d` and deletes every other dictionary whose id is not in `keep` (those batches in
  // flight still use), in one transaction.
  void save_dictionary(schemas::zstd_dictionary d, std::vector<std::uint32_t> keep,
                       dictionaries_done done);
  void load_dictionaries(dictionaries_done done);

  // Called on the writer thread after each commit that added records (set before use).
  void on_committed(std::function<void()> h);

  // Live counters, updated after every commit.
  outbox_counters counters() const;

  // Non-empty when a corrupt database was replaced (at open or at run time): the reason and
  // where the old file went.
  std::string replaced_reason() const;
  // Alarms for the operator: a replaced outbox, paused intake, a failed integrity check.
  std::vector<std::string> alarms() const;

 private:
  struct impl;
  explicit outbox(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
  std::string agent_id_;
};

}  // namespace semilab::sync
