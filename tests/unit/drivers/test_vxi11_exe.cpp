// semilab-sim --vxi11: first stdout line names the portmapper, the VXI-11 transport reaches the
// instrument through it, --help documents the flag, SIGTERM ends it cleanly.
#include <semilab/drivers/transport.hpp>

#include "../../support/processes.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
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

extern char** environ;

namespace {

struct child {
  pid_t pid = -1;
  int out = -1;
  ~child() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (out >= 0) ::close(out);
  }
};

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

std::string run(const std::string& cmd) { return semilab::test::run_shell(cmd).out; }

}  // namespace

TEST_CASE("semilab-sim --vxi11: prints the portmapper address, serves VXI-11, stops on SIGTERM") {
  std::string exe = std::string(SEMILAB_BIN_DIR) + "/semilab-sim";
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  std::string a0 = exe, a1 = "--model", a2 = "keithley2450", a3 = "--vxi11", a4 = "--listen",
              a5 = "127.0.0.1:0";
  char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data(), a4.data(), a5.data(), nullptr};
  child c;
  int rc = ::posix_spawn(&c.pid, exe.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  c.out = fds[0];
  REQUIRE_MESSAGE(rc == 0, "cannot start " << exe);

  std::string first = read_line(c.out, 10000);
  REQUIRE_MESSAGE(first.rfind("listening 127.0.0.1:", 0) == 0, "first line: " << first);
  auto port = static_cast<std::uint16_t>(std::stoul(first.substr(20)));
  CHECK(port != 0);

  boost::asio::io_context io;
  auto strand = boost::asio::make_strand(io);
  semilab::drivers::transport_options opt;
  opt.portmapper_port = port;
  auto made = semilab::drivers::make_transport(
      strand, semilab::drivers::tcpip_instr_resource{0, "127.0.0.1", "inst0"}, opt);
  REQUIRE(made.has_value());
  auto& t = *made;
  boost::system::error_code ec;
  std::string reply;
  bool done = false;
  t->async_ready([&](boost::system::error_code e) {
    if (e) {
      ec = e;
      done = true;
      return;
    }
    t->async_exchange("*IDN?", true, [&](boost::system::error_code e2, std::string r) {
      ec = e2;
      reply = std::move(r);
      done = true;
    });
  });
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done && std::chrono::steady_clock::now() < until) io.run_one_for(std::chrono::milliseconds(20));
  REQUIRE(done);
  CHECK_MESSAGE(!ec, ec.message());
  CHECK(reply == "KEITHLEY INSTRUMENTS,MODEL 2450,04412345,1.7.12b");
  CHECK(t->describe().find("vxi11 127.0.0.1 device inst0 core port") == 0);
  t->close();
  io.poll();

  REQUIRE(::kill(c.pid, SIGTERM) == 0);
  int status = 0;
  pid_t ended = 0;
  for (int i = 0; i < 200 && ended == 0; ++i) {
    ended = ::waitpid(c.pid, &status, WNOHANG);
    if (ended == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  REQUIRE(ended == c.pid);
  c.pid = -1;
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("semilab-sim --vxi11: documented in --help; refused for Modbus models") {
  std::string exe = std::string(SEMILAB_BIN_DIR) + "/semilab-sim";
  auto help = run(exe + " --help 2>&1");
  CHECK(help.find("--vxi11") != std::string::npos);
  CHECK(help.find("portmapper") != std::string::npos);
  int status = std::system((exe + " --vxi11 --model mfc --listen 127.0.0.1:0 >/dev/null 2>&1").c_str());
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 2);
}
