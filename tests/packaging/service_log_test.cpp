// The [log] table of both daemons applied (packaging/service/log.hpp): JSON lines with the
// structured fields, the level, a rotating file, bad values refused. Parsing: log_config_test.cpp.
#include <semilab/service/log.hpp>
#include <semilab/service/systemd.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <doctest/doctest.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/processes.hpp"

using namespace semilab;

namespace {

std::string format_json(const std::string& logger, spdlog::level::level_enum lvl,
                        const std::string& text) {
  auto f = service::make_json_formatter();
  spdlog::details::log_msg msg(spdlog::string_view_t(logger.data(), logger.size()), lvl,
                               spdlog::string_view_t(text.data(), text.size()));
  spdlog::memory_buf_t buf;
  f->format(msg, buf);
  return std::string(buf.data(), buf.size());
}

}  // namespace

TEST_CASE("JSON log lines carry time, level, component, instrument and the message, escaped") {
  auto line = format_json("semilab-agent", spdlog::level::warn,
                          "[acq] smu1: poll failed: \"timeout\"\tafter 2 s\n\x01");
  REQUIRE(line.ends_with("}\n"));
  CHECK(line.find('\n') == line.size() - 1);  // one line per message, whatever the text holds
  auto v = boost::json::parse(line).as_object();
  CHECK(v.at("level").as_string() == "warning");
  CHECK(v.at("component").as_string() == "acq");
  CHECK(v.at("instrument").as_string() == "smu1");
  CHECK(v.at("logger").as_string() == "semilab-agent");
  CHECK(v.at("msg").as_string() == "[acq] smu1: poll failed: \"timeout\"\tafter 2 s\n\x01");
  const std::string ts(v.at("ts").as_string());
  CHECK(ts.size() == 24);  // 2026-11-27T22:00:00.123Z
  CHECK(ts[10] == 'T');
  CHECK(ts.back() == 'Z');

  auto central = boost::json::parse(format_json("ingest", spdlog::level::info, "stored 3 batches"));
  CHECK(central.as_object().at("component").as_string() == "ingest");
  CHECK_FALSE(central.as_object().contains("instrument"));
}

TEST_CASE("apply_log_options: bad values refused; JSON lines at the level into a rotating file") {
  test::temp_dir dir;
  service::log_options bad;
  bad.format = "yaml";
  CHECK(service::apply_log_options(bad) == "log.format: expected text or json");
  bad.format = "text";
  // A path that cannot be created (spdlog creates missing directories, but not below a file).
  std::ofstream(dir.path() / "plain-file") << "x";
  bad.file = (dir.path() / "plain-file" / "x.log").string();
  auto why = service::apply_log_options(bad);
  CHECK(why.find("log file " + bad.file) == 0);

  service::log_options o;
  o.level = "debug";
  o.format = "json";
  o.file = (dir.path() / "agent.log").string();
  o.file_max_mb = 1;
  o.files = 2;
  REQUIRE(service::apply_log_options(o).empty());
  CHECK(service::json_logs());
  auto lg = std::make_shared<spdlog::logger>("semilab-agent", service::default_sink("semilab-agent"));
  lg->set_level(spdlog::get_level());
  lg->debug("[sync] batch {} sent", 7);
  lg->trace("[sync] not at this level");
  lg->flush();
  {
    std::ifstream in(o.file);
    std::stringstream first;
    first << in.rdbuf();
    CHECK(first.str().find("\"msg\":\"[sync] batch 7 sent\"") != std::string::npos);
    CHECK(first.str().find("\"component\":\"sync\"") != std::string::npos);
    CHECK(first.str().find("not at this level") == std::string::npos);
  }
  // Past 1 MiB the file rotates: agent.log, agent.1.log, agent.2.log at most.
  const std::string filler(1000, 'x');
  {
    // The shared sink also writes to stderr: keep 2.5 MB of filler out of the test log.
    const int saved = ::dup(2);
    const int null_fd = ::open("/dev/null", O_WRONLY);
    REQUIRE((saved >= 0 && null_fd >= 0));
    ::dup2(null_fd, 2);
    for (int i = 0; i < 2500; ++i) lg->info("[acq] smu1: {} {}", i, filler);
    lg->flush();
    ::dup2(saved, 2);
    ::close(saved);
    ::close(null_fd);
  }
  std::vector<std::string> lines;
  {
    std::ifstream in(o.file);
    for (std::string l; std::getline(in, l);) lines.push_back(l);
  }
  REQUIRE(!lines.empty());
  for (const auto& l : lines) {
    auto v = boost::json::parse(l).as_object();
    CHECK(v.contains("ts"));
    CHECK(v.at("component").as_string() == "acq");
    CHECK(v.at("instrument").as_string() == "smu1");
  }
  CHECK(std::filesystem::file_size(o.file) <= (1u << 20));
  CHECK(std::filesystem::exists(dir.path() / "agent.1.log"));
  CHECK(std::filesystem::exists(dir.path() / "agent.2.log"));
  CHECK_FALSE(std::filesystem::exists(dir.path() / "agent.3.log"));
  spdlog::set_level(spdlog::level::info);
}
