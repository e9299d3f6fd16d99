#pragma once
// Central store on PostgreSQL through libpq (the `storage` interface, storage.hpp), for several
// central instances sharing one database.
//
// A group commit is one transaction: the records and the batch headers are streamed with binary
// COPY into temporary staging tables (ON COMMIT DELETE ROWS), then ONE statement inserts the
// records with ON CONFLICT DO NOTHING in key order (concurrent instances lock keys in the same
// order: no deadlock between them), counts the new rows per batch, writes the ledger and
// upserts the agents (also in key order). synchronous_commit=on: COMMIT returns after the WAL
// is flushed. A deadlock or serialization failure is retried (3 attempts); a lost connection is
// re-established at the next call.
// Migrations: schemas/sql/central-pg/NNNN_name.sql, applied under an advisory lock so instances
// starting together migrate once.
#include <memory>
#include <semilab/central/storage.hpp>
#include <string>

struct pg_conn;

namespace semilab::central {

struct pg_options {
  std::string url;  // libpq connection URI or key=value string; may hold a password
  open_mode mode = open_mode::read_write;
  std::chrono::milliseconds lock_timeout{5000};
};

class pg_store final : public storage {
 public:
  static result<std::unique_ptr<pg_store>> open(const pg_options& opts, std::string& error);
  ~pg_store() override;

  storage_backend backend() const noexcept override { return storage_backend::postgresql; }
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

  pg_conn* native_handle() const noexcept { return conn_; }

 private:
  explicit pg_store(pg_conn* conn, pg_options opts);
  bool setup_session();  // session settings (and staging tables for read_write)
  bool ensure_connection();
  bool exec(const char* sql);
  bool copy_in(const char* sql, const std::string& data);
  // One attempt of a group; `retryable` set on deadlock / serialization failure.
  result<std::vector<stored_info>> try_group(std::span<const batch_to_store> batches,
                                             std::span<const quarantine_entry> quarantined,
                                             std::string_view instance, bool& retryable);
  result<std::uint64_t> scalar(const char* sql);

  pg_conn* conn_ = nullptr;
  pg_options opts_;
};

}  // namespace semilab::central
