#pragma once
// Agent configuration (TOML), declared once in src/config.cpp: the same table validates files
// and prints the reference (`semilab-agent config-reference`).
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
};

struct agent_config {
  std::string source;  // file the configuration came from
  // [agent]
  std::string id;
  std::string site;
  std::string data_dir;
  std::string durability = "full";
  // [mqtt]
  std::string broker = "tcp://127.0.0.1:1883";
  std::string username;
  std::string password;
  // [sync]
  std::int64_t batch_max_records = 2000;
  std::int64_t max_inflight_batches = 4;
  double ack_timeout_s = 10;
  std::int64_t linger_ms = 100;
  std::int64_t zstd_level = 3;
  double max_bytes_per_s = 0;    // 0 = no cap
  double max_batches_per_s = 0;  // 0 = no cap
  std::vector<instrument_config> instruments;

  std::filesystem::path outbox_path() const { return std::filesystem::path(data_dir) / "outbox.db"; }
  std::filesystem::path live_status_path() const {
    return std::filesystem::path(data_dir) / "agent-status.json";
  }
  std::filesystem::path pid_path() const { return std::filesystem::path(data_dir) / "agent.pid"; }
};

// On failure `error` reads "file:line:col: table.key: why".
std::optional<agent_config> load_config(const std::filesystem::path& file, std::string& error);
std::string config_reference();

}  // namespace semilab::agent
