#pragma once
// Minimal RAII over the SQLite C API, private to semilab_sync.
#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace semilab::sync::detail {

class statement {
 public:
  statement() = default;
  statement(sqlite3* db, std::string_view sql) {
    if (sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                           &st_, nullptr) != SQLITE_OK)
      st_ = nullptr;
  }
  ~statement() { sqlite3_finalize(st_); }
  statement(statement&& o) noexcept : st_(std::exchange(o.st_, nullptr)) {}
  statement& operator=(statement&& o) noexcept {
    std::swap(st_, o.st_);
    return *this;
  }
  explicit operator bool() const { return st_ != nullptr; }
  sqlite3_stmt* get() const { return st_; }

  statement& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(st_, i, v);
    return *this;
  }
  statement& bind(int i, double v) {
    sqlite3_bind_double(st_, i, v);
    return *this;
  }
  statement& bind(int i, std::string_view v) {
    sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  statement& bind_null(int i) {
    sqlite3_bind_null(st_, i);
    return *this;
  }
  int step() { return sqlite3_step(st_); }
  void reset() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
  }
  std::int64_t int64(int col) const { return sqlite3_column_int64(st_, col); }
  double real(int col) const { return sqlite3_column_double(st_, col); }
  int type(int col) const { return sqlite3_column_type(st_, col); }
  std::string text(int col) const {
    auto* p = sqlite3_column_text(st_, col);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<std::size_t>(sqlite3_column_bytes(st_, col)))
             : std::string();
  }

 private:
  sqlite3_stmt* st_ = nullptr;
};

inline bool exec(sqlite3* db, const char* sql, std::string* err = nullptr) {
  char* msg = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &msg);
  if (rc != SQLITE_OK && err) *err = msg ? msg : sqlite3_errmsg(db);
  sqlite3_free(msg);
  return rc == SQLITE_OK;
}

}  // namespace semilab::sync::detail
