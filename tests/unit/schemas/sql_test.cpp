#include <semilab/schemas/sql.hpp>

#include <doctest/doctest.h>
#include <sqlite3.h>

using namespace semilab::schemas;

TEST_CASE("migrations apply once, in order, and refuse a newer database") {
  for (auto steps : {agent_outbox_migrations(), central_store_migrations()}) {
    REQUIRE_FALSE(steps.empty());
    CHECK(steps.front().version == 1);
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(":memory:", &db) == SQLITE_OK);
    CHECK(*schema_version(db) == 0);
    std::string err;
    CHECK_FALSE(apply_migrations(db, steps, err));
    CHECK(*schema_version(db) == steps.back().version);
    CHECK_FALSE(apply_migrations(db, steps, err));  // idempotent
    sqlite3_exec(db, "INSERT INTO schema_version VALUES(999, 'future', 0)", nullptr, nullptr, nullptr);
    CHECK(apply_migrations(db, steps, err) == errc::unsupported_version);
    CHECK(err.find("newer") != std::string::npos);
    sqlite3_close(db);
  }
}
