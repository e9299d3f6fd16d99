#include <semilab/schemas/sql.hpp>

#include <sqlite3.h>

#include <string>

namespace semilab::schemas {

namespace {
bool exec(sqlite3* db, const char* sql, std::string& error) {
  char* msg = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
    error = msg ? msg : sqlite3_errmsg(db);
    sqlite3_free(msg);
    return false;
  }
  return true;
}
}  // namespace

result<int> schema_version(sqlite3* db) {
  sqlite3_stmt* st = nullptr;
  const char* q =
      "SELECT COUNT(*) FROM sqlite_schema WHERE type='table' AND name='schema_version'";
  if (sqlite3_prepare_v2(db, q, -1, &st, nullptr) != SQLITE_OK)
    return make_error_code(errc::bad_header);
  int has = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
  sqlite3_finalize(st);
  if (!has) return 0;
  if (sqlite3_prepare_v2(db, "SELECT MAX(version) FROM schema_version", -1, &st, nullptr) != SQLITE_OK)
    return make_error_code(errc::bad_header);
  int v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
  sqlite3_finalize(st);
  return v;
}

boost::system::error_code apply_migrations(sqlite3* db, std::span<const migration> steps,
                                           std::string& error) {
  if (!exec(db,
            "CREATE TABLE IF NOT EXISTS schema_version("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ns INTEGER NOT NULL)",
            error))
    return make_error_code(errc::bad_header);
  auto cur = schema_version(db);
  if (!cur) {
    error = sqlite3_errmsg(db);
    return cur.error();
  }
  int newest = steps.empty() ? 0 : steps.back().version;
  if (*cur > newest) {
    error = "database schema version " + std::to_string(*cur) +
            " is newer than this program knows (" + std::to_string(newest) + ")";
    return make_error_code(errc::unsupported_version);
  }
  for (const auto& m : steps) {
    if (m.version <= *cur) continue;
    std::string sql = "BEGIN IMMEDIATE;\n" + std::string(m.sql) +
                      "\nINSERT INTO schema_version(version, name, applied_ns) VALUES(" +
                      std::to_string(m.version) + ", '" + std::string(m.name) +
                      "', CAST((julianday('now') - 2440587.5) * 86400000000000 AS INTEGER));\nCOMMIT;";
    if (!exec(db, sql.c_str(), error)) {
      std::string ignored;
      exec(db, "ROLLBACK", ignored);
      error = "migration " + std::string(m.name) + ": " + error;
      return make_error_code(errc::bad_header);
    }
  }
  return {};
}

}  // namespace semilab::schemas
