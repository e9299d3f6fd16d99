// Recipe runs end to end: `semilab-sim --station` (instruments over shared device models), a
// real `semilab-agent run` daemon holding the instrument sessions, `semilab-agent run-recipe`
// submitting and following, and the outbox database checked for the run's records and state.
// Each method's extracted parameters must match the station's device parameters.
#include <semilab/schemas/run_metadata.hpp>
#include <doctest/doctest.h>

#include <support/processes.hpp>

#include <boost/json.hpp>
#include <sqlite3.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>

namespace json = boost::json;
using namespace semilab::test;

namespace {

const std::string kBin = SEMILAB_BIN_DIR;
constexpr const char* kToken = "run-token-0123";

// One request to 127.0.0.1:port (HTTP/1.1, Connection: close): status and body.
std::pair<int, std::string> http(int port, const std::string& method, const std::string& target,
                                 const std::string& body = {}) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return {0, {}};
  }
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" +
                    "Authorization: Bearer " + kToken + "\r\nContent-Type: application/json\r\n" +
                    "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  (void)!::write(fd, req.data(), req.size());
  std::string in;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) in.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  auto sp = in.find(' ');
  auto end = in.find("\r\n\r\n");
  if (sp == std::string::npos || end == std::string::npos) return {0, {}};
  return {std::atoi(in.c_str() + sp + 1), in.substr(end + 4)};
}

// One SCPI query straight to a station instrument (the simulator serves several clients).
std::string scpi(int port, const std::string& line) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return {};
  }
  std::string l = line + "\n";
  (void)!::write(fd, l.data(), l.size());
  std::string in;
  char c;
  while (::read(fd, &c, 1) == 1 && c != '\n') in.push_back(c);
  ::close(fd);
  return in;
}

struct cli_result {
  int exit = -1;
  std::string out;
};
cli_result run_cli(const std::string& args, const std::filesystem::path& log) {
  std::string cmd = kBin + "/semilab-agent " + args + " 2>>" + log.string();
  cli_result r;
  std::FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p);
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  int st = ::pclose(p);
  r.exit = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

double param(const json::value& run, const char* name) {
  return run.at("result").at("parameters").at(name).at("value").to_number<double>();
}

struct station_fixture {
  temp_dir dir;
  std::map<std::string, int> port;  // instrument id -> port
  int status_port = free_port();
  child sim, agent;
  std::filesystem::path config = dir.path() / "agent.toml";

  station_fixture() {
    for (const char* id : {"smu-d", "gate", "drain", "lcr", "smu-4pp", "dmm"}) port[id] = free_port();
    auto st = dir.path() / "station.toml";
    std::ofstream s(st);
    s << "[[device]]\nname = \"d1\"\nkind = \"diode\"\ni0 = 1e-12\nideality = 1.8\nrs = 5\n"
      << "[[device]]\nname = \"m1\"\nkind = \"mosfet\"\nvth = 0.5\n"
      << "[[device]]\nname = \"c1\"\nkind = \"moscap\"\nna = 1e22\ntox = 10e-9\narea = 1e-8\nvfb = -0.9\n"
      << "[[device]]\nname = \"s1\"\nkind = \"sheet\"\nr_sheet = 100\nspacing = 1e-3\ndiameter = 0.1\n";
    auto inst = [&](const char* id, const char* model, const char* dev, const char* term) {
      s << "[[instrument]]\nid = \"" << id << "\"\nmodel = \"" << model << "\"\ndevice = \"" << dev
        << "\"\nterminal = \"" << term << "\"\nlisten = \"127.0.0.1:" << port[id] << "\"\n";
    };
    inst("smu-d", "keithley2450", "d1", "anode");
    inst("gate", "keithley2450", "m1", "gate");
    inst("drain", "keithley2450", "m1", "drain");
    inst("lcr", "e4980a", "c1", "gate");
    inst("smu-4pp", "keithley2450", "s1", "force");
    inst("dmm", "34461a", "s1", "sense");
    s.close();
    sim = child({kBin + "/semilab-sim", "--station", st.string()}, dir.path() / "sim.log");
    for (auto& [id, p] : port) {
      int pp = p;
      REQUIRE(wait_until([pp] { return port_open(pp); }, std::chrono::seconds(10)));
    }
    std::ofstream c(config);
    c << "[agent]\nid = \"runs-test\"\nsite = \"lab\"\ndata_dir = \"" << (dir.path() / "data").string()
      << "\"\n[mqtt]\nbroker = \"tcp://127.0.0.1:" << free_port() << "\"\n"
      << "[status]\nport = " << status_port << "\noperator_token = \"" << kToken << "\"\n"
      << "[runs]\nroles = { smu = \"smu-d\" }\n";
    for (auto& [id, p] : port) {
      std::string model = id == "lcr" ? "e4980a" : id == "dmm" ? "34461a" : "keithley2450";
      // One reading each, then the runner stays idle: what the outputs do afterwards is the
      // run's doing only.
      c << "[[instrument]]\nid = \"" << id << "\"\nmodel = \"" << model
        << "\"\nresource = \"TCPIP0::127.0.0.1::" << p << "::SOCKET\"\npoll_interval_s = 0.2\n"
        << "count = 1\n";
      if (model == "keithley2450") c << "settings = { bias = 0, ilim = 0.001 }\n";
      if (model == "e4980a") c << "settings = { bias = 0 }\n";
    }
    c.close();
    start_agent();
  }

  void start_agent() {
    agent = child({kBin + "/semilab-agent", "run", "-c", config.string()}, dir.path() / "agent.log");
    REQUIRE(wait_until([this] { return http(status_port, "GET", "/healthz").first == 200; },
                       std::chrono::seconds(20)));
  }

  std::filesystem::path recipe(const std::string& name, const std::string& text) {
    auto p = dir.path() / name;
    std::ofstream(p) << text;
    return p;
  }

  cli_result run_recipe(const std::filesystem::path& recipe, const std::string& extra = {}) {
    return run_cli("run-recipe " + recipe.string() + " -c " + config.string() +
                       " --sample S-1 --wafer W7 --lot L9 --operator tester --json " + extra,
                   dir.path() / "cli.log");
  }

  // The outbox as the daemon committed it (read-only; WAL lets us read beside the writer).
  std::int64_t count(const std::string& sql) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2((dir.path() / "data" / "outbox.db").c_str(), &db, SQLITE_OPEN_READONLY,
                            nullptr) == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
    std::int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
  }
  std::string text(const std::string& sql) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2((dir.path() / "data" / "outbox.db").c_str(), &db, SQLITE_OPEN_READONLY,
                            nullptr) == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
    std::string s;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
      s = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return s;
  }

  // Records of a run: curve points, parameters and the committed state.
  void check_records(const std::string& id, std::int64_t min_curve_records, const char* p1) {
    CHECK(count("SELECT COUNT(*) FROM outbox WHERE class = 1 AND run_id = '" + id +
                "' AND channel LIKE 'curve.%'") >= min_curve_records);
    CHECK(count("SELECT COUNT(*) FROM outbox WHERE class = 1 AND run_id = '" + id +
                "' AND channel = 'param." + p1 + "'") == 1);
    CHECK(count("SELECT COUNT(*) FROM outbox WHERE class = 1 AND run_id = '" + id +
                "' AND channel = 'run.summary'") == 1);
    CHECK(count("SELECT COUNT(*) FROM outbox WHERE class = 0 AND run_id = '" + id +
                "' AND channel = 'run.state' AND vtext = 'completed'") == 1);
    CHECK(text("SELECT state FROM runs WHERE run_id = '" + id + "'") == "completed");
    CHECK(text("SELECT metadata FROM runs WHERE run_id = '" + id + "'").find("\"sample\":\"S-1\"") !=
          std::string::npos);
    // The sample metadata travels to central as a run_metadata event (schemas/WIRE.md).
    auto meta = semilab::schemas::decode_run_metadata(
        text("SELECT vtext FROM outbox WHERE class = 0 AND run_id = '" + id +
             "' AND channel = 'run_metadata'"));
    REQUIRE(meta.has_value());
    CHECK(meta->sample == "S-1");
    CHECK(meta->wafer == "W7");
    CHECK(meta->lot == "L9");
    CHECK(meta->operator_name == "tester");
  }
};

const char* kDiode = R"(
[recipe]
format = 1
name = "diode-fwd"
version = "1.0.0"
method = "diode-iv"
[roles.smu]
kind = "source-measure"
source = "current"
compliance = 2.0
nplc = 0.01
[sweep]
role = "smu"
mode = "log"
start = 1e-9
stop = 1e-2
points = 71
[device]
temperature = 300
[limits.n]
min = 1.0
max = 2.0
)";

const char* kMosfet = R"(
[recipe]
format = 1
name = "nmos-idvg"
version = "1.0.0"
method = "mosfet-idvg"
[roles.gate]
kind = "source-measure"
instrument = "gate"
compliance = 1e-6
nplc = 0.01
[roles.drain]
kind = "source-measure"
instrument = "drain"
level = 0.05
compliance = 0.01
nplc = 0.01
[sweep]
role = "gate"
mode = "linear"
start = -0.5
stop = 2.0
points = POINTS
[device]
polarity = "n"
width = 10e-6
length = 1e-6
)";

std::string mosfet_recipe(int points) {
  std::string s = kMosfet;
  s.replace(s.find("POINTS"), 6, std::to_string(points));
  return s;
}

}  // namespace

TEST_CASE("each method runs live against the station; parameters match the device; records stored") {
  station_fixture f;

  SUBCASE("diode I-V") {
    auto r = f.run_recipe(f.recipe("diode.toml", kDiode));
    INFO(r.out);
    REQUIRE(r.exit == 0);
    auto run = json::parse(r.out);
    CHECK(run.at("state").as_string() == "completed");
    CHECK(param(run, "n") == doctest::Approx(1.8).epsilon(0.02));
    CHECK(param(run, "i0") == doctest::Approx(1e-12).epsilon(0.2));
    CHECK(param(run, "rs") == doctest::Approx(5.0).epsilon(0.05));
    CHECK(run.at("metadata").at("wafer").as_string() == "W7");
    f.check_records(std::string(run.at("run_id").as_string()), 2 * 71, "n");
    // The run ended with the source off.
    CHECK(scpi(f.port["smu-d"], ":OUTP?") == "0");
  }
  SUBCASE("MOSFET Id-Vg: two SMUs on gate and drain of one device") {
    auto r = f.run_recipe(f.recipe("mos.toml", mosfet_recipe(126)));
    INFO(r.out);
    REQUIRE(r.exit == 0);
    auto run = json::parse(r.out);
    CHECK(param(run, "vth_gm") == doctest::Approx(0.5).epsilon(0.02));
    CHECK(param(run, "ss") == doctest::Approx(0.0714).epsilon(0.03));
    CHECK(param(run, "on_off") > 1e8);
    f.check_records(std::string(run.at("run_id").as_string()), 3 * 126, "vth_gm");
    CHECK(scpi(f.port["gate"], ":OUTP?") == "0");
    CHECK(scpi(f.port["drain"], ":OUTP?") == "0");
  }
  SUBCASE("MOS C-V on the LCR meter") {
    auto r = f.run_recipe(f.recipe("cv.toml", R"(
[recipe]
format = 1
name = "moscap"
version = "1.0.0"
method = "cv-mos"
[roles.lcr]
kind = "impedance"
instrument = "lcr"
function = "CPG"
frequency = 1e5
ac_level = 0.03
[sweep]
role = "lcr"
mode = "linear"
start = -6.0
stop = 1.0
points = 141
[device]
area = 1e-8
polarity = "p"
)"));
    INFO(r.out);
    REQUIRE(r.exit == 0);
    auto run = json::parse(r.out);
    CHECK(param(run, "tox") == doctest::Approx(10e-9).epsilon(0.02));
    CHECK(param(run, "vfb") == doctest::Approx(-0.9).epsilon(0.03));
    CHECK(param(run, "n_sub") == doctest::Approx(1e22).epsilon(0.05));
    f.check_records(std::string(run.at("run_id").as_string()), 3 * 141, "cox");
  }
  SUBCASE("four-point probe: SMU forcing, DMM sensing") {
    auto r = f.run_recipe(f.recipe("4pp.toml", R"(
[recipe]
format = 1
name = "wafer-4pp"
version = "1.0.0"
method = "four-point"
[roles.smu]
kind = "source-measure"
instrument = "smu-4pp"
source = "current"
compliance = 2.0
nplc = 0.01
[roles.dmm]
kind = "voltmeter"
instrument = "dmm"
[sweep]
role = "smu"
mode = "list"
values = [1e-4, -1e-4, 5e-4, -5e-4, 1e-3, -1e-3]
[device]
probe_spacing = 1e-3
diameter = 0.1
)"));
    INFO(r.out);
    REQUIRE(r.exit == 0);
    auto run = json::parse(r.out);
    CHECK(param(run, "r_sheet") == doctest::Approx(100.0).epsilon(0.005));
    f.check_records(std::string(run.at("run_id").as_string()), 2 * 6, "r_sheet");
    CHECK(scpi(f.port["smu-4pp"], ":OUTP?") == "0");
  }
}

TEST_CASE("refused submissions name the problem") {
  station_fixture f;
  // A role bound to an instrument without the capability.
  auto bad = std::string(kDiode);
  bad.replace(bad.find("[roles.smu]"), 11, "[roles.smu]\ninstrument = \"lcr\"");
  auto r = f.run_recipe(f.recipe("bad.toml", bad));
  CHECK(r.exit == 2);
  // The refused run left nothing behind; the list answers.
  auto [status, body] = http(f.status_port, "GET", "/api/v1/runs");
  CHECK(status == 200);
  CHECK(body == "{\"runs\":[]}\n");
}

TEST_CASE("abort mid-run: outputs off, state aborted") {
  station_fixture f;
  auto r = f.run_recipe(f.recipe("slow.toml", mosfet_recipe(20000)), "--no-follow");
  REQUIRE(r.exit == 0);
  std::string id = r.out.substr(0, r.out.find('\n'));
  REQUIRE(wait_until([&] {
    auto [st, b] = http(f.status_port, "GET", "/api/v1/runs/" + id);
    if (st != 200) return false;
    auto v = json::parse(b);
    return v.at("state").as_string() == "running" && v.at("step").to_number<std::uint64_t>() > 20;
  }, std::chrono::seconds(30)));
  CHECK(scpi(f.port["gate"], ":OUTP?") == "1");  // sourcing mid-run
  CHECK(http(f.status_port, "POST", "/api/v1/runs/" + id + "/abort").first == 202);
  REQUIRE(wait_until([&] {
    auto [st, b] = http(f.status_port, "GET", "/api/v1/runs/" + id);
    return st == 200 && json::parse(b).at("state").as_string() == "aborted";
  }, std::chrono::seconds(20)));
  CHECK(scpi(f.port["gate"], ":OUTP?") == "0");
  CHECK(scpi(f.port["drain"], ":OUTP?") == "0");
  CHECK(f.text("SELECT state FROM runs WHERE run_id = '" + id + "'") == "aborted");
  CHECK(http(f.status_port, "POST", "/api/v1/runs/" + id + "/abort").first == 409);
}

TEST_CASE("a run that was running when the daemon died is failed at the next start") {
  station_fixture f;
  auto r = f.run_recipe(f.recipe("slow.toml", mosfet_recipe(20000)), "--no-follow");
  REQUIRE(r.exit == 0);
  std::string id = r.out.substr(0, r.out.find('\n'));
  REQUIRE(wait_until([&] {
    auto [st, b] = http(f.status_port, "GET", "/api/v1/runs/" + id);
    return st == 200 && json::parse(b).at("step").to_number<std::uint64_t>() > 5;
  }, std::chrono::seconds(30)));
  REQUIRE(f.text("SELECT state FROM runs WHERE run_id = '" + id + "'") == "running");
  f.agent.kill_hard();
  f.start_agent();
  auto [st, body] = http(f.status_port, "GET", "/api/v1/runs/" + id);
  REQUIRE(st == 200);
  auto v = json::parse(body);
  CHECK(v.at("state").as_string() == "failed");
  CHECK(std::string(v.at("reason").as_string()).find("daemon stopped while the run was running") !=
        std::string::npos);
  CHECK(f.text("SELECT state FROM runs WHERE run_id = '" + id + "'") == "failed");
  CHECK(f.count("SELECT COUNT(*) FROM outbox WHERE class = 0 AND run_id = '" + id +
                "' AND channel = 'run.state' AND vtext = 'failed'") == 1);
  // The drain SMU was left sourcing by the killed daemon; the new session's first operation of
  // a later run switches it off. Here: a new run on the same instruments completes.
  auto again = f.run_recipe(f.recipe("mos.toml", mosfet_recipe(51)));
  CHECK(again.exit == 0);
}
