// The semilab-sim executable: first stdout line, a query over TCP, clean exit on SIGTERM.
#include <semilab/drivers/scpi_session.hpp>

#include <boost/asio/io_context.hpp>
#include <doctest/doctest.h>

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
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

// Reads one line from fd within `ms` milliseconds.
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

}  // namespace

TEST_CASE("semilab-sim: prints its address, answers, exits cleanly on SIGTERM") {
  std::string exe = std::string(SEMILAB_BIN_DIR) + "/semilab-sim";
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  std::string a0 = exe, a1 = "--model", a2 = "keithley2450", a3 = "--listen", a4 = "127.0.0.1:0",
              a5 = "--seed", a6 = "3";
  char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data(), a4.data(), a5.data(), a6.data(),
                  nullptr};
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
  semilab::drivers::scpi_session session(io.get_executor(), semilab::drivers::tcp_socket_resource{0, "127.0.0.1", port});
  std::string reply;
  boost::system::error_code ec;
  session.async_query("*IDN?", [&](boost::system::error_code e, std::string r) {
    ec = e;
    reply = std::move(r);
  });
  io.run_for(std::chrono::seconds(5));
  CHECK(!ec);
  CHECK(reply == "KEITHLEY INSTRUMENTS,MODEL 2450,04412345,1.7.12b");
  session.close();

  REQUIRE(::kill(c.pid, SIGTERM) == 0);
  int status = 0;
  pid_t done = 0;
  for (int i = 0; i < 200 && done == 0; ++i) {  // up to 10 s (sanitizer builds exit slowly)
    done = ::waitpid(c.pid, &status, WNOHANG);
    if (done == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  REQUIRE(done == c.pid);
  c.pid = -1;
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("semilab-sim: usage errors exit 2") {
  std::string exe = std::string(SEMILAB_BIN_DIR) + "/semilab-sim";
  for (std::string bad : {"--fault explode=1", "--model nope", "--listen nowhere"}) {
    std::string cmd = exe + " " + bad + " >/dev/null 2>&1";
    int status = std::system(cmd.c_str());
    CHECK_MESSAGE(WIFEXITED(status), bad);
    CHECK_MESSAGE(WEXITSTATUS(status) == 2, bad);
  }
}
