#include <semilab/agent/config.hpp>

#include <doctest/doctest.h>

#include <fstream>

#include "support/processes.hpp"

using semilab::agent::load_config;

namespace {

const char* kGood = R"([agent]
id = "lab1-agent-01"
site = "lab1"
data_dir = "/tmp/x"

[mqtt]
broker = "tcp://127.0.0.1:1883"

[[instrument]]
id = "smu1"
model = "keithley2450"
resource = "TCPIP0::127.0.0.1::5025::SOCKET"
poll_interval_s = 0.5

[instrument.settings]
bias = 0.7
)";

std::string load_error(const std::string& text) {
  semilab::test::temp_dir d;
  auto p = d.path() / "agent.toml";
  std::ofstream(p) << text;
  std::string err;
  auto c = load_config(p, err);
  CHECK_FALSE(c.has_value());
  return err;
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  auto at = s.find(from);
  REQUIRE(at != std::string::npos);
  return s.replace(at, from.size(), to);
}

}  // namespace

TEST_CASE("a good configuration loads with defaults filled") {
  semilab::test::temp_dir d;
  std::ofstream(d.path() / "a.toml") << kGood;
  std::string err;
  auto c = load_config(d.path() / "a.toml", err);
  REQUIRE_MESSAGE(c.has_value(), err);
  CHECK(c->id == "lab1-agent-01");
  CHECK(c->durability == "full");
  CHECK(c->batch_max_records == 2000);
  REQUIRE(c->instruments.size() == 1);
  CHECK(c->instruments[0].poll_interval_s == 0.5);
  CHECK(c->instruments[0].settings.at("bias") == "0.69999999999999996");
  CHECK(c->outbox_path() == "/tmp/x/outbox.db");
}

TEST_CASE("errors name file, line, key and reason") {
  auto e = load_error(replace(kGood, "poll_interval_s = 0.5", "poll_intervall_s = 0.5"));
  CHECK(e.find("agent.toml:13:") != std::string::npos);
  CHECK(e.find("instrument[0].poll_intervall_s: unknown key") != std::string::npos);

  e = load_error(replace(kGood, "id = \"lab1-agent-01\"", "id = \"lab1/agent\""));
  CHECK(e.find("agent.id") != std::string::npos);
  CHECK(e.find("not allowed") != std::string::npos);

  e = load_error(replace(kGood, "keithley2450", "keithley9999"));
  CHECK(e.find("unknown model 'keithley9999'") != std::string::npos);

  e = load_error(replace(kGood, "TCPIP0::127.0.0.1::5025::SOCKET", "TCPIP0::127.0.0.1::SOCKET"));
  CHECK(e.find("instrument[0].resource") != std::string::npos);
}

TEST_CASE("more configuration errors") {
  CHECK(load_error(replace(kGood, "bias = 0.7", "bias = 900")).find("settings") != std::string::npos);
  CHECK(load_error(replace(kGood, "bias = 0.7", "volts = 1")).find("volts") != std::string::npos);
  CHECK(load_error(replace(kGood, "poll_interval_s = 0.5", "poll_interval_s = \"fast\""))
            .find("expected a number") != std::string::npos);
  CHECK(load_error(replace(kGood, "tcp://127.0.0.1:1883", "127.0.0.1:1883")).find("mqtt.broker") !=
        std::string::npos);
  CHECK(load_error(replace(kGood, "site = \"lab1\"\n", "")).find("agent.site: required") !=
        std::string::npos);
  CHECK(load_error(std::string(kGood) + "\n[extra]\nx = 1\n").find("unknown table") != std::string::npos);
  CHECK(load_error("[agent\nid=").find("agent.toml:1") != std::string::npos);
  std::string twice = std::string(kGood) +
                      "\n[[instrument]]\nid = \"smu1\"\nmodel = \"keithley2450\"\nresource = "
                      "\"TCPIP0::127.0.0.1::5026::SOCKET\"\n";
  CHECK(load_error(twice).find("duplicate instrument id 'smu1'") != std::string::npos);
  // A resource that parses but has no transport (HiSLIP): clear, distinct message.
  auto hislip = load_error(replace(kGood, "TCPIP0::127.0.0.1::5025::SOCKET",
                                   "TCPIP0::127.0.0.1::hislip0::INSTR"));
  CHECK(hislip.find("instrument[0].resource") != std::string::npos);
  CHECK(hislip.find("HiSLIP is not supported") != std::string::npos);
  // USB, VXI-11 and serial resources are accepted.
  for (const char* res : {"USB0::0x05E6::0x2450::04412345::INSTR", "TCPIP0::10.0.0.5::inst0::INSTR",
                          "ASRL/dev/ttyUSB0::INSTR?baud=9600"}) {
    semilab::test::temp_dir d;
    auto p = d.path() / "agent.toml";
    std::ofstream(p) << replace(kGood, "TCPIP0::127.0.0.1::5025::SOCKET", res);
    std::string e;
    CHECK_MESSAGE(load_config(p, e).has_value(), res, ": ", e);
  }
  std::string err;
  CHECK_FALSE(load_config("/nonexistent/agent.toml", err).has_value());
  CHECK(err.find("/nonexistent/agent.toml") != std::string::npos);
}

TEST_CASE("the reference lists every key") {
  auto ref = semilab::agent::config_reference();
  for (auto k : {"`id`", "`site`", "`data_dir`", "`durability`", "`broker`", "`batch_max_records`",
                 "`ack_timeout_s`", "`zstd_level`", "`max_bytes_per_s`", "`resource`", "`poll_interval_s`", "`count`", "`settings`"})
    CHECK_MESSAGE(ref.find(k) != std::string::npos, k);
}

TEST_CASE("Modbus instruments: a map or a profile, nothing of SCPI") {
  const std::string head = "[agent]\nid = \"a\"\nsite = \"s\"\ndata_dir = \"/tmp/x\"\n\n[[instrument]]\nid = \"f1\"\n"
                           "resource = \"modbus-tcp://127.0.0.1:502?unit=1\"\n";
  semilab::test::temp_dir d;
  std::ofstream(d.path() / "ok.toml") << head << "profile = \"eurotherm3200\"\n";
  std::string err;
  auto c = load_config(d.path() / "ok.toml", err);
  REQUIRE_MESSAGE(c.has_value(), err);
  REQUIRE(c->instruments[0].modbus_map != nullptr);
  CHECK_FALSE(c->instruments[0].modbus_map->points.empty());

  CHECK(load_error(head).find("exactly one of `map` or `profile`") != std::string::npos);
  CHECK(load_error(head + "profile = \"nope\"\n").find("instrument[0].profile") != std::string::npos);
  CHECK(load_error(head + "profile = \"mfc\"\nmodel = \"keithley2450\"\n").find("SCPI") !=
        std::string::npos);
  CHECK(load_error(head + "map = \"/nonexistent/map.toml\"\n").find("/nonexistent/map.toml") !=
        std::string::npos);
  CHECK(load_error(replace(kGood, "model = \"keithley2450\"\n", "")).find("model: required") !=
        std::string::npos);
}

TEST_CASE("[[filedrop]] tables: defaults, kinds, formats, ids and folders checked with file:line") {
  semilab::test::temp_dir d;
  const std::string drops = std::string(kGood) +
                            "\n[[filedrop]]\nid = \"xrd\"\nfolder = \"/srv/exports\"\npattern = \"*.xrdml\"\n"
                            "kind = \"xrd-peak\"\n\n[[filedrop]]\nid = \"sem\"\nfolder = \"/srv/exports\"\n"
                            "pattern = \"*.tif\"\ninotify = false\nstable_s = 1.5\n";
  std::ofstream(d.path() / "a.toml") << drops;
  std::string err;
  auto c = load_config(d.path() / "a.toml", err);
  REQUIRE_MESSAGE(c.has_value(), err);
  REQUIRE(c->filedrops.size() == 2);
  CHECK(c->filedrops[0].kind == "xrd-peak");
  CHECK(c->filedrops[0].format == "auto");
  CHECK(c->filedrops[0].stable_s == 5);
  CHECK(c->filedrops[0].archive_dir == "/tmp/x/archive");
  CHECK_FALSE(c->filedrops[1].inotify);
  CHECK(c->filedrops[1].stable_s == 1.5);

  auto e = load_error(replace(drops, "kind = \"xrd-peak\"", "kind = \"xrd-peek\""));
  CHECK(e.find(":22:") != std::string::npos);
  CHECK(e.find("filedrop[0].kind: unknown analysis kind 'xrd-peek'") != std::string::npos);
  CHECK(load_error(replace(drops, "id = \"sem\"", "id = \"smu1\"")).find("filedrop[1].id: duplicate id 'smu1'") !=
        std::string::npos);
  CHECK(load_error(replace(drops, "pattern = \"*.tif\"", "pattern = \"*.xrdml\"")).find("already watched") !=
        std::string::npos);
  CHECK(load_error(replace(drops, "inotify = false", "format = \"pdf\"")).find("unknown format 'pdf'") !=
        std::string::npos);
  CHECK(load_error(replace(drops, "stable_s = 1.5", "stable_s = -1")).find("filedrop[1].stable_s") !=
        std::string::npos);
  CHECK(load_error(replace(drops, "folder = \"/srv/exports\"\npattern = \"*.tif\"", "pattern = \"*.tif\""))
            .find("filedrop[1].folder: required key is missing") != std::string::npos);
  CHECK(load_error(replace(drops, "[[filedrop]]\nid = \"sem\"", "[filedrop2]\nid = \"sem\""))
            .find("unknown table") != std::string::npos);
}
