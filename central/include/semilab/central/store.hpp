#pragma once
// Central store on SQLite: WAL, synchronous=FULL, migrations applied at open, busy timeout.
// Thread contract: a store object (one connection) is used by one thread at a time. The ingest
// worker owns the read-write store; the HTTP API opens its own read-only store (WAL lets readers
// run beside the writer without blocking it).
#include <semilab/central/error.hpp>
#include <semilab/schemas/frame.hpp>
#include <semilab/schemas/topics.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

struct sqlite3;

namespace semilab::central {

enum class open_mode { read_write, read_only };

struct store_options {
  std::string path;  // database file; ":memory:" is refused (WAL needs a file)
  open_mode mode = open_mode::read_write;
  std::chrono::milliseconds busy_timeout{5000};
};

// Outcome of one batch inside a committed transaction.
struct stored_info {
  std::uint64_t new_records = 0;  // rows inserted
  std::uint64_t duplicates = 0;   // rows already present (redelivery), ignored
};

// One validated batch to store. Pointers are borrowed for the duration of the call.
struct batch_to_store {
  const schemas::agent_topic_parts* topic = nullptr;  // site and agent (agent == frame agent_id)
  const schemas::decoded_frame* frame = nullptr;
  std::size_t raw_bytes = 0;     // frame size as received
  std::int64_t received_ns = 0;  // when central received it
};

// One rejected frame to keep for inspection. `payload` is capped by the store.
struct quarantine_entry {
  std::string topic;
  std::string agent_id;  // "" when the topic did not name one
  std::string reason;
  std::span<const std::uint8_t> payload;  // whole frame as received; borrowed
  std::int64_t received_ns = 0;
};

struct agent_row {
  std::string agent_id;
  std::string site;
  std::uint64_t records = 0;
  std::uint64_t batches = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t bytes = 0;
  std::int64_t first_seen_ns = 0;
  std::int64_t last_batch_ns = 0;  // 0 = never
  std::int64_t last_ack_ns = 0;    // 0 = never
};

struct store_totals {
  std::uint64_t agents = 0;
  std::uint64_t records = 0;     // sum of agents.records (cheap; equals record_count())
  std::uint64_t batches = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t bytes = 0;
  std::uint64_t quarantined = 0;
};

class store {
 public:
  inline static constexpr std::size_t kDefaultQuarantineCap = 64 * 1024;

  // Opens (creating in read_write mode) and configures the database; read_write applies the
  // migrations, read_only checks that the schema is one this binary knows. `error` gets
  // SQLite's message on failure.
  static result<std::unique_ptr<store>> open(const store_options& opts, std::string& error);
  ~store();
  store(const store&) = delete;
  store& operator=(const store&) = delete;

  // Group commit: every batch and quarantine entry in ONE transaction; on success returns one
  // stored_info per batch, in order. On failure nothing is stored (rolled back) and the error is
  // errc::store_write_failed; last_error() has SQLite's message.
  // `instance` is written to the batch ledger.
  result<std::vector<stored_info>> store_group(std::span<const batch_to_store> batches,
                                               std::span<const quarantine_entry> quarantined,
                                               std::string_view instance);

  // One batch in its own transaction.
  result<stored_info> store_batch(const schemas::agent_topic_parts& topic,
                                  const schemas::decoded_frame& frame, std::size_t raw_bytes,
                                  std::string_view instance);

  // One quarantine row in its own transaction; payload capped at quarantine_cap().
  boost::system::error_code quarantine(std::string_view topic, std::string_view agent,
                                       std::string_view reason,
                                       std::span<const std::uint8_t> bytes);

  void set_quarantine_cap(std::size_t bytes) noexcept { quarantine_cap_ = bytes; }
  std::size_t quarantine_cap() const noexcept { return quarantine_cap_; }

  // Queries (any mode). Agents ordered by agent_id.
  result<std::vector<agent_row>> agents();
  result<std::uint64_t> record_count();  // COUNT(*) of records: exact, scans; for tests/admin
  result<std::uint64_t> quarantine_count();
  result<std::uint64_t> batch_ledger_count();
  result<store_totals> totals();

  const std::string& last_error() const noexcept { return last_error_; }
  sqlite3* native_handle() const noexcept { return db_; }

 private:
  struct statements;
  explicit store(sqlite3* db);
  boost::system::error_code prepare_writes();
  boost::system::error_code insert_quarantine(const quarantine_entry& q);
  result<stored_info> insert_batch(const batch_to_store& b, std::string_view instance,
                                   std::int64_t commit_ns);
  bool exec(const char* sql);
  result<std::uint64_t> scalar(const char* sql);

  sqlite3* db_ = nullptr;
  std::unique_ptr<statements> st_;
  std::size_t quarantine_cap_ = kDefaultQuarantineCap;
  std::string last_error_;
};

// Wall clock as integer nanoseconds since the Unix epoch.
std::int64_t now_ns() noexcept;

}  // namespace semilab::central
