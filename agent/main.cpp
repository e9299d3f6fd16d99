// semilab-agent: the daemon beside an instrument, and the field engineer's CLI.
// Exit codes (docs/agent-cli.md): 0 success, 1 runtime failure (or an invalid file for
// `config check`, insecure settings for `security-check`), 2 usage or configuration error,
// 3 the daemon is not running, 4 timed out.
#include <semilab/agent/config.hpp>
#include <semilab/agent/daemon.hpp>
#include <semilab/agent/signing.hpp>
#include <semilab/drivers/model.hpp>

#include "src/cli_analyze.hpp"
#include "src/cli_control.hpp"
#include "src/cli_modbus.hpp"
#include "src/cli_runs.hpp"
#include "src/cli_scpi.hpp"

#include <CLI/CLI.hpp>
#include <semilab/service/systemd.hpp>
#include <spdlog/spdlog.h>

#include <iostream>

int main(int argc, char** argv) {
  CLI::App app{"semilab-agent: drives instruments, stores every measurement locally first, uploads to central"};
  app.require_subcommand(1);
  std::string config_path;
  bool as_json = false;
  std::string level = "info";
  app.add_option("--log-level", level, "trace, debug, info, warn, error")->capture_default_str();
  // Logs go to stderr, or to journald with COMPONENT/INSTRUMENT fields under systemd; optionally
  // also to a rotating file.
  std::string log_file;
  std::size_t log_file_mb = 10, log_files = 5;
  app.add_option("--log-file", log_file, "Also log to this file, rotated");
  app.add_option("--log-file-max-mb", log_file_mb, "Size at which the log file rotates")
      ->capture_default_str()->check(CLI::Range(1, 4096));
  app.add_option("--log-files", log_files, "Rotated log files kept")
      ->capture_default_str()->check(CLI::Range(1, 100));

  auto* run = app.add_subcommand("run", "Run the agent daemon until SIGINT/SIGTERM");
  run->add_option("-c,--config", config_path, "Configuration file (TOML)")->required();
  auto* status = app.add_subcommand("status", "Outbox, counters and (if running) live daemon state");
  status->add_option("-c,--config", config_path, "Configuration file (TOML)")->required();
  status->add_flag("--json", as_json, "Machine-readable output");
  auto* check = app.add_subcommand("check-config", "Validate a configuration file and exit");
  check->add_option("-c,--config", config_path, "Configuration file (TOML)")->required();
  auto* enroll = app.add_subcommand("enroll", "Create the batch-signing key; print its public key");
  enroll->add_option("-c,--config", config_path, "Configuration file (TOML)")->required();
  auto* ref = app.add_subcommand("config-reference", "Print the configuration reference (Markdown)");
  auto* models = app.add_subcommand("models", "List instrument models and their settings");
  semilab::agent::scpi_cli scpi_cli(app);  // probe, scpi
  semilab::agent::modbus_cli modbus_cli(app);  // modbus read|write|scan
  semilab::agent::analyze_cli analyze_cli(app);  // analyze KIND FILE...
  semilab::agent::run_recipe_cli run_recipe_cli(app);  // run-recipe RECIPE --sample ID
  auto* queue = app.add_subcommand("queue", "Outbox depth per class, oldest record, retention, dead letters");
  queue->require_subcommand(0, 1);
  queue->add_option("-c,--config", config_path, "Configuration file (TOML)");
  queue->add_flag("--json", as_json, "Machine-readable output");
  semilab::agent::control_cli control_cli(app);  // instruments, flush, pause, resume, export, ...
  auto* dead = queue->add_subcommand("dead-letters", "Records central rejected permanently");
  bool retry = false;
  dead->add_option("-c,--config", config_path, "Configuration file (TOML)")->required();
  dead->add_flag("--retry", retry, "Move them back to the outbox to be sent again");
  dead->add_flag("--json", as_json, "Machine-readable output");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help: 0; usage errors: 2 (not CLI11's 100+)
  }

  auto logger = std::make_shared<spdlog::logger>("semilab-agent",
                                                  semilab::service::default_sink("semilab-agent"));
  if (!log_file.empty()) {
    if (auto e = semilab::service::add_rotating_file(log_file, log_file_mb << 20, log_files);
        !e.empty()) {
      std::cerr << "semilab-agent: " << e << "\n";
      return 2;
    }
  }
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));

  if (auto rc = scpi_cli.run()) return *rc;
  if (modbus_cli.parsed()) return modbus_cli.run();
  if (analyze_cli.parsed()) return analyze_cli.run(std::cout, std::cerr);
  if (run_recipe_cli.parsed()) return run_recipe_cli.run();
  if (queue->parsed() && !dead->parsed() && config_path.empty()) {
    std::cerr << "semilab-agent: queue: -c/--config is required\n";
    return 2;
  }
  if (auto rc = control_cli.run(queue)) return *rc;
  if (ref->parsed()) {
    std::cout << semilab::agent::config_reference();
    return 0;
  }
  if (models->parsed()) {
    for (const auto& m : semilab::drivers::models()) {
      std::cout << m.name << ": " << m.description << "\n";
      for (const auto& s : m.settings)
        std::cout << "  settings." << s.key << " = " << s.default_text << " " << s.unit << "  ("
                  << s.min << " .. " << s.max << ") " << s.doc << "\n";
    }
    return 0;
  }
  std::string err;
  auto cfg = semilab::agent::load_config(config_path, err);
  if (!cfg) {
    std::cerr << "semilab-agent: " << err << "\n";
    return 2;
  }
  if (check->parsed()) {
    std::cout << config_path << ": ok (" << cfg->instruments.size() << " instrument(s))\n";
    return 0;
  }
  if (status->parsed()) return semilab::agent::print_status(*cfg, as_json);
  if (enroll->parsed()) return semilab::agent::run_enroll(*cfg, std::cout, std::cerr);
  if (dead->parsed()) return semilab::agent::run_queue_dead_letters(*cfg, retry, as_json);
  // [log]: format and file for the daemon; its level overrides --log-level when given.
  if (auto e = semilab::service::apply_log_options(cfg->log); !e.empty()) {
    std::cerr << "semilab-agent: " << config_path << ": " << e << "\n";
    return 2;
  }
  return semilab::agent::run_daemon(*cfg);
}
