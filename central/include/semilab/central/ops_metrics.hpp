#pragma once
// Operations metrics of central's /metrics (names in docs/OPERATIONS.md "Metrics"), the ones the
// alert rules in packaging/prometheus/semilab-alerts.yml need beyond the ingest counters:
//   semilab_central_backup_last_success_timestamp_seconds  newest verified backup (0 = none)
//   semilab_central_backups                                verified backups in the directory
//   semilab_central_data_dir_free_bytes / _size_bytes      file system of [central] data_dir
//   semilab_central_agent_unexplained_gaps{agent}          sequence gaps no drop notice explains
//   semilab_central_agent_unexplained_missing_records{agent}  seqs in those gaps
//   semilab_central_spc_violations{agent,instrument,parameter}  flagged recent points (below)
//   semilab_central_spc_series                             series charted
//   semilab_central_ops_refresh_timestamp_seconds          when gaps and SPC were last computed
// semilab_central_database_up is written by the API itself (it owns the reader connection).
//
// Backups: a backup counts once `semilab-central backup` verified it, i.e. the file
// central-<UTC>.db or .pgdump exists with its manifest <file>.json beside it (backup.hpp: both
// are renamed into place only after the copy matched the source); its time is the manifest's
// modification time.
//
// Gaps and SPC read the whole store, so they are recomputed at most every `refresh` and the
// last result is served in between (the scrape interval does not multiply the cost).
// SPC: every (agent, instrument, channel) of numeric run_result records, the `spc_max_series`
// most recently measured; an individuals (I-MR) chart over the newest `spc_window` values (at
// least `spc_min_values`); the gauge counts the newest `spc_recent` points that trip a Western
// Electric rule (WE1-WE4, spc.hpp). It returns to 0 once that many in-control values followed.
#include <semilab/central/storage.hpp>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace semilab::central {

struct ops_metrics_options {
  std::string data_dir;    // statvfs target
  std::string backup_dir;  // where `semilab-central backup` writes ([backup] dir)
  std::chrono::seconds refresh{60};
  std::size_t spc_window = 100, spc_recent = 10, spc_min_values = 20, spc_max_series = 200;
};

struct spc_series_state {
  std::string agent_id, instrument, parameter;
  std::size_t values = 0;
  std::uint64_t violations = 0;  // among the newest spc_recent points
};

struct gap_totals {
  std::string agent_id;
  std::uint64_t gaps = 0, missing = 0;
};

// Newest verified backup under `dir`: (count, manifest mtime in Unix seconds; 0 when none).
struct backup_state {
  std::uint64_t count = 0;
  std::int64_t last_success_s = 0;
};
backup_state scan_backups(const std::string& dir);

class ops_metrics {
 public:
  explicit ops_metrics(ops_metrics_options o);

  // Appends the metrics above (without database_up) to `out`. `store` is the read connection,
  // used only when the cached gap/SPC figures are older than `refresh` (the caller serialises
  // its use); nullptr when the database is down: the store-derived series are left out then.
  // `agents` labels the gap series with their site and gives agents without gaps a 0.
  void append(std::string& out, storage* store, const std::vector<agent_row>& agents,
              std::int64_t now_ns);

  // The store-derived figures as last computed (tests).
  std::vector<gap_totals> gaps() const;
  std::vector<spc_series_state> spc() const;
  // Recomputes gaps and SPC now; false (cache unchanged) when a query failed.
  bool refresh(storage& store);

 private:
  ops_metrics_options o_;
  mutable std::mutex m_;
  std::int64_t refreshed_ns_ = 0;  // 0 = never
  std::vector<gap_totals> gaps_;
  std::vector<spc_series_state> spc_;
};

}  // namespace semilab::central
