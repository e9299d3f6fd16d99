#include <semilab/agent/daemon.hpp>
#include <semilab/agent/signing.hpp>
#include <semilab/agent/recorder.hpp>
#include <semilab/schemas/command.hpp>
#include <semilab/sync/engine.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/json.hpp>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include <semilab/schemas/topics.hpp>

#include "filedrop.hpp"
#include "control.hpp"
#include "control_routes.hpp"
#include "http_status.hpp"
#include "instrument_runner.hpp"
#include "modbus_runner.hpp"
#include "reload.hpp"
#include "runs.hpp"
#include "status_model.hpp"

namespace semilab::agent {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

constexpr const char* kVersion = kAgentVersion;

json::object counters_json(const sync::outbox_counters& c) {
  // by_reason: "dropped.quota.telemetry", "refused.quota.telemetry", "notices",
  // "unrecoverable.corrupt_outbox.all" (persisted; refused records were never produced).
  json::object reasons;
  for (auto& [k, v] : c.by_reason) reasons[k] = v;
  return {{"produced", c.produced}, {"acked", c.acked},         {"held", c.held},
          {"dropped", c.dropped},   {"dead_letters", c.dead_letters}, {"refused", c.refused},
          {"retained", c.retained}, {"retained_bytes", c.retained_bytes},
          {"by_reason", std::move(reasons)}};
}

json::object outbox_json(const sync::outbox_counters& c, std::int64_t now_ns) {
  double age = c.held && c.oldest_ts_ns ? static_cast<double>(now_ns - c.oldest_ts_ns) / 1e9 : 0.0;
  return {{"records", c.held}, {"bytes", c.held_bytes}, {"oldest_age_s", age}};
}

// Written atomically (rename) so `status` never reads half a file.
void write_atomically(const std::filesystem::path& p, const std::string& text) {
  auto tmp = p;
  tmp += ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << text;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, p, ec);
}

bool pid_alive(const std::filesystem::path& pid_file, long& pid) {
  std::ifstream f(pid_file);
  if (!(f >> pid) || pid <= 0) return false;
  return ::kill(static_cast<pid_t>(pid), 0) == 0;
}

}  // namespace

int run_daemon(const agent_config& startup_cfg) {
  agent_config cfg = startup_cfg;  // live: a SIGHUP replaces its instruments (reload.cpp)
  std::error_code fec;
  std::filesystem::create_directories(cfg.data_dir, fec);
  if (fec) {
    spdlog::error("[agent] cannot create data_dir {}: {}", cfg.data_dir, fec.message());
    return 1;
  }
  long other = 0;
  if (pid_alive(cfg.pid_path(), other) && other != ::getpid()) {
    spdlog::error("[agent] another semilab-agent (pid {}) runs on {}", other, cfg.data_dir);
    return 1;
  }
  std::ofstream(cfg.pid_path()) << ::getpid() << "\n";

  std::string err;
  sync::outbox_options oo{cfg.outbox_path(), cfg.id,
                          cfg.durability == "normal" ? sync::durability::normal
                                                     : sync::durability::full};
  oo.quota.max_bytes = static_cast<std::uint64_t>(cfg.quota_mb) << 20;
  oo.quota.reserve_bytes = static_cast<std::uint64_t>(cfg.quota_reserve_mb) << 20;
  auto policy = [](const std::string& p) {
    return p == "drop_oldest" ? sync::full_policy::drop_oldest : sync::full_policy::pause;
  };
  oo.quota.telemetry = policy(cfg.telemetry_when_full);
  oo.quota.blob = policy(cfg.blob_when_full);
  oo.integrity_interval = std::chrono::seconds(cfg.integrity_check_s);
  oo.retention.max_age = std::chrono::hours(cfg.retain_hours);
  oo.retention.max_bytes = static_cast<std::uint64_t>(cfg.retain_mb) << 20;
  auto box = sync::outbox::open(oo, err);
  if (!box) {
    spdlog::error("[agent] outbox: {}", err);
    return 1;
  }
  auto& outbox = **box;
  auto c0 = outbox.counters();
  spdlog::info("[agent] {} (site {}): outbox {} holds {} record(s), store epoch {}", cfg.id, cfg.site,
               cfg.outbox_path().string(), c0.held, outbox.store_epoch());

  asio::io_context io(1);
  recorder rec(outbox);
  const auto started_ns = utc_now_ns();
  live_values values;  // the status page's recent values, fed before the outbox takes them
  event_log events;
  rec.set_observer([&values](std::span<const schemas::record> r) { values.observe(r); });

  sync::engine_options eo;
  eo.agent_id = cfg.id;
  eo.site = cfg.site;
  eo.batch_max_records = static_cast<std::size_t>(cfg.batch_max_records);
  eo.max_inflight_batches = static_cast<std::size_t>(cfg.max_inflight_batches);
  eo.ack_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(cfg.ack_timeout_s * 1000));
  eo.linger = std::chrono::milliseconds(cfg.linger_ms);
  eo.version = kVersion;
  eo.max_bytes_per_s = cfg.max_bytes_per_s;
  eo.zstd_level = static_cast<int>(cfg.zstd_level);
  eo.dict_train_records = static_cast<std::size_t>(cfg.zstd_dictionary_records);
  eo.max_batches_per_s = cfg.max_batches_per_s;
  sync::mqtt_options mo;
  mo.broker_url = cfg.broker;
  mo.username = cfg.username;
  mo.password = cfg.password;
  mo.ca_file = cfg.tls_ca_file;
  mo.cert_file = cfg.tls_cert_file;
  mo.key_file = cfg.tls_key_file;
  mo.verify_hostname = cfg.tls_verify_hostname;
  if (!cfg.command_key_file.empty() &&
      !schemas::load_command_key(cfg.command_key_file, eo.command_key, err)) {
    spdlog::error("[agent] sync.command_key_file: {}", err);
    return 1;
  }
  if (auto keys = schemas::parse_public_key_list(cfg.central_public_keys)) {
    eo.central_keys = std::move(*keys);
  } else {
    spdlog::error("[agent] sync.central_public_keys: not a list of 64-hex-digit Ed25519 keys");
    return 1;
  }
  if (!eo.central_keys.empty())
    spdlog::info("[agent] {} central key(s) pinned: acks and commands must be signed",
                 eo.central_keys.size());
  eo.signer = load_signing_key(cfg, err);
  if (!err.empty()) {
    spdlog::error("[agent] signing key: {}", err);
    return 1;
  }
  if (eo.signer)
    spdlog::info("[agent] signing batches with key {}", eo.signer->key_id());
  auto engine = std::make_unique<sync::engine>(asio::make_strand(io), outbox, eo, mo);
  if (auto ec = engine->start()) {
    spdlog::error("[agent] sync engine: {}", ec.message());
    return 1;
  }
  spdlog::info("[agent] uploading to {}", cfg.broker);

  std::vector<std::shared_ptr<runner>> runners;
  for (const auto& ic : cfg.instruments) {
    std::shared_ptr<runner> r;
    if (ic.modbus_map) r = std::make_shared<modbus_runner>(io, ic, rec);
    else r = std::make_shared<instrument_runner>(io, ic, rec);
    r->start();
    spdlog::info("[acq] {}: {} at {}, every {} s", ic.id,
                 ic.modbus_map ? "modbus map " + ic.modbus_map->name : ic.model, ic.resource,
                 ic.poll_interval_s);
    runners.push_back(std::move(r));
  }

  // Watched export folders, each on its own thread (filedrop.hpp); replaced on SIGHUP by id.
  std::vector<std::unique_ptr<filedrop_driver>> drops;
  auto start_drop = [&](const filedrop_config& fc) {
    auto d = std::make_unique<filedrop_driver>(fc, rec);
    if (auto e = d->start(); !e.empty()) {
      spdlog::error("[filedrop] {}: not started: {}", fc.id, e);
      events.add(utc_now_ns(), "degraded", fc.id, "file drop not started: " + e);
      return;
    }
    drops.push_back(std::move(d));
  };
  for (const auto& fc : cfg.filedrops) start_drop(fc);

  // Status page, /metrics and the health topic (docs/agent-status.md). A port in use is not
  // fatal: acquisition matters more than the page.
  // Recipe runs through the instruments' sessions (runs.hpp), submitted over the status server.
  std::shared_ptr<run_executor> runs;
  const bool status_loopback =
      cfg.status_bind.starts_with("127.") || cfg.status_bind == "::1" || cfg.status_bind == "localhost";
  if (cfg.runs_enabled) {
    runs_options ro;
    ro.db_path = cfg.outbox_path();
    ro.default_bindings = cfg.runs_roles;
    ro.history = static_cast<std::size_t>(cfg.runs_history);
    for (const auto& ic : cfg.instruments) ro.calibration_due[ic.id] = ic.calibration_due;
    runs = run_executor::create(
        io, std::move(ro), rec,
        [&runners](std::string_view id) -> std::shared_ptr<instrument_runner> {
          for (auto& r : runners)
            if (auto ir = std::dynamic_pointer_cast<instrument_runner>(r); ir && ir->config().id == id)
              return ir;
          return nullptr;
        },
        err);
    if (!runs) spdlog::error("[agent] recipe runs not served: {}", err);
  }
  auto routes = std::make_shared<status_routes>(
      cfg.operator_token,
      cfg.status_bind.starts_with("127.") || cfg.status_bind == "::1" || cfg.status_bind == "localhost",
      status_actions{[&runners](std::string_view id) { return transactions_json(runners, id); },
                     [&runners, &events](std::string_view id) {
                       for (auto& r : runners)
                         if (r->status().id == id) {
                           if (!r->reconnect()) return action_outcome::not_supported;
                           events.add(utc_now_ns(), "ok", std::string(id),
                                      "reconnect requested from the status page");
                           return action_outcome::done;
                         }
                       return action_outcome::unknown_instrument;
                     },
                     [&runs, &cfg, status_loopback](const http_request_view& req,
                                                    std::string_view target) -> std::optional<http_reply> {
                       if (!runs) return std::nullopt;
                       return handle_runs_request(
                           *runs, req, target,
                           cfg.runs_token.empty() ? cfg.operator_token : cfg.runs_token,
                           status_loopback);
                     }});
  // Local control (CLI socket) and the page's login and actions (control.hpp, users.hpp).
  agent_control control(io, cfg, outbox, *engine, rec, runners, events);
  if (runs) {  // pause is refused while a run is unfinished; runs are refused while paused
    control.set_unfinished_runs([&runs] { return runs->unfinished(); });
    runs->set_paused_check([&control] { return control.paused(); });
  }
  std::shared_ptr<user_store> users;
  if (auto u = user_store::open(cfg.outbox_path(), err)) users = std::move(*u);
  else spdlog::error("[agent] local users unavailable (logins refused): {}", err);
  routes->set_control(std::make_shared<control_routes>(
      std::make_shared<auth>(users, cfg.operator_token),
      [&control](json::object req) { return control.dispatch(req); },
      [&control] { return control.paused(); }));
  std::shared_ptr<control_server> control_srv;
  if (auto cs = control_server::start(
          io, cfg.control_socket_path(),
          [&control](const json::object& req) { return control.dispatch(req); }, err))
    control_srv = *cs;
  else
    spdlog::error("[agent] control socket not served (the CLI works on the files): {}", err);
  std::shared_ptr<status_server> server;
  if (cfg.status_enabled) {
    status_server_options so;
    so.bind = cfg.status_bind;
    so.port = static_cast<std::uint16_t>(cfg.status_port);
    so.tls_cert_file = cfg.status_tls_cert_file;
    so.tls_key_file = cfg.status_tls_key_file;
    if (auto srv = status_server::start(io.get_executor(), so, routes, err)) {
      server = *srv;
      spdlog::info("[agent] status page on {}://{}/", server->tls() ? "https" : "http",
                   server->local_address());
    } else {
      spdlog::error("[agent] status page not served: {}", err);
    }
  }
  status_sampler sampler({cfg, outbox, *engine, rec, runners, values, events}, started_ns);
  sampler.set_acquisition([&control] { return control.acquisition(); });
  sampler.set_runs(runs);
  const auto health_topic = schemas::agent_topic(cfg.site, cfg.id, schemas::agent_topic_kind::health);
  std::int64_t health_sent_ns = 0;

  // Live status for `semilab-agent status` and the page, once a second; health published
  // retained when it changes and every health_period_s.
  asio::steady_timer status_timer(io);
  std::function<void()> write_status = [&] {
    auto now = utc_now_ns();
    auto smp = sampler.take(now, counters_json(outbox.counters()));
    write_atomically(cfg.live_status_path(), smp.file_json);
    if (smp.health_changed || now - health_sent_ns >= cfg.health_period_s * 1'000'000'000) {
      engine->publish_retained(health_topic, smp.health_json);
      health_sent_ns = now;
    }
    if (server) {
      auto snap = std::make_shared<status_snapshot>();
      snap->status_json = std::move(smp.page_json);
      snap->health_json = std::move(smp.health_json);
      snap->metrics = std::move(smp.metrics);
      snap->ready = smp.health.agent_state != health::level::failed;
      if (!snap->ready) {
        json::array why;
        for (const auto& r : smp.health.reasons)
          if (r.lvl == health::level::failed) why.push_back(json::value(r.text));
        snap->not_ready_json = json::serialize(json::object{{"ready", false}, {"reasons", why}});
      }
      server->publish(std::move(snap));
    }
    status_timer.expires_after(std::chrono::seconds(1));
    status_timer.async_wait([&](boost::system::error_code ec) {
      if (!ec) write_status();
    });
  };
  write_status();

  service::notifier sd(io.get_executor());  // systemd: READY, WATCHDOG=1 from this loop
  reloader reload(io, cfg, runners, rec, events, sd);  // SIGHUP
  reload.on_central_keys([&](std::vector<schemas::ed25519_public_key> keys) {
    spdlog::info("[agent] reload: {} central key(s) pinned from now on", keys.size());
    engine->set_central_keys(std::move(keys));
  });
  reload.on_filedrops([&](const std::vector<filedrop_config>& next) {
    // By id: unchanged folders keep their driver (and its pending files); others restart.
    std::string summary;
    std::vector<std::unique_ptr<filedrop_driver>> keep;
    for (auto& d : drops) {
      auto same = std::find(next.begin(), next.end(), d->config());
      if (same != next.end()) keep.push_back(std::move(d));
      else {
        summary += (summary.empty() ? "" : ", ") + d->config().id + " stopped";
        d->stop();  // finishes the file being ingested
      }
    }
    drops = std::move(keep);
    for (const auto& fc : next) {
      bool running = std::any_of(drops.begin(), drops.end(), [&](auto& d) { return d->config() == fc; });
      if (running) continue;
      start_drop(fc);
      summary += (summary.empty() ? "" : ", ") + fc.id + " started";
    }
    return summary.empty() ? std::string("unchanged") : summary;
  });
  sd.ready("running, " + std::to_string(runners.size()) + " instrument(s)");

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    spdlog::info("[agent] signal {}: stopping (records not yet acked stay in the outbox)", sig);
    sd.stopping();
    reload.cancel();
    if (runs) runs->stop();  // a running run is aborted: its outputs go off
    for (auto& r : runners) r->stop();
    status_timer.cancel();
    if (server) server->stop();
    if (control_srv) control_srv->stop();
    // Engine stop waits for its strand: run it off this thread, then let io finish. The file
    // drops first: one may finish ingesting a file (its records still reach the outbox).
    std::thread([&] {
      for (auto& d : drops) d->stop();
      engine->stop();
      asio::post(io, [&] { io.stop(); });
    }).detach();
  });

  io.run();
  engine.reset();
  auto c = outbox.counters();
  spdlog::info("[agent] stopped: produced {} acked {} held {} dropped {}", c.produced, c.acked,
               c.held, c.dropped);
  std::filesystem::remove(cfg.live_status_path(), fec);
  std::filesystem::remove(cfg.pid_path(), fec);
  return 0;
}

int print_status(const agent_config& cfg, bool as_json) {
  std::string err;
  auto now = utc_now_ns();
  json::object out{{"agent_id", cfg.id}, {"site", cfg.site}};
  if (!std::filesystem::exists(cfg.outbox_path())) {
    // Nothing produced yet: an empty outbox, not an error.
    out["outbox"] = outbox_json({}, now);
    out["counters"] = counters_json({});
  } else {
    auto c = sync::outbox::read_status(cfg.outbox_path(), err);
    if (!c) {
      std::cerr << "semilab-agent: status: " << err << "\n";
      return 1;
    }
    out["outbox"] = outbox_json(*c, now);
    out["counters"] = counters_json(*c);
  }
  long pid = 0;
  bool running = pid_alive(cfg.pid_path(), pid);
  out["daemon"] = {{"running", running}, {"pid", running ? pid : 0}};
  if (running) {
    std::ifstream f(cfg.live_status_path());
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    boost::system::error_code ec;
    auto live = json::parse(text, ec);
    if (!ec && live.is_object()) out["live"] = std::move(live);
    // Acquisition running or paused, from the control socket (control.hpp).
    bool not_running = false;
    if (auto r = control_call(cfg.control_socket_path(), {{"cmd", "status"}}, std::chrono::seconds(2),
                              err, not_running);
        r && r->is_object())
      if (auto* a = r->as_object().if_contains("acquisition")) out["daemon"].as_object()["acquisition"] = *a;
  }
  if (as_json) {
    std::cout << json::serialize(out) << "\n";
    return 0;
  }
  auto& o = out["outbox"].as_object();
  auto& k = out["counters"].as_object();
  char oldest[32];
  std::snprintf(oldest, sizeof oldest, "%.1f", o["oldest_age_s"].to_number<double>());
  std::cout << "agent      " << cfg.id << " (site " << cfg.site << ")\n"
            << "daemon     " << (running ? "running, pid " + std::to_string(pid) : std::string("not running"))
            << (out["daemon"].as_object().contains("acquisition")
                    ? ", acquisition " + std::string(out["daemon"].as_object()["acquisition"].as_string())
                    : std::string())
            << "\n"
            << "outbox     " << o["records"] << " records, " << o["bytes"] << " bytes, oldest "
            << oldest << " s\n"
            << "counters   produced " << k["produced"] << ", acked " << k["acked"] << ", held "
            << k["held"] << " (dead letters " << k["dead_letters"] << "), dropped " << k["dropped"]
            << ", refused " << k["refused"] << "\n";
  if (auto* live = out.if_contains("live")) {
    auto& l = live->as_object();
    if (auto* al = l.if_contains("alarms"))
      for (auto& a : al->as_array()) std::cout << "ALARM      " << a.as_string().c_str() << "\n";
    std::cout << "broker     " << l["broker"].as_object()["url"].as_string().c_str() << " "
              << (l["broker"].as_object()["connected"].as_bool() ? "connected" : "DISCONNECTED") << "\n";
    for (auto& i : l["instruments"].as_array()) {
      auto& io = i.as_object();
      std::cout << "instrument " << io["id"].as_string().c_str() << " "
                << (io["connected"].as_bool() ? "ok" : "NOT ANSWERING") << ", readings "
                << io["readings"] << ", last " << io["last_value"].as_string().c_str();
      if (!io["last_error"].as_string().empty())
        std::cout << ", last error: " << io["last_error"].as_string().c_str();
      std::cout << "\n";
    }
  }
  return 0;
}

}  // namespace semilab::agent
