// semilab-central: the ingest service and its admin CLI. Thin: parsing and dispatch only.
#include <semilab/central/app.hpp>
#include <semilab/central/config.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

int main(int argc, char** argv) {
  namespace sc = semilab::central;
  CLI::App app{"semilab-central: ingest service of semilab (MQTT batches -> store, HTTP API)"};
  app.footer(
      "Exit codes: 0 ok / clean shutdown on SIGINT or SIGTERM, 1 runtime error (store, listener, "
      "broker client), 2 bad command line or configuration.");
  app.require_subcommand(1);

  std::string config_file;
  auto* run = app.add_subcommand("run", "Run the ingest service until SIGINT/SIGTERM. Prints "
                                        "'http HOST:PORT' as the first line on stdout.");
  run->add_option("--config,-c", config_file, "TOML configuration file")->required();
  auto* check = app.add_subcommand("check-config", "Validate a configuration file and exit.");
  check->add_option("--config,-c", config_file, "TOML configuration file")->required();
  app.add_subcommand("config-reference",
                     "Print the markdown reference of every configuration option.");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? sc::kExitOk : sc::kExitUsage;
  }

  if (app.got_subcommand("config-reference")) {
    std::cout << sc::config_reference();
    return sc::kExitOk;
  }

  sc::central_config cfg;
  if (auto e = sc::load_config(config_file, cfg)) {
    std::cerr << "semilab-central: " << e->message << '\n';
    return sc::kExitUsage;
  }
  if (app.got_subcommand("check-config")) {
    std::cout << "ok\n";
    return sc::kExitOk;
  }
  sc::set_log_level(cfg.central.log_level);
  return sc::run_service(cfg, stdout);
}
