#include <semilab/agent/daemon.hpp>
#include <semilab/agent/recorder.hpp>
#include <semilab/sync/engine.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/json.hpp>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "instrument_runner.hpp"
#include "modbus_runner.hpp"

namespace semilab::agent {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

constexpr const char* kVersion = "0.1.0";

json::object counters_json(const sync::outbox_counters& c) {
  return {{"produced", c.produced}, {"acked", c.acked},         {"held", c.held},
          {"dropped", c.dropped},   {"dead_letters", c.dead_letters}};
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

int run_daemon(const agent_config& cfg) {
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
  auto box = sync::outbox::open({cfg.outbox_path(), cfg.id,
                                 cfg.durability == "normal" ? sync::durability::normal
                                                            : sync::durability::full},
                                err);
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
  eo.max_batches_per_s = cfg.max_batches_per_s;
  sync::mqtt_options mo;
  mo.broker_url = cfg.broker;
  mo.username = cfg.username;
  mo.password = cfg.password;
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

  // Live status for `semilab-agent status`, once a second.
  asio::steady_timer status_timer(io);
  std::function<void()> write_status = [&] {
    auto now = utc_now_ns();
    auto s = engine->stats();
    json::array instruments;
    for (auto& r : runners) {
      auto st = r->status();
      instruments.push_back(json::object{{"id", st.id},
                                         {"model", st.model},
                                         {"resource", st.resource},
                                         {"idn", st.idn},
                                         {"connected", st.connected},
                                         {"finished", st.finished},
                                         {"readings", st.readings},
                                         {"errors", st.errors},
                                         {"consecutive_errors", st.consecutive_errors},
                                         {"last_good_ns", std::to_string(st.last_good_ns)},
                                         {"last_value", st.last_value},
                                         {"last_error", st.last_error}});
    }
    json::object live{{"pid", ::getpid()},
                      {"clock_steps", rec.clock_steps()},
                      {"written_ns", std::to_string(now)},
                      {"broker", {{"url", cfg.broker}, {"connected", s.broker_connected}}},
                      {"sync",
                       {{"batches_sent", s.batches_sent},
                        {"batches_resent", s.batches_resent},
                        {"batches_acked", s.batches_acked},
                        {"batches_rejected", s.batches_rejected},
                        {"records_acked", s.records_acked},
                        {"bytes_published", s.bytes_published},
                        {"inflight_batches", s.inflight},
                        {"last_ack_ns", std::to_string(s.last_ack_ns)},
                        {"rate_limited", s.rate_limited},
                        {"central_online", s.central_online}}},
                      {"instruments", std::move(instruments)}};
    json::array alarms;
    if (!outbox.replaced_reason().empty())
      alarms.push_back(json::value("outbox replaced: " + outbox.replaced_reason()));
    live["alarms"] = std::move(alarms);
    write_atomically(cfg.live_status_path(), json::serialize(live));
    status_timer.expires_after(std::chrono::seconds(1));
    status_timer.async_wait([&](boost::system::error_code ec) {
      if (!ec) write_status();
    });
  };
  write_status();

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    spdlog::info("[agent] signal {}: stopping (records not yet acked stay in the outbox)", sig);
    for (auto& r : runners) r->stop();
    status_timer.cancel();
    // Engine stop waits for its strand: run it off this thread, then let io finish.
    std::thread([&] {
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
            << "daemon     " << (running ? "running, pid " + std::to_string(pid) : std::string("not running")) << "\n"
            << "outbox     " << o["records"] << " records, " << o["bytes"] << " bytes, oldest "
            << oldest << " s\n"
            << "counters   produced " << k["produced"] << ", acked " << k["acked"] << ", held "
            << k["held"] << " (dead letters " << k["dead_letters"] << "), dropped " << k["dropped"]
            << "\n";
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
