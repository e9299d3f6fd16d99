#include <semilab/central/api.hpp>
#include <semilab/central/app.hpp>
#include <semilab/central/audit.hpp>
#include <semilab/central/auth.hpp>
#include <semilab/central/http.hpp>
#include <semilab/central/ops_metrics.hpp>
#include <semilab/central/restore_replay.hpp>
#include <semilab/central/service.hpp>
#include <semilab/central/storage.hpp>
#include <semilab/service/systemd.hpp>

#include "log.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/strand.hpp>

#include <algorithm>
#include <csignal>
#include <thread>
#include <vector>
#include <filesystem>
#include <functional>

#ifndef SEMILAB_VERSION
#define SEMILAB_VERSION "0.0.0"
#endif

namespace semilab::central {

namespace asio = boost::asio;

void set_log_level(std::string_view level) {
  auto l = spdlog::level::from_str(std::string(level));  // unknown -> off; we want info
  if (l == spdlog::level::off && level != "off") l = spdlog::level::info;
  spdlog::set_level(l);
  spdlog::apply_all([l](const std::shared_ptr<spdlog::logger>& lg) { lg->set_level(l); });
}

int run_service(const central_config& cfg, std::FILE* out) {
  auto log = logger("central");
  namespace fs = std::filesystem;
  std::error_code fec;
  fs::create_directories(cfg.central.data_dir, fec);
  if (fec) {
    log->error("cannot create data_dir {}: {}", cfg.central.data_dir, fec.message());
    return kExitRuntime;
  }
  storage_options so = storage_options_from(cfg, open_mode::read_write);
  const bool pg = so.backend == storage_backend::postgresql;
  const std::string where = pg ? redact_url(cfg.store.url) : so.sqlite_path;
  std::string err;
  auto writer = open_storage(so, err);
  if (!writer) {
    log->error("store {}: {}: {}", where, writer.error().message(), err);
    return kExitRuntime;
  }
  (*writer)->set_quarantine_cap(static_cast<std::size_t>(cfg.ingest.quarantine_payload_bytes));
  // Audit trail: a configuration that differs from the last one this instance recorded.
  if (audit_config(**writer, cfg, err)) log->warn("audit trail: configuration not recorded: {}", err);
  so.mode = open_mode::read_only;
  auto reader = open_storage(so, err);
  if (!reader) {
    log->error("store {} (read connection): {}: {}", where, reader.error().message(), err);
    return kExitRuntime;
  }
  // The HTTP API's threads and its pool of read connections ([http] threads, readers), and one
  // read-write connection for logins and token actions (POST routes; rare, one at a time).
  const auto http_threads = static_cast<std::size_t>(
      cfg.http.threads > 0 ? cfg.http.threads
                           : std::max<long long>(2, std::thread::hardware_concurrency()));
  const auto http_readers =
      cfg.http.readers > 0 ? static_cast<std::size_t>(cfg.http.readers) : http_threads;
  std::vector<std::unique_ptr<storage>> more_readers;
  for (std::size_t i = 1; i < http_readers; ++i) {
    auto r = open_storage(so, err);
    if (!r) {
      log->error("store {} (read connection {}): {}: {}", where, i + 1, r.error().message(), err);
      return kExitRuntime;
    }
    more_readers.push_back(std::move(*r));
  }
  so.mode = open_mode::read_write;
  auto auth_writer = open_storage(so, err);
  if (!auth_writer) {
    log->error("store {} (login connection): {}: {}", where, auth_writer.error().message(), err);
    return kExitRuntime;
  }
  log->info("store {} open ({})", where,
            pg ? "PostgreSQL, synchronous_commit=on" : "SQLite WAL, synchronous=FULL");

  asio::io_context ioc(1);
  service_options sv;
  sv.version = SEMILAB_VERSION;
  auto& in = sv.ingest;
  in.instance = cfg.central.instance;
  in.limits.max_frame_bytes = static_cast<std::size_t>(cfg.ingest.max_frame_bytes);
  in.limits.max_body_bytes = static_cast<std::size_t>(cfg.ingest.max_body_bytes);
  in.limits.max_records = static_cast<std::uint32_t>(cfg.ingest.max_records);
  in.queue_messages = static_cast<std::size_t>(cfg.ingest.queue_messages);
  in.queue_bytes = static_cast<std::size_t>(cfg.ingest.queue_bytes);
  in.group_max_batches = static_cast<std::size_t>(cfg.ingest.group_max_batches);
  in.group_max_bytes = static_cast<std::size_t>(cfg.ingest.group_max_bytes);
  in.quota_records_per_s = static_cast<double>(cfg.ingest.agent_quota_records_per_s);
  in.quota_burst_records = cfg.ingest.agent_quota_burst_records > 0
                               ? static_cast<double>(cfg.ingest.agent_quota_burst_records)
                               : 10.0 * in.quota_records_per_s;
  in.ts_max_future_ns = cfg.ingest.max_clock_skew_s * 1'000'000'000;
  in.require_signatures = cfg.ingest.require_signatures;
  if (!cfg.central.signing_key_file.empty()) {
    auto key = schemas::signing_key::load(cfg.central.signing_key_file, err);
    if (!key) {
      log->error("central.signing_key_file: {}", err);
      return kExitRuntime;
    }
    log->info("acks signed with central key {}", key->key_id());
    in.signer = std::make_shared<const schemas::signing_key>(std::move(*key));
  }
  sv.mqtt.broker_url = cfg.mqtt.broker;
  sv.mqtt.username = cfg.mqtt.username;
  sv.mqtt.password = cfg.mqtt.password;
  sv.mqtt.keep_alive = std::chrono::seconds(cfg.mqtt.keep_alive_s);
  sv.mqtt.connect_timeout = std::chrono::seconds(cfg.mqtt.connect_timeout_s);
  sv.mqtt.ca_file = cfg.mqtt.tls_ca_file;
  sv.mqtt.cert_file = cfg.mqtt.tls_cert_file;
  sv.mqtt.key_file = cfg.mqtt.tls_key_file;
  sv.mqtt.verify_hostname = cfg.mqtt.tls_verify_hostname;
  const auto head_signer = in.signer;
  ingest_service service(asio::make_strand(ioc), std::move(*writer), sv);

  api_sources as{reader->get(), [&service] { return service.stats(); },
                 [&service] { return service.connected(); }, cfg.central.instance};
  api_auth aa;
  aa.anonymous = anonymous_is_viewer(cfg) ? role::viewer : role::none;
  aa.metrics_public = cfg.auth.metrics_public;
  aa.rate_per_s = static_cast<double>(cfg.auth.rate_per_s);
  aa.rate_burst = static_cast<double>(cfg.auth.rate_burst);
  aa.token_refresh = std::chrono::seconds(cfg.auth.token_refresh_s);
  aa.session_ttl = std::chrono::seconds(cfg.auth.session_ttl_s);
  aa.cookie_secure = cfg.auth.cookie_secure;
  as.auth = aa;
  for (auto& r : more_readers) as.more_readers.push_back(r.get());
  as.writer = auth_writer->get();
  as.cache.ttl = std::chrono::milliseconds(cfg.http.cache_ttl_ms);
  as.cache.max_entries = static_cast<std::size_t>(cfg.http.cache_max_entries);
  as.cache.max_bytes = static_cast<std::size_t>(cfg.http.cache_max_bytes);
  // Backups, disk, gaps, SPC on /metrics (ops_metrics.hpp).
  ops_metrics_options om;
  om.data_dir = cfg.central.data_dir;
  om.backup_dir = cfg.backup.dir.empty()
                      ? (std::filesystem::path(cfg.central.data_dir) / "backups").string()
                      : cfg.backup.dir;
  auto ops = std::make_shared<ops_metrics>(om);
  as.more_metrics = [ops](std::string& o, storage* db, const std::vector<agent_row>& agents) {
    ops->append(o, db, agents, now_ns());
  };
  api routes(std::move(as));
  log->info("http access: anonymous callers {}, /metrics {}, {} requests/s per caller",
            aa.anonymous == role::viewer ? "read (viewer)" : "need a token",
            aa.metrics_public ? "public" : "per [auth]",
            cfg.auth.rate_per_s > 0 ? std::to_string(cfg.auth.rate_per_s) : "unlimited");
  http_options ho;
  ho.listen = cfg.http.listen;
  ho.timeout = std::chrono::seconds(cfg.http.timeout_s);
  ho.body_limit = static_cast<std::size_t>(cfg.http.body_limit_bytes);
  // HTTP on its own io_context and threads: a store read never delays the ingest strand, and
  // uncached requests use every core (one strand per connection; api::handle is thread-safe).
  asio::io_context http_ioc(static_cast<int>(http_threads));
  auto http = http_server::start(
      http_ioc.get_executor(), ho,
      [&routes](const http_request& req) { return routes.handle(req); }, err);
  if (!http) {
    log->error("http: {}", err);
    return kExitRuntime;
  }
  auto http_work = asio::make_work_guard(http_ioc);
  std::vector<std::thread> http_pool;
  // Stops and joins the HTTP threads on every way out, before `routes` and the connections go.
  struct joiner {
    asio::io_context& ioc;
    std::vector<std::thread>& threads;
    ~joiner() {
      ioc.stop();
      for (auto& t : threads) t.join();
    }
  } join_http{http_ioc, http_pool};
  for (std::size_t i = 0; i < http_threads; ++i)
    http_pool.emplace_back([&http_ioc, log] {
      try {
        http_ioc.run();
      } catch (const std::exception& e) {
        // Handlers report by value; reaching here is a bug. Log it; the others keep serving.
        log->critical("http thread: {}", e.what());
      }
    });
  auto address = (*http)->local_address();
  log->info("http listening {} ({} threads, {} read connections)", address, http_threads,
            http_readers);
  std::fprintf(out, "http %s\n", address.c_str());
  std::fflush(out);

  if (auto ec = service.start()) {
    log->error("mqtt client for {}: {}", cfg.mqtt.broker, ec.message());
    (*http)->stop();
    return kExitRuntime;
  }
  log->info("instance {} ingesting from {} (version {})", cfg.central.instance, cfg.mqtt.broker,
            SEMILAB_VERSION);
  // After `semilab-central restore`: ask the agents to re-send what followed the restored
  // high-water marks (nullptr when there is no pending list).
  auto replayer = start_restore_replayer(ioc.get_executor(), cfg);

  // The signed audit chain heads, exported to a file outside the database on a schedule
  // (audit.hpp); a short-lived read connection once per interval.
  asio::steady_timer head_timer(ioc);
  std::function<void()> schedule_head = [&] {
    if (cfg.central.audit_export_interval_s <= 0) return;
    head_timer.expires_after(std::chrono::seconds(cfg.central.audit_export_interval_s));
    head_timer.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      std::string why, path;
      auto ro = open_storage(storage_options_from(cfg, open_mode::read_only), why);
      const auto dir = cfg.central.audit_head_dir.empty()
                           ? std::filesystem::path(cfg.central.data_dir) / "audit-heads"
                           : std::filesystem::path(cfg.central.audit_head_dir);
      if (!ro || export_heads(**ro, dir, cfg.central.instance, head_signer.get(), now_ns(), path,
                              why))
        log->error("audit head export failed: {}", why);
      else
        log->info("audit heads exported to {}", path);
      schedule_head();
    });
  };
  schedule_head();

  service::notifier sd(ioc.get_executor());  // systemd: READY, WATCHDOG=1 from this loop
  sd.ready("ingesting from " + cfg.mqtt.broker);

  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    log->info("signal {}: shutting down", sig);
    sd.stopping();
    head_timer.cancel();
    (*http)->stop();
    if (replayer) replayer->stop(std::chrono::milliseconds(1000));
    service.async_stop(std::chrono::milliseconds(2000), [&] {
      log->info("stopped");
      ioc.stop();
    });
  });

  try {
    ioc.run();
  } catch (const std::exception& e) {
    // Handlers report by value; reaching here is a bug. Exit non-zero rather than hang.
    log->critical("event loop: {}", e.what());
    return kExitRuntime;
  }
  return kExitOk;
}

}  // namespace semilab::central
