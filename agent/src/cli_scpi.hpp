#pragma once
// Field-engineer commands of semilab-agent that talk to one instrument directly:
//
//   semilab-agent probe RESOURCE [--timeout S] [--portmapper-port P]
//     *IDN? fields, *OPT?, *ESR?, the error queue, round-trip latency (p50/p99 over 20 *OPC?
//     queries), transport details and the session's recent transactions. Exit 0 only when the
//     instrument answered *IDN?; 1 otherwise; 2 for a bad resource string.
//
//   semilab-agent scpi RESOURCE [--timeout S] [--portmapper-port P] [--check-errors] [COMMAND...]
//     A COMMAND with a '?' outside quotes (e.g. ending in '?') is a query, any other a write,
//     sent as typed. One-shot mode prints exactly one stdout line per query: its reply (binary
//     blocks as "#block <length> bytes: <hex of the first 32>"; control bytes escaped), or
//     "ERROR: ..." when it failed. Later commands still run; exit 1 if any command failed.
//     --check-errors drains :SYST:ERR? after each command; an entry fails that command.
//     Without COMMANDs: one command per stdin line, same output; on a terminal with line editing
//     and a history kept in $XDG_STATE_HOME/semilab/scpi_history (libedit).
//     Failures also go to stderr with the session's recent transactions.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <istream>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace semilab::agent {

struct scpi_cli_options {
  std::string resource;
  double timeout_s = 2.0;
  std::uint16_t portmapper_port = 111;
  bool check_errors = false;
  std::vector<std::string> commands;
};

[[nodiscard]] int run_probe(const scpi_cli_options& opt, std::ostream& out, std::ostream& err);
[[nodiscard]] int run_scpi(const scpi_cli_options& opt, std::istream& in, std::ostream& out,
                           std::ostream& err);

// Registers the probe and scpi subcommands; run() returns their exit code after parsing when
// one of them was chosen.
class scpi_cli {
 public:
  explicit scpi_cli(CLI::App& app);
  [[nodiscard]] std::optional<int> run() const;

 private:
  CLI::App* probe_ = nullptr;
  CLI::App* scpi_ = nullptr;
  scpi_cli_options probe_opt_;
  scpi_cli_options scpi_opt_;
};

}  // namespace semilab::agent
