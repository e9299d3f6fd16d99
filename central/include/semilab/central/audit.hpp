#pragma once
// The audit trail of central (21 CFR Part 11 §11.10(e)): who did what, when, why, with the old
// and new values, in hash-chained entries (audit_log, 0007_audit.sql / central-pg 0006), and the
// re-verification of stored batch signatures.
//
// Chains. One chain per writer, so that ingest instances on one PostgreSQL never wait for each
// other: "ingest:<instance>" holds one `batch.store` entry per batch that instance stored, appended
// by its ingest thread from the batch ledger (audit_catch_up: derived from durable ledger rows, so
// a crash between the ledger commit and the audit append loses nothing; the next catch-up adds
// it); "admin" holds user actions and configuration changes (audit_record).
// entry_hash = SHA-256(prev_hash || canonical(entry)) in hex; seq counts from 1 per chain; the
// primary key (chain, seq) refuses a fork (a concurrent append retries).
//
// Anchoring. `audit export-head` writes each chain's last (seq, hash), signed with central's
// key, to a file outside the database; `audit verify` checks the chains, each batch entry against
// its ledger row, and the chains against the newest exported head (entries deleted at the tail).
#include <semilab/central/config.hpp>
#include <semilab/central/error.hpp>
#include <semilab/central/storage.hpp>
#include <semilab/schemas/signing.hpp>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace semilab::central {

inline constexpr std::string_view kAdminChain = "admin";
inline constexpr std::string_view kAuditHeadDomain = "semilab-audit-head-v1";
std::string ingest_chain(std::string_view instance);  // "ingest:<instance>"

struct audit_entry {
  std::string chain;
  std::int64_t seq = 0;
  std::int64_t at_ns = 0;
  std::string actor, action, target, reason;
  std::optional<std::string> old_value, new_value;
  std::optional<std::int64_t> ref_id;
  std::string prev_hash, entry_hash;
};

// The bytes an entry's hash covers (every field but entry_hash, length-prefixed).
std::string audit_canonical(const audit_entry& e);
// SHA-256(prev_hash || canonical) in lowercase hex.
std::string audit_hash(const audit_entry& e);

// What an admin-chain entry says. `actor`/`reason` empty: taken from the process's audit context.
struct audit_action {
  std::string action;  // e.g. agent_key.approve, token.create, user.create, config.change
  std::string target;
  std::optional<std::string> old_value, new_value;
  std::string actor, reason;
};

// Who runs this process and why (the CLI's --as/--reason; "os:<login>" by default).
struct audit_context {
  std::string actor;
  std::string reason;
};
void set_audit_context(audit_context c);
audit_context current_audit_context();

// Appends one entry to the admin chain (its own transaction; retried when another writer took
// the same seq). `error` says why on failure.
boost::system::error_code audit_record(storage& db, const audit_action& a, std::int64_t now_ns,
                                       std::string& error);

// Appends a `batch.store` entry for each ledger row of `instance` not yet in its chain (at most
// `max_rows`, oldest first, in one statement); returns how many.
result<std::size_t> audit_catch_up(storage& db, std::string_view instance,
                                   std::size_t max_rows = 256);

// The digest of a batch-ledger row as a `batch.store` entry records it (hex SHA-256 over its
// columns), for the rows of `instance` with ids in (after_id, upto_id], by id.
struct ledger_digest {
  std::int64_t id = 0;
  std::int64_t received_ns = 0;
  std::string target;  // agent/epoch/batch
  std::string digest;
};
result<std::vector<ledger_digest>> ledger_digests(storage& db, std::string_view instance,
                                                  std::int64_t after_id, std::int64_t upto_id,
                                                  std::size_t limit);

struct chain_head {
  std::string chain;
  std::int64_t seq = 0;
  std::string entry_hash;
  std::int64_t at_ns = 0;
};
result<std::vector<chain_head>> audit_heads(storage& db);

// The head file: JSON with every chain's head and, with `signer`, central's signature.
struct head_file {
  std::int64_t exported_ns = 0;
  std::vector<chain_head> heads;
  std::string key_id, signature;  // "" = unsigned
};
std::string head_canonical(const head_file& h);
std::string encode_head_file(const head_file& h);
result<head_file> decode_head_file(std::string_view json);
// Writes audit-head-<UTC>-<instance>.json into `dir` (created 0750 if missing), fsynced; `path`
// receives its name.
boost::system::error_code export_heads(storage& db, const std::filesystem::path& dir,
                                       std::string_view instance,
                                       const schemas::signing_key* signer, std::int64_t now_ns,
                                       std::string& path, std::string& error);

struct audit_finding {
  std::string chain;
  std::int64_t seq = 0;  // 0 = not about one entry
  std::string what;
};
struct audit_report {
  std::size_t chains = 0, entries = 0, batches_checked = 0, pending_batches = 0;
  std::vector<audit_finding> findings;
  bool head_checked = false;
};
struct audit_verify_options {
  std::optional<head_file> head;            // newest exported head (checked against the chains)
  std::optional<schemas::ed25519_public_key> central_key;  // the head must be signed by it
  std::int64_t ledger_retention_before_ns = 0;  // ledger rows older may be gone (retention)
};
result<audit_report> audit_verify(storage& db, const audit_verify_options& opts);

// Re-verifies the signature of every stored batch from its ledger row (signed_header, signature)
// and the agent's key (agent_keys, revoked keys included).
struct batch_verify_report {
  std::size_t verified = 0, unsigned_batches = 0, not_reverifiable = 0;
  std::vector<std::string> failures;  // "ledger id N (agent/epoch/batch): why"
};
result<batch_verify_report> verify_stored_batches(storage& db);

// The [central] settings as audit values: one "section.key = value" per line, secrets replaced
// by "(set)".
std::string config_summary(const central_config& cfg);

// CLI (`semilab-central keygen|audit ...`); exit codes as app.hpp: 0 ok, 1 findings or runtime
// failure, 2 usage/configuration.
int run_keygen(const central_config& cfg, const std::string& out_file, std::FILE* out,
               std::FILE* err);
int run_audit_verify(const central_config& cfg, std::FILE* out, std::FILE* err);
int run_audit_verify_batches(const central_config& cfg, std::FILE* out, std::FILE* err);
int run_audit_export_head(const central_config& cfg, std::FILE* out, std::FILE* err);
int run_audit_log(const central_config& cfg, const std::string& chain, std::size_t limit,
                  std::FILE* out, std::FILE* err);
// Records a configuration change of `instance` in the admin chain when the summary differs from
// the last one recorded (the service calls it at start).
boost::system::error_code audit_config(storage& db, const central_config& cfg,
                                       std::string& error);

}  // namespace semilab::central
