#pragma once
// The storage interface of central: what ingest and the HTTP API need from a database, with two
// implementations, SQLite (sqlite_store, store.hpp; embedded default) and PostgreSQL (pg_store,
// pg_store.hpp; several central instances on one database).
//
// Contract shared by both backends (one test suite checks it against each, storage_test.cpp):
// - store_group commits every batch and quarantine row of a call in ONE durable transaction
//   (SQLite synchronous=FULL, PostgreSQL synchronous_commit=on) before it returns success: the
//   caller acks only after that. On failure nothing of the call is stored.
// - Records are keyed by (agent_id, store_epoch, record_seq); a record already present is ignored
//   (ON CONFLICT DO NOTHING) and counted as a duplicate of the batch that carried it; within one
//   call the first batch carrying a key gets it.
// - u64 values (store_epoch, record_seq, batch_id) are kept as the signed 64-bit integer with the
//   same bits and converted back on reading.
// Thread contract: one object (one connection) is used by one thread at a time.
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <semilab/central/error.hpp>
#include <semilab/schemas/frame.hpp>
#include <semilab/schemas/run_metadata.hpp>
#include <semilab/schemas/topics.hpp>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace semilab::central {

enum class open_mode { read_write, read_only };

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
  // A signed frame: the header bytes its signature covers and the key id (batches.signed_header,
  // batches.key_id: enough to re-verify the batch later); empty = NULL.
  std::span<const std::uint8_t> signed_header;
  std::string_view key_id;
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
  std::uint64_t records = 0;  // sum of agents.records (cheap; equals record_count())
  std::uint64_t batches = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t bytes = 0;
  std::uint64_t quarantined = 0;
};

// A quarantined frame. `payload` holds the kept bytes (quarantine_get only; empty in lists).
struct quarantine_row {
  std::int64_t id = 0;
  std::int64_t received_ns = 0;
  std::string topic;
  std::string agent_id;  // "" when the topic named none
  std::string reason;
  std::uint64_t bytes = 0;       // frame size as received
  std::uint64_t kept_bytes = 0;  // how much of it was kept
  std::vector<std::uint8_t> payload;
};

// A page of records for the measurements API, in (ts_ns, agent_id, store_epoch, record_seq)
// order; `after_*` continue after the last row of the previous page (keyset pagination).
struct measurement_query {
  std::string agent_id;              // "" = any
  std::string instrument;            // "" = any
  std::string channel;               // "" = any
  int cls = -1;                      // schemas::record_class; -1 = any
  std::string run_id;                // "" = any
  std::int64_t from_ns = INT64_MIN;  // inclusive
  std::int64_t to_ns = INT64_MAX;    // exclusive
  std::size_t limit = 100;
  bool has_after = false;
  std::int64_t after_ts_ns = 0;
  std::string after_agent;
  std::uint64_t after_epoch = 0;
  std::uint64_t after_seq = 0;
};

struct measurement_row {
  std::string agent_id;
  std::uint64_t store_epoch = 0;
  std::uint64_t seq = 0;
  int cls = 0;  // schemas::record_class
  std::int64_t ts_ns = 0;
  std::string instrument, channel, unit;
  std::uint32_t quality = 0;
  std::optional<double> real;           // double and decimal values
  std::optional<std::int64_t> integer;  // exact integers
  std::optional<std::string> text;      // text values
  std::optional<std::string> repr;      // decimal exactly as reported
  std::string run_id;                   // "" = none
};

// The statement both backends run for a measurement_query: `?N` placeholders, rewritten to `$N`
// for PostgreSQL. `params` receives the values in order (integers or text).
struct sql_param {
  bool is_text = false;
  std::int64_t i = 0;
  std::string t;
  bool is_blob = false;  // `t` holds bytes: a BLOB (SQLite) or bytea (PostgreSQL) parameter
};
std::string measurement_sql(const measurement_query& q, std::vector<sql_param>& params,
                            bool dollar_placeholders);

// A cell of a generic query result: NULL, or the value as text (integers in decimal, doubles in
// their shortest round-trip form, text as is).
using sql_cell = std::optional<std::string>;
using sql_rows = std::vector<std::vector<sql_cell>>;

// ---- The data model over the records (0003_data_model.sql), read through storage::query ----

struct instrument_row {
  std::string agent_id, instrument;
  std::int64_t first_seen_ns = 0, last_seen_ns = 0;
  std::uint64_t records = 0;
  std::optional<std::string> identity;
  std::optional<std::int64_t> calibration_due_ns;
};

struct daily_row {
  std::string agent_id, instrument;
  std::int64_t day = 0;  // UTC days since 1970-01-01
  std::uint64_t measurements = 0, results = 0, events = 0, runs = 0, active_minutes = 0;
  double utilisation() const noexcept { return static_cast<double>(active_minutes) / 1440.0; }
};
struct daily_query {
  std::string agent_id, instrument;  // "" = any
  std::int64_t from_day = INT64_MIN, to_day = INT64_MAX;  // inclusive
  std::size_t limit = 1000;
};

struct run_row {
  std::string agent_id, run_id, instrument;
  std::int64_t first_ts_ns = 0, last_ts_ns = 0;
  std::uint64_t records = 0, results = 0;
};
struct run_query {
  std::string agent_id, instrument, run_id;  // "" = any
  std::int64_t from_ns = INT64_MIN, to_ns = INT64_MAX;  // first_ts_ns range, to exclusive
  std::size_t limit = 100;
};

// A sequence gap of one agent's store epoch: seqs first..last are not in the store. `explained`
// when drop notices (schemas/drop_notice.hpp: event records of instrument "agent", channel
// "drop_notice") name ranges covering the whole gap; `reason` is theirs.
struct gap_row {
  std::string agent_id;
  std::uint64_t store_epoch = 0, first = 0, last = 0;
  bool explained = false;
  std::string reason;  // of the covering notice(s)
};

// ---- Samples, wafers, lots (0006_samples.sql), from run_metadata records ----

// A record central reads as run metadata (schemas/run_metadata.hpp): an event of channel
// run_metadata with a run id and a text value. Both backends fill samples/run_samples from it.
inline bool is_run_metadata(const schemas::record& r) noexcept {
  return r.cls == schemas::record_class::event && r.channel == schemas::kRunMetadataChannel &&
         !r.run_id.empty() && std::holds_alternative<std::string>(r.val);
}
// Whether the metadata names a sample at all (a run may carry only operator/project).
inline bool has_sample(const schemas::run_metadata& m) noexcept {
  return !m.lot.empty() || !m.wafer.empty() || !m.sample.empty() || !m.die.empty();
}

// GET /api/v1/samples: one row per sample (group = sample), or per wafer (lot, wafer) or per lot,
// with the runs that measured them; ordered by key, keyset pagination after the last key.
enum class sample_group { sample, wafer, lot };
struct sample_query {
  sample_group group = sample_group::sample;
  std::string lot, wafer, sample, die;  // exact match; "" = any
  std::string agent_id;                 // only samples measured by runs of this agent
  std::int64_t from_ns = INT64_MIN;     // last_seen_ns >= from (inclusive)
  std::int64_t to_ns = INT64_MAX;       // first_seen_ns < to (exclusive)
  std::size_t limit = 100;
  bool has_after = false;
  std::string after_lot, after_wafer, after_sample, after_die;
};
struct sample_row {
  std::string lot, wafer, sample, die;  // "" where not given, or grouped away
  std::optional<std::int64_t> die_x, die_y;
  std::int64_t first_seen_ns = 0, last_seen_ns = 0;
  std::uint64_t runs = 0;     // runs that measured it (run_samples)
  std::uint64_t samples = 0;  // samples in the group (1 for group = sample)
};

// Rows deleted by one retention pass, per record class and table.
struct retention_policy {
  std::int64_t telemetry_days = 0, event_days = 0, run_result_days = 0, blob_days = 0;
  std::int64_t quarantine_days = 0, batch_ledger_days = 0, summary_days = 0,
               activity_minutes_days = 0;  // 0 = keep forever
};
struct retention_report {
  std::uint64_t records[4] = {0, 0, 0, 0};  // by schemas::record_class
  std::uint64_t quarantine = 0, batches = 0, summaries = 0, minutes = 0;
};

enum class storage_backend { sqlite, postgresql };

// What open_storage needs. `sqlite_path` is used by the SQLite backend, `url` by PostgreSQL.
struct storage_options {
  storage_backend backend = storage_backend::sqlite;
  std::string sqlite_path;  // database file; ":memory:" is refused (WAL needs a file)
  std::string url;          // postgresql://user:password@host:port/db (password never logged)
  open_mode mode = open_mode::read_write;
  std::chrono::milliseconds busy_timeout{5000};  // SQLite lock wait; PostgreSQL lock_timeout
};

class storage {
 public:
  inline static constexpr std::size_t kDefaultQuarantineCap = 64 * 1024;

  virtual ~storage() = default;
  storage(const storage&) = delete;
  storage& operator=(const storage&) = delete;

  virtual storage_backend backend() const noexcept = 0;

  // Group commit (see the contract above): returns one stored_info per batch, in order. On failure
  // errc::store_write_failed and last_error() says why. `instance` is written to the batch ledger.
  virtual result<std::vector<stored_info>> store_group(
      std::span<const batch_to_store> batches, std::span<const quarantine_entry> quarantined,
      std::string_view instance) = 0;

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
  virtual result<std::vector<agent_row>> agents() = 0;
  virtual result<std::uint64_t> record_count() = 0;  // COUNT(*) of records: exact, scans
  virtual result<std::uint64_t> quarantine_count() = 0;
  virtual result<std::uint64_t> batch_ledger_count() = 0;
  virtual result<store_totals> totals() = 0;  // one consistent snapshot
  // Sequence numbers stored for one agent and epoch, ascending (audits and tests).
  virtual result<std::vector<std::uint64_t>> record_seqs(std::string_view agent_id,
                                                         std::uint64_t store_epoch) = 0;

  // Quarantine, newest first (ids below `before_id` when it is > 0), without payloads.
  virtual result<std::vector<quarantine_row>> quarantine_list(std::size_t limit,
                                                              std::int64_t before_id) = 0;
  // One entry with its kept payload; an empty optional when there is no such id.
  virtual result<std::optional<quarantine_row>> quarantine_get(std::int64_t id) = 0;

  // Records matching the query, at most q.limit, in key order (see measurement_query).
  virtual result<std::vector<measurement_row>> measurements(const measurement_query& q) = 0;
  // A cheap round trip to the database (readiness).
  virtual boost::system::error_code ping() = 0;

  // Generic statements for the data-model queries below (portable SQL; `?N` placeholders are
  // rewritten to `$N` for PostgreSQL). query: one read statement. execute: one write statement
  // in its own transaction, returning the rows changed (read_write stores only).
  virtual result<sql_rows> query(std::string_view sql, std::span<const sql_param> params) = 0;
  virtual result<std::uint64_t> execute(std::string_view sql,
                                        std::span<const sql_param> params) = 0;

  // The data model, the same code for both backends (storage.cpp).
  result<std::vector<instrument_row>> instruments(std::string_view agent_id = {});
  result<std::vector<daily_row>> daily(const daily_query& q);
  result<std::vector<run_row>> runs(const run_query& q);
  // Samples, wafers or lots (sample_query).
  result<std::vector<sample_row>> samples(const sample_query& q);
  // Gaps in every (agent, epoch) sequence among the records still held (agent "" = all), and
  // whether drop notices explain them. Gaps cut by retention are not told apart.
  result<std::vector<gap_row>> gaps(std::string_view agent_id, std::size_t limit = 1000);
  // Deletes what the policy says is too old at `now_ns`; one statement per class/table.
  result<retention_report> apply_retention(const retention_policy& p, std::int64_t now_ns);

  const std::string& last_error() const noexcept { return last_error_; }

 protected:
  storage() = default;
  std::size_t quarantine_cap_ = kDefaultQuarantineCap;
  std::string last_error_;
};

// Opens the configured backend. `error` gets the backend's message on failure (no password).
result<std::unique_ptr<storage>> open_storage(const storage_options& opts, std::string& error);

// "postgresql://user:***@host/db": the URL with any password replaced, for logs and errors.
std::string redact_url(std::string_view url);

// Wall clock as integer nanoseconds since the Unix epoch.
std::int64_t now_ns() noexcept;

}  // namespace semilab::central
