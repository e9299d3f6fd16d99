#pragma once
// The field engineer's commands around the daemon (docs/agent-cli.md):
//   instruments [--json]                 the daemon's instruments (needs the daemon)
//   queue [--json]                       depth per class, oldest record, retention, dead letters
//                                        (from the database; live engine state when running)
//   flush [--wait S] [--json]            wake the upload now; wait until nothing is held
//   pause | resume [--json]              acquisition (all instruments)
//   export --since T [--until T] [--format csv|jsonl] [-o FILE]
//   diag bundle [-o FILE] [--log FILE]... one .tar.zst: redacted config, logs, transactions,
//                                        database statistics, security check
//   config check FILE                    `file:line:col: key: reason`, exit 1 when invalid
//   version
//   user add NAME --role R | passwd NAME | del NAME | unlock NAME | list   (--password-stdin)
//   security-check [--json]              insecure settings; exit 1 when any is found
// Exit codes (kExit*): 0 ok, 1 failure / invalid / insecure, 2 usage or configuration error,
// 3 the daemon is not running (for commands that need it), 4 timed out.
#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <vector>

namespace semilab::agent {

struct agent_config;

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitNotRunning = 3;
inline constexpr int kExitTimeout = 4;

class control_cli {
 public:
  explicit control_cli(CLI::App& app);
  // The exit code when one of these commands was given, else nullopt. `queue` is the existing
  // `queue` subcommand of main.cpp (its dead-letters child stays there).
  [[nodiscard]] std::optional<int> run(CLI::App* queue_cmd) const;

 private:
  int with_config(const std::string& path, int (control_cli::*f)(const agent_config&) const) const;
  int instruments(const agent_config& cfg) const;
  int queue(const agent_config& cfg) const;
  int flush(const agent_config& cfg) const;
  int pause_resume(const agent_config& cfg, const char* cmd) const;
  int pause(const agent_config& cfg) const { return pause_resume(cfg, "pause"); }
  int resume(const agent_config& cfg) const { return pause_resume(cfg, "resume"); }
  int export_cmd(const agent_config& cfg) const;
  int diag(const agent_config& cfg) const;
  int user(const agent_config& cfg) const;
  int security(const agent_config& cfg) const;
  int config_check() const;

  CLI::App *instruments_ = nullptr, *flush_ = nullptr, *pause_ = nullptr, *resume_ = nullptr,
           *export_ = nullptr, *diag_ = nullptr, *bundle_ = nullptr, *config_ = nullptr,
           *check_ = nullptr, *version_ = nullptr, *user_ = nullptr, *user_add_ = nullptr,
           *user_passwd_ = nullptr, *user_del_ = nullptr, *user_unlock_ = nullptr,
           *user_list_ = nullptr, *security_ = nullptr;
  std::string config_path_, queue_config_;
  bool json_ = false;
  double wait_s_ = 30;
  std::string since_, until_ = "now", format_ = "csv", output_;
  std::vector<std::string> logs_;
  std::string check_file_;
  std::string user_name_, role_;
  bool password_stdin_ = false;
};

// `security-check`: findings on `cfg` (and the files it names). Each line "FAIL key: why" or
// "WARN key: why". Exposed for diag bundle and tests.
struct security_finding {
  bool fail = false;
  std::string key;
  std::string text;
};
std::vector<security_finding> security_findings(const agent_config& cfg);

// `diag bundle`: writes `out` (.tar.zst, mode 0600). `error` on failure.
bool write_diag_bundle(const agent_config& cfg, const std::string& out,
                       const std::vector<std::string>& logs, std::string& error);

// The configuration file as TOML with every secret value (keys naming a password, token,
// secret or passphrase) replaced by "<redacted>"; comments are not kept.
std::string redacted_config(const std::string& file, std::string& error);

}  // namespace semilab::agent
