#include "cli_control.hpp"

#include <semilab/agent/config.hpp>
#include <semilab/agent/recorder.hpp>

#include <boost/json.hpp>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "cli_data.hpp"
#include "control.hpp"
#include "users.hpp"

namespace semilab::agent {

namespace json = boost::json;

namespace {

void print_json(const json::value& v) { std::cout << json::serialize(v) << "\n"; }

std::string str(const json::value* v) {
  if (!v) return "";
  if (v->is_string()) return std::string(v->as_string());
  return json::serialize(*v);
}

// A request to the running daemon. `rc` gets 3 (not running) or 1 on failure.
std::optional<json::object> ask(const agent_config& cfg, json::object req, int& rc,
                                std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  std::string err;
  bool not_running = false;
  auto r = control_call(cfg.control_socket_path(), req, timeout, err, not_running);
  if (!r) {
    std::cerr << "semilab-agent: " << err << "\n";
    rc = not_running ? kExitNotRunning : (r.error() == boost::system::errc::timed_out ? kExitTimeout : kExitFailure);
    return std::nullopt;
  }
  if (!r->is_object()) {
    std::cerr << "semilab-agent: the daemon answered something else than an object\n";
    rc = kExitFailure;
    return std::nullopt;
  }
  auto& o = r->as_object();
  if (auto* ok = o.if_contains("ok"); !ok || !ok->is_bool() || !ok->as_bool()) {
    std::cerr << "semilab-agent: the daemon refused: " << str(o.if_contains("error")) << "\n";
    rc = kExitFailure;
    return std::nullopt;
  }
  return std::move(o);
}

// Reads a password: from stdin (one line) with --password-stdin or when stdin is not a
// terminal; else prompted twice without echo.
std::optional<std::string> read_password(bool from_stdin, const std::string& prompt) {
  auto line = [](std::string& s) {
    if (!std::getline(std::cin, s)) return false;
    if (!s.empty() && s.back() == '\r') s.pop_back();
    return true;
  };
  std::string a;
  if (from_stdin || !::isatty(STDIN_FILENO)) {
    if (!line(a)) return std::nullopt;
    return a;
  }
  auto noecho = [&](std::string& s, const std::string& p) {
    std::cerr << p << std::flush;
    termios old{};
    tcgetattr(STDIN_FILENO, &old);
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    bool ok = line(s);
    tcsetattr(STDIN_FILENO, TCSANOW, &old);
    std::cerr << "\n";
    return ok;
  };
  std::string b;
  if (!noecho(a, prompt) || !noecho(b, "again: ")) return std::nullopt;
  if (a != b) {
    std::cerr << "semilab-agent: the passwords differ\n";
    return std::nullopt;
  }
  return a;
}

}  // namespace

control_cli::control_cli(CLI::App& app) {
  auto cfg_opt = [this](CLI::App* c) {
    c->add_option("-c,--config", config_path_, "Configuration file (TOML)")->required();
  };
  instruments_ = app.add_subcommand("instruments", "The running daemon's instruments");
  cfg_opt(instruments_);
  instruments_->add_flag("--json", json_, "Machine-readable output");

  flush_ = app.add_subcommand("flush", "Upload what the outbox holds now and wait for central's acks");
  cfg_opt(flush_);
  flush_->add_option("--wait", wait_s_, "Seconds to wait until nothing is held (0 = do not wait)")
      ->capture_default_str()->check(CLI::Range(0.0, 86400.0));
  flush_->add_flag("--json", json_, "Machine-readable output");

  pause_ = app.add_subcommand("pause", "Pause acquisition (every instrument stops polling)");
  cfg_opt(pause_);
  pause_->add_flag("--json", json_, "Machine-readable output");
  resume_ = app.add_subcommand("resume", "Resume acquisition");
  cfg_opt(resume_);
  resume_->add_flag("--json", json_, "Machine-readable output");

  export_ = app.add_subcommand("export", "Records from the outbox and its retention window");
  cfg_opt(export_);
  export_->add_option("--since", since_, "Start: RFC 3339 (2026-11-27T08:00:00Z) or relative (2h, 30m, 7d)")
      ->required();
  export_->add_option("--until", until_, "End (exclusive), same forms")->capture_default_str();
  export_->add_option("--format", format_, "csv or jsonl")
      ->capture_default_str()->check(CLI::IsMember({"csv", "jsonl"}));
  export_->add_option("-o,--output", output_, "Write here instead of stdout");

  diag_ = app.add_subcommand("diag", "Diagnostics");
  diag_->require_subcommand(1);
  bundle_ = diag_->add_subcommand("bundle", "One .tar.zst for support: redacted config, logs, "
                                            "transaction traces, database statistics");
  cfg_opt(bundle_);
  bundle_->add_option("-o,--output", output_, "Bundle file (default semilab-diag-AGENT-TIME.tar.zst)");
  bundle_->add_option("--log", logs_, "Log file to include (its rotated .1 .. .9 too); repeatable");

  config_ = app.add_subcommand("config", "Configuration tools");
  config_->require_subcommand(1);
  check_ = config_->add_subcommand("check", "Parse and validate FILE: `file:line:col: key: reason`, exit 1");
  check_->add_option("FILE", check_file_, "Configuration file (TOML)")->required();

  version_ = app.add_subcommand("version", "Print the version");

  user_ = app.add_subcommand("user", "Local users of the status page (technician, engineer)");
  user_->require_subcommand(1);
  user_add_ = user_->add_subcommand("add", "Add a user; the password is read from the terminal or stdin");
  user_add_->add_option("NAME", user_name_)->required();
  user_add_->add_option("--role", role_, "technician or engineer")
      ->required()->check(CLI::IsMember({"technician", "engineer"}));
  user_passwd_ = user_->add_subcommand("passwd", "Set a user's password (also lifts a lockout)");
  user_passwd_->add_option("NAME", user_name_)->required();
  user_del_ = user_->add_subcommand("del", "Delete a user");
  user_del_->add_option("NAME", user_name_)->required();
  user_unlock_ = user_->add_subcommand("unlock", "Lift a lockout after failed logins");
  user_unlock_->add_option("NAME", user_name_)->required();
  user_list_ = user_->add_subcommand("list", "List users");
  user_list_->add_flag("--json", json_, "Machine-readable output");
  for (auto* c : {user_add_, user_passwd_, user_del_, user_unlock_, user_list_}) cfg_opt(c);
  for (auto* c : {user_add_, user_passwd_})
    c->add_flag("--password-stdin", password_stdin_, "Read the password as one line from stdin");

  security_ = app.add_subcommand("security-check",
                                 "Report insecure settings of the configuration; exit 1 when any");
  cfg_opt(security_);
  security_->add_flag("--json", json_, "Machine-readable output");
}

int control_cli::with_config(const std::string& path, int (control_cli::*f)(const agent_config&) const) const {
  std::string err;
  auto cfg = load_config(path, err);
  if (!cfg) {
    std::cerr << "semilab-agent: " << err << "\n";
    return kExitUsage;
  }
  return (this->*f)(*cfg);
}

std::optional<int> control_cli::run(CLI::App* queue_cmd) const {
  if (version_->parsed()) {
    std::cout << "semilab-agent " << kAgentVersion << "\n";
    return kExitOk;
  }
  if (check_->parsed()) return config_check();
  if (instruments_->parsed()) return with_config(config_path_, &control_cli::instruments);
  if (flush_->parsed()) return with_config(config_path_, &control_cli::flush);
  if (pause_->parsed()) return with_config(config_path_, &control_cli::pause);
  if (resume_->parsed()) return with_config(config_path_, &control_cli::resume);
  if (export_->parsed()) return with_config(config_path_, &control_cli::export_cmd);
  if (bundle_->parsed()) return with_config(config_path_, &control_cli::diag);
  if (user_->parsed()) return with_config(config_path_, &control_cli::user);
  if (security_->parsed()) return with_config(config_path_, &control_cli::security);
  if (queue_cmd && queue_cmd->parsed() && queue_cmd->get_subcommands().empty()) {
    auto path = queue_cmd->get_option("--config")->as<std::string>();
    auto* self = const_cast<control_cli*>(this);
    self->json_ = queue_cmd->get_option("--json")->as<bool>();
    return with_config(path, &control_cli::queue);
  }
  return std::nullopt;
}

int control_cli::config_check() const {
  std::string err;
  auto cfg = load_config(check_file_, err);
  if (!cfg) {
    std::cerr << err << "\n";
    return kExitFailure;
  }
  std::cout << check_file_ << ": ok (" << cfg->instruments.size() << " instrument(s))\n";
  return kExitOk;
}

int control_cli::instruments(const agent_config& cfg) const {
  int rc = 0;
  auto r = ask(cfg, {{"cmd", "instruments"}}, rc);
  if (!r) return rc;
  if (json_) {
    print_json(*r);
    return kExitOk;
  }
  std::printf("%-16s %-14s %-4s %10s %8s  %-24s %s\n", "ID", "MODEL", "UP", "READINGS", "ERRORS",
              "LAST VALUE", "LAST ERROR");
  for (auto& v : r->at("instruments").as_array()) {
    auto& i = v.as_object();
    std::printf("%-16s %-14s %-4s %10s %8s  %-24s %s\n", str(i.if_contains("id")).c_str(),
                str(i.if_contains("model")).c_str(), i.at("connected").as_bool() ? "yes" : "NO",
                str(i.if_contains("readings")).c_str(), str(i.if_contains("errors")).c_str(),
                str(i.if_contains("last_value")).c_str(), str(i.if_contains("last_error")).c_str());
  }
  std::printf("acquisition: %s\n", str(r->if_contains("acquisition")).c_str());
  return kExitOk;
}

int control_cli::queue(const agent_config& cfg) const {
  std::string err;
  json::object out;
  if (std::filesystem::exists(cfg.outbox_path())) {
    out = queue_depth(cfg.outbox_path(), err);
    if (!err.empty()) {
      std::cerr << "semilab-agent: queue: " << err << "\n";
      return kExitFailure;
    }
  } else {
    out = {{"classes", json::object{}}, {"dead_letters", 0}, {"retained", json::object{}}};
  }
  out["retention"] = {{"retain_hours", cfg.retain_hours}, {"retain_mb", cfg.retain_mb}};
  bool not_running = false;
  auto live = control_call(cfg.control_socket_path(), {{"cmd", "queue"}}, std::chrono::seconds(5), err,
                           not_running);
  if (live && live->is_object()) out["daemon"] = std::move(*live);
  else out["daemon"] = {{"running", false}};
  if (json_) {
    print_json(out);
    return kExitOk;
  }
  std::printf("%-12s %10s %14s  %-30s\n", "CLASS", "RECORDS", "BYTES", "OLDEST");
  for (auto& [k, v] : out["classes"].as_object()) {
    auto& c = v.as_object();
    auto oldest = c.if_contains("oldest") ? str(c.if_contains("oldest")) : std::string("-");
    std::printf("%-12s %10s %14s  %-30s\n", std::string(k).c_str(), str(c.if_contains("records")).c_str(),
                str(c.if_contains("bytes")).c_str(), oldest.c_str());
  }
  std::printf("dead letters %s (semilab-agent queue dead-letters)\n", str(out.if_contains("dead_letters")).c_str());
  auto& ret = out["retained"].as_object();
  std::printf("retained     %s acked record(s), %s bytes, oldest ack %s (window %lld h, %lld MiB)\n",
              ret.if_contains("records") ? str(ret.if_contains("records")).c_str() : "0",
              ret.if_contains("bytes") ? str(ret.if_contains("bytes")).c_str() : "0",
              ret.if_contains("oldest_ack") ? str(ret.if_contains("oldest_ack")).c_str() : "-",
              static_cast<long long>(cfg.retain_hours), static_cast<long long>(cfg.retain_mb));
  auto& d = out["daemon"].as_object();
  if (d.if_contains("ok"))
    std::printf("daemon       running: %s batch(es) in flight, broker %s, acquisition %s\n",
                str(d.if_contains("inflight_batches")).c_str(),
                d.at("broker_connected").as_bool() ? "connected" : "DISCONNECTED",
                str(d.if_contains("acquisition")).c_str());
  else
    std::printf("daemon       not running\n");
  return kExitOk;
}

int control_cli::flush(const agent_config& cfg) const {
  int rc = 0;
  auto r = ask(cfg, {{"cmd", "flush"}, {"who", "cli"}}, rc);
  if (!r) return rc;
  auto pending = [](const json::object& o) {
    return o.at("held").to_number<std::int64_t>() - o.at("dead_letters").to_number<std::int64_t>();
  };
  auto start = std::chrono::steady_clock::now();
  auto deadline = start + std::chrono::milliseconds(static_cast<std::int64_t>(wait_s_ * 1000));
  std::int64_t left = pending(*r);
  while (left > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto q = ask(cfg, {{"cmd", "queue"}}, rc);
    if (!q) return rc;
    left = pending(*q);
  }
  json::object out{{"pending", left},
                   {"waited_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()},
                   {"broker_connected", r->at("broker_connected")}};
  if (json_) print_json(out);
  else if (left == 0) std::cout << "flushed: nothing left to upload\n";
  else
    std::cout << left << " record(s) still waiting for central's ack"
              << (r->at("broker_connected").as_bool() ? "" : " (broker not connected)") << "\n";
  if (left > 0 && wait_s_ > 0) return kExitTimeout;
  return kExitOk;
}

int control_cli::pause_resume(const agent_config& cfg, const char* cmd) const {
  int rc = 0;
  auto r = ask(cfg, {{"cmd", cmd}, {"who", "cli"}}, rc);
  if (!r) return rc;
  if (json_) print_json(*r);
  else
    std::cout << "acquisition " << str(r->if_contains("acquisition"))
              << (r->at("changed").as_bool() ? "" : " (already)") << "\n";
  return kExitOk;
}

int control_cli::export_cmd(const agent_config& cfg) const {
  auto now = utc_now_ns();
  auto since = parse_time_arg(since_, now);
  auto until = parse_time_arg(until_, now);
  if (!since || !until) {
    std::cerr << "semilab-agent: export: --" << (since ? "until" : "since") << " '"
              << (since ? until_ : since_) << "' is neither RFC 3339 (2026-11-27T08:00:00Z) nor relative (2h)\n";
    return kExitUsage;
  }
  if (!std::filesystem::exists(cfg.outbox_path())) {
    std::cerr << "semilab-agent: export: " << cfg.outbox_path().string() << ": no outbox yet\n";
    return kExitFailure;
  }
  std::ofstream file;
  std::ostream* out = &std::cout;
  if (!output_.empty()) {
    file.open(output_, std::ios::trunc);
    if (!file) {
      std::cerr << "semilab-agent: export: cannot write " << output_ << "\n";
      return kExitFailure;
    }
    out = &file;
  }
  std::string err;
  auto n = export_records(cfg.outbox_path(), *since, *until,
                          format_ == "jsonl" ? export_format::jsonl : export_format::csv, *out, err);
  if (!n) {
    std::cerr << "semilab-agent: export: " << err << "\n";
    return kExitFailure;
  }
  out->flush();
  std::cerr << "semilab-agent: exported " << *n << " record(s) from " << rfc3339_ns(*since) << " to "
            << rfc3339_ns(*until) << "\n";
  return kExitOk;
}

int control_cli::diag(const agent_config& cfg) const {
  std::string out = output_;
  if (out.empty()) {
    auto t = rfc3339_ns(utc_now_ns()).substr(0, 19);
    for (auto& c : t)
      if (c == ':') c = '-';
    out = "semilab-diag-" + cfg.id + "-" + t + ".tar.zst";
  }
  std::string err;
  if (!write_diag_bundle(cfg, out, logs_, err)) {
    std::cerr << "semilab-agent: diag bundle: " << err << "\n";
    return kExitFailure;
  }
  std::cout << out << "\n";
  return kExitOk;
}

int control_cli::user(const agent_config& cfg) const {
  std::error_code fec;
  std::filesystem::create_directories(cfg.data_dir, fec);
  std::string err;
  auto store = user_store::open(cfg.outbox_path(), err);
  if (!store) {
    std::cerr << "semilab-agent: user: " << err << "\n";
    return kExitFailure;
  }
  auto& s = **store;
  std::string why;
  if (user_list_->parsed()) {
    auto list = s.list(err);
    if (!err.empty()) {
      std::cerr << "semilab-agent: user list: " << err << "\n";
      return kExitFailure;
    }
    auto now = utc_now_ns();
    json::array a;
    for (auto& u : list)
      a.push_back(json::object{{"name", u.name}, {"role", to_string(u.role)},
                               {"locked", u.locked_until_ns > now},
                               {"last_login", u.last_login_ns ? rfc3339_ns(u.last_login_ns) : ""}});
    if (json_) {
      print_json(a);
    } else {
      for (auto& v : a) {
        auto& o = v.as_object();
        std::printf("%-32s %-10s%s %s\n", str(o.if_contains("name")).c_str(), str(o.if_contains("role")).c_str(),
                    o.at("locked").as_bool() ? " LOCKED" : "", str(o.if_contains("last_login")).c_str());
      }
    }
    return kExitOk;
  }
  if (user_del_->parsed()) why = s.remove(user_name_);
  else if (user_unlock_->parsed()) why = s.unlock(user_name_);
  else {
    auto pw = read_password(password_stdin_, "password for " + user_name_ + ": ");
    if (!pw) {
      std::cerr << "semilab-agent: user: no password given\n";
      return kExitUsage;
    }
    why = user_add_->parsed() ? s.add(user_name_, *parse_role(role_), *pw) : s.set_password(user_name_, *pw);
  }
  if (!why.empty()) {
    std::cerr << "semilab-agent: user: " << why << "\n";
    return kExitFailure;
  }
  const char* what = user_add_->parsed() ? "added" : user_passwd_->parsed() ? "password changed"
                     : user_del_->parsed() ? "deleted" : "unlocked";
  std::cout << "user " << user_name_ << " " << what << "\n";
  return kExitOk;
}

int control_cli::security(const agent_config& cfg) const {
  auto f = security_findings(cfg);
  int fails = 0;
  json::array a;
  for (auto& x : f) {
    fails += x.fail;
    a.push_back(json::object{{"level", x.fail ? "fail" : "warn"}, {"key", x.key}, {"text", x.text}});
  }
  if (json_) {
    print_json(json::object{{"insecure", fails > 0}, {"findings", a}});
  } else {
    for (auto& x : f) std::cout << (x.fail ? "FAIL " : "WARN ") << x.key << ": " << x.text << "\n";
    std::cout << cfg.source << ": " << fails << " insecure setting(s), "
              << f.size() - static_cast<std::size_t>(fails) << " warning(s)\n";
  }
  return fails ? kExitFailure : kExitOk;
}

}  // namespace semilab::agent
