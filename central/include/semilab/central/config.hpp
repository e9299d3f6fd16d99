#pragma once
// Configuration of semilab-central, declared once in src/config.cpp (key, type, default, unit,
// description): the same table validates files and prints docs/central-config.md.
// toml++ stays out of this header.
#include <semilab/service/log.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace semilab::central {

struct central_section {
  std::string instance;  // ingest instance id (valid_id); defaults to a hostname-derived id
  std::string data_dir = "/var/lib/semilab-central";
  std::string log_level = "info";
  // Ed25519 key every central instance shares (`semilab-central keygen`): signs acks, commands
  // and exported audit heads; agents pin its public key. "" = unsigned acks.
  std::string signing_key_file;
  std::string audit_head_dir;  // where `audit export-head` writes ("" = <data_dir>/audit-heads)
  std::int64_t audit_export_interval_s = 86400;  // the service exports the heads this often
};

struct mqtt_section {
  std::string broker = "tcp://127.0.0.1:1883";
  std::string username;
  std::string password;  // never logged
  std::int64_t keep_alive_s = 20;
  std::int64_t connect_timeout_s = 5;
  std::string tls_ca_file;    // ssl:// broker: CA of the broker's certificate ("" = system)
  std::string tls_cert_file;  // client certificate (PEM)
  std::string tls_key_file;   // its key (PEM)
  bool tls_verify_hostname = true;
  std::string command_key_file;  // secret shared with agents for cmd-topic commands (replay)
};

struct http_section {
  std::string listen = "127.0.0.1:8080";  // host:port, port 0 = any free port
  std::int64_t timeout_s = 30;             // per read/write operation
  std::int64_t body_limit_bytes = 8192;    // request bodies (login and token actions)
  std::int64_t cache_ttl_ms = 1000;        // response cache entry lifetime; 0 = no cache
  std::int64_t cache_max_entries = 256;
  std::int64_t cache_max_bytes = 32 << 20;
  std::int64_t threads = 0;  // HTTP threads; 0 = one per CPU core (at least 2)
  std::int64_t readers = 0;  // read-only store connections of the API; 0 = as many as threads
};

// Access to the HTTP API (central/include/semilab/central/auth.hpp, api.hpp).
struct auth_section {
  std::string anonymous = "auto";  // role without a token: auto | none | viewer
  bool metrics_public = false;     // /metrics without a token
  std::int64_t rate_per_s = 100;   // requests per second per token (or anonymous address); 0 = off
  std::int64_t rate_burst = 200;
  std::int64_t token_refresh_s = 5;  // tokens re-read from the store; revocation delay
  std::int64_t session_ttl_s = 8 * 3600;  // lifetime of a POST /api/v1/login session
  bool cookie_secure = false;             // Secure session cookies over plain HTTP too (TLS proxy)
};

struct ingest_section {
  std::int64_t max_frame_bytes = 16 << 20;
  std::int64_t max_body_bytes = 64 << 20;
  std::int64_t max_records = 1'000'000;
  std::int64_t queue_messages = 1024;      // bound of the ingest queue (messages)
  std::int64_t queue_bytes = 256 << 20;    // bound of the ingest queue (payload bytes)
  std::int64_t group_max_batches = 256;    // most batches committed in one transaction
  std::int64_t group_max_bytes = 64 << 20; // most payload bytes committed in one transaction
  std::int64_t quarantine_payload_bytes = 64 << 10;
  std::int64_t agent_quota_records_per_s = 0;  // per-agent token bucket refill; 0 = no quota
  std::int64_t agent_quota_burst_records = 0;  // bucket size; 0 = 10 s of the rate
  std::int64_t max_clock_skew_s = 300;         // later timestamps are flagged bad_timestamp
  bool require_signatures = false;  // refuse batches of agents without an approved key
};

struct store_section {
  std::string backend = "sqlite";  // "sqlite" (data_dir/central.db) or "postgresql" (url)
  std::string url;                 // postgresql://user:password@host:port/db; never logged whole
  std::int64_t busy_timeout_ms = 5000;
};

struct backup_section {
  std::string dir;                  // "" = <data_dir>/backups
  std::int64_t keep = 30;           // newest backups kept (0 = no count limit)
  std::int64_t max_age_days = 30;   // older backups deleted (0 = no age limit)
};

// Retention per record class (`semilab-central retention`): rows older than this, by the time
// central received them, are deleted; 0 keeps them forever.
struct retention_section {
  std::int64_t telemetry_days = 0;
  std::int64_t event_days = 0;
  std::int64_t run_result_days = 0;
  std::int64_t blob_days = 0;
  std::int64_t quarantine_days = 90;
  std::int64_t batch_ledger_days = 0;
  std::int64_t summary_days = 0;           // daily summaries (by their day)
  std::int64_t activity_minutes_days = 35;  // minute marks behind active_minutes
};

struct central_config {
  central_section central;
  mqtt_section mqtt;
  http_section http;
  auth_section auth;
  ingest_section ingest;
  store_section store;
  backup_section backup;
  retention_section retention;
  service::log_options log;  // [log] (packaging/service/log.hpp)
};

// "central-<hostname>" reduced to the id alphabet, or "central-1" when that is not a valid id.
std::string default_instance_id();

struct config_error {
  std::string message;  // "file:line:col: table.key: why"
};

// Loads and validates a TOML file. Unknown tables or keys, wrong types and out-of-range values
// are errors naming file, line and key. Fills defaults for absent keys.
std::optional<config_error> load_config(const std::string& file, central_config& out);

// The anonymous role in effect: "auto" is viewer when [http] listen is a loopback address and
// none otherwise; "none" and "viewer" are themselves.
bool anonymous_is_viewer(const central_config& cfg);

// Markdown reference of every option (the body of docs/central-config.md).
std::string config_reference();

}  // namespace semilab::central
