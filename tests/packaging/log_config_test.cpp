// The [log] table in the agent's and central's configuration files (packaging/service/log_config.hpp):
// keys, defaults, and errors naming file, line, column and key.
#include <semilab/agent/config.hpp>
#include <semilab/central/config.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "support/processes.hpp"

using namespace semilab;

namespace {

std::string write(const std::filesystem::path& p, const std::string& body) {
  std::ofstream(p) << body;
  return p.string();
}

}  // namespace

TEST_CASE("[log] in the agent's and central's files: keys, defaults and positioned errors") {
  test::temp_dir dir;
  const std::string agent_head =
      "[agent]\nid = \"a1\"\nsite = \"lab\"\ndata_dir = \"" + (dir.path() / "d").string() + "\"\n";
  std::string err;
  auto a = agent::load_config(write(dir.path() / "a.toml", agent_head), err);
  REQUIRE_MESSAGE(a.has_value(), err);
  CHECK(a->log.level.empty());
  CHECK(a->log.format == "text");
  CHECK(a->log.file.empty());
  CHECK(a->log.file_max_mb == 10);
  CHECK(a->log.files == 5);

  a = agent::load_config(write(dir.path() / "a.toml", agent_head +
                                   "[log]\nlevel = \"debug\"\nformat = \"json\"\n"
                                   "file = \"/var/lib/semilab/agent/agent.log\"\n"
                                   "file_max_mb = 50\nfiles = 3\n"),
                         err);
  REQUIRE_MESSAGE(a.has_value(), err);
  CHECK(a->log.level == "debug");
  CHECK(a->log.format == "json");
  CHECK(a->log.file == "/var/lib/semilab/agent/agent.log");
  CHECK(a->log.file_max_mb == 50);
  CHECK(a->log.files == 3);

  a = agent::load_config(write(dir.path() / "a.toml", agent_head + "[log]\nformat = \"xml\"\n"), err);
  CHECK_FALSE(a.has_value());
  CHECK(err.find("a.toml:6:10: log.format: expected text or json") != std::string::npos);
  a = agent::load_config(write(dir.path() / "a.toml", agent_head + "[log]\nlevel = \"loud\"\n"), err);
  CHECK_FALSE(a.has_value());
  CHECK(err.find("log.level: expected one of trace") != std::string::npos);
  a = agent::load_config(write(dir.path() / "a.toml", agent_head + "[log]\nfiles = 0\n"), err);
  CHECK_FALSE(a.has_value());
  CHECK(err.find("log.files: must be between 1 and 100") != std::string::npos);
  a = agent::load_config(write(dir.path() / "a.toml", agent_head + "[log]\ncolour = true\n"), err);
  CHECK_FALSE(a.has_value());
  CHECK(err.find("log.colour: unknown key") != std::string::npos);
  CHECK(agent::config_reference().find("### [log]") != std::string::npos);

  central::central_config c;
  auto e = central::load_config(write(dir.path() / "c.toml", "[log]\nformat = \"json\"\nlevel = \"warn\"\n"), c);
  REQUIRE_FALSE(e.has_value());
  CHECK(c.log.format == "json");
  CHECK(c.log.level == "warn");
  e = central::load_config(write(dir.path() / "c.toml", "[log]\nfile_max_mb = 0\n"), c);
  REQUIRE(e.has_value());
  CHECK(e->message.find("c.toml:2:15: log.file_max_mb: must be between 1 and 4096") != std::string::npos);
  CHECK(central::config_reference().find("### [log]") != std::string::npos);
}
