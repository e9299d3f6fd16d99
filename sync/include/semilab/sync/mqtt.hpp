#pragma once
// Thin MQTT 5 client over Paho C++ (async_client), shared by the agent's sync engine and central.
// Paho runs its callbacks on its own thread; this wrapper only posts them to the executor given at
// construction (a strand), so user callbacks never run on Paho's thread and never block it.
// No exception escapes: Paho's exceptions become error codes.
#include <boost/asio/any_io_executor.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace semilab::sync {

struct mqtt_options {
  std::string broker_url = "tcp://127.0.0.1:1883";  // tcp://host:port or ssl://host:port
  std::string client_id;
  std::string username;
  std::string password;  // never logged
  // Last Will: published retained by the broker if the connection dies.
  std::string will_topic;
  std::string will_payload;
  // Persistent session: QoS 1 messages for us (acks) are queued by the broker while we are away.
  bool clean_start = false;
  std::uint32_t session_expiry_s = 7 * 24 * 3600;
  std::chrono::seconds keep_alive{20};
  std::chrono::seconds connect_timeout{5};
  std::chrono::milliseconds min_retry{100};  // reconnect backoff: doubles from here, jittered
  std::chrono::milliseconds max_retry{30'000};
  int max_inflight = 64;       // QoS 1 publishes awaiting PUBACK
  // TLS, used when broker_url is ssl:// (or mqtts://). The broker's certificate is always
  // verified against `ca_file` (PEM; empty = the system's trust store); `verify_hostname` also
  // checks that it names the host of broker_url. A client certificate and key (PEM) are sent
  // when given (DESIGN-NOTES: CN = client id = agent id).
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string key_password;  // never logged
  bool verify_hostname = true;
};

// Whether `url` asks for TLS (ssl://, mqtts://).
bool is_tls_url(const std::string& url) noexcept;

struct mqtt_message {
  std::string topic;
  std::string payload;
  int qos = 0;
  bool retained = false;
};

class mqtt_client {
 public:
  using done_handler = std::function<void(boost::system::error_code)>;

  mqtt_client(boost::asio::any_io_executor ex, mqtt_options opts);
  ~mqtt_client();
  mqtt_client(const mqtt_client&) = delete;
  mqtt_client& operator=(const mqtt_client&) = delete;

  // Handlers run on the executor. Set them before start().
  void on_connected(std::function<void()> h);
  void on_connection_lost(std::function<void(std::string cause)> h);
  void on_message(std::function<void(mqtt_message)> h);

  // Subscriptions are (re)made on every connect, before on_connected runs.
  void add_subscription(std::string filter, int qos);
  // Retained message published right after each connect, before on_connected (birth message).
  void set_birth(std::string topic, std::string payload);

  // Connects in the background and keeps reconnecting with backoff until stop().
  boost::system::error_code start();
  // Completion (on the executor): success once the broker acknowledged (QoS 1) or the message
  // was written (QoS 0). A broker PUBACK is not an application acknowledgement.
  void publish(std::string topic, std::string payload, int qos, bool retained, done_handler done);
  // Publishes `final_topic`/`final_payload` retained if connected (e.g. an offline state), then
  // disconnects cleanly; waits at most `timeout`. Safe to call twice.
  void stop(std::chrono::milliseconds timeout, std::string final_topic = {},
            std::string final_payload = {});

  bool connected() const noexcept;
  std::uint64_t reconnects() const noexcept;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace semilab::sync
