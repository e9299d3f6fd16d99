#pragma once
// A throwaway PostgreSQL server for tests: initdb + pg_ctl in a fresh temp directory on a free
// loopback port, stopped (and the directory removed) when the object dies.
// initdb and the server refuse to run as root: as root the helper runs them as the `postgres`
// user (runuser) and gives that user the directory. Missing binaries are an error with a clear
// message, never a silent skip.
#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "processes.hpp"

namespace semilab::test {

class postgres_server {
 public:
  struct options {
    bool fsync = false;  // tests: off (speed); benches measuring durability: on
  };

  // Starts a server; on failure returns null and `error` says what failed and where to look.
  static std::unique_ptr<postgres_server> start(std::string& error) {
    return start(options{}, error);
  }
  static std::unique_ptr<postgres_server> start(const options& o, std::string& error) {
    auto bin = find_bindir();
    if (bin.empty()) {
      error =
          "PostgreSQL server binaries (initdb, pg_ctl) not found: looked in $SEMILAB_PG_BINDIR and "
          "/usr/lib/postgresql/*/bin. Install the Debian package `postgresql` (./dev deps).";
      return nullptr;
    }
    std::unique_ptr<postgres_server> s(new postgres_server());
    s->bin_ = bin;
    std::string tmpl = (std::filesystem::temp_directory_path() / "semilab-pg-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) {
      error = "mkdtemp for the PostgreSQL test cluster failed";
      return nullptr;
    }
    s->dir_ = tmpl;
    s->data_ = s->dir_ + "/data";
    if (::geteuid() == 0) {
      const passwd* pw = ::getpwnam("postgres");
      if (!pw) {
        error = "running as root and there is no `postgres` user to run initdb/pg_ctl as";
        return nullptr;
      }
      if (::chown(s->dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0 ||
          ::chmod(s->dir_.c_str(), 0755) != 0) {
        error = "cannot give " + s->dir_ + " to the postgres user";
        return nullptr;
      }
      s->as_user_ = true;
    }
    const std::string log = s->dir_ + "/initdb.log";
    if (s->run({bin + "/initdb", "-D", s->data_, "-U", "semilab", "-A", "trust", "-E", "UTF8",
                "--no-sync", "--no-instructions"},
               log) != 0) {
      error = "initdb failed (" + bin + "/initdb -D " + s->data_ + "): " + tail(log);
      return nullptr;
    }
    for (int attempt = 0; attempt < 3; ++attempt) {
      s->port_ = free_port();
      const std::string server_log = s->dir_ + "/server.log";
      const std::string opts =
          "-k " + s->dir_ + " -p " + std::to_string(s->port_) +
          " -c listen_addresses=127.0.0.1 -c fsync=" + (o.fsync ? "on" : "off") +
          " -c max_connections=50";
      if (s->run({bin + "/pg_ctl", "-D", s->data_, "-l", server_log, "-w", "-t", "60", "-o", opts,
                  "start"},
                 s->dir_ + "/pg_ctl.log") == 0) {
        s->running_ = true;
        return s;
      }
      error = "pg_ctl start failed on port " + std::to_string(s->port_) + ": " + tail(server_log);
    }
    return nullptr;
  }

  ~postgres_server() {
    if (running_)
      run({bin_ + "/pg_ctl", "-D", data_, "-m", "immediate", "-w", "stop"}, dir_ + "/stop.log");
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  int port() const { return port_; }
  std::string url(const std::string& db = "postgres") const {
    return "postgresql://semilab@127.0.0.1:" + std::to_string(port_) + "/" + db;
  }
  // CREATE DATABASE through psql; 0 on success.
  int create_database(const std::string& name) const {
    return run({bin_ + "/psql", "-q", "-h", "127.0.0.1", "-p", std::to_string(port_), "-U",
                "semilab", "-d", "postgres", "-c", "CREATE DATABASE \"" + name + "\""},
               dir_ + "/psql.log", false);
  }
  const std::string& dir() const { return dir_; }

 private:
  postgres_server() = default;

  static std::string find_bindir() {
    namespace fs = std::filesystem;
    if (const char* env = std::getenv("SEMILAB_PG_BINDIR"))
      if (fs::exists(fs::path(env) / "initdb")) return env;
    std::error_code ec;
    std::string best;
    for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
      auto b = e.path() / "bin";
      if (fs::exists(b / "initdb") && fs::exists(b / "pg_ctl") && b.string() > best)
        best = b.string();
    }
    return best;
  }

  static std::string tail(const std::string& file) {
    std::ifstream in(file);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    if (s.size() > 800) s = "..." + s.substr(s.size() - 800);
    return s.empty() ? "(no output in " + file + ")" : s;
  }

  // Runs argv (as the postgres user when root and `as_user`), output to `log`; the exit status.
  int run(std::vector<std::string> argv, const std::string& log, bool as_user = true) const {
    if (as_user_ && as_user) argv.insert(argv.begin(), {"runuser", "-u", "postgres", "--"});
    pid_t pid = ::fork();
    if (pid == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::close(fd);
      }
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
    if (pid < 0) return -1;
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  std::string bin_, dir_, data_;
  int port_ = 0;
  bool as_user_ = false;
  bool running_ = false;
};

}  // namespace semilab::test
