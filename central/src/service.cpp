#include <semilab/central/service.hpp>
#include <semilab/schemas/state.hpp>
#include <semilab/schemas/topics.hpp>

#include "log.hpp"

#include <boost/asio/post.hpp>

#include <algorithm>

namespace semilab::central {

namespace asio = boost::asio;
namespace sc = semilab::schemas;

namespace {

sync::mqtt_options complete_mqtt_options(sync::mqtt_options o, const std::string& instance,
                                         const std::string& version) {
  o.client_id = instance;  // client id = instance id (broker ACLs key on it)
  o.clean_start = false;   // the broker keeps our shared-subscription session across restarts
  // Acks are QoS 1 publishes. With Paho's window of 64 unconfirmed publishes, the acks of a
  // group commit beyond the 64th waited for the next commit (Paho's send thread wakes only on a
  // new command): at 1 000 agents p99 ack latency grew to seconds (bench/fleet_bench.py).
  o.max_inflight = std::max(o.max_inflight, 4096);
  o.will_topic = sc::central_state_topic(instance);
  o.will_payload = sc::encode_presence(sc::presence{false, instance, 0, version});
  return o;
}

}  // namespace

ingest_service::ingest_service(asio::any_io_executor ex, std::unique_ptr<storage> db,
                               service_options opts)
    : ex_(ex),
      opts_(std::move(opts)),
      state_topic_(sc::central_state_topic(opts_.ingest.instance)),
      mqtt_(ex, complete_mqtt_options(opts_.mqtt, opts_.ingest.instance, opts_.version)),
      worker_(std::move(db), opts_.ingest,
              [this](std::vector<outbound_ack> acks) {
                // Worker thread, after the commit: hand over to the MQTT executor.
                asio::post(ex_, [this, acks = std::move(acks)]() mutable {
                  publish_acks(std::move(acks));
                });
              }),
      overload_decoder_(opts_.ingest.limits) {}

ingest_service::~ingest_service() {
  accepting_ = false;
  worker_.stop();
}

boost::system::error_code ingest_service::start() {
  mqtt_.add_subscription(sc::central_batch_subscription(), 1);
  // Not shared: every instance learns every agent's dictionaries (schemas/WIRE.md).
  mqtt_.add_subscription(sc::central_dictionary_subscription(), 1);
  mqtt_.set_birth(state_topic_, sc::encode_presence(sc::presence{true, opts_.ingest.instance,
                                                                 now_ns(), opts_.version}));
  mqtt_.on_message([this](sync::mqtt_message m) { on_message(std::move(m)); });
  mqtt_.on_connected([this] {
    logger("ingest")->info("connected to {} as {}; subscribed to {}", opts_.mqtt.broker_url,
                           opts_.ingest.instance, sc::central_batch_subscription());
  });
  mqtt_.on_connection_lost([this](std::string cause) {
    logger("ingest")->warn("connection to {} lost: {}", opts_.mqtt.broker_url, cause);
  });
  worker_.start();
  return mqtt_.start();
}

void ingest_service::on_message(sync::mqtt_message m) {
  if (!accepting_) return;  // shutting down: no ack, the agent resends to another instance
  inbound_message in{std::move(m.topic), std::move(m.payload), now_ns()};
  auto ec = worker_.submit(std::move(in));
  if (!ec || ec != errc::queue_full) return;
  logger("ingest")->warn("ingest queue full: refusing batch on {} (overload)", in.topic);
  if (auto a = make_overload_ack(overload_decoder_, in, opts_.ingest.instance,
                                 opts_.ingest.signer.get())) {
    std::vector<outbound_ack> acks;
    acks.push_back(std::move(*a));
    publish_acks(std::move(acks));
  }
}

void ingest_service::publish_acks(std::vector<outbound_ack> acks) {
  for (auto& a : acks) {
    auto topic = a.topic;
    mqtt_.publish(std::move(a.topic), std::move(a.payload), 1, false,
                  [topic](boost::system::error_code ec) {
                    // Not fatal: an unacked batch is resent by its agent and acked as duplicate.
                    if (ec) logger("ingest")->debug("ack on {} not delivered: {}", topic, ec.message());
                  });
  }
}

void ingest_service::async_stop(std::chrono::milliseconds timeout, std::function<void()> done) {
  if (stopped_) {
    if (done) asio::post(ex_, std::move(done));
    return;
  }
  stopped_ = true;
  accepting_ = false;
  worker_.stop();  // last commit; its acks are posted to ex_ before the step below
  asio::post(ex_, [this, timeout, done = std::move(done)] {
    mqtt_.stop(timeout, state_topic_,
               sc::encode_presence(sc::presence{false, opts_.ingest.instance, now_ns(),
                                                opts_.version}));
    logger("ingest")->info("offline state published, disconnected");
    if (done) done();
  });
}

}  // namespace semilab::central
