#pragma once
// Test peers started as real processes on 127.0.0.1 and stopped by PID.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <thread>
#include <vector>

namespace semilab::test {

// A port that was free a moment ago (bind to 0, read, close).
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

inline bool port_open(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

class temp_dir {
 public:
  temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "semilab-test-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A child process, killed (SIGTERM, then SIGKILL) when destroyed.
class child {
 public:
  child() = default;
  explicit child(std::vector<std::string> argv, const std::filesystem::path& log = {}) {
    pid_ = ::fork();
    if (pid_ == 0) {
      // A test that aborts (a sanitizer report, a failed REQUIRE in a destructor) leaves no peer
      // running behind it.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (!log.empty()) {
        FILE* f = std::fopen(log.c_str(), "w");
        if (f) {
          ::dup2(fileno(f), 1);
          ::dup2(fileno(f), 2);
        }
      }
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      std::_Exit(127);
    }
  }
  child(child&& o) noexcept : pid_(std::exchange(o.pid_, -1)) {}
  child& operator=(child&& o) noexcept {
    stop();
    pid_ = std::exchange(o.pid_, -1);
    return *this;
  }
  ~child() { stop(); }
  int pid() const { return pid_; }
  void kill_hard() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill_hard();
  }

 private:
  int pid_ = -1;
};

// Debian's mosquitto on 127.0.0.1:port with its own config (anonymous, no persistence).
class mosquitto {
 public:
  explicit mosquitto(const std::filesystem::path& dir) : port_(free_port()) {
    auto conf = dir / "mosquitto.conf";
    std::ofstream(conf) << "listener " << port_ << " 127.0.0.1\nallow_anonymous true\n"
                        << "persistence false\nmax_queued_messages 100000\nset_tcp_nodelay true\n";
    proc_ = child({"/usr/sbin/mosquitto", "-c", conf.string()}, dir / "mosquitto.log");
    for (int i = 0; i < 250 && !port_open(port_); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!port_open(port_)) throw std::runtime_error("mosquitto did not start");
  }
  int port() const { return port_; }
  int pid() const { return proc_.pid(); }
  std::string url() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
  void stop() { proc_.stop(); }

 private:
  int port_;
  child proc_;
};

// A shell command's exit code (-1 when it did not exit normally or could not start) and stdout.
struct shell_result {
  int exit = -1;
  std::string out;
};
inline shell_result run_shell(const std::string& cmd) {
  shell_result r;
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.exit = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

template <class Pred>
bool wait_until(Pred p, std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (p()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return p();
}

}  // namespace semilab::test
