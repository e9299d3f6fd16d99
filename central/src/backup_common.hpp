#pragma once
// What the SQLite (backup.cpp) and PostgreSQL (pg_backup.cpp) backups share: the backup file
// name stamp, fsync, the SHA-256 hex digest of table contents, comparing checksums, the manifest
// (central-<UTC>.<ext>.json) written beside a backup and read back, and moving a verified backup
// into place (manifest first, then the backup: a backup without a manifest is never visible).
#include <cstddef>
#include <cstdint>
#include <semilab/central/backup.hpp>
#include <string>
#include <vector>

#include <boost/json/object.hpp>

struct evp_md_ctx_st;

namespace semilab::central::backup_detail {

// UTC time with milliseconds as used in backup file names: 20261128T013510123Z.
std::string utc_stamp();

// fsync of a file (or of a directory, for a rename in it); false with `error` set on failure.
bool fsync_path(const std::string& path, bool dir, std::string& error);

// Incremental SHA-256 with a lowercase hex result.
class sha256 {
 public:
  sha256();
  sha256(const sha256&) = delete;
  sha256& operator=(const sha256&) = delete;
  ~sha256();
  void add(const void* p, std::size_t n);
  void add_u64(std::uint64_t v);  // 8 bytes little-endian
  std::string hex();              // once, at the end

 private:
  evp_md_ctx_st* ctx_;
};

// Why `got` is not `want` (a missing table, a row count, a checksum, extra tables), or "" when
// equal. `extra` ends the message about tables `got` has and `want` has not.
std::string checksum_mismatch(const std::vector<table_checksum>& want,
                              const std::vector<table_checksum>& got, const char* extra);

// The manifest's "tables" array, and the checksums read back from `file` + ".json".
boost::json::array manifest_tables(const std::vector<table_checksum>& tables);
result<std::vector<table_checksum>> read_manifest(const std::string& file, std::string& error);

// Writes `manifest` as `final_file`.json, fsyncs it and `partial` (the verified backup), renames
// both into place (manifest first) and fsyncs `dir`.
bool publish_backup(const std::string& partial, const std::string& final_file,
                    const boost::json::object& manifest, const std::string& dir,
                    std::string& error);

}  // namespace semilab::central::backup_detail
