#pragma once
// PostgreSQL migrations of the central store: schemas/sql/central-pg/NNNN_name.sql, embedded by
// central/CMakeLists.txt (generated pg_migrations.cpp).
#include <semilab/schemas/sql.hpp>
#include <span>

namespace semilab::central {
std::span<const schemas::migration> central_pg_migrations() noexcept;
}
