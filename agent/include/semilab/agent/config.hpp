#pragma once
// Agent configuration (TOML), declared once in src/config.cpp: the same table validates files
// and prints the reference (`semilab-agent config-reference`).
#include <semilab/service/log.hpp>
#include <semilab/drivers/modbus_map.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace semilab::agent {

struct instrument_config {
  std::string id;
  std::string model;     // SCPI driver model (SCPI resources)
  std::string resource;  // VISA resource string, e.g. TCPIP0::127.0.0.1::5025::SOCKET, or
                         // modbus-tcp://host:502?unit=1, modbus-rtu:///dev/ttyUSB0?...
  std::string map;       // Modbus register map file (Modbus resources), or:
  std::string profile;   // a shipped Modbus profile, e.g. eurotherm3200
  std::shared_ptr<const drivers::modbus::device_map> modbus_map;  // loaded from map/profile
  double poll_interval_s = 1.0;
  std::int64_t count = 0;  // polls to make, then stop (0 = unlimited)
  std::int64_t timeout_ms = 2000;
  std::map<std::string, std::string> settings;  // model settings, validated by the driver
  std::string calibration_due;  // "YYYY-MM-DD" or empty (health: note before, degraded after)
};

// A watched export folder (agent/src/filedrop.hpp): files that appear there are archived,
// parsed and uploaded with their metadata, parameters and raw bytes (class blob).
struct filedrop_config {
  std::string id;                // instrument id of its records (unique among instruments)
  std::string folder;            // watched directory (a share of the instrument PC)
  std::string pattern = "*";     // file name glob (fnmatch), e.g. "*.xrdml"
  std::string format = "auto";   // auto (detected from content) or a parser name
  std::string kind;              // analysis kind (`semilab-agent analyze --list`), "" = none
  double stable_s = 5;           // a file is taken once size and mtime held this long
  double poll_interval_s = 2;    // scan period (also the inotify wake-up bound)
  bool inotify = true;           // false: polling only (network shares raise no events)
  std::string archive_dir;       // "" = <data_dir>/archive
  std::int64_t max_file_mb = 256;
  friend bool operator==(const filedrop_config&, const filedrop_config&) = default;
};

struct agent_config {
  std::string source;  // file the configuration came from
  // [agent]
  std::string id;
  std::string site;
  std::string data_dir;
  std::string durability = "full";
  std::int64_t quota_mb = 1024;          // outbox quota (0 = none)
  std::int64_t quota_reserve_mb = 16;    // extra room for events and run results
  std::string telemetry_when_full = "pause";
  std::string blob_when_full = "drop_oldest";
  std::int64_t integrity_check_s = 3600;  // background quick_check period (0 = on I/O errors only)
  std::int64_t retain_hours = 168;  // acked records kept for replays (0 = none)
  std::int64_t retain_mb = 256;     // at most this much of them (0 = none)
  // [mqtt]
  std::string broker = "tcp://127.0.0.1:1883";
  std::string username;
  std::string password;
  std::string tls_ca_file;    // TLS (ssl:// broker): CA of the broker's certificate
  std::string tls_cert_file;  // client certificate (PEM), CN = agent id
  std::string tls_key_file;   // its private key (PEM)
  bool tls_verify_hostname = true;
  // [sync]
  std::int64_t batch_max_records = 2000;
  std::int64_t max_inflight_batches = 4;
  double ack_timeout_s = 10;
  std::int64_t linger_ms = 100;
  std::int64_t zstd_level = 3;
  std::int64_t zstd_dictionary_records = 0;  // 0 = no trained dictionary
  double max_bytes_per_s = 0;    // 0 = no cap
  double max_batches_per_s = 0;  // 0 = no cap
  std::string command_key_file;  // shared secret of commands on the cmd topic ("" = refused)
  std::string central_public_keys;  // pinned central key(s), hex, comma-separated ("" = none)
  // [status] the local status page, /metrics and the health topic
  bool status_enabled = true;
  std::string status_bind = "127.0.0.1";
  std::int64_t status_port = 8470;
  std::string operator_token;  // bearer token for actions; empty = actions refused
  bool status_insecure_http = false;  // allow plain HTTP on a non-loopback bind
  std::string status_tls_cert_file;   // HTTPS certificate chain (PEM); with the key: HTTPS
  std::string status_tls_key_file;    // its private key (PEM)
  std::string control_socket;         // [agent] control socket ("" = <data_dir>/control.sock)
  std::int64_t health_period_s = 60;   // health topic republished at least this often
  // [runs] recipes executed by the daemon (agent/src/runs.hpp)
  bool runs_enabled = true;
  std::string runs_token;                         // bearer token of POST /api/v1/runs ("" = operator_token)
  std::int64_t runs_history = 50;                 // finished runs listed by /api/v1/runs
  std::map<std::string, std::string> runs_roles;  // default binding: recipe role -> instrument id
  std::vector<instrument_config> instruments;
  std::vector<filedrop_config> filedrops;
  // [log] level, format, rotating file (packaging/service/log.hpp; applied at start)
  service::log_options log;

  std::filesystem::path outbox_path() const { return std::filesystem::path(data_dir) / "outbox.db"; }
  std::filesystem::path live_status_path() const {
    return std::filesystem::path(data_dir) / "agent-status.json";
  }
  std::filesystem::path pid_path() const { return std::filesystem::path(data_dir) / "agent.pid"; }
  std::filesystem::path control_socket_path() const {
    return control_socket.empty() ? std::filesystem::path(data_dir) / "control.sock"
                                  : std::filesystem::path(control_socket);
  }
  bool status_tls() const { return !status_tls_cert_file.empty() && !status_tls_key_file.empty(); }
};

// On failure `error` reads "file:line:col: table.key: why".
std::optional<agent_config> load_config(const std::filesystem::path& file, std::string& error);
std::string config_reference();

}  // namespace semilab::agent
