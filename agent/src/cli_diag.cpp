// `security-check` and `diag bundle` (cli_control.hpp).
#include <semilab/agent/config.hpp>
#include <semilab/agent/recorder.hpp>
#include <semilab/agent/signing.hpp>
#include <semilab/schemas/config_map.hpp>
#include <semilab/sync/outbox.hpp>

#include <boost/json.hpp>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <toml++/toml.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "cli_control.hpp"
#include "cli_data.hpp"
#include "control.hpp"

namespace semilab::agent {

namespace json = boost::json;

namespace {

bool loopback_host(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

// "tcp://host:1883" -> "host"
std::string url_host(const std::string& url) {
  auto p = url.find("://");
  std::string rest = p == std::string::npos ? url : url.substr(p + 3);
  if (!rest.empty() && rest.front() == '[') return rest.substr(0, rest.find(']') + 1);
  return rest.substr(0, rest.find(':'));
}

bool secret_key_name(std::string_view k) {
  std::string l(k);
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (auto w : {"password", "token", "secret", "passphrase"})
    if (l.find(w) != std::string::npos) return true;
  return false;
}

void redact(toml::table& t) {
  for (auto&& [k, v] : t) {
    if (auto* sub = v.as_table()) redact(*sub);
    else if (auto* arr = v.as_array()) {
      for (auto& e : *arr)
        if (auto* st = e.as_table()) redact(*st);
    } else if (secret_key_name(k.str()) && v.is_string() && !v.value_or(std::string()).empty()) {
      *v.as_string() = std::string("<redacted>");
    }
  }
}

}  // namespace

std::vector<security_finding> security_findings(const agent_config& cfg) {
  std::vector<security_finding> out;
  auto fail = [&](std::string key, std::string text) { out.push_back({true, std::move(key), std::move(text)}); };
  auto warn = [&](std::string key, std::string text) { out.push_back({false, std::move(key), std::move(text)}); };

  // The broker link.
  bool tls = cfg.broker.rfind("ssl://", 0) == 0 || cfg.broker.rfind("mqtts://", 0) == 0;
  auto host = url_host(cfg.broker);
  if (!tls) {
    if (loopback_host(host))
      warn("mqtt.broker", cfg.broker + ": TLS off (loopback broker: the traffic stays on this host)");
    else
      fail("mqtt.broker", cfg.broker + ": TLS off to the broker: measurements" +
                              std::string(cfg.password.empty() ? "" : " and the MQTT password") +
                              " cross the network in clear (use ssl://)");
  } else if (!cfg.tls_verify_hostname) {
    fail("mqtt.tls_verify_hostname", "false: any certificate of the CA is accepted for the broker (man in the middle)");
  }
  if (tls && cfg.tls_cert_file.empty() && cfg.password.empty())
    warn("mqtt", "no client certificate and no password: the broker cannot tell this agent from another");

  // Files holding secrets: no access for others; keys also not for the group.
  auto check_file = [&](const std::string& key, const std::string& path, bool key_material) {
    if (path.empty()) return;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      warn(key, path + ": cannot be read (" + std::string(std::strerror(errno)) + ")");
      return;
    }
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    if (st.st_mode & (S_IROTH | S_IWOTH))
      fail(key, path + " is " + (st.st_mode & S_IWOTH ? "world-writable" : "world-readable") + " (mode " + mode +
                    "): chmod 0600");
    else if (key_material && (st.st_mode & (S_IRGRP | S_IWGRP)))
      warn(key, path + " is readable by its group (mode " + mode + "): 0600 is enough for the daemon");
  };
  check_file("mqtt.tls_key_file", cfg.tls_key_file, true);
  check_file("sync.command_key_file", cfg.command_key_file, true);
  check_file("status.tls_key_file", cfg.status_tls_key_file, true);
  if (std::filesystem::exists(signing_key_path(cfg)))
    check_file("signing key", signing_key_path(cfg).string(), true);
  if (!cfg.password.empty() || !cfg.operator_token.empty())
    check_file("configuration file", cfg.source, false);  // it holds a password or token
  if (std::filesystem::exists(cfg.outbox_path()))
    check_file("agent database (password hashes)", cfg.outbox_path().string(), false);
  {
    struct stat st {};
    if (::stat(cfg.data_dir.c_str(), &st) == 0 && (st.st_mode & S_IWOTH))
      fail("agent.data_dir", cfg.data_dir + " is world-writable");
    if (::lstat(cfg.control_socket_path().c_str(), &st) == 0 && (st.st_mode & (S_IROTH | S_IWOTH)))
      fail("agent.control_socket", cfg.control_socket_path().string() +
                                       " is accessible to every local user (expected mode 0660)");
  }

  // The status page.
  bool page_loopback = loopback_host(cfg.status_bind);
  if (cfg.status_enabled && !page_loopback) {
    if (!cfg.status_tls())
      fail("status.bind", cfg.status_bind + ": the page is served on a non-loopback address without "
                                            "HTTPS (insecure_http = true): passwords and session "
                                            "cookies cross the network in clear");
    bool users = false;
    std::string err;
    if (std::filesystem::exists(cfg.outbox_path())) {
      // Any local user? (read-only: the table may not exist in an old outbox)
      auto db = database_stats(cfg.outbox_path(), err);
      if (auto* rows = db.if_contains("rows"); rows && rows->is_object())
        if (auto* u = rows->as_object().if_contains("users"); u && u->to_number<std::int64_t>() > 0) users = true;
    }
    if (!users && cfg.operator_token.empty())
      fail("status", "the page is on a non-loopback address without authentication: no local user "
                     "(semilab-agent user add) and no operator_token; anyone on the network reads it");
  }
  if (!cfg.operator_token.empty() && cfg.operator_token.size() < 16)
    fail("status.operator_token", "shorter than 16 characters: guessable");
  if (cfg.status_tls()) check_file("status.tls_cert_file", cfg.status_tls_cert_file, false);
  return out;
}

std::string redacted_config(const std::string& file, std::string& error) {
  toml::table t;
  if (auto e = schemas::config::parse_file(file, t)) {
    error = e->message;
    return {};
  }
  redact(t);
  std::ostringstream os;
  os << "# " << file << ", secrets redacted by semilab-agent diag bundle\n" << t << "\n";
  return os.str();
}

namespace {

// A ustar archive in memory.
class tar_writer {
 public:
  void add(const std::string& name, std::string_view data, unsigned mode = 0644) {
    std::array<char, 512> h{};
    std::snprintf(h.data(), 100, "%s", name.substr(0, 99).c_str());
    std::snprintf(h.data() + 100, 8, "%07o", mode);
    std::snprintf(h.data() + 108, 8, "%07o", 0u);
    std::snprintf(h.data() + 116, 8, "%07o", 0u);
    std::snprintf(h.data() + 124, 12, "%011llo", static_cast<unsigned long long>(data.size()));
    std::snprintf(h.data() + 136, 12, "%011llo", static_cast<unsigned long long>(utc_now_ns() / 1'000'000'000));
    std::memset(h.data() + 148, ' ', 8);
    h[156] = '0';
    std::memcpy(h.data() + 257, "ustar", 6);
    std::memcpy(h.data() + 263, "00", 2);
    unsigned sum = 0;
    for (char c : h) sum += static_cast<unsigned char>(c);
    std::snprintf(h.data() + 148, 8, "%06o", sum);
    h[155] = ' ';
    buf_.append(h.data(), h.size());
    buf_.append(data);
    buf_.append((512 - data.size() % 512) % 512, '\0');
  }
  std::string finish() {
    buf_.append(1024, '\0');
    return std::move(buf_);
  }

 private:
  std::string buf_;
};

std::string read_tail(const std::string& path, std::size_t max_bytes) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) return {};
  auto size = static_cast<std::size_t>(f.tellg());
  std::size_t from = size > max_bytes ? size - max_bytes : 0;
  f.seekg(static_cast<std::streamoff>(from));
  std::string s(size - from, '\0');
  f.read(s.data(), static_cast<std::streamsize>(s.size()));
  return s;
}

std::string command_output(const std::string& cmd) {
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[8192];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    ::pclose(p);
  }
  return out;
}

// Secrets never leave in a bundle, even if a log line carried one by mistake.
void scrub(std::string& text, const std::vector<std::string>& secrets) {
  for (auto& s : secrets) {
    if (s.size() < 4) continue;
    for (auto p = text.find(s); p != std::string::npos; p = text.find(s, p + 10))
      text.replace(p, s.size(), "<redacted>");
  }
}

}  // namespace

bool write_diag_bundle(const agent_config& cfg, const std::string& out_path,
                       const std::vector<std::string>& logs, std::string& error) {
  std::vector<std::string> secrets{cfg.password, cfg.operator_token};
  if (!cfg.command_key_file.empty()) {
    std::ifstream k(cfg.command_key_file);
    std::string line;
    while (std::getline(k, line)) secrets.push_back(line);
  }
  tar_writer tar;
  const std::string dir = "semilab-diag/";
  auto now = utc_now_ns();
  std::ostringstream readme;
  readme << "semilab-agent " << kAgentVersion << " diagnostics bundle\nagent " << cfg.id << " (site "
         << cfg.site << ")\ncreated " << rfc3339_ns(now)
         << "\n\nconfig.toml        the configuration, secrets redacted\n"
            "status.json        outbox counters and the daemon's live status file\n"
            "daemon.json        the running daemon's status, instruments and queue (control socket)\n"
            "transactions.json  each SCPI instrument's last transactions\n"
            "database.json      database statistics and queue depth per class\n"
            "dead_letters.json  records central rejected permanently (first 1000)\n"
            "security.txt       semilab-agent security-check\n"
            "system.txt         kernel, disk space of the data directory\n"
            "logs/              journal of semilab-agent.service and the given log files\n";
  tar.add(dir + "README.txt", readme.str());

  std::string err;
  auto conf = redacted_config(cfg.source, err);
  tar.add(dir + "config.toml", conf.empty() ? "# unreadable: " + err + "\n" : conf);

  json::object status{{"agent_id", cfg.id}, {"site", cfg.site}};
  if (std::filesystem::exists(cfg.outbox_path())) {
    if (auto c = sync::outbox::read_status(cfg.outbox_path(), err))
      status["counters"] = {{"produced", c->produced}, {"acked", c->acked}, {"held", c->held},
                            {"dead_letters", c->dead_letters}, {"dropped", c->dropped},
                            {"refused", c->refused}, {"held_bytes", c->held_bytes},
                            {"retained", c->retained}};
    else status["counters_error"] = err;
  }
  {
    std::ifstream f(cfg.live_status_path());
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    boost::system::error_code ec;
    auto live = json::parse(text, ec);
    if (!ec) status["live"] = std::move(live);
  }
  auto s = json::serialize(status);
  scrub(s, secrets);
  tar.add(dir + "status.json", s + "\n");

  json::object daemon;
  bool not_running = false;
  for (auto cmd : {"status", "instruments", "queue"}) {
    auto r = control_call(cfg.control_socket_path(), {{"cmd", cmd}}, std::chrono::seconds(5), err, not_running);
    daemon[cmd] = r ? *r : json::value(json::object{{"error", err}});
    if (not_running) break;
  }
  daemon["running"] = !not_running;
  s = json::serialize(daemon);
  scrub(s, secrets);
  tar.add(dir + "daemon.json", s + "\n");
  if (!not_running) {
    auto r = control_call(cfg.control_socket_path(), {{"cmd", "transactions"}}, std::chrono::seconds(10), err,
                          not_running);
    s = r ? json::serialize(*r) : json::serialize(json::object{{"error", err}});
    scrub(s, secrets);
    tar.add(dir + "transactions.json", s + "\n");
  }

  json::object db;
  if (std::filesystem::exists(cfg.outbox_path())) {
    db["stats"] = database_stats(cfg.outbox_path(), err);
    db["queue"] = queue_depth(cfg.outbox_path(), err);
    json::array dl;
    if (auto list = sync::outbox::list_dead_letters(cfg.outbox_path(), 1000, err))
      for (auto& d : *list)
        dl.push_back(json::object{{"seq", std::to_string(d.seq)}, {"class", schemas::to_string(d.cls)},
                                  {"time", rfc3339_ns(d.ts_ns)}, {"instrument", d.instrument},
                                  {"channel", d.channel}, {"reason", d.reason}, {"attempts", d.attempts}});
    tar.add(dir + "dead_letters.json", json::serialize(dl) + "\n");
  } else {
    db["error"] = "no outbox yet";
  }
  tar.add(dir + "database.json", json::serialize(db) + "\n");

  std::string sec;
  for (auto& f : security_findings(cfg)) sec += (f.fail ? "FAIL " : "WARN ") + f.key + ": " + f.text + "\n";
  tar.add(dir + "security.txt", sec.empty() ? "no findings\n" : sec);

  std::ostringstream sys;
  utsname u{};
  if (::uname(&u) == 0) sys << u.sysname << " " << u.release << " " << u.version << " " << u.machine << "\n";
  struct statvfs vfs {};
  if (::statvfs(cfg.data_dir.c_str(), &vfs) == 0)
    sys << cfg.data_dir << ": " << (static_cast<double>(vfs.f_bavail) * static_cast<double>(vfs.f_frsize) / 1e9)
        << " GB free of " << (static_cast<double>(vfs.f_blocks) * static_cast<double>(vfs.f_frsize) / 1e9) << " GB\n";
  tar.add(dir + "system.txt", sys.str());

  // Logs: the systemd journal when there is one, and the files given (with their rotations).
  if (::access("/usr/bin/journalctl", X_OK) == 0) {
    auto j = command_output("journalctl -u semilab-agent.service --no-pager -n 5000 -o short-iso 2>&1");
    scrub(j, secrets);
    tar.add(dir + "logs/journal.txt", j);
  }
  for (const auto& l : logs) {
    bool any = false;
    for (int i = 0; i <= 9; ++i) {
      auto p = i == 0 ? l : l + "." + std::to_string(i);
      if (!std::filesystem::exists(p)) continue;
      auto text = read_tail(p, 16u << 20);
      scrub(text, secrets);
      tar.add(dir + "logs/" + std::filesystem::path(p).filename().string(), text);
      any = true;
    }
    if (!any) {
      error = l + ": no such log file";
      return false;
    }
  }

  auto raw = tar.finish();
  std::string z(ZSTD_compressBound(raw.size()), '\0');
  auto n = ZSTD_compress(z.data(), z.size(), raw.data(), raw.size(), 9);
  if (ZSTD_isError(n)) {
    error = std::string("zstd: ") + ZSTD_getErrorName(n);
    return false;
  }
  z.resize(n);
  // 0600: the bundle describes the installation (hosts, instruments) even without secrets.
  auto tmp = out_path + ".tmp";
  {
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) {
      error = tmp + ": " + std::strerror(errno);
      return false;
    }
    ::fchmod(fileno(f), 0600);
    bool ok = std::fwrite(z.data(), 1, z.size(), f) == z.size();
    ok = (std::fclose(f) == 0) && ok;
    if (!ok) {
      error = tmp + ": write failed";
      return false;
    }
  }
  std::error_code fec;
  std::filesystem::rename(tmp, out_path, fec);
  if (fec) {
    error = out_path + ": " + fec.message();
    return false;
  }
  return true;
}

}  // namespace semilab::agent
