#pragma once
// A small SCPI program-message parser for the simulators (IEEE 488.2 / SCPI-99 subset):
// commands separated by ';', headers case-insensitive in short or long form, queries end in '?',
// arguments separated by ',' (quoted strings kept whole). After ';' a header without a leading
// ':' continues in the branch of the previous command (SCPI compound rule); common commands
// (*XXX) do not move the branch.
#include <string>
#include <string_view>
#include <vector>

namespace semilab::sim {

struct scpi_command {
  std::vector<std::string> nodes;  // upper-cased mnemonics: {"SOUR","VOLT"} or {"*IDN"}
  bool query = false;
  std::vector<std::string> args;   // trimmed argument texts; quoted strings keep their quotes
  bool malformed = false;          // header could not be parsed (-> -102 syntax error)
  std::string text;                // the command as received, for logs
};

// Parses one program message (one line, terminator removed). Empty commands are skipped.
[[nodiscard]] std::vector<scpi_command> parse_program(std::string_view line);

// Matches a command header against a pattern in SCPI manual notation, e.g.
// "[:SOURce]:VOLTage[:LEVel][:IMMediate][:AMPLitude]" or "*IDN". Optional nodes are in [].
// Each mnemonic matches its short form (the upper-case letters) or its long form.
[[nodiscard]] bool header_matches(const scpi_command& cmd, std::string_view pattern);

// Removes one level of '...' or "..." quotes; returns the text unchanged when not quoted.
[[nodiscard]] std::string unquote(std::string_view s);
// Upper-cased copy (ASCII).
[[nodiscard]] std::string upper_ascii(std::string_view s);

}  // namespace semilab::sim
