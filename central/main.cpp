// semilab-central: the ingest service and its admin CLI. Thin: parsing and dispatch only.
#include <semilab/central/app.hpp>
#include <semilab/central/audit.hpp>
#include <semilab/central/config.hpp>
#include <semilab/central/replay_cmd.hpp>
#include <semilab/central/users.hpp>

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
  app.fallthrough();  // global options (--as, --reason) also after the subcommand

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

  // Audit trail (central/include/semilab/central/audit.hpp): who acts and why, for the entries
  // the admin commands write.
  std::string audit_actor, audit_reason;
  app.add_option("--as", audit_actor, "Who runs this command, for the audit trail (default: "
                                      "os:<login>)");
  app.add_option("--reason", audit_reason, "Why, for the audit trail");
  std::string keygen_out;
  auto* keygen = app.add_subcommand(
      "keygen", "Create central's Ed25519 key (signs acks, commands and audit heads); prints the "
                "public key that agents pin.");
  keygen->add_option("--config,-c", config_file, "TOML configuration file")->required();
  keygen->add_option("--out", keygen_out, "Key file (default: [central] signing_key_file)");
  auto* audit = app.add_subcommand("audit", "Audit trail and stored-batch signatures.");
  audit->require_subcommand(1);
  auto* averify = audit->add_subcommand(
      "verify", "Check every chain, each batch entry against its ledger row and the newest "
                "exported head; exit 1 on any finding.");
  auto* averifyb = audit->add_subcommand(
      "verify-batches", "Re-verify the signature of every stored batch; exit 1 on a failure.");
  auto* aexport = audit->add_subcommand(
      "export-head", "Write the chains' heads, signed, to [central] audit_head_dir.");
  std::string audit_chain;
  std::size_t audit_limit = 50;
  auto* alog = audit->add_subcommand("log", "Print audit entries, newest first.");
  alog->add_option("--chain", audit_chain, "Only this chain (admin, ingest:<instance>)");
  alog->add_option("--limit", audit_limit, "Most entries")->check(CLI::Range(1, 1000000));
  for (auto* c : {averify, averifyb, aexport, alog})
    c->add_option("--config,-c", config_file, "TOML configuration file")->required();
  // Named users (users.hpp): passwords are read from stdin, never from the command line.
  auto* users = app.add_subcommand("users", "Named users with roles (scrypt password hashes, "
                                            "lockout); `login` issues a token to a user.");
  users->require_subcommand(1);
  std::string user_name, user_role;
  auto* uadd = users->add_subcommand("add", "Create a user; password on stdin.");
  uadd->add_option("--role", user_role, "viewer, engineer or admin")->required();
  auto* upasswd = users->add_subcommand("passwd", "Set a user's password; password on stdin.");
  auto* ulist = users->add_subcommand("list", "List users (never their hashes).");
  auto* udisable = users->add_subcommand("disable", "Disable a user.");
  auto* uenable = users->add_subcommand("enable", "Enable a disabled user.");
  auto* uunlock = users->add_subcommand("unlock", "Clear a user's lockout.");
  auto* urole = users->add_subcommand("role", "Change a user's role.");
  urole->add_option("role", user_role, "viewer, engineer or admin")->required();
  auto* ulogin = users->add_subcommand(
      "login", "Check a user's password (stdin; lockout applies) and print a bearer token with "
               "the user's role.");
  for (auto* c : {uadd, upasswd, udisable, uenable, uunlock, urole, ulogin})
    c->add_option("name", user_name, "User name")->required();
  for (auto* c : {uadd, upasswd, ulist, udisable, uenable, uunlock, urole, ulogin})
    c->add_option("--config,-c", config_file, "TOML configuration file")->required();
  auto* seccheck = app.add_subcommand(
      "security-check", "Load the configuration and report insecure settings (exit 1 if any).");
  seccheck->add_option("--config,-c", config_file, "TOML configuration file")->required();

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
  sc::set_audit_context({audit_actor, audit_reason});
  if (keygen->parsed()) return sc::run_keygen(cfg, keygen_out, stdout, stderr);
  if (seccheck->parsed()) return sc::run_security_check(cfg, config_file, stdout, stderr);
  if (uadd->parsed()) return sc::run_users_add(cfg, user_name, user_role, stdin, stdout, stderr);
  if (upasswd->parsed()) return sc::run_users_passwd(cfg, user_name, stdin, stdout, stderr);
  if (ulist->parsed()) return sc::run_users_list(cfg, stdout, stderr);
  if (ulogin->parsed()) return sc::run_users_login(cfg, user_name, stdin, stdout, stderr);
  for (auto [c, what] : {std::pair{udisable, "disable"}, std::pair{uenable, "enable"},
                         std::pair{uunlock, "unlock"}, std::pair{urole, "role"}})
    if (c->parsed()) return sc::run_users_set(cfg, user_name, what, user_role, stdout, stderr);
  if (averify->parsed()) return sc::run_audit_verify(cfg, stdout, stderr);
  if (averifyb->parsed()) return sc::run_audit_verify_batches(cfg, stdout, stderr);
  if (aexport->parsed()) return sc::run_audit_export_head(cfg, stdout, stderr);
  if (alog->parsed()) return sc::run_audit_log(cfg, audit_chain, audit_limit, stdout, stderr);
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
  // [log]: format and file for the service; its level overrides [central] log_level when given.
  if (auto e = semilab::service::apply_log_options(cfg.log); !e.empty()) {
    std::cerr << "semilab-central: " << config_file << ": " << e << '\n';
    return sc::kExitUsage;
  }
  return sc::run_service(cfg, stdout);
}
