#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <semilab/central/backup.hpp>

#include "backup_common.hpp"

namespace semilab::central {

namespace fs = std::filesystem;
using clk = std::chrono::steady_clock;
using backup_detail::checksum_mismatch;
using backup_detail::fsync_path;
using backup_detail::utc_stamp;

namespace {

struct db_handle {
  sqlite3* db = nullptr;
  db_handle() = default;
  db_handle(const db_handle&) = delete;
  db_handle& operator=(const db_handle&) = delete;
  ~db_handle() { sqlite3_close_v2(db); }
};

struct stmt_handle {
  sqlite3_stmt* s = nullptr;
  stmt_handle() = default;
  stmt_handle(const stmt_handle&) = delete;
  stmt_handle& operator=(const stmt_handle&) = delete;
  ~stmt_handle() { sqlite3_finalize(s); }
};

std::string quoted(const std::string& id) {
  std::string s = "\"";
  for (char c : id) {
    if (c == '"') s += '"';
    s += c;
  }
  return s + "\"";
}

bool open_db(const std::string& path, int flags, db_handle& h, std::string& error) {
  if (sqlite3_open_v2(path.c_str(), &h.db, flags, nullptr) != SQLITE_OK) {
    error = "cannot open " + path + ": " + (h.db ? sqlite3_errmsg(h.db) : "out of memory");
    return false;
  }
  sqlite3_extended_result_codes(h.db, 1);
  sqlite3_busy_timeout(h.db, 5000);
  return true;
}

bool exec(sqlite3* db, const char* sql, std::string& error) {
  char* msg = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
    error = std::string(sql) + ": " + (msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return false;
  }
  return true;
}

// Byte-for-byte file copy, then fsync.
bool copy_file_synced(const std::string& from, const std::string& to, std::string& error) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) {
    error = "copy " + from + " -> " + to + ": " + ec.message();
    return false;
  }
  return fsync_path(to, false, error);
}

// PRAGMA integrity_check, then the checksums of every table of `db` (a copy opened on its own).
result<std::vector<table_checksum>> check_copy(sqlite3* db, const std::string& what,
                                               std::string& error) {
  stmt_handle s;
  if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s.s, nullptr) != SQLITE_OK ||
      sqlite3_step(s.s) != SQLITE_ROW ||
      std::string(reinterpret_cast<const char*>(sqlite3_column_text(s.s, 0))) != "ok") {
    error = what + ": integrity check failed: " + sqlite3_errmsg(db);
    return make_error_code(errc::backup_mismatch);
  }
  return table_checksums(db, error);
}

// Backups in `dir`, oldest first (names carry the UTC time).
std::vector<fs::path> backups_in(const std::string& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const auto name = e.path().filename().string();
    if (name.rfind("central-", 0) == 0 &&
        (e.path().extension() == ".db" || e.path().extension() == ".pgdump"))
      out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

result<std::vector<table_checksum>> table_checksums(sqlite3* db, std::string& error) {
  std::vector<std::string> tables;
  {
    stmt_handle s;
    if (sqlite3_prepare_v2(db,
                           "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE "
                           "'sqlite\\_%' ESCAPE '\\' ORDER BY name",
                           -1, &s.s, nullptr) != SQLITE_OK) {
      error = sqlite3_errmsg(db);
      return make_error_code(errc::backup_failed);
    }
    while (sqlite3_step(s.s) == SQLITE_ROW)
      tables.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s.s, 0)));
  }
  std::vector<table_checksum> out;
  for (const auto& t : tables) {
    // Primary-key order (rowid when the table has no declared key).
    std::vector<std::pair<int, std::string>> pk;
    {
      stmt_handle s;
      if (sqlite3_prepare_v2(db, "SELECT name, pk FROM pragma_table_info(?1) WHERE pk > 0", -1,
                             &s.s, nullptr) != SQLITE_OK) {
        error = sqlite3_errmsg(db);
        return make_error_code(errc::backup_failed);
      }
      sqlite3_bind_text(s.s, 1, t.c_str(), -1, SQLITE_TRANSIENT);
      while (sqlite3_step(s.s) == SQLITE_ROW)
        pk.emplace_back(sqlite3_column_int(s.s, 1),
                        reinterpret_cast<const char*>(sqlite3_column_text(s.s, 0)));
    }
    std::sort(pk.begin(), pk.end());
    std::string order;
    for (const auto& [n, col] : pk) order += (order.empty() ? "" : ", ") + quoted(col);
    if (order.empty()) order = "rowid";
    const std::string sql = "SELECT * FROM " + quoted(t) + " ORDER BY " + order;
    stmt_handle s;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s.s, nullptr) != SQLITE_OK) {
      error = t + ": " + sqlite3_errmsg(db);
      return make_error_code(errc::backup_failed);
    }
    backup_detail::sha256 d;
    table_checksum c;
    c.table = t;
    const int cols = sqlite3_column_count(s.s);
    int rc;
    while ((rc = sqlite3_step(s.s)) == SQLITE_ROW) {
      ++c.rows;
      for (int i = 0; i < cols; ++i) {
        const int type = sqlite3_column_type(s.s, i);
        const unsigned char tag = static_cast<unsigned char>(type);
        d.add(&tag, 1);
        switch (type) {
          case SQLITE_INTEGER:
            d.add_u64(static_cast<std::uint64_t>(sqlite3_column_int64(s.s, i)));
            break;
          case SQLITE_FLOAT: {
            const double v = sqlite3_column_double(s.s, i);
            std::uint64_t bits;
            std::memcpy(&bits, &v, 8);
            d.add_u64(bits);
            break;
          }
          case SQLITE_NULL:
            break;
          default: {
            const void* p = type == SQLITE_TEXT
                                ? static_cast<const void*>(sqlite3_column_text(s.s, i))
                                : sqlite3_column_blob(s.s, i);
            const auto n = static_cast<std::size_t>(sqlite3_column_bytes(s.s, i));
            d.add_u64(n);
            if (n) d.add(p, n);
          }
        }
      }
    }
    if (rc != SQLITE_DONE) {
      error = t + ": " + sqlite3_errmsg(db);
      return make_error_code(errc::backup_failed);
    }
    c.sha256 = d.hex();
    out.push_back(std::move(c));
  }
  return out;
}

result<backup_info> backup_sqlite(const std::string& db_path, const std::string& dir,
                                  std::string& error) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    error = "cannot create backup directory " + dir + ": " + ec.message();
    return make_error_code(errc::backup_failed);
  }
  if (!fs::exists(db_path)) {
    error = "no store database at " + db_path;
    return make_error_code(errc::backup_failed);
  }
  backup_info info;
  const std::string name = "central-" + utc_stamp() + ".db";
  info.file = (fs::path(dir) / name).string();
  info.manifest = info.file + ".json";
  const std::string partial = info.file + ".partial";
  auto fail = [&](errc e) -> result<backup_info> {
    fs::remove(partial, ec);
    return make_error_code(e);
  };

  const auto t0 = clk::now();
  std::vector<table_checksum> source;
  {
    db_handle src, dst;
    if (!open_db(db_path, SQLITE_OPEN_READONLY, src, error)) return fail(errc::backup_failed);
    // One read transaction: the checksums and the copy see the same snapshot.
    if (!exec(src.db, "BEGIN", error)) return fail(errc::backup_failed);
    auto sums = table_checksums(src.db, error);
    if (!sums) return fail(errc::backup_failed);
    source = std::move(*sums);
    if (!open_db(partial, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, dst, error))
      return fail(errc::backup_failed);
    sqlite3_backup* b = sqlite3_backup_init(dst.db, "main", src.db, "main");
    if (!b) {
      error = "backup init: " + std::string(sqlite3_errmsg(dst.db));
      return fail(errc::backup_failed);
    }
    const int rc = sqlite3_backup_step(b, -1);
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
      error = "backup copy: " + std::string(sqlite3_errstr(rc));
      return fail(errc::backup_failed);
    }
    // The copy is a standalone file: no WAL beside it.
    if (!exec(dst.db, "PRAGMA journal_mode=DELETE", error)) return fail(errc::backup_failed);
    exec(src.db, "COMMIT", error);
  }
  info.copy_s = std::chrono::duration<double>(clk::now() - t0).count();

  const auto t1 = clk::now();
  {
    db_handle copy;
    if (!open_db(partial, SQLITE_OPEN_READONLY, copy, error)) return fail(errc::backup_failed);
    auto got = check_copy(copy.db, "the copy", error);
    if (!got)
      return fail(got.error() == errc::backup_mismatch ? errc::backup_mismatch
                                                        : errc::backup_failed);
    if (auto why = checksum_mismatch(source, *got, "the backup has tables the source has not");
        !why.empty()) {
      error = "the copy differs from the source snapshot: " + why;
      return fail(errc::backup_mismatch);
    }
  }
  info.verify_s = std::chrono::duration<double>(clk::now() - t1).count();
  info.tables = std::move(source);
  info.bytes = fs::file_size(partial, ec);

  boost::json::object m{{"source", db_path},
                        {"file", name},
                        {"created_utc", name.substr(8, name.size() - 11)},
                        {"bytes", info.bytes},
                        {"tables", backup_detail::manifest_tables(info.tables)}};
  if (!backup_detail::publish_backup(partial, info.file, m, dir, error)) {
    fs::remove(info.manifest + ".partial", ec);
    return fail(errc::backup_failed);
  }
  return info;
}

result<std::vector<table_checksum>> verify_backup(const std::string& file, std::string& error) {
  auto want = backup_detail::read_manifest(file, error);
  if (!want) return want.error();
  db_handle copy;
  if (!open_db(file, SQLITE_OPEN_READONLY, copy, error))
    return make_error_code(errc::backup_failed);
  auto got = check_copy(copy.db, file, error);
  if (!got) return got.error();
  if (auto why = checksum_mismatch(*want, *got, "the backup has tables the manifest has not");
      !why.empty()) {
    error = file + " differs from its manifest: " + why;
    return make_error_code(errc::backup_mismatch);
  }
  return got;
}

boost::system::error_code restore_sqlite(const std::string& file, const std::string& db_path,
                                         std::string& kept, std::string& error) {
  auto ok = verify_backup(file, error);
  if (!ok) return ok.error();
  std::error_code ec;
  fs::create_directories(fs::path(db_path).parent_path(), ec);
  const std::string staged = db_path + ".restoring";
  if (!copy_file_synced(file, staged, error)) return make_error_code(errc::backup_failed);
  kept.clear();
  if (fs::exists(db_path)) {
    kept = db_path + ".pre-restore-" + utc_stamp();
    for (const char* ext : {"", "-wal", "-shm"}) {
      const std::string from = db_path + ext;
      if (!fs::exists(from)) continue;
      fs::rename(from, kept + ext, ec);
      if (ec) {
        error = "cannot move " + from + " aside: " + ec.message();
        fs::remove(staged, ec);
        return make_error_code(errc::backup_failed);
      }
    }
  }
  fs::rename(staged, db_path, ec);
  if (ec) {
    error = "cannot move the restored database into place: " + ec.message();
    return make_error_code(errc::backup_failed);
  }
  if (!fsync_path(fs::path(db_path).parent_path().string(), true, error))
    return make_error_code(errc::backup_failed);
  return {};
}

result<std::vector<std::string>> apply_retention(const std::string& dir, std::size_t keep,
                                                 std::int64_t max_age_s, std::int64_t now_s,
                                                 std::string& error) {
  auto all = backups_in(dir);
  std::vector<std::string> deleted;
  if (all.size() <= 1) return deleted;
  for (std::size_t i = 0; i + 1 < all.size(); ++i) {  // the newest always stays
    const std::size_t newer = all.size() - 1 - i;     // backups newer than this one
    bool drop = keep > 0 && newer >= keep;
    if (!drop && max_age_s > 0) {
      struct stat st {};
      if (::stat(all[i].c_str(), &st) == 0 && now_s - st.st_mtime > max_age_s) drop = true;
    }
    if (!drop) continue;
    std::error_code ec;
    fs::remove(all[i].string() + ".json", ec);
    if (!fs::remove(all[i], ec) || ec) {
      error = "cannot delete old backup " + all[i].string() + ": " + ec.message();
      return make_error_code(errc::backup_failed);
    }
    deleted.push_back(all[i].string());
  }
  return deleted;
}

}  // namespace semilab::central
