#pragma once
// The `[log]` table of semilab-agent and semilab-central, declared once: level, format (text or
// JSON lines), optional rotating file. Both daemons log through service::default_sink()
// (journald with COMPONENT/INSTRUMENT fields under systemd, else stderr); apply_log_options()
// sets the level and the format of the stderr and file sinks and adds the file.
#include <spdlog/formatter.h>

#include <cstdint>
#include <memory>
#include <string>

namespace semilab::service {

struct log_options {
  std::string level;           // "" = the daemon's other setting (CLI --log-level, [central] log_level)
  std::string format = "text"; // "text" | "json" (journald keeps its own fields either way)
  std::string file;            // "" = none; else also to this rotating file
  std::uint32_t file_max_mb = 10;
  std::uint32_t files = 5;     // rotated files kept (file, file.1, ... file.N)
};

// Validation shared by the config tables: nullopt-like "" when fine, else why.
std::string check_log_level(const std::string& v);
std::string check_log_format(const std::string& v);

// Applies `o` to default_sink() and every logger: level (when set), format, rotating file.
// Empty on success; else why (e.g. "log file /x/y.log: Failed opening file ... for writing").
// Call once, after the configuration is loaded and before the daemon's threads start.
std::string apply_log_options(const log_options& o);

// True after apply_log_options() chose JSON: loggers created later must not set a text pattern.
bool json_logs() noexcept;

// One JSON object per line: {"ts":"2026-11-27T22:00:00.123Z","level":"warn","component":"acq",
// "instrument":"smu1","logger":"semilab-agent","msg":"[acq] smu1: poll failed"} ("instrument"
// only when the message names one). Exposed for tests.
std::unique_ptr<spdlog::formatter> make_json_formatter();

}  // namespace semilab::service
