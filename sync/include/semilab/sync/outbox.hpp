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

struct outbox_options {
  std::filesystem::path path;  // the database file; its directory must exist
  std::string agent_id;        // the outbox belongs to one agent; another id is refused
  durability sync_mode = durability::full;
  std::size_t max_group = 50'000;  // records per transaction at most
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

class outbox {
 public:
  using insert_done = std::function<void(boost::system::error_code, schemas::seq_range assigned)>;
  using ack_done = std::function<void(boost::system::error_code, std::uint64_t deleted)>;
  using read_done =
      std::function<void(boost::system::error_code, std::vector<schemas::record> records)>;

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

  std::uint64_t store_epoch() const noexcept { return epoch_; }
  const std::string& agent_id() const noexcept { return agent_id_; }

  // Assigns seq numbers (contiguous within one call) and commits. `done` runs after the commit.
  void enqueue(std::vector<schemas::record> records, insert_done done);
  // Blocking variant for tools and benchmarks. Never call it from the writer thread.
  result<schemas::seq_range> enqueue_wait(std::vector<schemas::record> records);

  // Deletes the acknowledged ranges (records central stored durably).
  void ack(std::vector<schemas::seq_range> ranges, ack_done done);

  // Moves records central rejected permanently into the dead-letter table (still held, not
  // resent) so they never block the queue. `done` gets the number of records moved.
  void dead_letter(std::vector<schemas::seq_range> ranges, std::string reason, int attempts,
                   ack_done done);
  // Moves every dead letter back into the outbox with its seq (the on_committed handler runs, so
  // a running engine rescans and sends them).
  void retry_dead_letters(ack_done done);

  // Up to `max` records above the cursors, highest-priority class first, returned in seq order.
  void read(class_cursors after, std::size_t max, read_done done);

  // Called on the writer thread after each commit that added records (set before use).
  void on_committed(std::function<void()> h);

  // Live counters, updated after every commit.
  outbox_counters counters() const;

  // Non-empty when open() replaced a corrupt database: the reason and where the old file went.
  const std::string& replaced_reason() const noexcept;

 private:
  struct impl;
  static result<std::unique_ptr<impl>> open_file(const outbox_options& opts, std::string& error,
                                                 bool& corrupt, std::uint64_t& epoch);
  explicit outbox(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
  std::uint64_t epoch_ = 0;
  std::string agent_id_;
};

}  // namespace semilab::sync
