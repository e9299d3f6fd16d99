#pragma once
// `semilab-central run`: the whole service in one call (used by main.cpp and by tests that run
// the service in-process).
#include <semilab/central/config.hpp>
#include <semilab/central/storage.hpp>

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace semilab::central {

// Exit codes of semilab-central (documented in `semilab-central --help`).
inline constexpr int kExitOk = 0;       // clean shutdown (SIGINT/SIGTERM) or command done
inline constexpr int kExitRuntime = 1;  // store, listener or broker client could not start
inline constexpr int kExitUsage = 2;    // bad command line or configuration

// Level of every component logger ("trace" ... "off"); unknown names mean "info".
void set_log_level(std::string_view level);

// Runs until SIGINT or SIGTERM, then shuts down cleanly: stop accepting HTTP connections, finish
// the in-flight group commit and publish its acks, publish the retained offline state, disconnect.
// Writes "http HOST:PORT" (the bound address) as the first line on `out`; logs go to stderr.
int run_service(const central_config& cfg, std::FILE* out);

// The storage the configuration names ([store] backend, data_dir/central.db or url).
storage_options storage_options_from(const central_config& cfg, open_mode mode);

// `semilab-central quarantine list`: newest first, one line per entry (id, received UTC, agent,
// size, reason, topic), `limit` entries older than `before_id` (0 = from the newest).
int run_quarantine_list(const central_config& cfg, std::size_t limit, std::int64_t before_id,
                        std::FILE* out, std::FILE* err);
// `semilab-central quarantine show ID`: the entry's fields, a hex dump of the kept payload, and
// the frame header when it still decodes; `payload_out` (optional) receives the kept bytes.
int run_quarantine_show(const central_config& cfg, std::int64_t id, const std::string& payload_out,
                        std::FILE* out, std::FILE* err);

// `semilab-central backup`: a verified online backup of the SQLite store into `to_dir` (or
// [backup] dir, or <data_dir>/backups), then retention ([backup] keep, max_age_days).
int run_backup(const central_config& cfg, const std::string& to_dir, std::FILE* out,
               std::FILE* err);
// `semilab-central verify-backup FILE`: integrity check and checksums against the manifest.
int run_verify_backup(const std::string& file, std::FILE* out, std::FILE* err);
// The same for either backend: a `.pgdump` (PostgreSQL) needs `cfg` with the store's server, into
// which it is restored as a scratch database.
int run_verify_backup(const std::string& file, const central_config* cfg, std::FILE* out,
                      std::FILE* err);
// `semilab-central restore FILE`: verify, then replace the store database (service stopped).
int run_restore(const central_config& cfg, const std::string& file, std::FILE* out,
                std::FILE* err);
// `semilab-central retention`: one pass of the [retention] policy on the store (safe beside a
// running service: each delete is its own transaction). Prints the rows deleted per class.
int run_retention(const central_config& cfg, std::FILE* out, std::FILE* err);

// `semilab-central tokens create --role R --name N`: prints the new bearer token once (stdout,
// one line) and its id on stderr. `tokens list [--all]`: id, role, name, created, revoked.
// `tokens revoke ID|NAME`: exit 1 when no valid token matched. The store needs no running service.
int run_tokens_create(const central_config& cfg, const std::string& role, const std::string& name,
                      std::FILE* out, std::FILE* err);
int run_tokens_list(const central_config& cfg, bool all, std::FILE* out, std::FILE* err);
int run_tokens_revoke(const central_config& cfg, const std::string& id_or_name, std::FILE* out,
                      std::FILE* err);

// `semilab-central agents approve ID --key FILE|HEX`: approves an agent's Ed25519 public key
// (printed by `semilab-agent enroll`); prints "ID KEYID approved|already approved". Exit 2 on a
// bad id or key. `agents keys [ID] [--all]`: the approved (and with --all, revoked) keys.
// `agents revoke-key ID KEYID`: exit 1 when no such approved key. Ingest reads the keys per batch.
int run_agents_approve(const central_config& cfg, const std::string& agent_id,
                       const std::string& key_arg, std::FILE* out, std::FILE* err);
int run_agents_keys(const central_config& cfg, const std::string& agent_id, bool all,
                    std::FILE* out, std::FILE* err);
int run_agents_revoke_key(const central_config& cfg, const std::string& agent_id,
                          const std::string& key_id, std::FILE* out, std::FILE* err);

}  // namespace semilab::central
