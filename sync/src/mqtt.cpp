#include <semilab/sync/mqtt.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <random>
#include <mutex>
#include <vector>

namespace semilab::sync {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

// Errors of the MQTT layer as error codes.
class mqtt_category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "semilab.mqtt"; }
  std::string message(int ev) const override {
    switch (ev) {
      case 1: return "not connected to the broker";
      case 2: return "publish failed";
      case 3: return "client stopped";
      case 4: return "MQTT client error";
    }
    return "mqtt error " + std::to_string(ev);
  }
};
const boost::system::error_category& mqtt_cat() {
  static const mqtt_category c;
  return c;
}
error_code mqtt_error(int ev) { return {ev, mqtt_cat()}; }

}  // namespace

bool is_tls_url(const std::string& url) noexcept {
  return url.rfind("ssl://", 0) == 0 || url.rfind("mqtts://", 0) == 0;
}

struct mqtt_client::impl : std::enable_shared_from_this<impl>, mqtt::iaction_listener {
  asio::any_io_executor ex;
  mqtt_options opts;
  std::unique_ptr<mqtt::async_client> cli;
  asio::steady_timer retry_timer;
  std::chrono::milliseconds backoff;

  std::function<void()> on_connected;
  std::function<void(std::string)> on_lost;
  std::function<void(mqtt_message)> on_msg;
  std::vector<std::pair<std::string, int>> subs;
  std::string birth_topic, birth_payload;

  std::atomic<bool> is_connected{false};
  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> reconnect_count{0};
  std::vector<mqtt::token_ptr> held_tokens;  // released after `cli` (see stop())

  // Publish completions, keyed by the context pointer handed to Paho.
  struct pending {
    std::shared_ptr<impl> owner;
    done_handler done;
  };

  // Connect completion listener (separate object: Paho needs an iaction_listener per kind).
  struct connect_listener final : mqtt::iaction_listener {
    impl* self;
    explicit connect_listener(impl* s) : self(s) {}
    void on_success(const mqtt::token&) override {}
    void on_failure(const mqtt::token& tok) override {
      // Runs on Paho's thread: only post. The client may be mid-destruction (a connect that
      // fails while ~impl resets Paho's client): then there is nobody to tell.
      auto s = self->weak_from_this().lock();
      if (!s) return;
      int rc = tok.get_return_code();
      asio::post(s->ex, [s, rc] { s->connect_failed(rc); });
    }
  } connect_cb{this};

  impl(asio::any_io_executor e, mqtt_options o)
      : ex(std::move(e)), opts(std::move(o)), retry_timer(ex), backoff(opts.min_retry) {}
  ~impl() {
    cli.reset();  // joins nothing, but no Paho callback reaches a held token after this
    held_tokens.clear();
  }

  // Publish completion: Paho's thread. Post the user's handler to the executor.
  void on_success(const mqtt::token& tok) override { complete(tok, {}); }
  void on_failure(const mqtt::token& tok) override { complete(tok, mqtt_error(2)); }
  void complete(const mqtt::token& tok, error_code ec) {
    auto* p = static_cast<pending*>(tok.get_user_context());
    if (!p) return;
    std::unique_ptr<pending> owned(p);
    // The last reference to this impl may be the one in `owned`: hand it to the executor so the
    // client is never destroyed on Paho's own thread.
    asio::post(ex, [owner = std::move(owned->owner), done = std::move(owned->done), ec] {
      if (done) done(ec);
    });
  }

  mqtt::connect_options make_connect_options() {
    mqtt::connect_options co;
    co.set_mqtt_version(MQTTVERSION_5);
    co.set_clean_start(opts.clean_start);
    co.set_keep_alive_interval(opts.keep_alive);
    co.set_connect_timeout(opts.connect_timeout);
    co.set_max_inflight(opts.max_inflight);
    co.set_automatic_reconnect(false);  // reconnection is ours: ms backoff, also for the first connect
    mqtt::properties props;
    props.add({mqtt::property::SESSION_EXPIRY_INTERVAL, static_cast<int>(opts.session_expiry_s)});
    co.set_properties(props);
    if (is_tls_url(opts.broker_url)) {
      mqtt::ssl_options ssl;
      if (!opts.ca_file.empty()) ssl.set_trust_store(opts.ca_file);
      if (!opts.cert_file.empty()) ssl.set_key_store(opts.cert_file);
      if (!opts.key_file.empty()) ssl.set_private_key(opts.key_file);
      if (!opts.key_password.empty()) ssl.set_private_key_password(opts.key_password);
      ssl.set_enable_server_cert_auth(true);
      ssl.set_verify(opts.verify_hostname);
      // No set_error_handler: Paho C++ 1.2 hands the C library a pointer to the ssl_options
      // object as the handler's context, which dangles once the options are copied into the
      // connect options (seen here as a wild jump on Paho's thread). A failed handshake is a
      // failed connect: logged with its return code and retried with backoff.
      co.set_ssl(std::move(ssl));
    }
    if (!opts.username.empty()) co.set_user_name(opts.username);
    if (!opts.password.empty()) co.set_password(opts.password);
    if (!opts.will_topic.empty()) {
      auto will = mqtt::message(opts.will_topic, opts.will_payload, 1, true);
      co.set_will_message(will);
    }
    return co;
  }

  void connect() {
    if (stopping) return;
    try {
      cli->connect(make_connect_options(), nullptr, connect_cb);
    } catch (const std::exception& e) {
      spdlog::warn("[mqtt] connect to {} failed: {}", opts.broker_url, e.what());
      schedule_reconnect();
    }
  }

  void connect_failed(int rc) {
    if (stopping) return;
    spdlog::debug("[mqtt] connect to {} failed (rc {}), retrying in {} ms", opts.broker_url, rc,
                  backoff.count());
    schedule_reconnect();
  }

  void schedule_reconnect() {
    if (stopping) return;
    // Exponential backoff with jitter (50-100 % of the step), so a fleet that lost its broker
    // together does not come back in lockstep.
    thread_local std::minstd_rand rng{std::random_device{}()};
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    retry_timer.expires_after(std::chrono::duration_cast<std::chrono::milliseconds>(backoff * jitter(rng)));
    backoff = std::min(backoff * 2, opts.max_retry);
    retry_timer.async_wait([w = weak_from_this()](error_code ec) {
      if (auto s = w.lock(); s && !ec) s->connect();
    });
  }

  // Paho's thread: subscribe and publish birth (both async, thread-safe), then post the rest.
  void handle_connected() {
    if (stopping) return;
    is_connected = true;
    try {
      for (auto& [filter, qos] : subs) cli->subscribe(filter, qos);
      if (!birth_topic.empty()) cli->publish(birth_topic, birth_payload.data(), birth_payload.size(), 1, true);
    } catch (const std::exception& e) {
      spdlog::warn("[mqtt] after connect: {}", e.what());
    }
    auto s = shared_from_this();
    asio::post(ex, [s] {
      s->backoff = s->opts.min_retry;
      if (s->on_connected) s->on_connected();
    });
  }

  void handle_lost(std::string cause) {
    is_connected = false;
    if (stopping) return;
    ++reconnect_count;
    auto s = shared_from_this();
    asio::post(ex, [s, cause = std::move(cause)] {
      if (s->on_lost) s->on_lost(cause);
      s->schedule_reconnect();
    });
  }
};

mqtt_client::mqtt_client(asio::any_io_executor ex, mqtt_options opts)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(opts))) {}

mqtt_client::~mqtt_client() { stop(std::chrono::milliseconds(1000)); }

void mqtt_client::on_connected(std::function<void()> h) { impl_->on_connected = std::move(h); }
void mqtt_client::on_connection_lost(std::function<void(std::string)> h) { impl_->on_lost = std::move(h); }
void mqtt_client::on_message(std::function<void(mqtt_message)> h) { impl_->on_msg = std::move(h); }
void mqtt_client::add_subscription(std::string filter, int qos) {
  impl_->subs.emplace_back(std::move(filter), qos);
}
void mqtt_client::set_birth(std::string topic, std::string payload) {
  impl_->birth_topic = std::move(topic);
  impl_->birth_payload = std::move(payload);
}

error_code mqtt_client::start() {
  auto& s = *impl_;
  try {
    // Paho keeps no persistence of its own: the outbox is the persistence.
    mqtt::create_options co(MQTTVERSION_5);
    co.set_max_buffered_messages(100'000);  // default 100 throws -12 even while connected
    s.cli = std::make_unique<mqtt::async_client>(s.opts.broker_url, s.opts.client_id, co, nullptr);
  } catch (const std::exception& e) {
    spdlog::error("[mqtt] cannot create client for {}: {}", s.opts.broker_url, e.what());
    return mqtt_error(4);
  }
  std::weak_ptr<impl> w = impl_;
  s.cli->set_connected_handler([w](const std::string&) {
    if (auto p = w.lock()) p->handle_connected();
  });
  s.cli->set_connection_lost_handler([w](const std::string& cause) {
    if (auto p = w.lock()) p->handle_lost(cause);
  });
  s.cli->set_message_callback([w](mqtt::const_message_ptr m) {
    auto p = w.lock();
    if (!p || !m) return;
    mqtt_message msg{m->get_topic(), m->get_payload_str(), m->get_qos(), m->is_retained()};
    asio::post(p->ex, [p, msg = std::move(msg)]() mutable {
      if (p->on_msg) p->on_msg(std::move(msg));
    });
  });
  asio::post(s.ex, [p = impl_] { p->connect(); });
  return {};
}

void mqtt_client::publish(std::string topic, std::string payload, int qos, bool retained,
                          done_handler done) {
  auto& s = *impl_;
  if (!s.cli || s.stopping || !s.is_connected) {
    if (done) asio::post(s.ex, [done = std::move(done)] { done(mqtt_error(1)); });
    return;
  }
  auto* ctx = new impl::pending{impl_, std::move(done)};
  try {
    auto msg = mqtt::make_message(std::move(topic), std::move(payload), qos, retained);
    s.cli->publish(msg, ctx, s);
  } catch (const std::exception& e) {
    std::unique_ptr<impl::pending> owned(ctx);
    spdlog::debug("[mqtt] publish refused: {}", e.what());
    if (owned->done) asio::post(s.ex, [d = std::move(owned->done)] { d(mqtt_error(2)); });
  }
}

void mqtt_client::stop(std::chrono::milliseconds timeout, std::string final_topic,
                       std::string final_payload) {
  auto& s = *impl_;
  if (s.stopping.exchange(true)) return;
  s.retry_timer.cancel();
  if (!s.cli) return;
  try {
    if (s.cli->is_connected()) {
      // Paho C++ 1.2 signals a token's condition variable after marking it complete, so a token
      // must outlive the wait: keep them until the client itself is destroyed.
      if (!final_topic.empty()) {
        s.held_tokens.push_back(
            s.cli->publish(final_topic, final_payload.data(), final_payload.size(), 1, true));
        s.held_tokens.back()->wait_for(timeout);
      }
      s.held_tokens.push_back(s.cli->disconnect());
      s.held_tokens.back()->wait_for(timeout);
    }
  } catch (const std::exception& e) {
    spdlog::debug("[mqtt] disconnect: {}", e.what());
  }
  s.is_connected = false;
}

bool mqtt_client::connected() const noexcept { return impl_->is_connected; }
std::uint64_t mqtt_client::reconnects() const noexcept { return impl_->reconnect_count; }

}  // namespace semilab::sync
