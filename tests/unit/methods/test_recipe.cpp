#include <doctest/doctest.h>

#include <filesystem>
#include <semilab/methods/recipe.hpp>
#include <string>

using namespace semilab::methods;

namespace {

const char* kGood = R"(
[recipe]
format = 1
name = "t"
version = "1.0.0"
method = "mosfet-idvg"

[roles.gate]
kind = "source-measure"
compliance = 1e-6
[roles.drain]
kind = "source-measure"
level = 0.05
compliance = 0.01

[sweep]
role = "gate"
start = 0
stop = 1
points = 11
dual = true

[device]
width = 10e-6
length = 1e-6
polarity = "n"

[limits.vth_gm]
min = 0.3
max = 0.8

[metadata]
wafer = "W1"

[[prompt]]
text = "probe pad pair 2"
)";

// Replaces the first occurrence of `from` in kGood.
std::string with(const std::string& from, const std::string& to) {
  std::string s = kGood;
  auto p = s.find(from);
  REQUIRE(p != std::string::npos);
  s.replace(p, from.size(), to);
  return s;
}

// The error message of parsing `text`, which must fail.
std::string error_of(const std::string& text) {
  auto r = parse_recipe(text, "r.toml");
  REQUIRE(!r.has_value());
  CHECK(r.error().code == errc::bad_recipe);
  return r.error().message;
}

}  // namespace

TEST_CASE("a valid recipe is read completely") {
  auto r = parse_recipe(kGood, "r.toml");
  REQUIRE(r.has_value());
  CHECK(r->method == "mosfet-idvg");
  CHECK(r->version == "1.0.0");
  REQUIRE(r->roles.size() == 2);
  REQUIRE(r->find_role("drain") != nullptr);
  CHECK(r->find_role("drain")->level == 0.05);
  CHECK(r->find_role("gate")->compliance == 1e-6);
  CHECK(r->sweep.points.size() == 21);  // 11 up, 10 back
  CHECK(r->sweep.points[10] == 1.0);
  CHECK(r->sweep.points.back() == 0.0);
  CHECK(r->device.width == 10e-6);
  CHECK(r->device.polarity == "n");
  CHECK(r->device.temperature == 300);
  REQUIRE(r->limits.size() == 1);
  CHECK(*r->limits[0].min == 0.3);
  CHECK(r->metadata.at("wafer") == "W1");
  REQUIRE(r->prompts.size() == 1);
  CHECK(r->prompts[0].at == "start");
  CHECK(r->abort.compliance == on_compliance::exclude);

  CHECK(check_limits(*r, {{"vth_gm", 0.5}}).empty());
  auto fails = check_limits(*r, {{"vth_gm", 0.9}});
  REQUIRE(fails.size() == 1);
  CHECK(fails[0].find("above the maximum") != std::string::npos);
  CHECK(check_limits(*r, {}).size() == 1);
}

TEST_CASE("recipe errors name file, line, key and reason") {
  SUBCASE("TOML syntax") {
    auto m = error_of(with("points = 11", "points = = 11"));
    CHECK(m.find("r.toml:20:") == 0);
  }
  SUBCASE("unknown method") {
    auto m = error_of(with("method = \"mosfet-idvg\"", "method = \"mosfet\""));
    CHECK(m.find("r.toml:6:") == 0);
    CHECK(m.find("recipe.method: unknown method") != std::string::npos);
    CHECK(m.find("diode-iv") != std::string::npos);
  }
  SUBCASE("bad version") {
    auto m = error_of(with("version = \"1.0.0\"", "version = \"1.0\""));
    CHECK(m.find("r.toml:5:") == 0);
    CHECK(m.find("recipe.version") != std::string::npos);
  }
  SUBCASE("newer format") {
    auto m = error_of(with("format = 1", "format = 2"));
    CHECK(m.find("recipe.format") != std::string::npos);
  }
  SUBCASE("missing compliance on a source-measure role") {
    auto m = error_of(with("compliance = 1e-6\n", ""));
    CHECK(m.find("roles.gate.compliance") != std::string::npos);
    CHECK(m.find("safety") != std::string::npos);
  }
  SUBCASE("missing role") {
    auto m = error_of(with("[roles.drain]", "[roles.drain2]"));
    CHECK(m.find("roles.drain:") != std::string::npos);
    CHECK(m.find("needs this role") != std::string::npos);
  }
  SUBCASE("wrong kind for a role") {
    auto m = error_of(with("kind = \"source-measure\"", "kind = \"voltmeter\""));
    CHECK(m.find("roles.gate.kind") != std::string::npos);
  }
  SUBCASE("unknown role kind") {
    auto m = error_of(with("kind = \"source-measure\"", "kind = \"smu\""));
    CHECK(m.find("r.toml:9:") == 0);
    CHECK(m.find("roles.gate.kind: must be one of") != std::string::npos);
  }
  SUBCASE("sweep of an unknown role") {
    auto m = error_of(with("role = \"gate\"", "role = \"source\""));
    CHECK(m.find("r.toml:17:") == 0);
    CHECK(m.find("sweep.role") != std::string::npos);
  }
  SUBCASE("log sweep through zero") {
    auto m = error_of(with("start = 0\n", "mode = \"log\"\nstart = 0\n"));
    CHECK(m.find("r.toml:16:1: sweep: log sweep ends must be non-zero") == 0);
  }
  SUBCASE("linear sweep without points") {
    auto m = error_of(with("points = 11\n", ""));
    CHECK(m.find("sweep.points: required for a linear sweep") != std::string::npos);
  }
  SUBCASE("list sweep without values") {
    auto m = error_of(with("start = 0\n", "mode = \"list\"\n"));
    CHECK(m.find("sweep.values") != std::string::npos);
  }
  SUBCASE("values must be numbers") {
    auto m = error_of(with("dual = true", "dual = true\nvalues = [1, \"x\"]"));
    CHECK(m.find("sweep.values: expected an array of numbers") != std::string::npos);
  }
  SUBCASE("unknown key in sweep") {
    auto m = error_of(with("dual = true", "dual = true\nstep = 0.1"));
    CHECK(m.find("r.toml:22:") == 0);
    CHECK(m.find("sweep.step: unknown key") != std::string::npos);
  }
  SUBCASE("missing device input") {
    auto m = error_of(with("length = 1e-6\n", ""));
    CHECK(m.find("device.length") != std::string::npos);
    CHECK(m.find("needs this device input") != std::string::npos);
  }
  SUBCASE("bad polarity") {
    auto m = error_of(with("polarity = \"n\"", "polarity = \"x\""));
    CHECK(m.find("r.toml:26:") == 0);
    CHECK(m.find("device.polarity: must be one of n p") != std::string::npos);
  }
  SUBCASE("negative area is out of range") {
    auto m = error_of(with("width = 10e-6", "width = 10e-6\narea = -1"));
    CHECK(m.find("device.area: must be between") != std::string::npos);
  }
  SUBCASE("limit on a parameter the method does not extract") {
    auto m = error_of(with("[limits.vth_gm]", "[limits.vth]"));
    CHECK(m.find("limits.vth") != std::string::npos);
    CHECK(m.find("no such parameter") != std::string::npos);
  }
  SUBCASE("limit min above max") {
    auto m = error_of(with("min = 0.3", "min = 0.9"));
    CHECK(m.find("min is above max") != std::string::npos);
  }
  SUBCASE("abort limit below the sweep") {
    auto m = error_of(with("[device]", "[abort]\nmax_abs_level = 0.5\n[device]"));
    CHECK(m.find("abort.max_abs_level") != std::string::npos);
  }
  SUBCASE("unknown metadata key") {
    auto m = error_of(with("wafer = \"W1\"", "waffer = \"W1\""));
    CHECK(m.find("metadata.waffer") != std::string::npos);
  }
  SUBCASE("empty prompt") {
    auto m = error_of(with("text = \"probe pad pair 2\"", "text = \"\""));
    CHECK(m.find("prompt[0].text") != std::string::npos);
  }
  SUBCASE("unknown top-level table") {
    auto m = error_of(std::string(kGood) + "\n[extras]\nx = 1\n");
    CHECK(m.find("extras: unknown table") != std::string::npos);
  }
}

TEST_CASE("every example recipe validates") {
  const std::filesystem::path dir = std::filesystem::path(SEMILAB_SOURCE_DIR) / "examples/recipes";
  int count = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".toml") continue;
    CAPTURE(e.path().string());
    auto r = load_recipe(e.path().string());
    if (!r.has_value()) FAIL(r.error().message);
    CHECK(!r->sweep.points.empty());
    ++count;
  }
  CHECK(count >= 6);
}

TEST_CASE("missing recipe file") {
  auto r = load_recipe("/nonexistent/recipe.toml");
  REQUIRE(!r.has_value());
  CHECK(r.error().code == errc::bad_recipe);
  CHECK(r.error().message.find("/nonexistent/recipe.toml") == 0);
}

TEST_CASE("known methods cover issue 8") {
  for (auto name : {"diode-iv", "mosfet-idvg", "mosfet-idvd", "cv-mos", "cv-schottky", "four-point",
                    "vdp", "hall", "tlm", "check-standard"}) {
    bool found = false;
    for (auto& m : known_methods()) found = found || m.name == name;
    CHECK_MESSAGE(found, name);
  }
}
