#pragma once
// SQL schemas of the agent outbox and the central store, with numbered migrations.
// The DDL lives in schemas/sql/{agent,central}/NNNN_name.sql and is compiled into the library.
#include <semilab/schemas/error.hpp>

#include <span>
#include <string>
#include <string_view>

struct sqlite3;

namespace semilab::schemas {

struct migration {
  int version;
  std::string_view name;
  std::string_view sql;
};

std::span<const migration> agent_outbox_migrations() noexcept;
std::span<const migration> central_store_migrations() noexcept;

// Brings the database to the newest version inside one transaction per step. A database newer than
// this binary knows is refused (errc::unsupported_version) rather than touched.
// `error` receives SQLite's message on failure.
boost::system::error_code apply_migrations(sqlite3* db, std::span<const migration> steps,
                                           std::string& error);
// 0 for a database without a schema_version table.
result<int> schema_version(sqlite3* db);

}  // namespace semilab::schemas
