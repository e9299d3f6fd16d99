#include <semilab/central/agent_keys.hpp>
#include <semilab/central/audit.hpp>
#include <semilab/central/blobs.hpp>
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
  s.audit_entries = audit_entries.load();
  s.audit_errors = audit_errors.load();
  s.dictionaries_stored = dictionaries_stored.load();
  s.dictionary_requests = dictionary_requests.load();
  s.held_for_dictionary = held_for_dictionary.load();
  return s;
}

namespace {

std::span<const std::uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

outbound_ack make_ack(const sc::agent_topic_parts& topic, sc::ack a,
                      const sc::signing_key* signer) {
  if (signer) sc::sign_ack(a, *signer);
  outbound_ack out;
  out.topic = sc::agent_topic(topic.site, topic.agent, sc::agent_topic_kind::ack);
  out.payload = sc::encode_ack(a);
  out.ack = std::move(a);
  return out;
}

outbound_ack make_reject(const sc::agent_topic_parts& topic, const sc::frame_header* h,
                         sc::reject_code code, std::string reason, std::string_view instance,
                         const sc::signing_key* signer) {
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
  return make_ack(topic, std::move(a), signer);
}

sc::reject_code code_of(boost::system::error_code ec) {
  if (ec == sc::errc::unsupported_version || ec == sc::errc::unknown_codec)
    return sc::reject_code::unsupported;
  return sc::reject_code::invalid_frame;
}

}  // namespace

std::optional<outbound_ack> make_overload_ack(const sc::frame_decoder& decoder,
                                              const inbound_message& m, std::string_view instance,
                                              const sc::signing_key* signer) {
  auto topic = sc::parse_agent_topic(m.topic);
  if (!topic || topic->kind != sc::agent_topic_kind::batch) return std::nullopt;
  auto h = decoder.decode_header(bytes_of(m.payload));
  return make_reject(*topic, h ? &*h : nullptr, sc::reject_code::overload,
                     "central ingest queue is full", instance, signer);
}

ingest_processor::ingest_processor(storage& db, ingest_options opts, ingest_counters& counters)
    : db_(db), opts_(std::move(opts)), counters_(counters), decoder_(opts_.limits) {}

bool ingest_processor::load_dictionary(const std::string& agent, std::uint32_t id) {
  if (decoder_.has_dictionary(agent, id)) return true;
  const sql_param p[] = {sql_param{true, 0, agent, false},
                         sql_param{false, static_cast<std::int64_t>(id), {}, false}};
  auto rows = db_.query("SELECT bytes FROM dictionaries WHERE agent_id = ?1 AND dict_id = ?2", p);
  if (!rows || rows->empty() || (*rows)[0].empty() || !(*rows)[0][0]) return false;
  const std::string& hex = *(*rows)[0][0];
  std::vector<std::uint8_t> bytes;
  bytes.reserve(hex.size() / 2);
  auto nibble = [](char c) {
    return static_cast<std::uint8_t>(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
  };
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    bytes.push_back(static_cast<std::uint8_t>(nibble(hex[i]) << 4 | nibble(hex[i + 1])));
  auto d = sc::make_dictionary(bytes);
  return d && d->id == id && !decoder_.add_dictionary(agent, *d);
}

void ingest_processor::hold_for_dictionary(const inbound_message& m,
                                           const sc::agent_topic_parts& topic,
                                           const sc::frame_header& h) {
  auto log = logger("ingest");
  // A resend of a batch already waiting adds nothing: one copy is enough.
  bool known = std::any_of(held_.begin(), held_.end(), [&](const held_batch& b) {
    return b.agent == topic.agent && b.store_epoch == h.store_epoch && b.batch_id == h.batch_id;
  });
  if (!known) {
    while (!held_.empty() &&
           (held_.size() >= kMaxHeldBatches || held_bytes_ + m.payload.size() > kMaxHeldBytes)) {
      log->warn("batch {} of {} waited too long for dictionary {}: let go unacked (resent later)",
                held_.front().batch_id, held_.front().agent, held_.front().dict_id);
      held_bytes_ -= held_.front().msg.payload.size();
      held_.pop_front();
    }
    held_.push_back(held_batch{m, topic.agent, h.store_epoch, h.batch_id, h.dict_id});
    held_bytes_ += m.payload.size();
    counters_.held_for_dictionary = held_.size();
  }
  // Ask the agent, at most every 2 s per dictionary (its resends would ask again otherwise).
  const auto now = opts_.clock();
  auto& last = requested_[{topic.agent, h.dict_id}];
  if (last != 0 && now - last < 2'000'000'000) return;
  last = now;
  ++counters_.dictionary_requests;
  log->info("batch {} of {} needs dictionary {}: held, dictionary requested", h.batch_id,
            topic.agent, h.dict_id);
  outbound_ack req;
  req.topic = sc::agent_topic(topic.site, topic.agent, sc::agent_topic_kind::cmd);
  req.payload = sc::encode_dictionary_request({topic.agent, h.dict_id});
  req.dictionary_request = true;
  dictionary_requests_.push_back(std::move(req));
}

void ingest_processor::take_dictionary(const inbound_message& m, const sc::agent_topic_parts& topic,
                                       std::vector<inbound_message>& released) {
  auto log = logger("ingest");
  auto d = sc::make_dictionary(bytes_of(m.payload));
  if (!d) {
    log->warn("message on {} ({} bytes) is not a zstd dictionary; ignored", m.topic, m.payload.size());
    return;
  }
  // Keyed by the agent of the topic (the broker's ACL lets only that agent write it).
  if (auto ec = decoder_.add_dictionary(topic.agent, *d)) {
    log->warn("dictionary {} of {} refused: {}", d->id, topic.agent, ec.message());
    return;
  }
  const sql_param p[] = {sql_param{true, 0, topic.agent, false},
                         sql_param{false, static_cast<std::int64_t>(d->id), {}, false},
                         sql_param{true, 0, sc::to_hex(d->bytes), false},
                         sql_param{false, m.received_ns, {}, false}};
  auto n = db_.execute(
      "INSERT INTO dictionaries(agent_id, dict_id, bytes, received_ns) VALUES(?1, ?2, ?3, ?4) "
      "ON CONFLICT(agent_id, dict_id) DO NOTHING",
      p);
  if (!n) {
    // Still usable from memory now; after a restart central asks the agent again.
    log->error("storing dictionary {} of {} failed: {}", d->id, topic.agent, db_.last_error());
  } else if (*n > 0) {
    ++counters_.dictionaries_stored;
    log->info("dictionary {} of {} stored ({} bytes)", d->id, topic.agent, d->bytes.size());
  }
  requested_.erase({topic.agent, d->id});
  for (auto it = held_.begin(); it != held_.end();) {
    if (it->agent == topic.agent && it->dict_id == d->id) {
      held_bytes_ -= it->msg.payload.size();
      released.push_back(std::move(it->msg));
      it = held_.erase(it);
    } else {
      ++it;
    }
  }
  counters_.held_for_dictionary = held_.size();
}

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
  // Dictionaries first: the batches of the same group (and those held for them) need them.
  bool dict_msgs = false;
  for (const auto& m : msgs) {
    auto t = sc::parse_agent_topic(m.topic);
    dict_msgs |= t && t->kind == sc::agent_topic_kind::dict;
  }
  if (dict_msgs) {
    std::vector<inbound_message> rest;
    std::vector<inbound_message> released;
    for (const auto& m : msgs) {
      auto t = sc::parse_agent_topic(m.topic);
      if (t && t->kind == sc::agent_topic_kind::dict) take_dictionary(m, *t, released);
      else rest.push_back(m);
    }
    for (auto& r : released) rest.push_back(std::move(r));
    if (rest.empty()) {
      std::vector<outbound_ack> out;
      out.swap(dictionary_requests_);
      return out;
    }
    return process(rest);
  }
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
    if (!frame && frame.error() == sc::errc::unknown_dictionary) {
      // Compressed with a dictionary of the agent's that is not loaded: from the store, or
      // fetched from the agent while the batch waits here (never rejected for it).
      auto h = decoder_.decode_header(bytes_of(m.payload));
      if (h && load_dictionary(topic->agent, h->dict_id)) {
        frame = decoder_.decode(bytes_of(m.payload));
      } else if (h) {
        hold_for_dictionary(m, *topic, *h);
        continue;
      }
    }
    if (!frame) {
      auto ec = frame.error();
      auto h = decoder_.decode_header(bytes_of(m.payload));
      std::string reason = "invalid frame: " + ec.message();
      quarantine(topic->agent, reason);
      slots[i].reject = make_reject(*topic, h ? &*h : nullptr, code_of(ec), reason, opts_.instance,
                                    opts_.signer.get());
      continue;
    }
    if (frame->header.agent_id != topic->agent) {
      // The broker's ACL should have stopped this; never store records under another agent's id.
      std::string reason = "agent id in frame '" + frame->header.agent_id +
                           "' differs from the topic's '" + topic->agent + "'";
      ++counters_.agent_mismatch;
      quarantine(topic->agent, reason);
      slots[i].reject = make_reject(*topic, &frame->header, sc::reject_code::agent_mismatch,
                                    reason, opts_.instance, opts_.signer.get());
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
      slots[i].reject =
          make_reject(*topic, &frame->header, code, reason, opts_.instance, opts_.signer.get());
      continue;
    }
    if (!admit(topic->agent, frame->records.size(), opts_.clock())) {
      ++counters_.quota_rejected;
      slots[i].reject = make_reject(*topic, &frame->header, sc::reject_code::quota,
                                    "agent ingest quota exceeded; retry later", opts_.instance,
                                    opts_.signer.get());
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
  std::vector<std::string> key_ids(frames.size());  // borrowed by `batches`
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    if (slots[i].batch_index == SIZE_MAX) continue;
    auto k = slots[i].batch_index;
    batches.push_back(batch_to_store{&topics[k], &frames[k], msgs[i].payload.size(),
                                     msgs[i].received_ns});
    // Kept so the batch can be re-verified later (`audit verify-batches`), even when it was
    // accepted before its agent's key was approved.
    const auto& h = frames[k].header;
    if (!h.signature.empty()) {
      if (auto sig = sc::parse_signature_field(h.signature)) {
        key_ids[k] = std::move(sig->key_id);
        batches.back().key_id = key_ids[k];
        batches.back().signed_header =
            sc::signed_header_bytes(bytes_of(msgs[i].payload), h.body_len, h.signature.size());
      }
    }
  }

  auto stored = db_.store_group(batches, quarantined, opts_.instance);
  // Export files (blobs.hpp): reassembled before the ack; on failure nothing is acked and the
  // agents resend (absorbing again is harmless).
  if (stored && has_blob_records(batches)) {
    std::string why;
    if (auto b = absorb_blobs(db_, batches, now_ns(), why); !b) {
      log->error("export files of {} batch(es) not absorbed: {}", batches.size(), why);
      stored = b.error();
    }
  }
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
                                 "central storage error", opts_.instance, opts_.signer.get()));
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
    acks.push_back(make_ack(*s.topic, std::move(a), opts_.signer.get()));
  }
  for (auto& r : dictionary_requests_) acks.push_back(std::move(r));
  dictionary_requests_.clear();
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
  // Audit trail: one entry per stored batch, appended from the batch ledger (audit.hpp) at most
  // every audit_interval and when the queue runs dry, so it costs no transaction per group.
  bool audit_due = opts_.audit;
  auto last_audit = std::chrono::steady_clock::now();
  auto audit = [&] {
    if (!opts_.audit) return;
    try {
      for (;;) {
        auto n = audit_catch_up(*db_, opts_.instance);
        if (!n) {
          ++counters_.audit_errors;
          logger("ingest")->error("audit trail append failed: {}", db_->last_error());
          break;
        }
        counters_.audit_entries += *n;
        if (*n == 0) break;
      }
    } catch (const std::exception& e) {
      logger("ingest")->error("audit trail append failed: {}", e.what());
    }
    audit_due = false;
    last_audit = std::chrono::steady_clock::now();
  };
  for (;;) {
    group.clear();
    {
      std::unique_lock lock(mutex_);
      if (audit_due) {
        if (!wake_.wait_for(lock, opts_.audit_interval,
                            [this] { return stopping_ || !queue_.empty(); })) {
          lock.unlock();
          audit();
          continue;
        }
      } else {
        wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      }
      if (queue_.empty()) {  // stopping and drained
        lock.unlock();
        if (audit_due) audit();
        return;
      }
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
    audit_due = opts_.audit;
    if (audit_due && std::chrono::steady_clock::now() - last_audit >= opts_.audit_interval) audit();
  }
}

}  // namespace semilab::central
