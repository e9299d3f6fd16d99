#pragma once
// `semilab-agent modbus read|write|scan`: the field engineer's Modbus tools.
//   modbus read URI (--map FILE | --profile NAME) [--json]
//       stdout: one "name<TAB>value<TAB>unit" line per point, or with --json a list of
//       {"name", "value", "unit"} (integers beyond 2^53 as strings, so nothing rounds them;
//       a failed point has "value": null and "error").
//   modbus write URI (--map FILE | --profile NAME) POINT VALUE --yes
//       writable points only, range-checked, verified by read-back; prints the value read back.
//   modbus scan URI [--first N] [--last N] [--timeout-ms MS]   unit ids that answer
// Exit codes: 0 success, 1 device/link failure (any point failed), 2 usage or map error.
#include <CLI/CLI.hpp>

#include <memory>

namespace semilab::agent {

class modbus_cli {
 public:
  explicit modbus_cli(CLI::App& app);
  [[nodiscard]] bool parsed() const;
  [[nodiscard]] int run() const;

 private:
  int read() const;
  int write() const;
  int scan() const;
  CLI::App* cmd_ = nullptr;
  CLI::App* read_ = nullptr;
  CLI::App* write_ = nullptr;
  CLI::App* scan_ = nullptr;
  std::string uri_, map_, profile_, point_, value_;
  bool json_ = false, yes_ = false;
  unsigned first_ = 1, last_ = 247, timeout_ms_ = 100;
};

}  // namespace semilab::agent
