// `semilab-central security-check` (central/include/semilab/central/users.hpp): the insecure
// settings of a loaded configuration. Never prints a secret, only which setting holds it.
#include <semilab/central/app.hpp>
#include <semilab/central/users.hpp>
#include <semilab/schemas/command.hpp>

#include "listen_address.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <array>

namespace semilab::central {

namespace {

constexpr std::array<std::string_view, 10> kDefaultSecrets = {
    "password", "changeme", "admin", "semilab", "secret", "mosquitto", "postgres", "123456",
    "test", "default"};

bool is_default_secret(std::string_view s) {
  std::string l(s);
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return std::tolower(c); });
  return std::find(kDefaultSecrets.begin(), kDefaultSecrets.end(), l) != kDefaultSecrets.end();
}

bool loopback(const std::string& listen) {
  auto a = parse_listen_address(listen);
  if (!a) return false;
  return a->host == "localhost" || a->host == "::1" || a->host.rfind("127.", 0) == 0;
}

// The password inside postgresql://user:password@host/db, "" when none.
std::string url_password(std::string_view url) {
  auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return {};
  auto rest = url.substr(scheme + 3);
  auto at = rest.find('@');
  if (at == std::string_view::npos) return {};
  auto userinfo = rest.substr(0, at);
  auto colon = userinfo.find(':');
  return colon == std::string_view::npos ? std::string() : std::string(userinfo.substr(colon + 1));
}

}  // namespace

std::vector<security_finding> security_findings(const central_config& cfg,
                                                const std::string& config_file) {
  std::vector<security_finding> out;
  auto bad = [&](std::string key, std::string why) {
    out.push_back({true, std::move(key), std::move(why)});
  };
  auto note = [&](std::string key, std::string why) {
    out.push_back({false, std::move(key), std::move(why)});
  };
  // A secret file: must exist and be readable by its owner only.
  auto secret_file = [&](const std::string& key, const std::string& path) {
    if (path.empty()) return;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      bad(key, "the file " + path + " cannot be read");
      return;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO))
      bad(key, "the file " + path + " is accessible to group or others (chmod 600)");
  };

  // MQTT transport and credentials.
  if (cfg.mqtt.broker.rfind("ssl://", 0) != 0) {
    bad("mqtt.broker", "TLS is off (" + cfg.mqtt.broker.substr(0, cfg.mqtt.broker.find("://")) +
                           "://): batches, acks and credentials travel in clear");
  } else {
    if (!cfg.mqtt.tls_verify_hostname)
      bad("mqtt.tls_verify_hostname", "the broker's certificate is not checked against its name");
    if (cfg.mqtt.tls_cert_file.empty() && cfg.mqtt.username.empty())
      bad("mqtt.tls_cert_file", "no client certificate and no username: central does not "
                                "authenticate to the broker");
  }
  if (!cfg.mqtt.password.empty() && is_default_secret(cfg.mqtt.password))
    bad("mqtt.password", "a default or well-known password");
  secret_file("mqtt.tls_key_file", cfg.mqtt.tls_key_file);

  // Central's signing key and the command secret.
  if (cfg.central.signing_key_file.empty())
    bad("central.signing_key_file",
        "not set: acks and commands are unsigned (agents cannot pin central's key) and exported "
        "audit heads are unsigned");
  secret_file("central.signing_key_file", cfg.central.signing_key_file);
  if (!cfg.mqtt.command_key_file.empty()) {
    secret_file("mqtt.command_key_file", cfg.mqtt.command_key_file);
    std::string key, why;
    if (schemas::load_command_key(cfg.mqtt.command_key_file, key, why)) {
      if (is_default_secret(key)) bad("mqtt.command_key_file", "holds a default or well-known secret");
      std::fill(key.begin(), key.end(), '\0');
    } else {
      bad("mqtt.command_key_file", why);
    }
  }

  // Inline secrets in the configuration file itself.
  const std::string pg_password = url_password(cfg.store.url);
  if (!pg_password.empty() && is_default_secret(pg_password))
    bad("store.url", "a default or well-known database password");
  if (!cfg.mqtt.password.empty() || !pg_password.empty()) {
    struct stat st {};
    if (::stat(config_file.c_str(), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)))
      bad("(config file)", config_file + " holds a password and is accessible to group or "
                                         "others (chmod 600)");
  }

  // HTTP API: no HTTPS in central; anything but loopback needs a TLS-terminating proxy.
  if (!loopback(cfg.http.listen)) {
    bad("http.listen", cfg.http.listen + " is not a loopback address and central serves plain "
                                         "HTTP: put it behind an HTTPS proxy and bind 127.0.0.1");
    if (anonymous_is_viewer(cfg))
      bad("auth.anonymous", "callers without a token read the API on a non-loopback address");
    if (cfg.auth.metrics_public) note("auth.metrics_public", "/metrics needs no token");
  }
  if (cfg.auth.rate_per_s == 0) note("auth.rate_per_s", "no per-caller rate limit");

  // Ingest and audit.
  if (!cfg.ingest.require_signatures)
    bad("ingest.require_signatures",
        "false: batches of agents without an approved key are stored unsigned");
  if (cfg.central.audit_export_interval_s == 0)
    note("central.audit_export_interval_s", "0: audit heads are exported only by the CLI");
  {
    struct stat st {};
    if (::stat(cfg.central.data_dir.c_str(), &st) == 0) {
      if (st.st_mode & S_IWOTH) bad("central.data_dir", cfg.central.data_dir + " is world-writable");
      else if (st.st_mode & S_IROTH)
        note("central.data_dir", cfg.central.data_dir + " is world-readable");
    }
  }
  return out;
}

int run_security_check(const central_config& cfg, const std::string& config_file, std::FILE* out,
                       std::FILE* err) {
  (void)err;
  auto findings = security_findings(cfg, config_file);
  std::size_t insecure = 0;
  for (const auto& f : findings) {
    std::fprintf(out, "%s %s: %s\n", f.insecure ? "INSECURE" : "note", f.key.c_str(),
                 f.why.c_str());
    if (f.insecure) ++insecure;
  }
  std::fprintf(out, "%zu insecure setting(s) in %s\n", insecure, config_file.c_str());
  return insecure ? kExitRuntime : kExitOk;
}

}  // namespace semilab::central
