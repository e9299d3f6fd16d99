#include "log.hpp"

#include <semilab/service/log.hpp>
#include <semilab/service/systemd.hpp>

#include <mutex>

namespace semilab::central {

std::shared_ptr<spdlog::logger> logger(const std::string& component) {
  static std::mutex m;
  std::lock_guard lock(m);
  if (auto l = spdlog::get(component)) return l;
  // stderr, or journald (COMPONENT = this logger's name) under systemd.
  static auto sink = service::default_sink("semilab-central");
  auto l = std::make_shared<spdlog::logger>(component, sink);
  // A logger's pattern reaches the shared sinks: with `[log] format = "json"` they keep the JSON
  // formatter service::apply_log_options() gave them.
  if (!service::json_logs()) l->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");
  l->set_level(spdlog::get_level());
  spdlog::register_logger(l);
  return l;
}

}  // namespace semilab::central
