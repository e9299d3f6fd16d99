// `semilab-central replay` (central/include/semilab/central/replay_cmd.hpp).
#include <semilab/central/app.hpp>
#include <semilab/central/replay_cmd.hpp>
#include <semilab/central/storage.hpp>
#include <semilab/schemas/command.hpp>
#include <semilab/schemas/signing.hpp>
#include <semilab/schemas/topics.hpp>
#include <semilab/sync/mqtt.hpp>

#include <boost/asio/io_context.hpp>

#include <future>
#include <optional>
#include <thread>
#include <unistd.h>

namespace semilab::central {

namespace asio = boost::asio;

namespace {

std::int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The agent's site as the store knows it from its batches.
std::string site_of(const central_config& cfg, const std::string& agent, std::FILE* err) {
  auto so = storage_options_from(cfg, open_mode::read_only);
  std::string msg;
  auto s = open_storage(so, msg);
  if (!s) {
    std::fprintf(err, "semilab-central: replay: store: %s: %s (give --site)\n",
                 s.error().message().c_str(), msg.c_str());
    return {};
  }
  auto rows = (*s)->agents();
  if (!rows) {
    std::fprintf(err, "semilab-central: replay: store: %s (give --site)\n",
                 (*s)->last_error().c_str());
    return {};
  }
  for (auto& a : *rows)
    if (a.agent_id == agent) return a.site;
  std::fprintf(err, "semilab-central: replay: agent '%s' unknown to the store (give --site)\n",
               agent.c_str());
  return {};
}

}  // namespace

int run_replay(const central_config& cfg, const replay_request& req, std::FILE* out,
               std::FILE* err) {
  if (!schemas::valid_id(req.agent_id) || (!req.site.empty() && !schemas::valid_id(req.site)) ||
      req.from > req.to || req.store_epoch == 0) {
    std::fprintf(err, "semilab-central: replay: need a valid --agent, --epoch > 0 and --from <= --to\n");
    return kExitUsage;
  }
  if (cfg.mqtt.command_key_file.empty() && cfg.central.signing_key_file.empty()) {
    std::fprintf(err, "semilab-central: replay: neither [central] signing_key_file nor [mqtt] "
                      "command_key_file is set\n");
    return kExitUsage;
  }
  // Signed with central's key (agents that pin it) and/or MACed with the shared secret (agents
  // that do not yet): both when both are configured.
  std::string key, why;
  if (!cfg.mqtt.command_key_file.empty() &&
      !schemas::load_command_key(cfg.mqtt.command_key_file, key, why)) {
    std::fprintf(err, "semilab-central: replay: %s\n", why.c_str());
    return kExitUsage;
  }
  std::optional<schemas::signing_key> signer;
  if (!cfg.central.signing_key_file.empty()) {
    auto k = schemas::signing_key::load(cfg.central.signing_key_file, why);
    if (!k) {
      std::fprintf(err, "semilab-central: replay: %s\n", why.c_str());
      return kExitUsage;
    }
    signer = std::move(*k);
  }
  std::string site = req.site.empty() ? site_of(cfg, req.agent_id, err) : req.site;
  if (site.empty()) return kExitRuntime;

  schemas::replay_command cmd{req.agent_id, req.store_epoch, req.from, req.to, wall_ns(),
                              schemas::new_nonce()};
  if (cmd.nonce.empty()) {
    std::fprintf(err, "semilab-central: replay: no random bytes for the nonce\n");
    return kExitRuntime;
  }
  const auto topic = schemas::agent_topic(site, req.agent_id, schemas::agent_topic_kind::cmd);
  const auto payload = schemas::encode_command(cmd, key, signer ? &*signer : nullptr);

  asio::io_context io(1);
  sync::mqtt_options mo;
  mo.broker_url = cfg.mqtt.broker;
  mo.client_id = "semilab-replay-" + std::to_string(::getpid());
  mo.username = cfg.mqtt.username;
  mo.password = cfg.mqtt.password;
  mo.clean_start = true;
  mo.session_expiry_s = 0;
  mo.connect_timeout = std::chrono::seconds(cfg.mqtt.connect_timeout_s);
  mo.ca_file = cfg.mqtt.tls_ca_file;
  mo.cert_file = cfg.mqtt.tls_cert_file;
  mo.key_file = cfg.mqtt.tls_key_file;
  mo.verify_hostname = cfg.mqtt.tls_verify_hostname;
  sync::mqtt_client client(io.get_executor(), mo);
  int rc = kExitRuntime;
  std::string failure = "no connection to the broker within the timeout";
  client.on_connected([&] {
    // Handlers run on io (this thread): no blocking, no exception escapes.
    client.publish(topic, payload, 1, false, [&](boost::system::error_code ec) {
      if (ec) failure = "publish failed: " + ec.message();
      else rc = kExitOk;
      io.stop();
    });
  });
  if (auto ec = client.start()) {
    std::fprintf(err, "semilab-central: replay: %s\n", ec.message().c_str());
    return kExitRuntime;
  }
  {
    auto guard = asio::make_work_guard(io);  // the connect completes on Paho's thread
    io.run_for(req.timeout);
  }
  client.stop(std::chrono::milliseconds(1000));
  if (rc != kExitOk) {
    std::fprintf(err, "semilab-central: replay: %s (%s)\n", failure.c_str(), cfg.mqtt.broker.c_str());
    return rc;
  }
  std::fprintf(out, "replay requested: agent %s epoch %llu seq %llu..%llu on %s\n",
               req.agent_id.c_str(), static_cast<unsigned long long>(req.store_epoch),
               static_cast<unsigned long long>(req.from), static_cast<unsigned long long>(req.to),
               topic.c_str());
  return kExitOk;
}

}  // namespace semilab::central
