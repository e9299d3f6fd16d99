#include <semilab/central/agent_keys.hpp>
#include <semilab/central/ingest.hpp>
#include <semilab/schemas/signing.hpp>
#include <semilab/schemas/topics.hpp>

#include "log.hpp"

#include <pthread.h>

#include <algorithm>

namespace semilab::central {

namespace sc = semilab::schemas;

ingest_stats ingest_counters::snapshot() const noexcept {
  ingest_stats s;
  s.received = received.load();
  s.batches_stored = batches_stored.load();
  s.records_new = records_new.load();
  s.records_duplicate = records_duplicate.load();
  s.rejected = rejected.load();
  s.quarantined = quarantined.load();
  s.overloaded = overloaded.load();
  s.storage_errors = storage_errors.load();
  s.commits = commits.load();
  s.queue_depth = queue_depth.load();
  s.quota_rejected = quota_rejected.load();
  s.bad_timestamps = bad_timestamps.load();
  s.agent_mismatch = agent_mismatch.load();
  s.bad_signatures = bad_signatures.load();
  s.unapproved = unapproved.load();
  s.signed_verified = signed_verified.load();
  return s;
}

namespace {

std::span<const std::uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

outbound_ack make_ack(const sc::agent_topic_parts& topic, sc::ack a) {
  outbound_ack out;
  out.topic = sc::agent_topic(topic.site, topic.agent, sc::agent_topic_kind::ack);
  out.payload = sc::encode_ack(a);
  out.ack = std::move(a);
  return out;
}

outbound_ack make_reject(const sc::agent_topic_parts& topic, const sc::frame_header* h,
                         sc::reject_code code, std::string reason, std::string_view instance) {
  sc::ack a;
  a.agent_id = topic.agent;
  if (h) {
    a.store_epoch = h->store_epoch;
    a.batch_id = h->batch_id;
  }
  a.stored = false;
  a.code = code;
  a.retry = sc::retryable(code);
  a.reason = std::move(reason);
  a.central_instance = std::string(instance);
  return make_ack(topic, std::move(a));
}

sc::reject_code code_of(boost::system::error_code ec) {
  if (ec == sc::errc::unsupported_version || ec == sc::errc::unknown_codec)
    return sc::reject_code::unsupported;
  return sc::reject_code::invalid_frame;
}

}  // namespace

std::optional<outbound_ack> make_overload_ack(const sc::frame_decoder& decoder,
                                              const inbound_message& m, std::string_view instance) {
  auto topic = sc::parse_agent_topic(m.topic);
  if (!topic || topic->kind != sc::agent_topic_kind::batch) return std::nullopt;
  auto h = decoder.decode_header(bytes_of(m.payload));
  return make_reject(*topic, h ? &*h : nullptr, sc::reject_code::overload,
                     "central ingest queue is full", instance);
}

ingest_processor::ingest_processor(storage& db, ingest_options opts, ingest_counters& counters)
    : db_(db), opts_(std::move(opts)), counters_(counters), decoder_(opts_.limits) {}

bool ingest_processor::admit(const std::string& agent, std::size_t records, std::int64_t now) {
  if (opts_.quota_records_per_s <= 0 || opts_.quota_burst_records <= 0) return true;
  auto [it, fresh] = buckets_.try_emplace(agent, bucket{opts_.quota_burst_records, now});
  auto& b = it->second;
  if (!fresh && now > b.at_ns) {
    b.tokens = std::min(opts_.quota_burst_records,
                        b.tokens + opts_.quota_records_per_s * static_cast<double>(now - b.at_ns) / 1e9);
    b.at_ns = now;
  }
  const double n = static_cast<double>(records);
  if (b.tokens < std::min(n, opts_.quota_burst_records)) return false;
  b.tokens -= n;
  return true;
}

std::optional<std::pair<sc::reject_code, std::string>> ingest_processor::check_signature(
    const std::string& agent, std::span<const std::uint8_t> frame, const sc::frame_header& h) {
  using verdict = std::optional<std::pair<sc::reject_code, std::string>>;
  // Looked up per batch on the ingest thread's own connection: an approval or revocation made by
  // the admin CLI (another process) applies to the next batch.
  // Revoked keys count too: once an agent has had a key, it never goes back to unsigned batches.
  auto keys = list_agent_keys(db_, agent, true);
  if (!keys) return verdict{{sc::reject_code::internal, "central could not read the agent's keys"}};
  if (keys->empty()) {
    if (opts_.require_signatures)
      return verdict{{sc::reject_code::unapproved,
                      "central requires signed batches and no key is approved for this agent"}};
    return std::nullopt;  // nothing to verify against (yet): stored with its signature field
  }
  if (h.signature.empty())
    return verdict{{sc::reject_code::bad_signature, "unsigned batch from an agent with a key"}};
  auto sig = sc::parse_signature_field(h.signature);
  if (!sig) return verdict{{sc::reject_code::bad_signature, "malformed signature field"}};
  auto it = std::find_if(keys->begin(), keys->end(),
                         [&](const agent_key_row& k) { return k.key_id == sig->key_id; });
  if (it == keys->end())
    return verdict{{sc::reject_code::bad_signature,
                    "signed with key " + sig->key_id + ", which is not approved for this agent"}};
  if (it->revoked_ns)
    return verdict{{sc::reject_code::bad_signature, "signed with revoked key " + sig->key_id}};
  if (!sc::verify_header_signature(it->public_key, *sig,
                                   sc::signed_header_bytes(frame, h.body_len, h.signature.size())))
    return verdict{{sc::reject_code::bad_signature,
                    "signature by key " + sig->key_id + " does not verify"}};
  ++counters_.signed_verified;
  return std::nullopt;
}

std::vector<outbound_ack> ingest_processor::process(std::span<const inbound_message> msgs) {
  // Per message: what to answer once the transaction is over.
  struct slot {
    std::optional<sc::agent_topic_parts> topic;
    std::optional<outbound_ack> reject;  // decided before storage
    std::size_t batch_index = SIZE_MAX;  // into `batches` when the frame is valid
  };
  std::vector<slot> slots(msgs.size());
  std::vector<sc::decoded_frame> frames;
  frames.reserve(msgs.size());
  std::vector<sc::agent_topic_parts> topics;
  topics.reserve(msgs.size());
  std::vector<std::pair<std::size_t, std::size_t>> valid;  // (message index, frame index)
  std::vector<quarantine_entry> quarantined;
  std::vector<std::pair<std::string, std::size_t>> admitted;  // quota taken, refunded on failure
  auto log = logger("ingest");

  for (std::size_t i = 0; i < msgs.size(); ++i) {
    const auto& m = msgs[i];
    ++counters_.received;
    auto quarantine = [&](std::string agent, std::string reason) {
      log->warn("quarantined frame on {} ({} bytes): {}", m.topic, m.payload.size(), reason);
      quarantined.push_back(
          quarantine_entry{m.topic, std::move(agent), std::move(reason), bytes_of(m.payload),
                           m.received_ns});
    };
    auto topic = sc::parse_agent_topic(m.topic);
    if (!topic || topic->kind != sc::agent_topic_kind::batch) {
      // No agent to answer to: keep it for inspection and count it.
      quarantine("", "bad topic");
      ++counters_.rejected;
      continue;
    }
    auto frame = decoder_.decode(bytes_of(m.payload));
    if (!frame) {
      auto ec = frame.error();
      auto h = decoder_.decode_header(bytes_of(m.payload));
      std::string reason = "invalid frame: " + ec.message();
      quarantine(topic->agent, reason);
      slots[i].reject = make_reject(*topic, h ? &*h : nullptr, code_of(ec), reason, opts_.instance);
      continue;
    }
    if (frame->header.agent_id != topic->agent) {
      // The broker's ACL should have stopped this; never store records under another agent's id.
      std::string reason = "agent id in frame '" + frame->header.agent_id +
                           "' differs from the topic's '" + topic->agent + "'";
      ++counters_.agent_mismatch;
      quarantine(topic->agent, reason);
      slots[i].reject = make_reject(*topic, &frame->header, sc::reject_code::agent_mismatch,
                                    reason, opts_.instance);
      continue;
    }
    if (auto bad = check_signature(topic->agent, bytes_of(m.payload), frame->header)) {
      auto& [code, reason] = *bad;
      if (code == sc::reject_code::bad_signature) {
        // Data altered or injected between the agent and here: keep the bytes and alarm.
        ++counters_.bad_signatures;
        quarantine(topic->agent, "bad signature: " + reason);
      } else if (code == sc::reject_code::unapproved) {
        ++counters_.unapproved;
        log->warn("batch of {} refused: {}", topic->agent, reason);
      } else {
        log->error("batch of {} refused: {}", topic->agent, reason);
      }
      slots[i].reject = make_reject(*topic, &frame->header, code, reason, opts_.instance);
      continue;
    }
    if (!admit(topic->agent, frame->records.size(), opts_.clock())) {
      ++counters_.quota_rejected;
      slots[i].reject = make_reject(*topic, &frame->header, sc::reject_code::quota,
                                    "agent ingest quota exceeded; retry later", opts_.instance);
      continue;
    }
    admitted.emplace_back(topic->agent, frame->records.size());
    const std::int64_t latest = m.received_ns + opts_.ts_max_future_ns;
    for (auto& r : frame->records) {
      if ((r.ts_ns < opts_.ts_min_ns || r.ts_ns > latest) &&
          !(r.quality & sc::quality::bad_timestamp)) {
        r.quality |= sc::quality::bad_timestamp;
        ++counters_.bad_timestamps;
      }
    }
    slots[i].batch_index = frames.size();
    frames.push_back(std::move(*frame));
    topics.push_back(*topic);
    slots[i].topic = std::move(*topic);
  }

  std::vector<batch_to_store> batches;
  batches.reserve(frames.size());
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    if (slots[i].batch_index == SIZE_MAX) continue;
    auto k = slots[i].batch_index;
    batches.push_back(batch_to_store{&topics[k], &frames[k], msgs[i].payload.size(),
                                     msgs[i].received_ns});
  }

  auto stored = db_.store_group(batches, quarantined, opts_.instance);
  if (stored) {
    if (!batches.empty() || !quarantined.empty()) ++counters_.commits;
    counters_.quarantined += quarantined.size();
  } else {
    ++counters_.storage_errors;
    // Nothing was stored: give the quota back so the agents' retries are not refused for it.
    for (const auto& [agent, n] : admitted)
      if (auto it = buckets_.find(agent); it != buckets_.end())
        it->second.tokens += static_cast<double>(n);
    log->error("group commit of {} batches and {} quarantined frames failed: {}", batches.size(),
               quarantined.size(), db_.last_error());
  }

  std::vector<outbound_ack> acks;
  acks.reserve(msgs.size());
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    auto& s = slots[i];
    if (s.reject) {
      ++counters_.rejected;
      acks.push_back(std::move(*s.reject));
      continue;
    }
    if (s.batch_index == SIZE_MAX) continue;  // no agent to answer
    const auto& h = frames[s.batch_index].header;
    if (!stored) {
      ++counters_.rejected;
      acks.push_back(make_reject(*s.topic, &h, sc::reject_code::internal,
                                 "central storage error", opts_.instance));
      continue;
    }
    const auto& info = (*stored)[s.batch_index];
    ++counters_.batches_stored;
    counters_.records_new += info.new_records;
    counters_.records_duplicate += info.duplicates;
    // Redelivered records are acked as stored too: they are durably present.
    sc::ack a;
    a.agent_id = h.agent_id;
    a.store_epoch = h.store_epoch;
    a.batch_id = h.batch_id;
    a.stored = true;
    a.ranges = h.ranges;
    a.central_instance = opts_.instance;
    acks.push_back(make_ack(*s.topic, std::move(a)));
  }
  return acks;
}

// ---------------------------------------------------------------------------------------------

ingest_worker::ingest_worker(std::unique_ptr<storage> db, ingest_options opts, ack_sink sink)
    : db_(std::move(db)), opts_(std::move(opts)), sink_(std::move(sink)) {}

ingest_worker::~ingest_worker() { stop(); }

void ingest_worker::start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { run(); });
}

boost::system::error_code ingest_worker::submit(inbound_message&& m) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return make_error_code(errc::stopped);
    // A single message larger than the byte bound is still taken into an empty queue, so an
    // allowed frame size above queue_bytes cannot starve forever.
    if (queue_.size() >= opts_.queue_messages ||
        (!queue_.empty() && queued_bytes_ + m.payload.size() > opts_.queue_bytes)) {
      ++counters_.received;
      ++counters_.overloaded;
      ++counters_.rejected;
      return make_error_code(errc::queue_full);
    }
    queued_bytes_ += m.payload.size();
    queue_.push_back(std::move(m));
    counters_.queue_depth = queue_.size();
  }
  wake_.notify_one();
  return {};
}

void ingest_worker::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void ingest_worker::run() {
  pthread_setname_np(pthread_self(), "central-ingest");
  ingest_processor proc(*db_, opts_, counters_);
  std::vector<inbound_message> group;
  for (;;) {
    group.clear();
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      // Group commit: take what is queued, up to the caps; the first message always goes.
      std::size_t bytes = 0;
      while (!queue_.empty() && group.size() < opts_.group_max_batches &&
             (group.empty() || bytes + queue_.front().payload.size() <= opts_.group_max_bytes)) {
        bytes += queue_.front().payload.size();
        queued_bytes_ -= queue_.front().payload.size();
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      counters_.queue_depth = queue_.size();
    }
    // No exception may leave this thread (std::terminate); the processor reports by value, so
    // only allocation failure can throw here: log it and answer nothing (agents resend).
    try {
      auto acks = proc.process(group);
      if (sink_ && !acks.empty()) sink_(std::move(acks));
    } catch (const std::exception& e) {
      logger("ingest")->critical("ingest group of {} dropped unacked: {}", group.size(), e.what());
    }
  }
}

}  // namespace semilab::central
