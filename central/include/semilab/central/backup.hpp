#pragma once
// Verified online backups of the SQLite store.
//
// backup_sqlite: one read transaction on the source pins a snapshot; the per-table content
// checksums of the source are computed in it and the online backup API copies the same snapshot
// (sqlite3_backup_step(-1) reuses the open read transaction) into DIR/central-<UTC>.db.partial.
// The copy is then opened on its own, checked (PRAGMA integrity_check) and its checksums compared
// with the source's; only a copy that matches is fsynced and renamed to its final name, with a
// manifest (central-<UTC>.db.json: tables, row counts, SHA-256 per table) beside it. Writers
// keep committing meanwhile (WAL); the backup holds what was committed when it started.
//
// Content checksum of a table: SHA-256 over its rows in primary-key order (rowid when none),
// each column as (type tag, length, bytes): integers as 8 bytes little-endian, reals as their
// IEEE bits, text and blobs as they are. Equal checksums = equal content, whatever the pages.
#include <cstdint>
#include <semilab/central/error.hpp>
#include <string>
#include <vector>

struct sqlite3;

namespace semilab::central {

struct table_checksum {
  std::string table;
  std::uint64_t rows = 0;
  std::string sha256;  // hex
  friend bool operator==(const table_checksum&, const table_checksum&) = default;
};

// Checksums of every table (sqlite_* internal tables excluded), by table name. Runs in the
// caller's transaction if one is open (same snapshot for every table).
result<std::vector<table_checksum>> table_checksums(sqlite3* db, std::string& error);

struct backup_info {
  std::string file;      // the verified backup
  std::string manifest;  // file + ".json"
  std::vector<table_checksum> tables;
  std::uint64_t bytes = 0;
  double copy_s = 0;    // snapshot + copy
  double verify_s = 0;  // reopen, integrity check, checksums of both sides
};

// Backs up the database at `db_path` into directory `dir` (created if missing).
result<backup_info> backup_sqlite(const std::string& db_path, const std::string& dir,
                                  std::string& error);

// Opens a backup on its own, runs PRAGMA integrity_check and compares its checksums with the
// manifest written beside it. Returns the checksums when everything matches.
result<std::vector<table_checksum>> verify_backup(const std::string& file, std::string& error);

// Restores a verified backup as `db_path`: the backup is verified, copied beside the target,
// fsynced and renamed over it; the previous database (with its -wal/-shm) is kept as
// `<db_path>.pre-restore-<UTC>`, returned in `kept`. The service must be stopped.
boost::system::error_code restore_sqlite(const std::string& file, const std::string& db_path,
                                         std::string& kept, std::string& error);

// Retention in a backup directory: keeps the `keep` newest backups (0 = no count limit) and
// deletes those older than `max_age_s` (0 = no age limit), with their manifests. The newest
// backup is never deleted. Returns the deleted backup files.
result<std::vector<std::string>> apply_retention(const std::string& dir, std::size_t keep,
                                                 std::int64_t max_age_s, std::int64_t now_s,
                                                 std::string& error);

}  // namespace semilab::central
