#pragma once
// The `[log]` options table (schemas/config_map.hpp) shared by both daemons' configuration
// loaders. Include only from configuration translation units (toml++ is heavy).
#include <semilab/schemas/config_map.hpp>
#include <semilab/service/log.hpp>

#include <vector>

namespace semilab::service {

inline const std::vector<schemas::config::option<log_options>>& log_option_table() {
  namespace cfg = schemas::config;
  auto as_opt = [](std::string (*f)(const std::string&)) {
    return [f](const std::string& v) -> std::optional<std::string> {
      auto why = f(v);
      if (why.empty()) return std::nullopt;
      return why;
    };
  };
  static const std::vector<cfg::option<log_options>> t = {
      cfg::string_opt<log_options>(
          "level", &log_options::level, "\"\" (the command line's --log-level / [central] log_level)",
          "Log level: trace, debug, info, warn, error, critical, off. Overrides the other setting "
          "when given.",
          as_opt(check_log_level)),
      cfg::string_opt<log_options>(
          "format", &log_options::format, "text",
          "`text` (one line: time, level, [component], message) or `json` (one JSON object per "
          "line: ts, level, component, instrument, logger, msg) on stderr and in the file. Under "
          "systemd the journal gets its own fields (COMPONENT, INSTRUMENT) either way.",
          as_opt(check_log_format)),
      cfg::string_opt<log_options>(
          "file", &log_options::file, "\"\"",
          "Also log to this file, rotated by size (missing directories are created; under the "
          "shipped unit it must be below /var/lib/semilab). \"\" = no file."),
      cfg::int_opt<log_options>("file_max_mb", &log_options::file_max_mb, "10", "MiB",
                                "Size at which the log file rotates.", 1, 4096),
      cfg::int_opt<log_options>("files", &log_options::files, "5", "",
                                "Rotated files kept besides the current one (file.1 ... file.N).",
                                1, 100),
  };
  return t;
}

}  // namespace semilab::service
