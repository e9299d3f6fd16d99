#include <semilab/sim/scpi_parser.hpp>

#include <cctype>

namespace semilab::sim {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}


// Splits on `sep` outside quotes.
std::vector<std::string_view> split_unquoted(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  char quote = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == sep) {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  out.push_back(s.substr(start));
  return out;
}

struct pattern_node {
  std::string short_form;
  std::string long_form;
  bool optional = false;
};

std::vector<pattern_node> compile(std::string_view pattern) {
  std::vector<pattern_node> nodes;
  std::size_t i = 0;
  while (i < pattern.size()) {
    bool optional = false;
    if (pattern[i] == '[') {
      optional = true;
      ++i;
    }
    if (i < pattern.size() && pattern[i] == ':') ++i;
    std::size_t start = i;
    while (i < pattern.size() && pattern[i] != ':' && pattern[i] != '[' && pattern[i] != ']') ++i;
    std::string_view mnemonic = pattern.substr(start, i - start);
    if (optional && i < pattern.size() && pattern[i] == ']') ++i;
    if (mnemonic.empty()) continue;
    pattern_node n;
    n.optional = optional;
    for (char c : mnemonic)
      if (std::isupper(static_cast<unsigned char>(c)) || c == '*' || std::isdigit(static_cast<unsigned char>(c)))
        n.short_form.push_back(c);
    n.long_form = upper_ascii(mnemonic);
    nodes.push_back(std::move(n));
  }
  return nodes;
}

bool match_from(const std::vector<pattern_node>& pat, std::size_t p,
                const std::vector<std::string>& nodes, std::size_t c) {
  if (p == pat.size()) return c == nodes.size();
  if (pat[p].optional && match_from(pat, p + 1, nodes, c)) return true;
  if (c == nodes.size()) return false;
  const auto& n = nodes[c];
  if (n != pat[p].short_form && n != pat[p].long_form) return false;
  return match_from(pat, p + 1, nodes, c + 1);
}

}  // namespace

std::vector<scpi_command> parse_program(std::string_view line) {
  std::vector<scpi_command> out;
  std::vector<std::string> branch;  // path prefix for headers without a leading ':'
  for (std::string_view unit : split_unquoted(line, ';')) {
    unit = trim(unit);
    if (unit.empty()) continue;
    scpi_command cmd;
    cmd.text = std::string(unit);
    std::size_t sp = 0;
    while (sp < unit.size() && !std::isspace(static_cast<unsigned char>(unit[sp]))) ++sp;
    std::string_view header = unit.substr(0, sp);
    std::string_view rest = trim(unit.substr(sp));
    if (!header.empty() && header.back() == '?') {
      cmd.query = true;
      header.remove_suffix(1);
    }
    bool common = !header.empty() && header.front() == '*';
    bool absolute = !header.empty() && header.front() == ':';
    if (absolute) header.remove_prefix(1);
    if (!common && !absolute) cmd.nodes = branch;
    for (std::string_view m : split_unquoted(header, ':')) {
      bool ok = !m.empty();
      for (std::size_t i = 0; i < m.size() && ok; ++i) {
        char c = m[i];
        ok = std::isalnum(static_cast<unsigned char>(c)) || c == '_' || (common && i == 0 && c == '*');
      }
      if (!ok) {
        cmd.malformed = true;
        break;
      }
      cmd.nodes.push_back(upper_ascii(m));
    }
    if (!cmd.malformed && !common && !cmd.nodes.empty())
      branch.assign(cmd.nodes.begin(), cmd.nodes.end() - 1);
    if (!rest.empty())
      for (std::string_view a : split_unquoted(rest, ',')) cmd.args.emplace_back(trim(a));
    out.push_back(std::move(cmd));
  }
  return out;
}

bool header_matches(const scpi_command& cmd, std::string_view pattern) {
  // Patterns are literals in the simulator tables; compiling each time keeps this stateless and
  // is cheap next to a TCP round trip.
  return !cmd.malformed && match_from(compile(pattern), 0, cmd.nodes, 0);
}

std::string unquote(std::string_view s) {
  s = trim(s);
  if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') && s.back() == s.front())
    return std::string(s.substr(1, s.size() - 2));
  return std::string(s);
}

std::string upper_ascii(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace semilab::sim
