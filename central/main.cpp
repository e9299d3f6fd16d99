// semilab-central: the ingest service and its admin CLI. Thin: parsing and dispatch only.
#include <semilab/central/app.hpp>
#include <semilab/central/config.hpp>
#include <semilab/central/replay_cmd.hpp>

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
  auto* quarantine = app.add_subcommand("quarantine", "Inspect frames rejected as invalid.");
  quarantine->require_subcommand(1);
  std::size_t limit = 50;
  std::int64_t before = 0, id = 0;
  std::string payload_out;
  auto* qlist = quarantine->add_subcommand("list", "List quarantined frames, newest first.");
  qlist->add_option("--config,-c", config_file, "TOML configuration file")->required();
  qlist->add_option("--limit", limit, "Most entries to print")->check(CLI::Range(1, 100000));
  qlist->add_option("--before", before, "Only entries with an id below this (paging)");
  auto* qshow = quarantine->add_subcommand("show", "Show one quarantined frame.");
  qshow->add_option("id", id, "Quarantine entry id (from `quarantine list`)")->required();
  qshow->add_option("--config,-c", config_file, "TOML configuration file")->required();
  qshow->add_option("--payload-out", payload_out, "Write the kept frame bytes to this file");
  std::string to_dir, backup_file;
  auto* backup = app.add_subcommand(
      "backup", "Verified online backup of the store (SQLite backup API, or pg_dump for "
                "PostgreSQL), then retention ([backup]).");
  backup->add_option("--config,-c", config_file, "TOML configuration file")->required();
  backup->add_option("--to", to_dir, "Backup directory (default: [backup] dir)");
  auto* verify = app.add_subcommand(
      "verify-backup", "Check a backup: integrity and per-table checksums against its manifest.");
  verify->add_option("file", backup_file, "Backup file (central-<UTC>.db or .pgdump)")->required();
  verify->add_option("--config,-c", config_file,
                     "TOML configuration file (needed for a PostgreSQL .pgdump: restored into a "
                     "scratch database of that server)");
  auto* restore = app.add_subcommand(
      "restore", "Verify a backup and make it the store database (stop the service first).");
  restore->add_option("file", backup_file, "Backup file (central-<UTC>.db)")->required();
  restore->add_option("--config,-c", config_file, "TOML configuration file")->required();

  auto* retention = app.add_subcommand(
      "retention", "Delete what the [retention] policy says is too old (run it daily, e.g. from "
                   "a systemd timer); prints the rows deleted per class.");
  retention->add_option("--config,-c", config_file, "TOML configuration file")->required();

  auto* tokens = app.add_subcommand(
      "tokens", "Bearer tokens of the HTTP API (stored hashed in the store; roles viewer, "
                "engineer, admin).");
  tokens->require_subcommand(1);
  std::string token_role, token_name, token_key;
  bool token_all = false;
  auto* tcreate = tokens->add_subcommand("create", "Create a token; prints it once on stdout.");
  tcreate->add_option("--config,-c", config_file, "TOML configuration file")->required();
  tcreate->add_option("--role", token_role, "viewer, engineer or admin")
      ->required()
      ->check(CLI::IsMember({"viewer", "engineer", "admin"}));
  tcreate->add_option("--name", token_name, "Who or what holds it")->required();
  auto* tlist = tokens->add_subcommand("list", "List tokens (never their secrets).");
  tlist->add_option("--config,-c", config_file, "TOML configuration file")->required();
  tlist->add_flag("--all", token_all, "Include revoked tokens");
  auto* trevoke = tokens->add_subcommand("revoke", "Revoke a token by id or name.");
  trevoke->add_option("token", token_key, "Token id (from `tokens list`) or name")->required();
  trevoke->add_option("--config,-c", config_file, "TOML configuration file")->required();

  auto* agents = app.add_subcommand(
      "agents", "Agents' Ed25519 batch-signing keys (approve what `semilab-agent enroll` printed).");
  agents->require_subcommand(1);
  std::string agent_id, agent_key;
  bool agent_keys_all = false;
  auto* aapprove = agents->add_subcommand("approve", "Approve an agent's public key.");
  aapprove->add_option("agent", agent_id, "Agent id")->required();
  aapprove->add_option("--key", agent_key, "Public key: 64 hex digits or a file holding them")
      ->required();
  aapprove->add_option("--config,-c", config_file, "TOML configuration file")->required();
  auto* akeys = agents->add_subcommand("keys", "List approved keys.");
  akeys->add_option("agent", agent_id, "Agent id (default: all)");
  akeys->add_flag("--all", agent_keys_all, "Include revoked keys");
  akeys->add_option("--config,-c", config_file, "TOML configuration file")->required();
  auto* arevoke = agents->add_subcommand("revoke-key", "Revoke an agent's key.");
  arevoke->add_option("agent", agent_id, "Agent id")->required();
  arevoke->add_option("key_id", agent_key, "Key id (from `agents keys`)")->required();
  arevoke->add_option("--config,-c", config_file, "TOML configuration file")->required();

  sc::replay_request replay_req;
  auto* replay = app.add_subcommand(
      "replay", "Ask an agent to re-send retained records seq FROM..TO of a store epoch (signed "
                "command on its cmd topic; [mqtt] command_key_file).");
  replay->add_option("--config,-c", config_file, "TOML configuration file")->required();
  replay->add_option("--agent", replay_req.agent_id, "Agent id")->required();
  replay->add_option("--site", replay_req.site, "Agent's site (default: from the store)");
  replay->add_option("--epoch", replay_req.store_epoch, "Store epoch")->required();
  replay->add_option("--from", replay_req.from, "First seq")->required();
  replay->add_option("--to", replay_req.to, "Last seq (inclusive)")->required();

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

  if (verify->parsed() && config_file.empty())
    return sc::run_verify_backup(backup_file, stdout, stderr);

  sc::central_config cfg;
  if (auto e = sc::load_config(config_file, cfg)) {
    std::cerr << "semilab-central: " << e->message << '\n';
    return sc::kExitUsage;
  }
  if (app.got_subcommand("check-config")) {
    std::cout << "ok\n";
    return sc::kExitOk;
  }
  if (replay->parsed()) return sc::run_replay(cfg, replay_req, stdout, stderr);
  if (verify->parsed()) return sc::run_verify_backup(backup_file, &cfg, stdout, stderr);
  if (backup->parsed()) return sc::run_backup(cfg, to_dir, stdout, stderr);
  if (restore->parsed()) return sc::run_restore(cfg, backup_file, stdout, stderr);
  if (retention->parsed()) return sc::run_retention(cfg, stdout, stderr);
  if (tcreate->parsed()) return sc::run_tokens_create(cfg, token_role, token_name, stdout, stderr);
  if (tlist->parsed()) return sc::run_tokens_list(cfg, token_all, stdout, stderr);
  if (trevoke->parsed()) return sc::run_tokens_revoke(cfg, token_key, stdout, stderr);
  if (aapprove->parsed()) return sc::run_agents_approve(cfg, agent_id, agent_key, stdout, stderr);
  if (akeys->parsed()) return sc::run_agents_keys(cfg, agent_id, agent_keys_all, stdout, stderr);
  if (arevoke->parsed())
    return sc::run_agents_revoke_key(cfg, agent_id, agent_key, stdout, stderr);
  if (qlist->parsed()) return sc::run_quarantine_list(cfg, limit, before, stdout, stderr);
  if (qshow->parsed()) return sc::run_quarantine_show(cfg, id, payload_out, stdout, stderr);
  sc::set_log_level(cfg.central.log_level);
  return sc::run_service(cfg, stdout);
}
