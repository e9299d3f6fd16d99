#include <semilab/central/config.hpp>
#include <semilab/schemas/topics.hpp>

#include <doctest/doctest.h>

#include <fstream>

#include "test_util.hpp"

using namespace semilab::central;

namespace {
std::optional<config_error> load_text(const central_test::temp_dir& d, const std::string& text,
                                      central_config& out) {
  auto path = d.file("central.toml");
  std::ofstream(path) << text;
  return load_config(path, out);
}
}  // namespace

TEST_CASE("config: a full file loads; absent keys keep their defaults") {
  central_test::temp_dir d;
  central_config c;
  auto e = load_text(d,
                     "[central]\ninstance = \"central-a\"\ndata_dir = \"/tmp/x\"\n"
                     "[mqtt]\nbroker = \"tcp://127.0.0.1:1999\"\nusername = \"u\"\npassword = \"p\"\n"
                     "[http]\nlisten = \"127.0.0.1:0\"\n"
                     "[ingest]\nmax_frame_bytes = 1048576\n",
                     c);
  REQUIRE_FALSE(e.has_value());
  CHECK(c.central.instance == "central-a");
  CHECK(c.central.data_dir == "/tmp/x");
  CHECK(c.mqtt.broker == "tcp://127.0.0.1:1999");
  CHECK(c.mqtt.password == "p");
  CHECK(c.http.listen == "127.0.0.1:0");
  CHECK(c.ingest.max_frame_bytes == 1048576);
  CHECK(c.ingest.queue_messages == 1024);
  CHECK(c.store.busy_timeout_ms == 5000);
}

TEST_CASE("config: an empty file gives a valid hostname-derived instance") {
  central_test::temp_dir d;
  central_config c;
  REQUIRE_FALSE(load_text(d, "", c).has_value());
  CHECK(semilab::schemas::valid_id(c.central.instance));
  CHECK(c.central.instance.rfind("central-", 0) == 0);
}

TEST_CASE("config: errors name file, line and key") {
  central_test::temp_dir d;
  central_config c;
  auto path = d.file("central.toml");

  auto e = load_text(d, "[central]\ndata_dir = \"/tmp/x\"\n\n[mqtt]\nbrokr = \"tcp://x:1\"\n", c);
  REQUIRE(e.has_value());
  CHECK(e->message.find(path + ":5:") == 0);
  CHECK(e->message.find("mqtt.brokr: unknown key") != std::string::npos);

  e = load_text(d, "[http]\nlisten = 8080\n", c);
  REQUIRE(e.has_value());
  CHECK(e->message.find(path + ":2:") == 0);
  CHECK(e->message.find("http.listen: expected a string") != std::string::npos);

  e = load_text(d, "[ingest]\nqueue_messages = \"many\"\n", c);
  REQUIRE(e.has_value());
  CHECK(e->message.find("ingest.queue_messages: expected an integer") != std::string::npos);

  e = load_text(d, "[ingest]\nqueue_messages = 0\n", c);
  REQUIRE(e.has_value());
  CHECK(e->message.find("must be between") != std::string::npos);

  e = load_text(d, "[http]\nlisten = \"example.com:80\"\n", c);
  REQUIRE(e.has_value());
  CHECK(e->message.find("http.listen") != std::string::npos);

  e = load_text(d, "[central]\ninstance = \"bad id!\"\n", c);
  REQUIRE(e.has_value());
  CHECK(e->message.find("central.instance") != std::string::npos);

  e = load_text(d, "[mqtt]\nbroker = \"127.0.0.1:1883\"\n", c);
  REQUIRE(e.has_value());
  CHECK(e->message.find("mqtt.broker") != std::string::npos);

  e = load_text(d, "\n[webui]\nport = 1\n", c);
  REQUIRE(e.has_value());
  CHECK(e->message.find(path + ":2:") == 0);
  CHECK(e->message.find("webui: unknown table") != std::string::npos);

  e = load_text(d, "mqtt = 3\n", c);
  REQUIRE(e.has_value());
  CHECK(e->message.find("mqtt: expected a table") != std::string::npos);

  e = load_text(d, "[mqtt\nbroker = 1\n", c);  // TOML syntax error
  REQUIRE(e.has_value());
  CHECK(e->message.find(path + ":1:") == 0);

  e = load_config(d.file("missing.toml"), c);
  REQUIRE(e.has_value());
  CHECK(e->message.find("missing.toml") != std::string::npos);
}

TEST_CASE("config: the reference lists every table and key") {
  auto ref = config_reference();
  for (auto s : {"[central]", "[mqtt]", "[http]", "[ingest]", "[store]", "`instance`", "`data_dir`",
                 "`broker`", "`password`", "`listen`", "`max_frame_bytes`", "`busy_timeout_ms`"})
    CHECK_MESSAGE(ref.find(s) != std::string::npos, s);
}

TEST_CASE("config: [store] backend and url") {
  central_test::temp_dir d;
  central_config c;
  REQUIRE_FALSE(load_text(d, "[central]\ninstance = \"c\"\n", c).has_value());
  CHECK(c.store.backend == "sqlite");
  CHECK(c.store.url.empty());
  REQUIRE_FALSE(load_text(d,
                          "[store]\nbackend = \"postgresql\"\n"
                          "url = \"postgresql://semilab:pw@127.0.0.1:5432/semilab\"\n",
                          c)
                    .has_value());
  CHECK(c.store.backend == "postgresql");
  CHECK(c.store.url == "postgresql://semilab:pw@127.0.0.1:5432/semilab");
  auto e = load_text(d, "[store]\nbackend = \"postgresql\"\n", c);
  REQUIRE(e.has_value());
  CHECK(e->message.find("store.url") != std::string::npos);
  e = load_text(d, "[store]\nbackend = \"mysql\"\n", c);
  REQUIRE(e.has_value());
  CHECK(e->message.find("backend") != std::string::npos);
  e = load_text(d, "[store]\nbackend = \"postgresql\"\nurl = \"mysql://x\"\n", c);
  REQUIRE(e.has_value());
  CHECK(e->message.find("url") != std::string::npos);
}

TEST_CASE("config: [auth] and the response cache; anonymous auto follows the listen address") {
  central_test::temp_dir d;
  central_config c;
  REQUIRE_FALSE(load_text(d, "", c).has_value());
  CHECK(c.auth.anonymous == "auto");
  CHECK_FALSE(c.auth.metrics_public);
  CHECK(c.auth.rate_per_s == 100);
  CHECK(c.http.cache_ttl_ms == 1000);
  CHECK(anonymous_is_viewer(c));  // 127.0.0.1:8080
  c.http.listen = "0.0.0.0:8080";
  CHECK_FALSE(anonymous_is_viewer(c));
  c.http.listen = "[::1]:8080";
  CHECK(anonymous_is_viewer(c));
  c.auth.anonymous = "none";
  CHECK_FALSE(anonymous_is_viewer(c));

  REQUIRE_FALSE(load_text(d,
                          "[http]\nlisten = \"0.0.0.0:80\"\ncache_ttl_ms = 0\n"
                          "[auth]\nanonymous = \"viewer\"\nmetrics_public = true\nrate_per_s = 0\n",
                          c)
                    .has_value());
  CHECK(anonymous_is_viewer(c));
  CHECK(c.auth.metrics_public);
  CHECK(c.http.cache_ttl_ms == 0);
  auto e = load_text(d, "[auth]\nanonymous = \"admin\"\n", c);
  REQUIRE(e.has_value());
  CHECK(e->message.find("auth.anonymous") != std::string::npos);
  CHECK(config_reference().find("[auth]") != std::string::npos);
}
