#pragma once
// Simulated Modbus devices served with libmodbus (modbus_mapping_new, modbus_receive,
// modbus_reply). Each model's register layout is its profile file
// (drivers/profiles/modbus/NAME.toml, the same the agent reads), so the simulator and the driver
// cannot disagree on addresses, types or word orders; the physics below write values by point
// name through the profile's encoder.
//
//   semilab-sim --model eurotherm3200|vacuum-gauge|mfc --listen 127.0.0.1:0 [--seed N]
//               [--rtu] [--fault exception=ADDR[:CODE]|hang-every=N|disconnect-every=N|
//                        restart-after=N|restart-ms=MS|delay=MS]
// First stdout line: "listening 127.0.0.1:PORT" (TCP) or "listening /dev/pts/N" (--rtu: the
// client opens that pty at any baud; a pty has no line settings).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace semilab::sim {

[[nodiscard]] bool is_modbus_model(std::string_view name) noexcept;
[[nodiscard]] const std::vector<std::string>& modbus_model_names();

struct modbus_sim_options {
  std::string model;
  std::string listen = "127.0.0.1:0";
  std::uint64_t seed = 1;
  std::vector<std::string> faults;
  bool rtu = false;
};

// Serves until SIGINT/SIGTERM. Exit codes as semilab-sim: 0 clean stop, 2 usage, 3 cannot listen.
int run_modbus_sim(const modbus_sim_options& opt);

}  // namespace semilab::sim
