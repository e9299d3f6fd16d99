#pragma once
// Verified online backups of the store (SQLite here; PostgreSQL below, backup_pg).
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

// The PostgreSQL store (src/pg_backup.cpp): `pg_dump -Fc --snapshot` of one exported snapshot
// whose per-table checksums (SHA-256 of the rows' text forms in byte order) are computed in the
// same transaction; the dump is restored into a scratch database on the same server (the
// store's user needs CREATEDB) and must match before it becomes DIR/central-<UTC>.pgdump with
// its manifest. pg_dump / pg_restore come from PATH (postgresql-client); the password travels in
// PGPASSWORD, never on a command line.
result<backup_info> backup_pg(const std::string& url, const std::string& dir, std::string& error);
// Restores the dump into a scratch database of the server at `url` and compares with the
// manifest.
result<std::vector<table_checksum>> verify_pg_backup(const std::string& file,
                                                     const std::string& url, std::string& error);
// Verifies, then replaces the content of the database at `url` with the dump in one transaction
// (pg_restore --clean --single-transaction) and checks the result against the manifest. Stop
// every instance first.
boost::system::error_code restore_pg(const std::string& file, const std::string& url,
                                     std::string& error);

// Retention in a backup directory: keeps the `keep` newest backups (0 = no count limit) and
// deletes those older than `max_age_s` (0 = no age limit), with their manifests. The newest
// backup is never deleted. Returns the deleted backup files.
result<std::vector<std::string>> apply_retention(const std::string& dir, std::size_t keep,
                                                 std::int64_t max_age_s, std::int64_t now_s,
                                                 std::string& error);

}  // namespace semilab::central
