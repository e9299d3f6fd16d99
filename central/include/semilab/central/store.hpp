#pragma once
// Central store on SQLite (the `storage` interface, storage.hpp): WAL, synchronous=FULL, migrations applied at open, busy timeout.
// Thread contract: a store object (one connection) is used by one thread at a time. The ingest
// worker owns the read-write store; the HTTP API opens its own read-only store (WAL lets readers
// run beside the writer without blocking it).
#include <semilab/central/storage.hpp>
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

struct store_options {
  std::string path;  // database file; ":memory:" is refused (WAL needs a file)
  open_mode mode = open_mode::read_write;
  std::chrono::milliseconds busy_timeout{5000};
};

class sqlite_store final : public storage {
 public:
  // Opens (creating in read_write mode) and configures the database; read_write applies the
  // migrations, read_only checks that the schema is one this binary knows. `error` gets
  // SQLite's message on failure.
  static result<std::unique_ptr<sqlite_store>> open(const store_options& opts, std::string& error);
  ~sqlite_store() override;

  storage_backend backend() const noexcept override { return storage_backend::sqlite; }
  result<std::vector<stored_info>> store_group(std::span<const batch_to_store> batches,
                                               std::span<const quarantine_entry> quarantined,
                                               std::string_view instance) override;
  result<std::vector<agent_row>> agents() override;
  result<std::uint64_t> record_count() override;
  result<std::uint64_t> quarantine_count() override;
  result<std::uint64_t> batch_ledger_count() override;
  result<store_totals> totals() override;
  result<std::vector<std::uint64_t>> record_seqs(std::string_view agent_id,
                                                 std::uint64_t store_epoch) override;
  result<std::vector<quarantine_row>> quarantine_list(std::size_t limit,
                                                      std::int64_t before_id) override;
  result<std::optional<quarantine_row>> quarantine_get(std::int64_t id) override;
  result<std::vector<measurement_row>> measurements(const measurement_query& q) override;
  boost::system::error_code ping() override;
  result<sql_rows> query(std::string_view sql, std::span<const sql_param> params) override;
  result<std::uint64_t> execute(std::string_view sql, std::span<const sql_param> params) override;

  sqlite3* native_handle() const noexcept { return db_; }

 private:
  struct statements;
  explicit sqlite_store(sqlite3* db);
  boost::system::error_code prepare_writes();
  boost::system::error_code insert_quarantine(const quarantine_entry& q);
  result<stored_info> insert_batch(const batch_to_store& b, std::string_view instance,
                                   std::int64_t commit_ns);
  bool exec(const char* sql);
  result<std::uint64_t> scalar(const char* sql);

  sqlite3* db_ = nullptr;
  std::unique_ptr<statements> st_;
  // Prepared measurement queries by SQL text (a handful of filter combinations; the API's hot
  // path prepares each once per connection).
  struct read_cache;
  std::unique_ptr<read_cache> rc_;
  // WAL checkpoints off the ingest path (read-write stores): a thread with its own connection
  // runs PASSIVE checkpoints once a second, so the writer's commits no longer copy WAL pages
  // into the database file and fsync it. The writer keeps an auto-checkpoint at a high mark as
  // the bound on the WAL's size (under continuous writes a passive checkpoint never finds the
  // WAL idle to restart it). Durability is unchanged: every commit still fsyncs the WAL.
  class checkpointer;
  std::unique_ptr<checkpointer> ckpt_;
};

}  // namespace semilab::central
