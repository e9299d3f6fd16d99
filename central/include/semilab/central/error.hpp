#pragma once
// Error values of semilab-central. Module boundaries return these instead of throwing.
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <type_traits>

namespace semilab::central {

enum class errc {
  ok = 0,
  store_open_failed = 1,  // the database file could not be opened or configured
  store_migration_failed, // a schema migration failed or the database is newer than this binary
  store_write_failed,     // a statement or COMMIT failed (disk full, I/O error, busy)
  store_read_failed,      // a query on the read connection failed
  bad_listen_address,     // [http] listen is not host:port
  listen_failed,          // bind/listen refused (port in use, permission)
  queue_full,             // the ingest queue is at its bound: the batch is refused as overload
  stopped,                // the component is shutting down
  backup_failed,          // a backup, verification or restore step failed (I/O, SQLite)
  backup_mismatch,        // a backup's content differs from its source or its manifest
};

const boost::system::error_category& error_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

template <class T>
using result = boost::system::result<T>;

}  // namespace semilab::central

template <>
struct boost::system::is_error_code_enum<semilab::central::errc> : std::true_type {};
