// semilab-agent probe / scpi against semilab-sim processes: output contract and exit codes.
#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

const std::string kBin = SEMILAB_BIN_DIR;

std::string read_line(int fd, int ms) {
  std::string line;
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    char c = 0;
    if (::read(fd, &c, 1) != 1) break;
    if (c == '\n') return line;
    line.push_back(c);
  }
  return line;
}

// A semilab-sim process; resource() is its VISA string.
struct sim_process {
  pid_t pid = -1;
  int out = -1;
  std::string port;
  explicit sim_process(const std::string& model, std::vector<std::string> faults = {},
                       bool vxi11 = false) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::vector<std::string> args{kBin + "/semilab-sim", "--model", model, "--listen",
                                  "127.0.0.1:0"};
    for (auto& f : faults) {
      args.push_back("--fault");
      args.push_back(f);
    }
    if (vxi11) args.push_back("--vxi11");  // the port printed is then the portmapper's
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int rc = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    out = fds[0];
    REQUIRE(rc == 0);
    std::string first = read_line(out, 10000);
    REQUIRE_MESSAGE(first.rfind("listening 127.0.0.1:", 0) == 0, first);
    port = first.substr(20);
  }
  ~sim_process() {
    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
    ::close(out);
  }
  std::string resource() const { return "TCPIP0::127.0.0.1::" + port + "::SOCKET"; }
};

struct outcome {
  int exit_code = -1;
  std::vector<std::string> lines;  // stdout
};

// Runs semilab-agent with args (stdin from `input`), collecting stdout lines.
outcome agent(std::vector<std::string> args, const std::string& input = "") {
  std::string cmd = "printf '" + input + "' | " + kBin + "/semilab-agent";
  for (auto& a : args) cmd += " '" + a + "'";
  cmd += " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p);
  outcome o;
  char buf[4096];
  std::string all;
  while (std::fgets(buf, sizeof buf, p)) all += buf;
  int status = ::pclose(p);
  o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::size_t start = 0;
  for (std::size_t nl = all.find('\n'); nl != std::string::npos; nl = all.find('\n', start)) {
    o.lines.push_back(all.substr(start, nl - start));
    start = nl + 1;
  }
  return o;
}

bool has_line_starting(const outcome& o, std::string_view prefix) {
  for (const auto& l : o.lines)
    if (l.rfind(prefix, 0) == 0) return true;
  return false;
}

}  // namespace

TEST_CASE("scpi one-shot: one stdout line per query, writes silent, later commands still run") {
  sim_process sim("keithley2450");
  auto o = agent({"scpi", sim.resource(), "--timeout", "2", "*IDN?", ":SOUR:VOLT 0.25",
                  ":SOUR:VOLT?", ":SYST:NONC? q1", ":SYST:BLOC? 40", ":SYST:NONC? q2"});
  CHECK(o.exit_code == 0);
  REQUIRE(o.lines.size() == 5);
  CHECK(o.lines[0] == "KEITHLEY INSTRUMENTS,MODEL 2450,04412345,1.7.12b");
  CHECK(o.lines[1] == "2.500000E-01");
  CHECK(o.lines[2] == "q1");
  CHECK(o.lines[3].rfind("#block 40 bytes: 00 01 02 03 04 05 06 07 08 09 0a 0b", 0) == 0);
  CHECK(o.lines[4] == "q2");
}

TEST_CASE("scpi one-shot: a failed query prints ERROR, the rest runs, exit 1") {
  sim_process sim("34461a", {"late=800/2"});  // the 2nd reply is late
  auto o = agent({"scpi", sim.resource(), "--timeout", "0.3", ":SYST:NONC? a", ":SYST:NONC? b",
                  ":SYST:NONC? c"});
  CHECK(o.exit_code == 1);
  REQUIRE(o.lines.size() == 3);
  CHECK(o.lines[0] == "a");
  CHECK(o.lines[1].rfind("ERROR: instrument operation timed out", 0) == 0);
  CHECK(o.lines[2] == "c");
}

TEST_CASE("scpi --check-errors: an instrument error fails the command that caused it") {
  sim_process sim("e4980a");
  auto o = agent({"scpi", sim.resource(), "--timeout", "0.5", "--check-errors", ":FREQ 5E6",
                  ":FREQ?", ":BOGUS?"});
  CHECK(o.exit_code == 1);
  REQUIRE(o.lines.size() == 2);  // writes print nothing, even failed ones (stderr only)
  CHECK(o.lines[0] == "+1.000000E+03");
  // Nothing answers an unknown query; the queued error says why.
  CHECK_MESSAGE(o.lines[1] ==
                    "ERROR: instrument operation timed out; instrument reported "
                    "-113,\"Undefined header\"",
                o.lines[1]);
  // Without --check-errors the error stays queued and the same commands "succeed".
  auto quiet = agent({"scpi", sim.resource(), ":FREQ 5E6", ":FREQ?"});
  CHECK(quiet.exit_code == 0);
  REQUIRE(quiet.lines.size() == 1);
}

TEST_CASE("scpi interactive: commands from stdin, same output") {
  sim_process sim("keithley2400");
  auto o = agent({"scpi", sim.resource()}, ":SYST:NONC? x1\\n\\n:OUTP ON\\n:OUTP?\\n");
  CHECK(o.exit_code == 0);
  REQUIRE(o.lines.size() == 2);
  CHECK(o.lines[0] == "x1");
  CHECK(o.lines[1] == "1");
}

TEST_CASE("probe: identity, options, errors, rtt, transactions; exit 0 only when answered") {
  sim_process sim("e4980a", {"error=-222"});
  auto o = agent({"probe", sim.resource(), "--timeout", "2"});
  CHECK(o.exit_code == 0);
  CHECK(has_line_starting(o, "manufacturer: Keysight Technologies"));
  CHECK(has_line_starting(o, "model:        E4980A"));
  CHECK(has_line_starting(o, "profile:      e4980a"));
  CHECK(has_line_starting(o, "options:      001"));
  CHECK(has_line_starting(o, "esr:          "));
  CHECK(has_line_starting(o, "errors:       -222,\"Parameter data out of range\""));
  CHECK(has_line_starting(o, "rtt:          p50 "));
  CHECK(has_line_starting(o, "recent transactions:"));
  CHECK(has_line_starting(o, "transport:    tcp 127.0.0.1:"));

  sim_process hung("34461a", {"hang"});
  auto h = agent({"probe", hung.resource(), "--timeout", "0.2"});
  CHECK(h.exit_code == 1);
  CHECK(has_line_starting(h, "idn:          ERROR: instrument operation timed out"));
  auto bad = agent({"probe", "TCPIP0::host::notaport::SOCKET"});
  CHECK(bad.exit_code == 2);
  auto unsupported = agent({"probe", "modbus-tcp://127.0.0.1:502?unit=1"});
  CHECK(unsupported.exit_code == 2);
}

TEST_CASE("probe and scpi over VXI-11 (TCPIP::host::inst0::INSTR through the portmapper)") {
  sim_process sim("keithley2450", {}, true);
  auto o = agent({"probe", "TCPIP0::127.0.0.1::inst0::INSTR", "--portmapper-port", sim.port,
                  "--timeout", "2"});
  CHECK(o.exit_code == 0);
  CHECK(has_line_starting(o, "model:        MODEL 2450"));
  CHECK(has_line_starting(o, "transport:    vxi11 127.0.0.1"));
  CHECK(has_line_starting(o, "rtt:          p50 "));
  auto q = agent({"scpi", "TCPIP0::127.0.0.1::inst0::INSTR", "--portmapper-port", sim.port,
                  ":SOUR:VOLT 0.25", ":SOUR:VOLT?", ":SYST:BLOC? 64"});
  CHECK(q.exit_code == 0);
  REQUIRE(q.lines.size() == 2);
  CHECK(q.lines[0] == "2.500000E-01");
  CHECK(q.lines[1].rfind("#block 64 bytes: ", 0) == 0);
  // Nothing listens as a portmapper on this port: a clear failure, exit 1.
  auto dead = agent({"probe", "TCPIP0::127.0.0.1::inst0::INSTR", "--portmapper-port", "1",
                     "--timeout", "0.5"});
  CHECK(dead.exit_code == 1);
}
