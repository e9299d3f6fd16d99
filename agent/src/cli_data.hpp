#pragma once
// What the CLI reads directly from the agent database (outbox.db), with or without a running
// daemon: read-only connections (WAL lets them read beside the daemon's writer).
#include <boost/json/object.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

namespace semilab::agent {

// RFC 3339 ("2026-11-27T10:00:00Z", "2026-11-27T10:00:00.5+02:00", "2026-11-27" = midnight
// UTC) or relative to `now_ns` ("2h", "30m", "90s", "7d", "1w": that long ago), or "now".
// nullopt when unreadable.
std::optional<std::int64_t> parse_time_arg(std::string_view text, std::int64_t now_ns);
// "2026-11-27T10:00:00.123456789Z"
std::string rfc3339_ns(std::int64_t ts_ns);

// Depth per priority class (records, bytes, oldest timestamp and seq), dead letters, retained
// (acked, kept for replays) with their oldest ack. Empty object + error on failure.
boost::json::object queue_depth(const std::filesystem::path& db, std::string& error);

// Database statistics for `diag bundle`: schema version, pages, free pages, file sizes, rows
// per table, persisted counters.
boost::json::object database_stats(const std::filesystem::path& db, std::string& error);

enum class export_format { csv, jsonl };
// Records with since_ns <= ts < until_ns from the outbox (held), dead letters and the
// retention window (acked), in seq order. Values keep every digit (decimal as reported,
// doubles shortest round-trip, integers exact, as strings in JSON). Returns the row count, or
// nullopt with `error`.
std::optional<std::uint64_t> export_records(const std::filesystem::path& db, std::int64_t since_ns,
                                            std::int64_t until_ns, export_format f,
                                            std::ostream& out, std::string& error);

}  // namespace semilab::agent
