#pragma once
// The sync engine: turns unsent outbox records into batch frames, publishes them at QoS 1,
// resends a batch whose central ack has not come after a timeout or a reconnect, and deletes
// records only when central's ack arrives. Everything runs on one strand; the outbox writer and
// Paho only post onto it.
#include <semilab/schemas/signing.hpp>
#include <semilab/sync/mqtt.hpp>
#include <semilab/sync/outbox.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace semilab::sync {

struct engine_options {
  std::string agent_id;
  std::string site;
  std::size_t batch_max_records = 2000;
  std::size_t max_inflight_batches = 4;
  // Blob chunks (class blob, about 4 KiB each) in one batch at most; 0 = derived from the
  // bandwidth cap (a quarter of a second of it, at least one chunk) or 64 without a cap. With the
  // class order of the outbox read, this bounds what a large file makes a newer event wait for:
  // one small batch, never the file. Blob batches also leave one in-flight slot free.
  std::size_t blob_batch_max_records = 0;
  std::chrono::milliseconds ack_timeout{10'000};
  std::chrono::milliseconds linger{100};  // wait this long for more records before a small batch
  int zstd_level = 3;
  // zstd dictionary (schemas/WIRE.md "Dictionaries"): trained on a worker thread from this many
  // recent telemetry records, saved in the outbox, announced on the dict topic and used for
  // every batch from then on; retrained after `dict_retrain`. 0 = no dictionary.
  std::size_t dict_train_records = 0;
  std::size_t dict_bytes = 16u << 10;
  std::size_t dict_sample_records = 16;  // records per training sample (a small live batch)
  std::chrono::seconds dict_retrain{std::chrono::hours(24)};
  // Bandwidth caps (token buckets; 0 = no cap). Resends count too: they use the same link.
  double max_bytes_per_s = 0;
  double max_batches_per_s = 0;
  std::string version;  // software version for the birth message
  // Shared secret authenticating commands on the cmd topic (HMAC-SHA256, schemas/command.hpp);
  // empty = every command is refused. Never logged.
  std::string command_key;
  // Ed25519 key every batch is signed with (schemas/signing.hpp); null = unsigned batches.
  std::shared_ptr<const schemas::signing_key> signer;
  // Pinned public keys of central (the key every instance shares): when not empty, an ack or a
  // command not signed by one of them is ignored, logged and counted (acks_refused,
  // commands_refused), and the command MAC is no longer looked at.
  std::vector<schemas::ed25519_public_key> central_keys;
};

struct engine_stats {
  std::uint64_t batches_sent = 0;
  std::uint64_t batches_resent = 0;
  std::uint64_t batches_acked = 0;
  std::uint64_t batches_rejected = 0;
  std::uint64_t records_acked = 0;
  std::uint64_t bytes_published = 0;  // batch payload bytes
  std::uint64_t inflight = 0;
  bool broker_connected = false;
  std::int64_t last_ack_ns = 0;  // wall clock of the last central ack, 0 = never
  std::uint64_t rate_limited = 0;  // times sending waited for the bandwidth cap
  bool central_online = true;      // false while every known central instance says offline
  // Replays (cmd topic): accepted and refused commands, records and batches re-sent from the
  // retention window (counted here, not in batches_sent).
  std::uint64_t commands_accepted = 0;
  std::uint64_t commands_refused = 0;
  std::uint64_t records_replayed = 0;
  std::uint64_t replay_batches = 0;
  std::uint64_t acks_refused = 0;  // unsigned or badly signed acks ignored (central_keys)
  // Dictionaries: the one in use (0 = none), how many were trained, and how many were published
  // on the dict topic (announcements and answers to central's requests).
  std::uint32_t dictionary_id = 0;
  std::uint64_t dictionaries_trained = 0;
  std::uint64_t dictionaries_published = 0;
};

class engine {
 public:
  // `ex` must be a strand (or a single-threaded executor). The outbox must outlive the engine.
  engine(boost::asio::any_io_executor ex, outbox& box, engine_options opts, mqtt_options mqtt);
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  boost::system::error_code start();
  // Stops publishing, publishes the offline state and disconnects. Records stay in the outbox.
  void stop();

  // Thread-safe snapshot.
  engine_stats stats() const;

  // Publishes `payload` retained at QoS 1 on `topic` (the agent's health topic) on the engine's
  // strand when connected; dropped otherwise (the caller republishes periodically). Thread-safe.
  void publish_retained(std::string topic, std::string payload);

  // Replaces the pinned central keys (engine_options::central_keys; SIGHUP reload). Every ack
  // and command handled after the strand runs this is checked against `keys`; the MQTT session,
  // the batches in flight and the outbox are untouched (a batch whose ack was refused under the
  // old keys is resent after ack_timeout and acked then). Thread-safe.
  void set_central_keys(std::vector<schemas::ed25519_public_key> keys);

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace semilab::sync
