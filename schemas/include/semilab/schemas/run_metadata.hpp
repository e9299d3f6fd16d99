#pragma once
// Run metadata: which sample a run measured (sample, wafer, lot, die coordinates, operator,
// project: a recipe's [metadata] table, methods/recipe.hpp). Like the drop notice it is not a
// frame field but an ordinary record, so every frame version ever written stays as it is and an
// older central stores it as a plain event: class `event`, channel `run_metadata`, the run's
// `run_id`, the instrument that ran it, text value = the JSON below (schemas/WIRE.md,
// "Run metadata"). Central fills its samples model from it (schemas/sql/central/0006_samples.sql).
//
//   {"v":1,"sample":"S-17","wafer":"W07","lot":"L2411-3","die":"3,-2","operator":"ana",
//    "project":"hfo2"}
//
// Every field but "v" is optional text (at most kRunMetadataMaxField bytes). `die` is the die
// label as the operator wrote it; when it reads "X,Y" (two integers, spaces allowed) the die
// coordinates are X and Y. Explicit "die_x"/"die_y" integers win over the label.
#include <semilab/schemas/error.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace semilab::schemas {

inline constexpr std::string_view kRunMetadataChannel = "run_metadata";
inline constexpr std::size_t kRunMetadataMaxField = 256;

struct run_metadata {
  std::string sample, wafer, lot, die, operator_name, project;
  std::optional<std::int64_t> die_x, die_y;
  friend bool operator==(const run_metadata&, const run_metadata&) = default;
};

std::string encode_run_metadata(const run_metadata& m);
// bad_json when it is not an object of version 1, a field is not text (die_x/die_y: integers)
// or is longer than kRunMetadataMaxField. Unknown fields are ignored (a newer agent).
result<run_metadata> decode_run_metadata(std::string_view json);

// "3,-2" -> {3, -2}; anything else -> nullopt.
std::optional<std::pair<std::int64_t, std::int64_t>> parse_die_coordinates(std::string_view die);

}  // namespace semilab::schemas
