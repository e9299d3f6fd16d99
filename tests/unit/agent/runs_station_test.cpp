// Recipe runs end to end: `semilab-sim --station` (instruments over shared device models), a
// real `semilab-agent run` daemon holding the instrument sessions, `semilab-agent run-recipe`
// submitting and following, and the outbox database checked for the run's records and state;
// in the per-method test also a real mosquitto and semilab-central, whose store must hold each
// run's parameters, summary and curve. Each method's extracted parameters must match the
// station's device parameters.
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
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
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
  child sim, agent, central;
  std::unique_ptr<semilab::test::mosquitto> broker;  // with_central only
  std::filesystem::path config = dir.path() / "agent.toml";

  // with_central: a real mosquitto and semilab-central, so each run's results are checked where
  // engineers read them; otherwise the broker address is dead and records stay in the outbox.
  explicit station_fixture(bool with_central = false) {
    // Distinct ports: bind(0) may hand out a just-released port again.
    std::set<int> taken{status_port};
    for (const char* id : {"smu-d", "gate", "drain", "lcr", "lcr-s", "smu-4pp", "dmm", "h-mx", "h-mag",
                           "h-smu", "h-dmm", "t-mx", "t-smu", "t-dmm"}) {
      int p = free_port();
      while (!taken.insert(p).second) p = free_port();
      port[id] = p;
    }
    auto st = dir.path() / "station.toml";
    std::ofstream s(st);
    s << "[[device]]\nname = \"d1\"\nkind = \"diode\"\ni0 = 1e-12\nideality = 1.8\nrs = 5\n"
      << "[[device]]\nname = \"m1\"\nkind = \"mosfet\"\nvth = 0.5\n"
      << "[[device]]\nname = \"c1\"\nkind = \"moscap\"\nna = 1e22\ntox = 10e-9\narea = 1e-8\nvfb = -0.9\n"
      << "[[device]]\nname = \"k1\"\nkind = \"schottky\"\nnd = 2e22\nvbi = 0.75\narea = 1e-8\n"
      << "[[device]]\nname = \"s1\"\nkind = \"sheet\"\nr_sheet = 100\nspacing = 1e-3\ndiameter = 0.1\n"
      // van der Pauw / Hall sample (n type) and a TLM row of 5 pads (4 gaps)
      << "[[device]]\nname = \"h1\"\nkind = \"hall\"\nr_sheet = 250\nn_sheet = 2e16\nhall_sign = -1\n"
      << "tesla_per_amp = 0.1\nangle2 = 80\n"
      << "[[device]]\nname = \"t1\"\nkind = \"tlm\"\nr_sheet = 50\nr_contact = 4\nwidth = 100e-6\n"
      << "gap1 = 5e-6\ngap2 = 10e-6\ngap3 = 20e-6\ngap4 = 40e-6\n";
    auto inst = [&](const char* id, const char* model, const char* dev, const char* term) {
      s << "[[instrument]]\nid = \"" << id << "\"\nmodel = \"" << model << "\"\ndevice = \"" << dev
        << "\"\nterminal = \"" << term << "\"\nlisten = \"127.0.0.1:" << port[id] << "\"\n";
    };
    inst("smu-d", "keithley2450", "d1", "anode");
    inst("gate", "keithley2450", "m1", "gate");
    inst("drain", "keithley2450", "m1", "drain");
    inst("lcr", "e4980a", "c1", "gate");
    inst("lcr-s", "e4980a", "k1", "anode");
    inst("smu-4pp", "keithley2450", "s1", "force");
    inst("dmm", "34461a", "s1", "sense");
    inst("h-mx", "keithley7001", "h1", "matrix");
    inst("h-mag", "kepco-bop", "h1", "magnet");
    inst("h-smu", "keithley2450", "h1", "force");
    inst("h-dmm", "34461a", "h1", "sense");
    inst("t-mx", "keithley7001", "t1", "matrix");
    inst("t-smu", "keithley2450", "t1", "force");
    inst("t-dmm", "34461a", "t1", "sense");
    s.close();
    sim = child({kBin + "/semilab-sim", "--station", st.string()}, dir.path() / "sim.log");
    for (auto& [id, p] : port) {
      int pp = p;
      REQUIRE(wait_until([pp] { return port_open(pp); }, std::chrono::seconds(10)));
    }
    std::string broker_url = "tcp://127.0.0.1:" + std::to_string(free_port());
    if (with_central) {
      broker = std::make_unique<semilab::test::mosquitto>(dir.path());
      broker_url = broker->url();
      auto cc = dir.path() / "central.toml";
      std::ofstream(cc) << "[central]\ninstance = \"central-1\"\ndata_dir = \""
                        << (dir.path() / "central").string() << "\"\n[mqtt]\nbroker = \"" << broker_url
                        << "\"\n[http]\nlisten = \"127.0.0.1:0\"\n";
      central = child({kBin + "/semilab-central", "run", "--config", cc.string()}, dir.path() / "central.log");
    }
    std::ofstream c(config);
    c << "[agent]\nid = \"runs-test\"\nsite = \"lab\"\ndata_dir = \"" << (dir.path() / "data").string()
      << "\"\n[mqtt]\nbroker = \"" << broker_url << "\"\n"
      << "[status]\nport = " << status_port << "\noperator_token = \"" << kToken << "\"\n"
      << "[runs]\nroles = { smu = \"smu-d\" }\n";
    for (auto& [id, p] : port) {
      std::string model = id.starts_with("lcr")            ? "e4980a"
                          : id == "dmm" || id.ends_with("-dmm") ? "34461a"
                          : id.ends_with("-mx")                ? "keithley7001"
                          : id == "h-mag"                      ? "kepco-bop"
                                                               : "keithley2450";
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

  // The first column of the first row of `sql` on a database read-only (WAL lets us read beside
  // the writer); nullopt when the database or the query fails.
  static std::optional<std::string> first_value(const std::filesystem::path& file, const std::string& sql) {
    sqlite3* db = nullptr;
    std::optional<std::string> v;
    if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
      sqlite3_busy_timeout(db, 5000);
      sqlite3_stmt* st = nullptr;
      if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK) {
        const int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
          v = sqlite3_column_text(st, 0) ? reinterpret_cast<const char*>(sqlite3_column_text(st, 0)) : "";
        else if (rc == SQLITE_DONE)
          v = "";
      }
      sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return v;
  }
  // The agent's outbox database as the daemon committed it.
  std::string text(const std::string& sql) {
    auto v = first_value(dir.path() / "data" / "outbox.db", sql);
    REQUIRE(v.has_value());
    return *v;
  }
  std::int64_t count(const std::string& sql) {
    auto v = text(sql);
    return v.empty() ? -1 : std::stoll(v);
  }
  // central's store (with_central): -1 until it answers.
  std::int64_t central_count(const std::string& sql) {
    auto v = first_value(dir.path() / "central" / "central.db", sql);
    return v && !v->empty() ? std::stoll(*v) : -1;
  }

  // Records of a run: curve points, parameters and the committed state.
  // Held and acknowledged (retained) records of the outbox.
  static constexpr const char* kHeld =
      "(SELECT class, run_id, channel, vtext FROM outbox UNION ALL "
      "SELECT class, run_id, channel, vtext FROM retained)";
  void check_records(const std::string& id, std::int64_t min_curve_records, const char* p1) {
    CHECK(count("SELECT COUNT(*) FROM " + std::string(kHeld) + " WHERE class = 1 AND run_id = '" + id +
                "' AND channel LIKE 'curve.%'") >= min_curve_records);
    CHECK(count("SELECT COUNT(*) FROM " + std::string(kHeld) + " WHERE class = 1 AND run_id = '" + id +
                "' AND channel = 'param." + p1 + "'") == 1);
    CHECK(count("SELECT COUNT(*) FROM " + std::string(kHeld) + " WHERE class = 1 AND run_id = '" + id +
                "' AND channel = 'run.summary'") == 1);
    CHECK(count("SELECT COUNT(*) FROM " + std::string(kHeld) + " WHERE class = 0 AND run_id = '" + id +
                "' AND channel = 'run.state' AND vtext = 'completed'") == 1);
    CHECK(text("SELECT state FROM runs WHERE run_id = '" + id + "'") == "completed");
    CHECK(text("SELECT metadata FROM runs WHERE run_id = '" + id + "'").find("\"sample\":\"S-1\"") !=
          std::string::npos);
    // The sample metadata travels to central as a run_metadata event (schemas/WIRE.md).
    auto meta = semilab::schemas::decode_run_metadata(
        text("SELECT vtext FROM " + std::string(kHeld) + " WHERE class = 0 AND run_id = '" + id +
             "' AND channel = 'run_metadata'"));
    REQUIRE(meta.has_value());
    CHECK(meta->sample == "S-1");
    CHECK(meta->wafer == "W7");
    CHECK(meta->lot == "L9");
    CHECK(meta->operator_name == "tester");
    if (central.pid() <= 0) return;
    // At central: the parameter, the summary and the run's sample (run_metadata) stored once.
    const std::string where = " FROM records WHERE agent_id = 'runs-test' AND run_id = '" + id + "'";
    CHECK(wait_until([&] { return central_count("SELECT COUNT(*)" + where + " AND channel = 'param." +
                                                p1 + "'") == 1; },
                     std::chrono::seconds(30)));
    CHECK(central_count("SELECT COUNT(*)" + where + " AND channel = 'run.summary'") == 1);
    CHECK(central_count("SELECT COUNT(*)" + where + " AND channel LIKE 'curve.%'") >= min_curve_records);
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
  station_fixture f(true);

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
  SUBCASE("MOSFET Id-Vd: gate held, drain swept; Ron and saturation current of the device") {
    auto r = f.run_recipe(f.recipe("idvd.toml", R"(
[recipe]
format = 1
name = "nmos-idvd"
version = "1.0.0"
method = "mosfet-idvd"
[roles.gate]
kind = "source-measure"
instrument = "gate"
level = 2.0
compliance = 1e-6
nplc = 0.01
[roles.drain]
kind = "source-measure"
instrument = "drain"
compliance = 0.05
nplc = 0.01
[sweep]
role = "drain"
mode = "linear"
start = 0
stop = 3.0
points = 121
[device]
polarity = "n"
width = 10e-6
length = 1e-6
)"));
    INFO(r.out);
    REQUIRE(r.exit == 0);
    auto run = json::parse(r.out);
    // Model (station.cpp, T2a device, theta = 0): ID = beta v (Vov - v/2) below VDsat = Vov =
    // 1.5 V, so dID/dVDS at 0 = beta Vov (Ron 482.6 ohm) and Idsat = beta Vov^2 / 2.
    const double beta = 1.3813e-3, vov = 1.5;
    CHECK(param(run, "r_on") == doctest::Approx(1 / (beta * vov)).epsilon(0.01));
    CHECK(param(run, "id_sat") == doctest::Approx(beta * vov * vov / 2).epsilon(0.01));
    f.check_records(std::string(run.at("run_id").as_string()), 2 * 121, "r_on");
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
  SUBCASE("Schottky C-V on the LCR meter: doping and built-in voltage of the device") {
    auto r = f.run_recipe(f.recipe("cvs.toml", R"(
[recipe]
format = 1
name = "schottky-cv"
version = "1.0.0"
method = "cv-schottky"
[roles.lcr]
kind = "impedance"
instrument = "lcr-s"
function = "CPG"
frequency = 1e5
ac_level = 0.03
[sweep]
role = "lcr"
mode = "linear"
start = -3.0
stop = 0.0
points = 61
[device]
area = 1e-8
)"));
    INFO(r.out);
    REQUIRE(r.exit == 0);
    auto run = json::parse(r.out);
    // Station device k1: N_D 2e22 m^-3, Vbi 0.75 V (station.cpp, schottky_capacitance).
    CHECK(param(run, "n_d") == doctest::Approx(2e22).epsilon(0.02));
    CHECK(param(run, "vbi") == doctest::Approx(0.75).epsilon(0.02));
    f.check_records(std::string(run.at("run_id").as_string()), 3 * 61, "n_d");
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
  SUBCASE("van der Pauw and Hall through the switch matrix, field reversal by the magnet") {
    // Sample h1: r_sheet 250 ohm/sq, n type, n_sheet 2e16 m^-2, contact 2 at 80 degrees
    // (asymmetric); magnet 0.1 T/A, so 5 A gives the recipe's 0.5 T.
    const char* kHall = R"(
[recipe]
format = 1
name = "hall-live"
version = "1.0.0"
method = "METHOD"
[roles.smu]
kind = "source-measure"
instrument = "h-smu"
source = "current"
compliance = 5.0
nplc = 0.01
[roles.dmm]
kind = "voltmeter"
instrument = "h-dmm"
nplc = 0.02
[roles.matrix]
kind = "switch"
instrument = "h-mx"
[roles.magnet]
kind = "magnet"
instrument = "h-mag"
level = 5.0
[sweep]
role = "smu"
mode = "list"
values = [1e-4, -1e-4]
[device]
field = 0.5
)";
    std::string hall = kHall;
    hall.replace(hall.find("METHOD"), 6, "hall");
    auto r = f.run_recipe(f.recipe("hall.toml", hall));
    INFO(r.out);
    REQUIRE(r.exit == 0);
    auto run = json::parse(r.out);
    CHECK(run.at("state").as_string() == "completed");
    CHECK(param(run, "r_sheet") == doctest::Approx(250).epsilon(2e-3));
    CHECK(run.at("result").at("parameters").at("carrier_type").at("value").as_string() == "n");
    CHECK(param(run, "n_sheet") == doctest::Approx(2e16).epsilon(5e-3));
    const double mobility = 1 / (1.602176634e-19 * 2e16 * 250);
    CHECK(param(run, "mobility") == doctest::Approx(mobility).epsilon(5e-3));
    CHECK(param(run, "field") == doctest::Approx(0.5));
    // 8 vdp configurations at zero field and 4 Hall ones at +B and -B, 2 currents each.
    f.check_records(std::string(run.at("run_id").as_string()), (8 + 2 * 4) * 2, "n_sheet");
    // The run left the source off, the field off and every relay open.
    CHECK(scpi(f.port["h-smu"], ":OUTP?") == "0");
    CHECK(scpi(f.port["h-mag"], ":OUTP?") == "0");
    CHECK(scpi(f.port["h-mx"], ":ROUT:CLOS?") == "(@)");

    // van der Pauw alone: the same sample without the magnet role.
    std::string vdp = kHall;
    vdp.replace(vdp.find("METHOD"), 6, "vdp");
    vdp.erase(vdp.find("[roles.magnet]"), vdp.find("[sweep]") - vdp.find("[roles.magnet]"));
    vdp.replace(vdp.find("field = 0.5"), 11, "thickness = 1e-6");
    auto rv = f.run_recipe(f.recipe("vdp.toml", vdp));
    INFO(rv.out);
    REQUIRE(rv.exit == 0);
    auto runv = json::parse(rv.out);
    CHECK(param(runv, "r_sheet") == doctest::Approx(250).epsilon(2e-3));
    CHECK(param(runv, "resistivity") == doctest::Approx(250e-6).epsilon(2e-3));
    // Contact 2 at 80 degrees: the two van der Pauw resistances differ.
    CHECK(param(runv, "r_a") != doctest::Approx(param(runv, "r_b")).epsilon(1e-2));
    f.check_records(std::string(runv.at("run_id").as_string()), 8 * 2, "r_sheet");
    CHECK(scpi(f.port["h-mx"], ":ROUT:CLOS?") == "(@)");
  }
  SUBCASE("TLM: the matrix routes each pad pair; contact resistance and transfer length") {
    // Row t1: r_sheet 50 ohm/sq, r_contact 4 ohm, W 100 um: R(d) = 8 + 50 d / 100e-6, so the
    // transfer length is r_contact W / r_sheet = 8 um.
    auto r = f.run_recipe(f.recipe("tlm.toml", R"(
[recipe]
format = 1
name = "tlm-live"
version = "1.0.0"
method = "tlm"
[roles.smu]
kind = "source-measure"
instrument = "t-smu"
source = "current"
compliance = 1.0
nplc = 0.01
[roles.dmm]
kind = "voltmeter"
instrument = "t-dmm"
nplc = 0.02
[roles.matrix]
kind = "switch"
instrument = "t-mx"
[sweep]
role = "smu"
mode = "list"
values = [1e-3, -1e-3]
[device]
contact_width = 100e-6
gaps = [5e-6, 10e-6, 20e-6, 40e-6]
)"));
    INFO(r.out);
    REQUIRE(r.exit == 0);
    auto run = json::parse(r.out);
    CHECK(run.at("state").as_string() == "completed");
    CHECK(param(run, "r_contact") == doctest::Approx(4.0).epsilon(5e-3));
    CHECK(param(run, "r_sheet") == doctest::Approx(50.0).epsilon(5e-3));
    CHECK(param(run, "l_transfer") == doctest::Approx(8e-6).epsilon(1e-2));
    f.check_records(std::string(run.at("run_id").as_string()), 4 * 2, "r_contact");
    CHECK(scpi(f.port["t-smu"], ":OUTP?") == "0");
    CHECK(scpi(f.port["t-mx"], ":ROUT:CLOS?") == "(@)");
  }
  SUBCASE("check standard: the four-wire resistance of the head against its nominal value") {
    // The sheet's inner-probe V/I is 100 ohm/sq / (4.5324 F2(100)) = 22.083 ohm.
    auto r = f.run_recipe(f.recipe("cs.toml", R"(
[recipe]
format = 1
name = "daily-check-22R"
version = "1.0.0"
method = "check-standard"
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
values = [1e-3, -1e-3]
[device]
nominal = 22.0
[limits.deviation_rel]
min = -0.01
max = 0.01
)"));
    INFO(r.out);
    REQUIRE(r.exit == 0);
    auto run = json::parse(r.out);
    CHECK(param(run, "r") == doctest::Approx(22.083).epsilon(1e-3));
    CHECK(param(run, "deviation") == doctest::Approx(0.083).epsilon(0.05));
    CHECK(param(run, "deviation_rel") == doctest::Approx(0.083 / 22).epsilon(0.05));
    f.check_records(std::string(run.at("run_id").as_string()), 2 * 2, "deviation");
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
  // A switch role on a voltmeter; TLM without a switch role.
  const std::string tlm = R"(
[recipe]
format = 1
name = "tlm-bad"
version = "1.0.0"
method = "tlm"
[roles.smu]
kind = "source-measure"
instrument = "t-smu"
source = "current"
compliance = 1.0
SWITCH
[sweep]
role = "smu"
mode = "list"
values = [1e-3, -1e-3]
[device]
contact_width = 100e-6
gaps = [5e-6, 10e-6, 20e-6, 40e-6]
)";
  auto with = [&](const std::string& sw) {
    std::string t = tlm;
    t.replace(t.find("SWITCH"), 6, sw);
    return t;
  };
  auto log_text = [&] {
    std::ifstream in(f.dir.path() / "cli.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  auto r2 = f.run_recipe(f.recipe("bad2.toml", with("[roles.matrix]\nkind = \"switch\"\ninstrument = \"t-dmm\"")));
  CHECK(r2.exit == 2);
  CHECK(log_text().find("role 'matrix' (switch): instrument 't-dmm' (model 34461a) does not have "
                        "that capability") != std::string::npos);
  auto r3 = f.run_recipe(f.recipe("bad3.toml", with("")));
  CHECK(r3.exit == 2);
  CHECK(log_text().find("tlm is measured live through a switch role") != std::string::npos);
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
  // The runs table is written by the executor's worker thread, just after the state changes.
  CHECK(wait_until([&] { return f.text("SELECT state FROM runs WHERE run_id = '" + id + "'") == "aborted"; },
                   std::chrono::seconds(10)));
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
  // The runs table is written in the background (runs.cpp): wait for the row, then kill.
  REQUIRE(wait_until([&] { return f.text("SELECT state FROM runs WHERE run_id = '" + id + "'") == "running"; },
                     std::chrono::seconds(10)));
  f.agent.kill_hard();
  f.start_agent();
  auto [st, body] = http(f.status_port, "GET", "/api/v1/runs/" + id);
  REQUIRE(st == 200);
  auto v = json::parse(body);
  CHECK(v.at("state").as_string() == "failed");
  CHECK(std::string(v.at("reason").as_string()).find("daemon stopped while the run was running") !=
        std::string::npos);
  CHECK(wait_until([&] { return f.text("SELECT state FROM runs WHERE run_id = '" + id + "'") == "failed"; },
                   std::chrono::seconds(10)));
  // The state event is committed by the outbox writer after the runs table (runs.cpp).
  CHECK(wait_until([&] {
    return f.count("SELECT COUNT(*) FROM outbox WHERE class = 0 AND run_id = '" + id +
                   "' AND channel = 'run.state' AND vtext = 'failed'") == 1;
  }, std::chrono::seconds(10)));
  // The drain SMU was left sourcing by the killed daemon; the new session's first operation of
  // a later run switches it off. Here: a new run on the same instruments completes.
  auto again = f.run_recipe(f.recipe("mos.toml", mosfet_recipe(51)));
  CHECK(again.exit == 0);
}

namespace {

std::string str(const json::value& v, const char* k) { return std::string(v.at(k).as_string()); }
std::uint64_t num(const json::value& v, const char* k) { return v.at(k).to_number<std::uint64_t>(); }

// The run once `pred` holds for it (GET /api/v1/runs/ID), else a failed REQUIRE.
json::value wait_run(int port, const std::string& id, const std::function<bool(const json::value&)>& pred) {
  json::value last;
  bool ok = wait_until([&] {
    auto [st, b] = http(port, "GET", "/api/v1/runs/" + id);
    if (st != 200) return false;
    last = json::parse(b);
    return pred(last);
  }, std::chrono::seconds(30));
  INFO(json::serialize(last));
  REQUIRE(ok);
  return last;
}

}  // namespace

TEST_CASE("repeats and operator prompts: waiting, confirm, outputs off; pause refused meanwhile") {
  station_fixture f;
  // Three sweeps of 21 points; the operator lands the probes first and moves them between
  // repeats; nothing after the last sweep.
  std::string recipe = kDiode;
  recipe.replace(recipe.find("points = 71"), 11, "points = 21\nrepeats = 3");
  recipe += "[[prompt]]\nat = \"start\"\ntext = \"Land the probes on pad 1\"\n"
            "[[prompt]]\nat = \"repeat\"\ntext = \"Move the probes to the next pad\"\n";
  auto r = f.run_recipe(f.recipe("rep.toml", recipe), "--no-follow");
  REQUIRE(r.exit == 0);
  std::string id = r.out.substr(0, r.out.find('\n'));

  // Waiting for the first prompt: nothing measured, the source off.
  auto v = wait_run(f.status_port, id, [](const json::value& x) { return str(x, "state") == "waiting"; });
  CHECK(str(v, "prompt") == "Land the probes on pad 1");
  CHECK(num(v, "prompt_seq") == 1);
  CHECK(num(v, "step") == 0);
  CHECK(num(v, "steps") == 63);
  CHECK(num(v, "repeats") == 3);
  CHECK(scpi(f.port["smu-d"], ":OUTP?") == "0");
  // The table keeps `running` for a waiting run (its CHECK constraint).
  CHECK(wait_until([&] { return f.text("SELECT state FROM runs WHERE run_id = '" + id + "'") == "running"; },
                   std::chrono::seconds(10)));

  // Pausing acquisition now is refused, naming the run (HTTP 409; the CLI exits 1).
  auto [pst, pbody] = http(f.status_port, "POST", "/api/v1/acquisition/pause");
  CHECK(pst == 409);
  CHECK(pbody.find(id) != std::string::npos);
  auto pc = run_cli("pause -c " + f.config.string(), f.dir.path() / "cli.log");
  CHECK(pc.exit == 1);

  // A confirmation naming another prompt is refused; the CLI confirms the right one.
  CHECK(http(f.status_port, "POST", "/api/v1/runs/" + id + "/confirm", R"({"prompt": 2})").first == 409);
  auto c1 = run_cli("runs confirm " + id + " --prompt 1 -c " + f.config.string(), f.dir.path() / "cli.log");
  CHECK(c1.exit == 0);
  // The first sweep, then the repeat prompt: progress 21 of 63, the source off again.
  v = wait_run(f.status_port, id, [](const json::value& x) {
    return str(x, "state") == "waiting" && num(x, "prompt_seq") == 2;
  });
  CHECK(num(v, "step") == 21);
  CHECK(num(v, "repeat") == 1);
  CHECK(str(v, "prompt") == "Move the probes to the next pad");
  CHECK(scpi(f.port["smu-d"], ":OUTP?") == "0");
  // A second click on the old prompt does not confirm this one.
  CHECK(http(f.status_port, "POST", "/api/v1/runs/" + id + "/confirm", R"({"prompt": 1})").first == 409);
  CHECK(http(f.status_port, "POST", "/api/v1/runs/" + id + "/confirm", R"({"prompt": 2})").first == 202);
  v = wait_run(f.status_port, id, [](const json::value& x) {
    return str(x, "state") == "waiting" && num(x, "prompt_seq") == 3;
  });
  CHECK(num(v, "step") == 42);
  CHECK(num(v, "repeat") == 2);
  auto list = run_cli("runs list -c " + f.config.string(), f.dir.path() / "cli.log");
  CHECK(list.exit == 0);
  CHECK(list.out.find(id + "\twaiting\t42/63 (repeat 2 of 3)") != std::string::npos);
  CHECK(http(f.status_port, "POST", "/api/v1/runs/" + id + "/confirm", "").first == 202);
  v = wait_run(f.status_port, id, [](const json::value& x) { return str(x, "state") == "completed"; });
  CHECK(num(v, "step") == 63);
  CHECK(num(v, "repeat") == 3);
  CHECK(str(v, "prompt").empty());
  CHECK(http(f.status_port, "POST", "/api/v1/runs/" + id + "/confirm", "").first == 409);

  // Each repeat's curve and parameters, the mean as the run's parameters.
  const auto& res = v.at("result");
  REQUIRE(res.at("repeats").as_array().size() == 3);
  for (const auto& rep : res.at("repeats").as_array()) {
    CHECK(num(rep, "points") == 21);
    CHECK(rep.at("parameters").at("n").at("value").to_number<double>() == doctest::Approx(1.8).epsilon(0.03));
  }
  CHECK(param(v, "n") == doctest::Approx(1.8).epsilon(0.03));
  CHECK(res.at("parameters").at("n").at("repeats").to_number<int>() == 3);
  CHECK(res.at("points").to_number<int>() == 63);
  for (int k = 1; k <= 3; ++k) {
    std::string p = "rep" + std::to_string(k) + ".";
    CHECK(f.count("SELECT COUNT(*) FROM outbox WHERE run_id = '" + id + "' AND channel = '" + p +
                  "curve.v'") == 21);
    CHECK(f.count("SELECT COUNT(*) FROM outbox WHERE run_id = '" + id + "' AND channel = '" + p +
                  "param.n'") == 1);
  }
  CHECK(f.count("SELECT COUNT(*) FROM outbox WHERE run_id = '" + id + "' AND channel = 'param.n'") == 1);
  CHECK(f.count("SELECT COUNT(*) FROM outbox WHERE class = 0 AND run_id = '" + id +
                "' AND channel = 'run.state' AND vtext = 'waiting'") == 3);
  CHECK(scpi(f.port["smu-d"], ":OUTP?") == "0");

  // The run over, pause works; a run submitted while paused is refused (exit 2, 409); resume.
  CHECK(http(f.status_port, "POST", "/api/v1/acquisition/pause").first == 200);
  auto refused = f.run_recipe(f.recipe("d.toml", kDiode));
  CHECK(refused.exit == 2);
  auto [sst, sbody] = http(f.status_port, "POST", "/api/v1/runs",
                           json::serialize(json::object{{"recipe", kDiode}, {"metadata", {{"sample", "S"}}}}));
  CHECK(sst == 409);
  CHECK(sbody.find("acquisition is paused") != std::string::npos);
  CHECK(http(f.status_port, "POST", "/api/v1/acquisition/resume").first == 200);
}

TEST_CASE("abort while waiting for the operator") {
  station_fixture f;
  std::string recipe = std::string(kDiode) + "[[prompt]]\nat = \"start\"\ntext = \"Land the probes\"\n";
  auto r = f.run_recipe(f.recipe("p.toml", recipe), "--no-follow");
  REQUIRE(r.exit == 0);
  std::string id = r.out.substr(0, r.out.find('\n'));
  wait_run(f.status_port, id, [](const json::value& x) { return str(x, "state") == "waiting"; });
  auto a = run_cli("runs abort " + id + " -c " + f.config.string(), f.dir.path() / "cli.log");
  CHECK(a.exit == 0);
  auto v = wait_run(f.status_port, id, [](const json::value& x) { return str(x, "state") == "aborted"; });
  CHECK(str(v, "reason").find("aborted") != std::string::npos);
  CHECK(wait_until([&] { return f.text("SELECT state FROM runs WHERE run_id = '" + id + "'") == "aborted"; },
                   std::chrono::seconds(10)));
  CHECK(scpi(f.port["smu-d"], ":OUTP?") == "0");
  // The instrument is free again: a run without prompts completes.
  CHECK(f.run_recipe(f.recipe("d.toml", kDiode)).exit == 0);
}
