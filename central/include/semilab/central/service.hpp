#pragma once
// The ingest service: the MQTT client (shared subscription, presence) wired to the ingest worker.
//
// Thread model: MQTT handlers run on `ex` (give a strand, or a single-threaded io_context); they
// never block: a message is queued to the worker or, when the queue is full, answered at once with
// a retryable `overload` rejection. The worker posts each group's acks back to `ex`, where they
// are published (QoS 1, not retained) only after the group's commit.
// Lifetime: destroy the service only after the io_context stopped running its handlers.
#include <semilab/central/ingest.hpp>
#include <semilab/central/storage.hpp>
#include <semilab/sync/mqtt.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace semilab::central {

struct service_options {
  ingest_options ingest;
  // broker_url, username, password, keep_alive, connect_timeout are used; client id, Last Will,
  // clean_start=false are set by the service from ingest.instance.
  sync::mqtt_options mqtt;
  std::string version;  // software version in the presence messages
};

class ingest_service {
 public:
  ingest_service(boost::asio::any_io_executor ex, std::unique_ptr<storage> db, service_options opts);
  ~ingest_service();
  ingest_service(const ingest_service&) = delete;
  ingest_service& operator=(const ingest_service&) = delete;

  // Starts the worker and connects in the background (reconnecting until stopped).
  boost::system::error_code start();

  // Clean shutdown, in this order: no new messages; the worker commits what is queued and its acks
  // are handed to the client; the retained offline state is published; the client disconnects
  // (each MQTT step waits at most `timeout`). `done` runs on `ex` afterwards. Call on `ex`'s
  // thread (it joins the worker: at most one last commit). Idempotent.
  void async_stop(std::chrono::milliseconds timeout, std::function<void()> done);

  ingest_stats stats() const noexcept { return worker_.stats(); }
  bool connected() const noexcept { return mqtt_.connected(); }
  const std::string& instance() const noexcept { return opts_.ingest.instance; }

 private:
  void on_message(sync::mqtt_message m);
  void publish_acks(std::vector<outbound_ack> acks);

  boost::asio::any_io_executor ex_;
  service_options opts_;
  std::string state_topic_;
  sync::mqtt_client mqtt_;
  ingest_worker worker_;
  schemas::frame_decoder overload_decoder_;  // used on ex_ only (header decode of refused frames)
  std::atomic<bool> accepting_{true};
  bool stopped_ = false;
};

}  // namespace semilab::central
