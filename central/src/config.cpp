#include <semilab/central/config.hpp>
#include <semilab/schemas/config_map.hpp>
#include <semilab/schemas/topics.hpp>
#include <semilab/service/log_config.hpp>

#include "listen_address.hpp"

#include <unistd.h>

#include <array>
#include <climits>
#include <vector>

namespace semilab::central {

namespace cfg = semilab::schemas::config;

namespace {

std::optional<std::string> check_instance(const std::string& v) {
  if (!schemas::valid_id(v)) return "must be 1..64 of [A-Za-z0-9._-], not starting with '.'";
  return std::nullopt;
}

std::optional<std::string> check_broker(const std::string& v) {
  for (std::string_view scheme : {"tcp://", "ssl://", "mqtt://", "mqtts://", "ws://", "wss://"})
    if (v.rfind(scheme, 0) == 0 && v.size() > scheme.size()) return std::nullopt;
  return "expected a URL like tcp://host:1883 or ssl://host:8883";
}

std::optional<std::string> check_listen(const std::string& v) {
  if (!parse_listen_address(v)) return "expected host:port (IPv4, [IPv6] or localhost), port 0..65535";
  return std::nullopt;
}

std::optional<std::string> check_level(const std::string& v) {
  for (std::string_view l : {"trace", "debug", "info", "warn", "error", "critical", "off"})
    if (v == l) return std::nullopt;
  return "expected one of trace, debug, info, warn, error, critical, off";
}

std::optional<std::string> check_nonempty(const std::string& v) {
  if (v.empty()) return "must not be empty";
  return std::nullopt;
}

// The declared-once tables. Defaults in the text match the struct initialisers above.
const std::vector<cfg::option<central_section>>& central_options() {
  static const std::vector<cfg::option<central_section>> t = {
      cfg::string_opt<central_section>("instance", &central_section::instance, "central-<hostname>",
                                       "Ingest instance id: MQTT client id and the retained "
                                       "`semilab/v1/central/{instance}/state` topic. Unique per instance.",
                                       check_instance),
      cfg::string_opt<central_section>("data_dir", &central_section::data_dir,
                                       "/var/lib/semilab-central",
                                       "Directory of the store database `central.db` (created if missing).",
                                       check_nonempty),
      cfg::string_opt<central_section>("log_level", &central_section::log_level, "info",
                                       "Log level on stderr: trace, debug, info, warn, error, critical, off.",
                                       check_level),
      cfg::string_opt<central_section>(
          "signing_key_file", &central_section::signing_key_file, "\"\"",
          "Ed25519 private key (PEM, made by `semilab-central keygen`) shared by every central "
          "instance: signs acks, commands and exported audit heads; agents pin its public key "
          "([sync] central_public_keys). \"\" = acks and heads unsigned."),
      cfg::string_opt<central_section>(
          "audit_head_dir", &central_section::audit_head_dir, "\"\" (<data_dir>/audit-heads)",
          "Directory, outside the database, that receives the signed audit chain heads "
          "(`semilab-central audit export-head`, and the service on its schedule)."),
      cfg::int_opt<central_section>(
          "audit_export_interval_s", &central_section::audit_export_interval_s, "86400", "s",
          "How often the running service exports the signed audit chain heads (0 = only by the "
          "CLI).",
          0, 365 * 86400),
  };
  return t;
}

const std::vector<cfg::option<mqtt_section>>& mqtt_options() {
  static const std::vector<cfg::option<mqtt_section>> t = {
      cfg::string_opt<mqtt_section>("broker", &mqtt_section::broker, "tcp://127.0.0.1:1883",
                                    "Broker URL (MQTT 5): tcp://host:port or ssl://host:port.",
                                    check_broker),
      cfg::string_opt<mqtt_section>("username", &mqtt_section::username, "\"\"",
                                    "User name; empty = none."),
      cfg::string_opt<mqtt_section>("password", &mqtt_section::password, "\"\"",
                                    "Password; never logged."),
      cfg::int_opt<mqtt_section>("keep_alive_s", &mqtt_section::keep_alive_s, "20", "s",
                                 "MQTT keep-alive interval.", 1, 3600),
      cfg::int_opt<mqtt_section>("connect_timeout_s", &mqtt_section::connect_timeout_s, "5", "s",
                                 "Timeout of one connection attempt (reconnects continue with backoff).",
                                 1, 600),
      cfg::string_opt<mqtt_section>("tls_ca_file", &mqtt_section::tls_ca_file, "\"\"",
                                    "ssl:// broker: CA certificate (PEM) its certificate must chain "
                                    "to; empty = the system's trust store."),
      cfg::string_opt<mqtt_section>("tls_cert_file", &mqtt_section::tls_cert_file, "\"\"",
                                    "ssl:// broker: client certificate (PEM); empty = none."),
      cfg::string_opt<mqtt_section>("tls_key_file", &mqtt_section::tls_key_file, "\"\"",
                                    "ssl:// broker: private key (PEM) of the client certificate."),
      cfg::bool_opt<mqtt_section>("tls_verify_hostname", &mqtt_section::tls_verify_hostname, "true",
                                  "ssl:// broker: check that its certificate names its host."),
      cfg::string_opt<mqtt_section>("command_key_file", &mqtt_section::command_key_file, "\"\"",
                                    "File with the secret shared with the agents that signs "
                                    "commands (`semilab-central replay`; HMAC-SHA256, at least 16 "
                                    "bytes; interim until Ed25519 keys)."),
  };
  return t;
}

const std::vector<cfg::option<http_section>>& http_options() {
  static const std::vector<cfg::option<http_section>> t = {
      cfg::string_opt<http_section>("listen", &http_section::listen, "127.0.0.1:8080",
                                    "Address of the read-only HTTP API, host:port; port 0 picks a free "
                                    "port (printed as `http HOST:PORT` on stdout).",
                                    check_listen),
      cfg::int_opt<http_section>("timeout_s", &http_section::timeout_s, "30", "s",
                                 "Deadline of every read and write of a connection.", 1, 3600),
      cfg::int_opt<http_section>("body_limit_bytes", &http_section::body_limit_bytes, "8192", "bytes",
                                 "Largest request body accepted (POST /api/v1/login and token "
                                 "actions send small JSON bodies).", 0, 1 << 20),
      cfg::int_opt<http_section>("cache_ttl_ms", &http_section::cache_ttl_ms, "1000", "ms",
                                 "Lifetime of a cached API answer (cacheable routes: data queries, "
                                 "keyed by path and query). An ingest commit of this instance "
                                 "drops every entry; the TTL bounds staleness from other "
                                 "instances. 0 = no cache.",
                                 0, 3'600'000),
      cfg::int_opt<http_section>("cache_max_entries", &http_section::cache_max_entries, "256", "",
                                 "Most answers cached (least recently used go first).", 1,
                                 1'000'000),
      cfg::int_opt<http_section>("cache_max_bytes", &http_section::cache_max_bytes, "33554432",
                                 "bytes",
                                 "Most body bytes cached; an answer over a quarter of it is not "
                                 "cached.",
                                 4096, 4ll << 30),
      cfg::int_opt<http_section>("threads", &http_section::threads, "0", "",
                                 "Threads serving HTTP (their own io_context, apart from ingest; "
                                 "a strand per connection). 0 = one per CPU core, at least 2.",
                                 0, 256),
      cfg::int_opt<http_section>("readers", &http_section::readers, "0", "",
                                 "Read-only store connections shared by the HTTP threads (SQLite "
                                 "WAL readers or PostgreSQL connections); a request waits while "
                                 "all are in use. 0 = as many as threads.",
                                 0, 256),
  };
  return t;
}

std::optional<std::string> check_anonymous(const std::string& v) {
  if (v == "auto" || v == "none" || v == "viewer") return std::nullopt;
  return "expected auto, none or viewer";
}

const std::vector<cfg::option<auth_section>>& auth_options() {
  using a = auth_section;
  static const std::vector<cfg::option<auth_section>> t = {
      cfg::string_opt<a>("anonymous", &a::anonymous, "auto",
                         "Role of a request without a token: `none` (every route but /healthz, "
                         "/readyz and /api/v1/openapi.json needs a token), `viewer` (read routes "
                         "open), or `auto`: viewer when [http] listen is a loopback address, none "
                         "otherwise. Tokens: `semilab-central tokens create --role R --name N`.",
                         check_anonymous),
      cfg::bool_opt<a>("metrics_public", &a::metrics_public, "false",
                       "Serve /metrics without a token (else it needs viewer, like the data "
                       "routes; Prometheus sends one with `authorization: credentials_file`)."),
      cfg::int_opt<a>("rate_per_s", &a::rate_per_s, "100", "requests/s",
                      "Token bucket refill per caller (per token; per address without one); an "
                      "empty bucket is answered 429 with Retry-After. /healthz, /readyz and "
                      "/api/v1/openapi.json are not counted. 0 = no limit.",
                      0, 10'000'000),
      cfg::int_opt<a>("rate_burst", &a::rate_burst, "200", "requests",
                      "Bucket size per caller.", 1, 100'000'000),
      cfg::int_opt<a>("token_refresh_s", &a::token_refresh_s, "5", "s",
                      "Tokens are re-read from the store this often (an unknown token id at most "
                      "once a second): a revocation takes effect within this time.",
                      1, 3600),
      cfg::int_opt<a>("session_ttl_s", &a::session_ttl_s, "28800", "s",
                      "Lifetime of a session made by POST /api/v1/login (cookie Max-Age and the "
                      "session token's expiry).",
                      60, 30 * 86400),
      cfg::bool_opt<a>("cookie_secure", &a::cookie_secure, "false",
                       "Mark session cookies Secure even when the request came over plain HTTP "
                       "(central behind a TLS-terminating proxy that does not send "
                       "X-Forwarded-Proto: https). Requests with that header get Secure anyway."),
  };
  return t;
}

const std::vector<cfg::option<ingest_section>>& ingest_options() {
  static const std::vector<cfg::option<ingest_section>> t = {
      cfg::int_opt<ingest_section>("max_frame_bytes", &ingest_section::max_frame_bytes, "16777216",
                                   "bytes", "Largest batch frame accepted as received.", 64,
                                   256ll << 20),
      cfg::int_opt<ingest_section>("max_body_bytes", &ingest_section::max_body_bytes, "67108864",
                                   "bytes", "Largest declared uncompressed body of a frame.", 64,
                                   1ll << 30),
      cfg::int_opt<ingest_section>("max_records", &ingest_section::max_records, "1000000", "",
                                   "Most records in one frame.", 1, 100'000'000),
      cfg::int_opt<ingest_section>("queue_messages", &ingest_section::queue_messages, "1024", "",
                                   "Bound of the ingest queue; a batch beyond it is rejected as "
                                   "`overload` (retryable).",
                                   1, 1'000'000),
      cfg::int_opt<ingest_section>("queue_bytes", &ingest_section::queue_bytes, "268435456", "bytes",
                                   "Bound of the payload bytes held by the ingest queue.", 1024,
                                   16ll << 30),
      cfg::int_opt<ingest_section>("group_max_batches", &ingest_section::group_max_batches, "256", "",
                                   "Most batches committed in one transaction (group commit).", 1,
                                   100'000),
      cfg::int_opt<ingest_section>("group_max_bytes", &ingest_section::group_max_bytes, "67108864",
                                   "bytes", "Most frame bytes committed in one transaction.", 1024,
                                   16ll << 30),
      cfg::int_opt<ingest_section>("quarantine_payload_bytes",
                                   &ingest_section::quarantine_payload_bytes, "65536", "bytes",
                                   "First bytes of a rejected frame kept in the quarantine table.", 0,
                                   16ll << 20),
      cfg::int_opt<ingest_section>("agent_quota_records_per_s",
                                   &ingest_section::agent_quota_records_per_s, "0", "records/s",
                                   "Per-agent ingest quota (token bucket refill); a batch over it "
                                   "is rejected with the retryable `quota` code. 0 = no quota.",
                                   0, 100'000'000),
      cfg::int_opt<ingest_section>("agent_quota_burst_records",
                                   &ingest_section::agent_quota_burst_records, "0", "records",
                                   "Size of the per-agent bucket; 0 = 10 s of the rate.", 0,
                                   1'000'000'000),
      cfg::int_opt<ingest_section>("max_clock_skew_s", &ingest_section::max_clock_skew_s, "300",
                                   "s",
                                   "Records timestamped later than receipt plus this, or before "
                                   "2000-01-01, are stored with quality bit `bad_timestamp` "
                                   "(flagged, not rejected).",
                                   0, 10 * 365 * 86400ll),
      cfg::bool_opt<ingest_section>(
          "require_signatures", &ingest_section::require_signatures, "false",
          "Refuse (retryable `unapproved`) batches of agents without an approved Ed25519 key "
          "(`semilab-central agents approve`). An agent that has a key must sign with an "
          "approved one whatever this says (else non-retryable `bad_signature`)."),
  };
  return t;
}

std::optional<std::string> check_backend(const std::string& v) {
  if (v == "sqlite" || v == "postgresql") return std::nullopt;
  return "expected sqlite or postgresql";
}

std::optional<std::string> check_pg_url(const std::string& v) {
  if (v.empty() || v.rfind("postgresql://", 0) == 0 || v.rfind("postgres://", 0) == 0)
    return std::nullopt;
  return "expected a URL like postgresql://user:password@host:5432/db";
}

const std::vector<cfg::option<store_section>>& store_options() {
  static const std::vector<cfg::option<store_section>> t = {
      cfg::string_opt<store_section>("backend", &store_section::backend, "sqlite",
                                     "Store backend: `sqlite` (the file `central.db` in data_dir, "
                                     "one instance) or `postgresql` (`url`; several instances may "
                                     "share one database).",
                                     check_backend),
      cfg::string_opt<store_section>("url", &store_section::url, "\"\"",
                                     "PostgreSQL connection URL (backend = postgresql), e.g. "
                                     "`postgresql://semilab:secret@db:5432/semilab`; the password "
                                     "is never logged.",
                                     check_pg_url),
      cfg::int_opt<store_section>("busy_timeout_ms", &store_section::busy_timeout_ms, "5000", "ms",
                                  "How long a statement waits for a lock before it fails (SQLite busy timeout, "
                                  "PostgreSQL lock_timeout).", 0,
                                  600'000),
  };
  return t;
}

const std::vector<cfg::option<backup_section>>& backup_options() {
  static const std::vector<cfg::option<backup_section>> t = {
      cfg::string_opt<backup_section>("dir", &backup_section::dir, "\"\" (<data_dir>/backups)",
                                      "Directory of `semilab-central backup` (SQLite store)."),
      cfg::int_opt<backup_section>("keep", &backup_section::keep, "30", "backups",
                                   "Newest backups kept after each backup; 0 = no count limit.",
                                   0, 100'000),
      cfg::int_opt<backup_section>("max_age_days", &backup_section::max_age_days, "30", "days",
                                   "Backups older than this are deleted after each backup (the "
                                   "newest always stays); 0 = no age limit.",
                                   0, 36'500),
  };
  return t;
}

const std::vector<cfg::option<retention_section>>& retention_options() {
  using r = retention_section;
  static const std::vector<cfg::option<r>> t = {
      cfg::int_opt<r>("telemetry_days", &r::telemetry_days, "0", "days",
                      "Telemetry records (measurements) kept, by receipt time; 0 = forever.", 0,
                      36'500),
      cfg::int_opt<r>("event_days", &r::event_days, "0", "days",
                      "Event records (alarms, state changes, drop notices) kept; 0 = forever.", 0,
                      36'500),
      cfg::int_opt<r>("run_result_days", &r::run_result_days, "0", "days",
                      "Run result records kept; 0 = forever.", 0, 36'500),
      cfg::int_opt<r>("blob_days", &r::blob_days, "0", "days",
                      "Blob chunk records kept; 0 = forever.", 0, 36'500),
      cfg::int_opt<r>("quarantine_days", &r::quarantine_days, "90", "days",
                      "Quarantined frames kept; 0 = forever.", 0, 36'500),
      cfg::int_opt<r>("batch_ledger_days", &r::batch_ledger_days, "0", "days",
                      "Batch ledger rows kept; 0 = forever.", 0, 36'500),
      cfg::int_opt<r>("summary_days", &r::summary_days, "0", "days",
                      "Daily summaries kept, by their UTC day; 0 = forever.", 0, 36'500),
      cfg::int_opt<r>("activity_minutes_days", &r::activity_minutes_days, "35", "days",
                      "Per-minute activity marks behind `active_minutes` kept; records arriving "
                      "later than this for a day count their minutes again. 0 = forever.",
                      0, 36'500),
  };
  return t;
}

template <class S>
std::optional<config_error> read_section(const toml::node& node, std::string_view file,
                                         std::string_view name, S& out,
                                         const std::vector<cfg::option<S>>& opts) {
  const auto* t = node.as_table();
  if (!t) return config_error{cfg::where(file, node.source()) + ": " + std::string(name) +
                              ": expected a table"};
  if (auto e = cfg::read_table<S>(out, *t, std::span<const cfg::option<S>>(opts), file, name))
    return config_error{e->message};
  return std::nullopt;
}

}  // namespace

std::string default_instance_id() {
  std::array<char, HOST_NAME_MAX + 1> host{};
  std::string id = "central-";
  if (::gethostname(host.data(), host.size() - 1) == 0) {
    for (char c : std::string_view(host.data())) {
      if (c == '.') break;  // short name only
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '-';
      id += ok ? c : '-';
    }
  }
  if (id == "central-" || !schemas::valid_id(id)) return "central-1";
  return id;
}

std::optional<config_error> load_config(const std::string& file, central_config& out) {
  toml::table root;
  if (auto e = cfg::parse_file(file, root)) return config_error{e->message};
  out = central_config{};
  out.central.instance = default_instance_id();
  for (auto&& [k, node] : root) {
    std::optional<config_error> err;
    if (k.str() == "central")
      err = read_section(node, file, "central", out.central, central_options());
    else if (k.str() == "mqtt")
      err = read_section(node, file, "mqtt", out.mqtt, mqtt_options());
    else if (k.str() == "http")
      err = read_section(node, file, "http", out.http, http_options());
    else if (k.str() == "auth")
      err = read_section(node, file, "auth", out.auth, auth_options());
    else if (k.str() == "ingest")
      err = read_section(node, file, "ingest", out.ingest, ingest_options());
    else if (k.str() == "store")
      err = read_section(node, file, "store", out.store, store_options());
    else if (k.str() == "backup")
      err = read_section(node, file, "backup", out.backup, backup_options());
    else if (k.str() == "retention")
      err = read_section(node, file, "retention", out.retention, retention_options());
    else if (k.str() == "log")
      err = read_section(node, file, "log", out.log, service::log_option_table());
    else
      err = config_error{cfg::where(file, k.source()) + ": " + std::string(k.str()) +
                         ": unknown table (expected central, mqtt, http, auth, ingest, store, backup, "
                         "retention, log)"};
    if (err) return err;
  }
  if (out.store.backend == "postgresql" && out.store.url.empty())
    return config_error{std::string(file) + ": store.url: required when store.backend = postgresql"};
  return std::nullopt;
}

bool anonymous_is_viewer(const central_config& cfg) {
  if (cfg.auth.anonymous == "viewer") return true;
  if (cfg.auth.anonymous == "none") return false;
  auto a = parse_listen_address(cfg.http.listen);
  if (!a) return false;
  return a->host == "localhost" || a->host == "::1" || a->host.rfind("127.", 0) == 0;
}

std::string config_reference() {
  std::string s =
      "# semilab-central configuration reference\n\n"
      "Generated by `semilab-central config-reference` from the option tables in "
      "`central/src/config.cpp`; do not edit by hand.\n"
      "The file is TOML. Unknown tables and keys are errors reported as `file:line:col: table.key: "
      "why`; absent keys take their default.\n\n";
  s += cfg::print_reference<central_section>(
      "[central]", std::span<const cfg::option<central_section>>(central_options()));
  s += "\n";
  s += cfg::print_reference<mqtt_section>("[mqtt]",
                                          std::span<const cfg::option<mqtt_section>>(mqtt_options()));
  s += "\n";
  s += cfg::print_reference<http_section>("[http]",
                                          std::span<const cfg::option<http_section>>(http_options()));
  s += "\n";
  s += cfg::print_reference<auth_section>("[auth]",
                                          std::span<const cfg::option<auth_section>>(auth_options()));
  s += "\n";
  s += cfg::print_reference<ingest_section>(
      "[ingest]", std::span<const cfg::option<ingest_section>>(ingest_options()));
  s += "\n";
  s += cfg::print_reference<store_section>(
      "[store]", std::span<const cfg::option<store_section>>(store_options()));
  s += "\n";
  s += cfg::print_reference<backup_section>(
      "[backup]", std::span<const cfg::option<backup_section>>(backup_options()));
  s += "\n";
  s += cfg::print_reference<retention_section>(
      "[retention]", std::span<const cfg::option<retention_section>>(retention_options()));
  s += "\n";
  s += cfg::print_reference<service::log_options>(
      "[log]", std::span<const cfg::option<service::log_options>>(service::log_option_table()));
  return s;
}

}  // namespace semilab::central
