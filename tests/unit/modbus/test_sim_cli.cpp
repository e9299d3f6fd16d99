// semilab-sim's Modbus models and `semilab-agent modbus ...` end to end on 127.0.0.1: the
// shipped profiles read through the CLI, writes verified, simulator faults seen by a session.
#include <semilab/drivers/modbus_error.hpp>
#include <semilab/drivers/modbus_link.hpp>

#include "../../support/processes.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/json.hpp>
#include <doctest/doctest.h>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace semilab::drivers::modbus;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

const std::string kBin = SEMILAB_BIN_DIR;

// semilab-sim with a pipe on stdout; killed by PID when destroyed.
struct sim {
  pid_t pid = -1;
  int out = -1;
  std::string where;  // after "listening "
  explicit sim(std::vector<std::string> args) {
    args.insert(args.begin(), kBin + "/semilab-sim");
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    pid = ::fork();
    if (pid == 0) {
      ::dup2(fds[1], 1);
      ::close(fds[0]);
      std::FILE* devnull = std::fopen("/dev/null", "w");
      if (devnull) ::dup2(fileno(devnull), 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      std::_Exit(127);
    }
    ::close(fds[1]);
    out = fds[0];
    std::string line;
    auto until = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < until && line.find('\n') == std::string::npos) {
      pollfd p{out, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char c[256];
      auto n = ::read(out, c, sizeof c);
      if (n <= 0) break;
      line.append(c, static_cast<std::size_t>(n));
    }
    REQUIRE(line.rfind("listening ", 0) == 0);
    where = line.substr(10, line.find('\n') - 10);
  }
  ~sim() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      int st = 0;
      ::waitpid(pid, &st, 0);
    }
    if (out >= 0) ::close(out);
  }
  std::string uri() const { return "modbus-tcp://" + where + "?unit=1"; }
};

struct run_result {
  int rc = -1;
  std::string out;
};

run_result agent(const std::string& args) {
  auto sh = semilab::test::run_shell(kBin + "/semilab-agent " + args + " 2>/dev/null");
  return {sh.exit, std::move(sh.out)};
}

template <class T>
T await(asio::io_context& io, std::optional<T>& slot) {
  auto end = std::chrono::steady_clock::now() + 5s;
  io.restart();
  auto guard = asio::make_work_guard(io);
  while (!slot && std::chrono::steady_clock::now() < end) io.run_one_for(10ms);
  REQUIRE(slot.has_value());
  return std::move(*slot);
}

poll_result poll(asio::io_context& io, session& s) {
  std::optional<poll_result> r;
  s.async_poll({}, [&](poll_result p) { r = std::move(p); });
  return await(io, r);
}

bool all_ok(const poll_result& p) {
  for (const auto& v : p.values)
    if (!v.v.has_value()) return false;
  return !p.values.empty();
}

std::shared_ptr<const device_map> profile(const char* name) {
  auto m = load_profile(name);
  REQUIRE(m.has_value());
  return std::make_shared<const device_map>(std::move(*m));
}

link_resource res_of(const std::string& uri) {
  auto r = parse_link_resource(uri);
  REQUIRE(r.has_value());
  return *r;
}

}  // namespace

TEST_CASE("every Modbus model: CLI read --json gives every point of its profile") {
  for (const char* model : {"eurotherm3200", "vacuum-gauge", "mfc"}) {
    CAPTURE(model);
    sim s({"--model", model, "--listen", "127.0.0.1:0"});
    auto r = agent("modbus read '" + s.uri() + "' --profile " + model + " --json");
    CHECK(r.rc == 0);
    auto v = boost::json::parse(r.out);
    REQUIRE(v.is_array());
    auto map = profile(model);
    CHECK(v.as_array().size() == map->points.size());
    for (const auto& e : v.as_array()) {
      CAPTURE(boost::json::serialize(e));
      CHECK_FALSE(e.as_object().at("value").is_null());
      CHECK(e.as_object().contains("unit"));
    }
    if (std::string(model) == "mfc") {
      // The totaliser starts above 2^53: exact, as a string, never a rounded JSON number.
      for (const auto& e : v.as_array())
        if (e.at("name") == "totalizer") {
          REQUIRE(e.at("value").is_string());
          auto text = std::string(e.at("value").as_string());
          CHECK(std::stoull(text) > (1ULL << 53));
        }
    }
  }
}

TEST_CASE("CLI: text read, verified write, refusals, scan") {
  sim s({"--model", "eurotherm3200", "--listen", "127.0.0.1:0"});
  auto r = agent("modbus read '" + s.uri() + "' --profile eurotherm3200");
  CHECK(r.rc == 0);
  CHECK(r.out.find("sp\t150\tdegC\n") != std::string::npos);
  auto w = agent("modbus write '" + s.uri() + "' --profile eurotherm3200 sp 200.5 --yes");
  CHECK(w.rc == 0);
  CHECK(w.out == "sp\t200.5\tdegC\n");
  CHECK(agent("modbus read '" + s.uri() + "' --profile eurotherm3200").out.find("sp\t200.5\tdegC\n") !=
        std::string::npos);
  CHECK(agent("modbus write '" + s.uri() + "' --profile eurotherm3200 sp 1200.1 --yes").rc == 2);
  CHECK(agent("modbus write '" + s.uri() + "' --profile eurotherm3200 pv 20 --yes").rc == 2);
  CHECK(agent("modbus write '" + s.uri() + "' --profile eurotherm3200 sp 20").rc == 2);  // no --yes
  CHECK(agent("modbus write '" + s.uri() + "' --profile eurotherm3200 nope 20 --yes").rc == 2);
  CHECK(agent("modbus read '" + s.uri() + "' --profile no-such").rc == 2);
  auto sc = agent("modbus scan '" + s.uri() + "' --last 2 --timeout-ms 50");
  CHECK(sc.rc == 0);
  CHECK(sc.out == "unit 1\tregisters\nunit 2\tregisters\n");
  CHECK(agent("modbus read 'modbus-tcp://127.0.0.1:1?unit=1' --profile mfc").rc == 1);
}

TEST_CASE("simulator exception fault: only the covered point fails, by name") {
  sim s({"--model", "eurotherm3200", "--listen", "127.0.0.1:0", "--fault", "exception=32770:4"});
  asio::io_context io;
  auto map = profile("eurotherm3200");
  session l(asio::make_strand(io), res_of(s.uri()), map);
  auto r = poll(io, l);
  for (const auto& pv : r.values) {
    const auto& p = map->points[pv.index];
    CAPTURE(p.name);
    if (p.name == "pv_float") {
      REQUIRE_FALSE(pv.v.has_value());
      CHECK(exception_of(pv.v.error().code) == 4);
      CHECK(pv.v.error().message.find("server device failure (04)") != std::string::npos);
    } else {
      CHECK(pv.v.has_value());
    }
  }
}

TEST_CASE("simulator restart and disconnect faults: the session is back within 2 intervals") {
  // Restart at the 6th request, down for 800 ms; the mfc's interval is 0.5 s.
  sim s({"--model", "mfc", "--listen", "127.0.0.1:0", "--fault", "restart-after=6", "--fault",
         "restart-ms=800"});
  asio::io_context io;
  auto map = profile("mfc");
  session l(asio::make_strand(io), res_of(s.uri()), map);
  REQUIRE(all_ok(poll(io, l)));  // 4 requests (input 0..7, holding 0..1, holding 10..13, coil)
  auto t_fail = std::chrono::steady_clock::now();
  auto failed = poll(io, l);     // its 2nd request is the 6th: the device restarts
  CHECK_FALSE(all_ok(failed));
  bool back = false;
  std::chrono::steady_clock::duration took{};
  for (int i = 0; i < 20 && !back; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(map->interval_s * 1000)));
    back = all_ok(poll(io, l));
    took = std::chrono::steady_clock::now() - t_fail;
  }
  REQUIRE(back);
  // Down 800 ms, then at most 2 intervals (1 s) to come back.
  MESSAGE("back " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                  << " ms after the restart began");
  CHECK(took <= 800ms + 1000ms + 200ms);

  sim d({"--model", "vacuum-gauge", "--listen", "127.0.0.1:0", "--fault", "disconnect-every=5"});  // 3 requests per poll
  auto gauge = profile("vacuum-gauge");
  session g(asio::make_strand(io), res_of(d.uri()), gauge);
  int ok = 0, bad = 0;
  for (int i = 0; i < 6; ++i) (all_ok(poll(io, g)) ? ok : bad)++;
  CHECK(ok >= 2);
  CHECK(bad >= 1);
  CHECK(g.stats().connects >= 2);
}

TEST_CASE("simulator timeout fault: the unanswered request times out, the next poll reads") {
  // Every 5th request is never answered; the vacuum gauge makes 3 requests per poll.
  sim s({"--model", "vacuum-gauge", "--listen", "127.0.0.1:0", "--fault", "hang-every=5"});
  asio::io_context io;
  auto map = profile("vacuum-gauge");
  session l(asio::make_strand(io), res_of(s.uri()), map, {.timeout_s = 0.2});
  int ok = 0, timed_out = 0;
  for (int i = 0; i < 6; ++i) {
    auto r = poll(io, l);
    if (all_ok(r)) ++ok;
    for (const auto& pv : r.values)
      if (!pv.v && pv.v.error().code == make_error_code(errc::timeout)) {
        ++timed_out;
        break;
      }
  }
  CHECK(timed_out >= 2);
  CHECK(ok >= 2);
  CHECK(l.stats().timeouts >= 2);
}

TEST_CASE("simulator over RTU on a pty") {
  sim s({"--model", "vacuum-gauge", "--rtu"});
  CHECK(s.where.rfind("/dev/pts/", 0) == 0);
  asio::io_context io;
  auto map = profile("vacuum-gauge");
  session l(asio::make_strand(io), res_of("modbus-rtu://" + s.where + "?baud=19200&parity=N&unit=1"), map,
            {.name = "rtu-sim"});
  auto r = poll(io, l);
  for (const auto& pv : r.values)
    if (!pv.v) FAIL(map->points[pv.index].name << ": " << pv.v.error().message);
  auto p = std::get<double>(*r.values[0].v);
  CHECK(p > 0.005);
  CHECK(p < 0.05);
}
