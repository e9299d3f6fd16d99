#pragma once
// Ingest: validate batch frames, store them in group-committed transactions, make the acks.
//
// Thread model: MQTT callbacks run on the io_context (the mqtt_client's strand) and only call
// ingest_worker::submit(), which never blocks: it queues or refuses (overload). ONE named worker
// thread ("central-ingest") owns the read-write store: it drains what is queued (up to a group
// cap), commits it in one transaction, and only then hands the acks to the ack sink. Acks of
// stored batches therefore never precede their durable commit (synchronous=FULL).
#include <semilab/central/error.hpp>
#include <semilab/central/storage.hpp>
#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/frame.hpp>
#include <semilab/schemas/signing.hpp>
#include <semilab/schemas/topics.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace semilab::central {

struct ingest_options {
  std::string instance = "central-1";  // written to the ledger and into every ack
  schemas::frame_limits limits;
  std::size_t queue_messages = 1024;
  std::size_t queue_bytes = 256u << 20;
  std::size_t group_max_batches = 256;
  std::size_t group_max_bytes = 64u << 20;
  // Per-agent ingest quota (token bucket on records): `quota_records_per_s` refill, up to
  // `quota_burst_records`; 0 = unlimited. A batch is admitted when the bucket holds at least
  // min(its records, burst) and then takes all its records (the bucket may go into debt, so a
  // batch larger than the burst still passes when the bucket is full). Otherwise: rejected with
  // the retryable `quota` code, not stored, not quarantined.
  double quota_records_per_s = 0;
  double quota_burst_records = 0;
  // Timestamp sanity: a record older than `ts_min_ns` or later than its receipt plus
  // `ts_max_future_ns` is stored with quality bit bad_timestamp set (flagged, never rejected).
  std::int64_t ts_min_ns = 946'684'800'000'000'000;  // 2000-01-01T00:00:00Z
  std::int64_t ts_max_future_ns = 300'000'000'000;    // 5 min of clock skew
  std::function<std::int64_t()> clock = [] { return now_ns(); };  // quota refill clock
  // Batch signatures (schemas/signing.hpp). An agent with a key (agent_keys.hpp; approved or
  // since revoked) must sign every batch with one of its approved keys: an unsigned batch, an
  // unknown or revoked key id or a wrong signature is quarantined, counted (bad_signatures) and
  // rejected `bad_signature`, not retryable. Without an approved key: accepted as is, unless `require_signatures`, then
  // rejected `unapproved` (retryable: the agent waits for an admin's approval).
  bool require_signatures = false;
  // Central's own key ([central] signing_key_file): every ack is signed with it (schemas/ack.hpp)
  // so that agents pinning its public key can tell central's acks from forged ones. Null = unsigned.
  std::shared_ptr<const schemas::signing_key> signer;
  // Audit trail (audit.hpp): the worker appends a `batch.store` entry per ledger row of this
  // instance at most this often, when its queue runs dry, at start and before it stops.
  bool audit = true;
  std::chrono::milliseconds audit_interval{1000};
};

struct inbound_message {
  std::string topic;
  std::string payload;  // the frame as received
  std::int64_t received_ns = 0;
};

struct outbound_ack {
  std::string topic;    // semilab/v1/{site}/{agent}/ack
  std::string payload;  // schemas::encode_ack
  schemas::ack ack;     // what payload encodes (for logs and tests)
  // Not an ack: a dictionary request to the agent's cmd topic (payload; `ack` unused).
  bool dictionary_request = false;
};

// A consistent-enough copy of the counters (each read atomically, not all at one instant).
struct ingest_stats {
  std::uint64_t received = 0;           // messages handed to ingest
  std::uint64_t batches_stored = 0;     // batches acked as stored (redeliveries included)
  std::uint64_t records_new = 0;
  std::uint64_t records_duplicate = 0;
  std::uint64_t rejected = 0;           // rejection acks made (all codes) + unackable messages
  std::uint64_t quarantined = 0;        // quarantine rows committed
  std::uint64_t overloaded = 0;         // refused because the queue was full
  std::uint64_t storage_errors = 0;     // failed group commits
  std::uint64_t commits = 0;            // successful group commits
  std::uint64_t queue_depth = 0;        // messages waiting now
  std::uint64_t quota_rejected = 0;     // batches refused with the `quota` code
  std::uint64_t bad_timestamps = 0;     // records stored with the bad_timestamp flag
  std::uint64_t agent_mismatch = 0;     // frames whose agent id differs from their topic's
  std::uint64_t bad_signatures = 0;     // frames refused for their signature (bad_signature)
  std::uint64_t unapproved = 0;         // frames refused: signatures required, no key approved
  std::uint64_t signed_verified = 0;    // batches whose signature verified
  std::uint64_t audit_entries = 0;      // batch.store audit entries appended by this worker
  std::uint64_t audit_errors = 0;       // failed audit appends (retried at the next one)
  // zstd dictionaries (schemas/WIRE.md "Dictionaries"): received and stored, requested from an
  // agent (cmd topic), and batches waiting here for theirs now.
  std::uint64_t dictionaries_stored = 0;
  std::uint64_t dictionary_requests = 0;
  std::uint64_t held_for_dictionary = 0;
};

struct ingest_counters {
  std::atomic<std::uint64_t> received{0}, batches_stored{0}, records_new{0}, records_duplicate{0},
      rejected{0}, quarantined{0}, overloaded{0}, storage_errors{0}, commits{0}, queue_depth{0},
      quota_rejected{0}, bad_timestamps{0}, agent_mismatch{0}, bad_signatures{0}, unapproved{0},
      signed_verified{0}, audit_entries{0}, audit_errors{0}, dictionaries_stored{0},
      dictionary_requests{0}, held_for_dictionary{0};
  ingest_stats snapshot() const noexcept;
};

// The ingest logic without threads or MQTT: one call = one transaction. Used by ingest_worker
// and directly by tests. Not thread-safe (owns a frame_decoder; uses the store's connection).
class ingest_processor {
 public:
  ingest_processor(storage& db, ingest_options opts, ingest_counters& counters);

  // Validates every message, stores the valid batches and the quarantine rows of invalid ones in
  // ONE transaction, and returns the acks to publish, in message order. A message whose topic names
  // no agent gets no ack (it is quarantined and counted). If the commit fails, every valid batch
  // gets a retryable `internal` rejection and nothing of the group is stored.
  std::vector<outbound_ack> process(std::span<const inbound_message> msgs);

  const std::string& last_store_error() const noexcept { return db_.last_error(); }

 private:
  storage& db_;
  ingest_options opts_;
  ingest_counters& counters_;
  schemas::frame_decoder decoder_;
  struct bucket {
    double tokens = 0;
    std::int64_t at_ns = 0;
  };
  std::unordered_map<std::string, bucket> buckets_;  // per agent id
  bool admit(const std::string& agent, std::size_t records, std::int64_t now);
  // Empty when the frame's signature is acceptable; otherwise the code and the reason.
  std::optional<std::pair<schemas::reject_code, std::string>> check_signature(
      const std::string& agent, std::span<const std::uint8_t> frame,
      const schemas::frame_header& h);

  // Dictionaries (schemas/WIRE.md "Dictionaries"). A batch naming a dictionary central has not
  // got is held here (never rejected for it), the agent is asked for it on its cmd topic, and
  // the batch is processed when the dictionary arrives on the agent's dict topic. Bounded: past
  // the bounds the oldest held batch is let go unacked (its agent resends it after its ack
  // timeout).
  static constexpr std::size_t kMaxHeldBatches = 1024;
  static constexpr std::size_t kMaxHeldBytes = 64u << 20;
  struct held_batch {
    inbound_message msg;
    std::string agent;
    std::uint64_t store_epoch = 0, batch_id = 0;
    std::uint32_t dict_id = 0;
  };
  std::deque<held_batch> held_;
  std::size_t held_bytes_ = 0;
  std::map<std::pair<std::string, std::uint32_t>, std::int64_t> requested_;  // last request, ns
  std::vector<outbound_ack> dictionary_requests_;  // made while processing, sent with the acks
  // Adds the stored dictionary of (agent, id) to the decoder; false when it is not stored.
  bool load_dictionary(const std::string& agent, std::uint32_t id);
  void hold_for_dictionary(const inbound_message& m, const schemas::agent_topic_parts& topic,
                           const schemas::frame_header& h);
  // A message on an agent's dict topic: validated, stored, added; the batches it releases are
  // appended to `released`.
  void take_dictionary(const inbound_message& m, const schemas::agent_topic_parts& topic,
                       std::vector<inbound_message>& released);
};

// The rejection ack for a message refused before the worker saw it (queue full): `overload`,
// retryable. Empty when the topic names no agent. Decodes the frame header only.
std::optional<outbound_ack> make_overload_ack(const schemas::frame_decoder& decoder,
                                              const inbound_message& m, std::string_view instance,
                                              const schemas::signing_key* signer = nullptr);

// The worker thread and its bounded queue.
class ingest_worker {
 public:
  // Called on the worker thread after each group commit (or failed commit) with that group's
  // acks. It must not block for long: post to the MQTT strand and return.
  using ack_sink = std::function<void(std::vector<outbound_ack>)>;

  ingest_worker(std::unique_ptr<storage> db, ingest_options opts, ack_sink sink);
  ~ingest_worker();  // stop()
  ingest_worker(const ingest_worker&) = delete;
  ingest_worker& operator=(const ingest_worker&) = delete;

  void start();
  // Thread-safe, never blocks on storage. Moves from `m` only on success. errc::queue_full
  // (count or byte bound reached) or errc::stopped: `m` is left intact and the caller answers it
  // (make_overload_ack) or drops it.
  boost::system::error_code submit(inbound_message&& m);
  // Stops taking messages, commits everything already queued, hands over its acks, joins.
  // Idempotent; call from any thread but the worker.
  void stop();

  ingest_stats stats() const noexcept { return counters_.snapshot(); }
  ingest_counters& counters() noexcept { return counters_; }
  const ingest_options& options() const noexcept { return opts_; }

 private:
  void run();

  std::unique_ptr<storage> db_;
  ingest_options opts_;
  ack_sink sink_;
  ingest_counters counters_;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<inbound_message> queue_;  // guarded by mutex_
  std::size_t queued_bytes_ = 0;       // guarded by mutex_
  bool stopping_ = false;              // guarded by mutex_
  std::thread thread_;
};

}  // namespace semilab::central
