#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/command.hpp>
#include <semilab/schemas/state.hpp>
#include <semilab/schemas/topics.hpp>
#include <semilab/sync/engine.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <pthread.h>

#include <deque>
#include <thread>
#include <future>
#include <map>
#include <mutex>
#include <set>

namespace semilab::sync {

namespace asio = boost::asio;
using boost::system::error_code;
using clock = std::chrono::steady_clock;

namespace {
std::int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

// Token bucket that may go into debt by one message: a message is sent when the balance is not
// negative and then charged in full, so the long-run rate is exact whatever the message sizes,
// and a burst is at most one message plus `burst` seconds of rate.
class token_bucket {
 public:
  token_bucket(double rate, double burst_s) : rate_(rate), cap_(rate * burst_s) {}
  bool enabled() const { return rate_ > 0; }
  // Time until the balance is not negative (zero when it is now).
  clock::duration wait(clock::time_point now) {
    refill(now);
    if (!enabled() || tokens_ >= 0) return clock::duration::zero();
    return std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(-tokens_ / rate_));
  }
  void charge(double amount, clock::time_point now) {
    if (!enabled()) return;
    refill(now);
    tokens_ -= amount;
  }

 private:
  void refill(clock::time_point now) {
    if (last_ != clock::time_point{})
      tokens_ = std::min(cap_, tokens_ + rate_ * std::chrono::duration<double>(now - last_).count());
    last_ = now;
  }
  double rate_;
  double cap_;
  double tokens_ = 0;
  clock::time_point last_{};
};

struct engine::impl : std::enable_shared_from_this<impl> {
  static constexpr int kPermanentAttempts = 3;
  static constexpr std::chrono::seconds kRescanIdle{5};

  struct inflight_batch {
    std::string frame;
    std::vector<schemas::seq_range> ranges;
    clock::time_point sent;
    std::size_t records = 0;
    int rejections = 0;  // permanent rejections so far
    bool replay = false;  // re-sent from the retention window on a replay command
    std::uint32_t dict_id = 0;  // dictionary the frame was compressed with (kept until acked)
  };
  // A verified replay command being served: retained records [next, to] still to re-send.
  struct replay_job {
    std::uint64_t next, to;
    std::uint64_t from;
    std::uint64_t sent = 0;
  };

  asio::any_io_executor ex;
  outbox& box;
  engine_options opts;
  mqtt_client mqtt;
  schemas::frame_encoder encoder;
  asio::steady_timer linger_timer;
  asio::steady_timer tick_timer;
  std::string batch_topic, ack_topic, state_topic, cmd_topic;

  class_cursors cursors{};
  std::uint64_t epoch = 0;  // store epoch of the records in flight
  token_bucket bytes_bucket;
  token_bucket batches_bucket;
  asio::steady_timer rate_timer;
  bool rate_armed = false;
  clock::time_point last_rescan = clock::now();
  // Central instances seen on their retained state topics, and which of them are online.
  std::set<std::string> centrals_seen, centrals_online;
  bool reading = false;
  // A batch just read is being encoded (on the strand): it takes an in-flight slot already, so
  // the read of the next one, started meanwhile, respects the window.
  bool encoding = false;
  bool linger_armed = false;
  bool stopped = false;
  std::uint64_t next_batch_id;
  std::map<std::uint64_t, inflight_batch> inflight;
  std::deque<replay_job> replays;
  bool replay_reading = false;
  std::map<std::string, std::int64_t> seen_nonces;  // accepted commands within the window

  // Dictionaries: those stored in the outbox (by id), the one the encoder uses, the telemetry
  // collected for the next training, and the worker thread that trains.
  std::string dict_topic;
  std::map<std::uint32_t, std::shared_ptr<const schemas::zstd_dictionary>> dicts;
  std::uint32_t dict_current = 0;
  bool dict_announced = true;   // the current one was published on the dict topic
  bool dict_training = false;
  bool dict_loaded = false;     // stored dictionaries read at start
  bool dict_disabled = false;   // central refused a dictionary frame as unsupported
  clock::time_point dict_trained_at{};
  std::vector<schemas::record> dict_samples;
  std::map<std::uint32_t, clock::time_point> dict_answered;  // rate limit of answers per id
  std::thread trainer;

  mutable std::mutex stats_mu;
  engine_stats st;

  impl(asio::any_io_executor e, outbox& b, engine_options o, mqtt_options m)
      : ex(e),
        box(b),
        opts(std::move(o)),
        mqtt(e, std::move(m)),
        encoder(schemas::codec::zstd, opts.zstd_level),
        linger_timer(e),
        tick_timer(e),
        batch_topic(schemas::agent_topic(opts.site, opts.agent_id, schemas::agent_topic_kind::batch)),
        ack_topic(schemas::agent_topic(opts.site, opts.agent_id, schemas::agent_topic_kind::ack)),
        state_topic(schemas::agent_topic(opts.site, opts.agent_id, schemas::agent_topic_kind::state)),
        cmd_topic(schemas::agent_topic(opts.site, opts.agent_id, schemas::agent_topic_kind::cmd)),
        bytes_bucket(opts.max_bytes_per_s, 0.25),
        batches_bucket(opts.max_batches_per_s, 0.25),
        rate_timer(e),
        // Unique across restarts within one epoch, so a late ack never matches a newer batch.
        next_batch_id(static_cast<std::uint64_t>(wall_ns() / 1000)) {}

  template <class F>
  void update_stats(F f) {
    std::lock_guard lk(stats_mu);
    f(st);
    st.inflight = inflight.size();
    st.broker_connected = mqtt.connected();
  }

  void start() {
    auto w = weak_from_this();
    mqtt.add_subscription(ack_topic, 1);
    mqtt.add_subscription(cmd_topic, 1);
    mqtt.add_subscription(schemas::central_state_topic("+"), 1);
    mqtt.set_birth(state_topic, schemas::encode_presence({true, opts.agent_id, wall_ns(), opts.version}));
    mqtt.on_connected([w] {
      if (auto s = w.lock()) s->connected();
    });
    mqtt.on_connection_lost([w](std::string cause) {
      if (auto s = w.lock()) {
        spdlog::warn("[sync] broker connection lost: {}", cause.empty() ? "(no reason)" : cause);
        s->update_stats([](auto&) {});
      }
    });
    mqtt.on_message([w](mqtt_message m) {
      if (auto s = w.lock()) s->message(std::move(m));
    });
    epoch = box.store_epoch();
    dict_topic = schemas::agent_topic(opts.site, opts.agent_id, schemas::agent_topic_kind::dict);
    if (opts.dict_train_records > 0) {
      box.load_dictionaries([w](error_code ec, std::vector<schemas::zstd_dictionary> ds) {
        if (auto s = w.lock())
          asio::post(s->ex, [s, ec, ds = std::move(ds)]() mutable { s->dictionaries_loaded(ec, std::move(ds)); });
      });
    }
    box.on_committed([w] {
      // Writer thread: hop to the strand.
      if (auto s = w.lock()) asio::post(s->ex, [s] { s->records_arrived(); });
    });
    tick();
  }

  // Dictionaries --------------------------------------------------------------------------

  void dictionaries_loaded(error_code ec, std::vector<schemas::zstd_dictionary> ds) {
    dict_loaded = true;
    if (ec) {
      spdlog::error("[sync] reading stored dictionaries failed: {}; a new one will be trained",
                    ec.message());
      return;
    }
    adopt_dictionaries(std::move(ds), false);
    // The newest stored one is used as it is; it is retrained after dict_retrain from now.
    if (dict_current) dict_trained_at = clock::now();
  }

  // `ds` = every stored dictionary, newest first: the newest becomes the encoder's.
  void adopt_dictionaries(std::vector<schemas::zstd_dictionary> ds, bool fresh) {
    dicts.clear();
    for (auto& d : ds) {
      auto id = d.id;
      dicts.emplace(id, std::make_shared<const schemas::zstd_dictionary>(std::move(d)));
    }
    if (ds.empty() || dict_disabled) return;
    auto id = ds.front().id;
    if (id == dict_current) return;
    dict_current = id;
    encoder.set_dictionary(dicts[id]);
    dict_announced = false;
    spdlog::info("[sync] {} zstd dictionary {} ({} bytes) for the batches from now on",
                 fresh ? "new" : "stored", id, dicts[id]->bytes.size());
    update_stats([&](engine_stats& s) { s.dictionary_id = id; });
    announce_dictionary();
  }

  // Central learns a new dictionary before the first batch that needs it arrives (it can still
  // ask for it on the cmd topic: WIRE.md "Dictionaries").
  void announce_dictionary() {
    if (dict_announced || !dict_current || !mqtt.connected()) return;
    dict_announced = publish_dictionary(dict_current);
  }

  bool publish_dictionary(std::uint32_t id) {
    auto it = dicts.find(id);
    if (it == dicts.end() || !mqtt.connected()) return false;
    const auto& b = it->second->bytes;
    bytes_bucket.charge(static_cast<double>(b.size()), clock::now());
    mqtt.publish(dict_topic, std::string(b.begin(), b.end()), 1, false, [id](error_code ec) {
      if (ec) spdlog::debug("[sync] publish of dictionary {} failed: {}", id, ec.message());
    });
    update_stats([](engine_stats& s) { ++s.dictionaries_published; });
    return true;
  }

  // Telemetry of a batch about to be sent: material for the next dictionary.
  void collect_dictionary_samples(const std::vector<schemas::record>& recs) {
    if (opts.dict_train_records == 0 || !dict_loaded || dict_training || dict_disabled) return;
    if (dict_current && clock::now() - dict_trained_at < opts.dict_retrain) return;
    for (const auto& r : recs) {
      if (r.cls != schemas::record_class::telemetry) continue;
      if (dict_samples.size() >= opts.dict_train_records) break;
      dict_samples.push_back(r);
    }
    if (dict_samples.size() < opts.dict_train_records) return;
    dict_training = true;
    if (trainer.joinable()) trainer.join();  // the previous one has finished (it posted)
    // Training takes 0.1-0.5 s of CPU: never on the strand. The thread only posts its result.
    trainer = std::thread([ex = ex, w = weak_from_this(), samples = std::move(dict_samples),
                           per = opts.dict_sample_records, bytes = opts.dict_bytes] {
      pthread_setname_np(pthread_self(), "sync-dict");
      auto d = schemas::train_dictionary(samples, per, bytes);
      asio::post(ex, [w, d = std::move(d)]() mutable {
        if (auto s = w.lock()) s->dictionary_trained(std::move(d));
      });
    });
    dict_samples = {};
  }

  void dictionary_trained(schemas::result<schemas::zstd_dictionary> d) {
    dict_trained_at = clock::now();  // also after a failure: no retry loop
    if (!d) {
      dict_training = false;
      spdlog::warn("[sync] no dictionary trained from recent telemetry ({}); batches stay "
                   "without one until the next attempt", d.error().message());
      return;
    }
    update_stats([](engine_stats& s) { ++s.dictionaries_trained; });
    // Keep what batches in flight were compressed with: central may still ask for it.
    std::vector<std::uint32_t> keep;
    for (auto& [id, b] : inflight)
      if (b.dict_id) keep.push_back(b.dict_id);
    if (dict_current) keep.push_back(dict_current);
    box.save_dictionary(std::move(*d), std::move(keep),
                        [w = weak_from_this()](error_code ec, std::vector<schemas::zstd_dictionary> ds) {
                          if (auto s = w.lock())
                            asio::post(s->ex, [s, ec, ds = std::move(ds)]() mutable {
                              s->dict_training = false;
                              if (ec) {
                                spdlog::error("[sync] saving the new dictionary failed: {}",
                                              ec.message());
                                return;
                              }
                              s->adopt_dictionaries(std::move(ds), true);
                            });
                        });
  }

  // Central lacks a dictionary one of our frames names. Not authenticated like replay: it
  // changes nothing and only publishes, on our own dict topic (which only central may read),
  // what central was meant to have; answers are rate-limited per dictionary.
  void dictionary_requested(const schemas::dictionary_request& r) {
    if (r.agent_id != opts.agent_id) return refuse_command("dictionary request for agent " + r.agent_id);
    if (!dicts.contains(r.dict_id))
      return refuse_command("dictionary " + std::to_string(r.dict_id) + " is not stored here");
    auto now = clock::now();
    auto& last = dict_answered[r.dict_id];
    if (last != clock::time_point{} && now - last < std::chrono::seconds(1)) return;
    last = now;
    spdlog::info("[sync] central asked for dictionary {}: published", r.dict_id);
    publish_dictionary(r.dict_id);
  }

  void connected() {
    if (stopped) return;
    announce_dictionary();
    spdlog::info("[sync] connected to broker; {} batch(es) awaiting an ack are resent",
                 inflight.size());
    for (auto& [id, b] : inflight) send(id, b, true);
    update_stats([](auto&) {});
    pump();
  }

  void records_arrived() {
    if (stopped || linger_armed) return;
    linger_armed = true;
    linger_timer.expires_after(opts.linger);
    linger_timer.async_wait([s = shared_from_this()](error_code ec) {
      s->linger_armed = false;
      if (!ec) s->pump();
    });
  }

  void tick() {
    tick_timer.expires_after(std::chrono::milliseconds(250));
    tick_timer.async_wait([s = shared_from_this()](error_code ec) {
      if (ec || s->stopped) return;
      auto now = clock::now();
      if (auto ep = s->box.store_epoch(); ep != s->epoch) s->epoch_changed(ep);
      if (s->mqtt.connected() && s->central_available())
        for (auto& [id, b] : s->inflight)
          if (now - b.sent > s->opts.ack_timeout) {
            spdlog::info("[sync] batch {} not acked after {} ms, resending", id,
                         s->opts.ack_timeout.count());
            s->send(id, b, true);
          }
      // Idle with nothing in flight: read the outbox from the start again, so records skipped by
      // an earlier path (dead letters retried by the CLI, a batch of a previous run) are sent.
      if (s->inflight.empty() && !s->reading && now - s->last_rescan > kRescanIdle) {
        s->last_rescan = now;
        s->cursors = {};
      }
      s->pump();
      s->tick();
    });
  }

  // Whether a batch may be sent now; when the cap says "not yet", a timer calls pump() later.
  bool rate_allows() {
    auto now = clock::now();
    auto w = std::max(bytes_bucket.wait(now), batches_bucket.wait(now));
    if (w == clock::duration::zero()) return true;
    if (!rate_armed) {
      rate_armed = true;
      update_stats([](engine_stats& s) { ++s.rate_limited; });
      rate_timer.expires_after(w);
      rate_timer.async_wait([s = shared_from_this()](error_code ec) {
        s->rate_armed = false;
        if (!ec) s->pump();
      });
    }
    return false;
  }

  // Hold the backlog (keep the rate budget) while every known central instance is offline.
  bool central_available() const { return centrals_seen.empty() || !centrals_online.empty(); }

  void pump() {
    pump_live();
    pump_replay();  // shares the in-flight window and the rate cap; live records go first
  }

  void pump_live() {
    if (stopped || reading || !mqtt.connected() ||
        inflight.size() + (encoding ? 1 : 0) >= opts.max_inflight_batches)
      return;
    if (!central_available() || !rate_allows()) return;
    reading = true;
    box.read(cursors, opts.batch_max_records, class_limits_now(),
             outbox::read_epoch_done([w = weak_from_this()](error_code ec,
                                                           std::vector<schemas::record> recs,
                                                           std::uint64_t ep) {
               if (auto s = w.lock())
                 asio::post(s->ex, [s, ec, recs = std::move(recs), ep]() mutable {
                   s->got_records(ec, std::move(recs), ep);
                 });
             }));
  }

  // Blob chunks per batch (engine_options::blob_batch_max_records); none when taking the last
  // in-flight slot, which stays for higher classes (an event never waits for a blob's ack).
  class_limits class_limits_now() const {
    auto l = kNoClassLimits;
    std::size_t blobs = opts.blob_batch_max_records;
    if (blobs == 0)
      blobs = opts.max_bytes_per_s > 0
                  ? std::max<std::size_t>(1, static_cast<std::size_t>(opts.max_bytes_per_s / 4 / 4096))
                  : 64;
    if (opts.max_inflight_batches > 1 &&
        inflight.size() + (encoding ? 1 : 0) + 1 >= opts.max_inflight_batches)
      blobs = 0;
    l[static_cast<std::size_t>(schemas::record_class::blob)] = blobs;
    return l;
  }

  // The outbox was replaced (corruption found at run time): what was in flight belongs to the
  // old epoch, whose acks are ignored from now on; the new outbox is read from its start.
  void epoch_changed(std::uint64_t ep) {
    spdlog::warn("[sync] outbox replaced (store epoch {} -> {}): {} batch(es) in flight dropped",
                 epoch, ep, inflight.size());
    epoch = ep;
    inflight.clear();
    cursors = {};
    if (!replays.empty())
      spdlog::warn("[sync] {} replay(s) of the old epoch abandoned", replays.size());
    replays.clear();
    update_stats([](auto&) {});
  }

  void got_records(error_code ec, std::vector<schemas::record> recs, std::uint64_t ep) {
    reading = false;
    if (stopped) return;
    if (!ec && ep != epoch) {
      epoch_changed(ep);
      pump();
      return;  // these records were read with cursors of the old epoch: read again
    }
    if (ec) {
      spdlog::error("[sync] reading the outbox failed: {}; retrying", ec.message());
      return;  // the tick retries
    }
    if (recs.empty()) return;
    for (auto& r : recs) {
      auto& c = cursors[static_cast<std::size_t>(r.cls)];
      c = std::max(c, r.seq);
    }
    // The outbox writer reads the next batch while this one is encoded and compressed here (a
    // backlog drains with the SQLite read and the zstd work overlapping). Not under a bandwidth
    // cap: there every read waits for the cap to allow the batch it will become.
    if (!bytes_bucket.enabled() && !batches_bucket.enabled()) {
      encoding = true;
      pump_live();
    }
    encoding = false;
    collect_dictionary_samples(recs);
    schemas::batch b{opts.agent_id, ep, next_batch_id++, std::move(recs)};
    auto frame = encoder.encode(b, opts.signer.get());
    if (!frame) {
      // Records the encoder refuses would block the outbox forever; they stay held and counted.
      spdlog::error("[sync] cannot encode batch {}: {}", b.batch_id, frame.error().message());
      return;
    }
    std::vector<std::uint64_t> seqs;
    seqs.reserve(b.records.size());
    for (auto& r : b.records) seqs.push_back(r.seq);
    auto& ib = inflight[b.batch_id];
    ib.frame.assign(frame->begin(), frame->end());
    ib.ranges = schemas::ranges_of(seqs);
    ib.records = b.records.size();
    ib.dict_id = encoder.dictionary_id();
    send(b.batch_id, ib, false);
    // More may be waiting (a full read) or have arrived meanwhile; pump() stops at the in-flight
    // window, the rate cap and an empty read.
    pump();
  }

  void send(std::uint64_t id, inflight_batch& b, bool resend) {
    b.sent = clock::now();
    bytes_bucket.charge(static_cast<double>(b.frame.size()), b.sent);
    batches_bucket.charge(1, b.sent);
    update_stats([&](engine_stats& s) {
      if (resend) ++s.batches_resent;
      else if (!b.replay) ++s.batches_sent;
      s.bytes_published += b.frame.size();
    });
    mqtt.publish(batch_topic, b.frame, 1, false, [id](error_code ec) {
      // A PUBACK is not an acknowledgement: the batch stays in flight until central's ack.
      if (ec) spdlog::debug("[sync] publish of batch {} failed: {}", id, ec.message());
    });
  }

  void refuse_command(std::string_view why) {
    // The payload is never logged whole: it is outside input and carries a MAC.
    spdlog::warn("[sync] command on {} refused: {}", cmd_topic, why);
    update_stats([](engine_stats& s) { ++s.commands_refused; });
  }

  // A command from central (or an operator) on our cmd topic: authenticated, fresh, never seen,
  // for this agent and the current store epoch; then its range is queued for re-sending.
  void command(const std::string& payload) {
    // A dictionary request is not a signed command (WIRE.md "Dictionaries"): see
    // dictionary_requested().
    if (auto dr = schemas::decode_dictionary_request(payload)) return dictionary_requested(*dr);
    if (opts.command_key.empty() && opts.central_keys.empty())
      return refuse_command("no command key configured");
    auto c = schemas::decode_command(payload);
    if (!c) return refuse_command("malformed (" + c.error().message() + ")");
    const auto now = wall_ns();
    auto v = schemas::verify_command(*c, opts.command_key, opts.central_keys, now);
    if (v != schemas::command_verdict::ok) return refuse_command(schemas::to_string(v));
    const auto window =
        std::chrono::duration_cast<std::chrono::nanoseconds>(schemas::kCommandWindow).count();
    std::erase_if(seen_nonces, [&](auto& kv) { return now - kv.second > window; });
    if (seen_nonces.contains(c->cmd.nonce)) return refuse_command("nonce already used");
    seen_nonces.emplace(c->cmd.nonce, c->cmd.issued_ns);
    if (c->cmd.agent_id != opts.agent_id) return refuse_command("for agent " + c->cmd.agent_id);
    if (c->cmd.store_epoch != epoch)
      return refuse_command("store epoch " + std::to_string(c->cmd.store_epoch) +
                            " is not this outbox's (" + std::to_string(epoch) + ")");
    update_stats([](engine_stats& s) { ++s.commands_accepted; });
    spdlog::info("[sync] replay of seq {}..{} (epoch {}) requested", c->cmd.from, c->cmd.to, epoch);
    replays.push_back({c->cmd.from, c->cmd.to, c->cmd.from});
    pump();
  }

  void pump_replay() {
    if (stopped || replays.empty() || replay_reading || !mqtt.connected() ||
        inflight.size() >= opts.max_inflight_batches || !central_available() || !rate_allows())
      return;
    replay_reading = true;
    auto& r = replays.front();
    box.read_retained(r.next, r.to, opts.batch_max_records,
                      outbox::read_epoch_done([w = weak_from_this()](
                                                  error_code ec, std::vector<schemas::record> recs,
                                                  std::uint64_t ep) {
                        if (auto s = w.lock())
                          asio::post(s->ex, [s, ec, recs = std::move(recs), ep]() mutable {
                            s->got_replay(ec, std::move(recs), ep);
                          });
                      }));
  }

  void got_replay(error_code ec, std::vector<schemas::record> recs, std::uint64_t ep) {
    replay_reading = false;
    if (stopped || replays.empty()) return;
    if (ec) {
      spdlog::error("[sync] reading retained records failed: {}; retrying", ec.message());
      return;  // the tick pumps again
    }
    if (ep != epoch) {
      epoch_changed(ep);
      pump();
      return;
    }
    auto& job = replays.front();
    if (recs.empty()) {
      spdlog::info("[sync] replay of seq {}..{} done: {} retained record(s) re-sent", job.from,
                   job.to, job.sent);
      replays.pop_front();
      pump();
      return;
    }
    job.next = recs.back().seq + 1;
    job.sent += recs.size();
    schemas::batch b{opts.agent_id, ep, next_batch_id++, std::move(recs)};
    auto frame = encoder.encode(b, opts.signer.get());
    if (!frame) {
      spdlog::error("[sync] cannot encode replay batch {}: {}", b.batch_id, frame.error().message());
      pump();
      return;
    }
    std::vector<std::uint64_t> seqs;
    seqs.reserve(b.records.size());
    for (auto& r : b.records) seqs.push_back(r.seq);
    auto& ib = inflight[b.batch_id];
    ib.frame.assign(frame->begin(), frame->end());
    ib.ranges = schemas::ranges_of(seqs);
    ib.records = b.records.size();
    ib.replay = true;
    ib.dict_id = encoder.dictionary_id();
    update_stats([&](engine_stats& s) {
      s.records_replayed += b.records.size();
      ++s.replay_batches;
    });
    send(b.batch_id, ib, false);
    pump();
  }

  void central_state(const mqtt_message& m) {
    auto p = schemas::decode_presence(m.payload);
    if (!p) {
      spdlog::debug("[sync] unreadable central state on {}", m.topic);
      return;
    }
    bool was = central_available();
    centrals_seen.insert(m.topic);
    if (p->online) centrals_online.insert(m.topic);
    else centrals_online.erase(m.topic);
    bool now = central_available();
    update_stats([&](engine_stats& s) { s.central_online = now; });
    if (was && !now) spdlog::warn("[sync] no central instance online: holding the backlog");
    if (!was && now) {
      spdlog::info("[sync] a central instance is online again: {} batch(es) resent", inflight.size());
      for (auto& [id, b] : inflight) send(id, b, true);
      pump();
    }
  }

  void message(mqtt_message m) {
    if (m.topic.rfind(std::string(schemas::kTopicRoot) + "/central/", 0) == 0) {
      central_state(m);
      return;
    }
    if (m.topic == cmd_topic) {
      command(m.payload);
      return;
    }
    if (m.topic != ack_topic) {
      spdlog::debug("[sync] ignoring message on {}", m.topic);
      return;
    }
    auto a = schemas::decode_ack(m.payload);
    if (!a) {
      spdlog::warn("[sync] malformed ack ignored: {}", a.error().message());
      return;
    }
    if (!opts.central_keys.empty()) {
      // A pinned central key: only acks signed by it may delete or reject anything.
      if (auto v = schemas::verify_ack(*a, opts.central_keys); v != schemas::pinned_verdict::ok) {
        spdlog::warn("[sync] ack for batch {} ignored: signature {}", a->batch_id,
                     schemas::to_string(v));
        update_stats([](engine_stats& s) { ++s.acks_refused; });
        return;
      }
    }
    if (a->agent_id != opts.agent_id || a->store_epoch != epoch) {
      spdlog::warn("[sync] ack for {}/{} is not for this outbox; ignored", a->agent_id, a->store_epoch);
      return;
    }
    auto it = inflight.find(a->batch_id);
    if (a->stored) {
      // Central stored these ranges durably: delete them, whichever batch carried them.
      std::size_t n = 0;
      for (auto& r : a->ranges) n += r.count();
      if (it != inflight.end() && it->second.ranges == a->ranges) inflight.erase(it);
      update_stats([&](engine_stats& s) {
        ++s.batches_acked;
        s.last_ack_ns = wall_ns();
      });
      box.ack(a->ranges, [w = weak_from_this()](error_code ec, std::uint64_t deleted) {
        if (auto s = w.lock())
          asio::post(s->ex, [s, ec, deleted] {
            if (ec) spdlog::error("[sync] deleting acked records failed: {}", ec.message());
            s->update_stats([&](engine_stats& x) { x.records_acked += deleted; });
            s->pump();
          });
      }, epoch);
      return;
    }
    update_stats([](engine_stats& s) { ++s.batches_rejected; });
    if (a->retry) {
      spdlog::warn("[sync] central refused batch {} for now ({}: {}); will resend",
                   a->batch_id, schemas::to_string(a->code), a->reason);
      return;  // stays in flight; the ack timeout resends it
    }
    if (it == inflight.end()) return;  // a batch of an earlier run: the rescan sends its records
    if (a->code == schemas::reject_code::unsupported && it->second.dict_id != 0) {
      // A central older than dictionaries refuses the frame, not the records: stop using
      // dictionaries (until restart) and send these records again without one.
      spdlog::warn("[sync] central refused batch {} compressed with dictionary {} ({}): "
                   "dictionaries off, its records are sent again without one",
                   a->batch_id, it->second.dict_id, a->reason);
      dict_disabled = true;
      dict_current = 0;
      encoder.set_dictionary(nullptr);
      update_stats([](engine_stats& s) { s.dictionary_id = 0; });
      inflight.erase(it);
      cursors = {};
      pump();
      return;
    }
    auto& b = it->second;
    if (++b.rejections < kPermanentAttempts) {
      // A permanent code is usually final, but a central mid-upgrade can say it once: try again.
      spdlog::warn("[sync] central rejected batch {} ({}: {}), attempt {} of {}", a->batch_id,
                   schemas::to_string(a->code), a->reason, b.rejections, kPermanentAttempts);
      send(it->first, b, true);
      return;
    }
    spdlog::error("[sync] central rejected batch {} {} times ({}: {}); its {} records move to the "
                  "dead letters (`semilab-agent queue dead-letters`)",
                  a->batch_id, b.rejections, schemas::to_string(a->code), a->reason, b.records);
    std::string reason = std::string(schemas::to_string(a->code)) + ": " + a->reason;
    box.dead_letter(b.ranges, reason, b.rejections, [](error_code ec, std::uint64_t) {
      if (ec) spdlog::error("[sync] moving records to the dead letters failed: {}", ec.message());
    }, epoch);
    inflight.erase(it);
    pump();
  }
};

engine::engine(asio::any_io_executor ex, outbox& box, engine_options opts, mqtt_options mqtt) {
  mqtt.client_id = opts.agent_id;
  mqtt.will_topic = schemas::agent_topic(opts.site, opts.agent_id, schemas::agent_topic_kind::state);
  mqtt.will_payload = schemas::encode_presence({false, opts.agent_id, 0, opts.version});
  impl_ = std::make_shared<impl>(ex, box, std::move(opts), std::move(mqtt));
}

engine::~engine() { stop(); }

error_code engine::start() {
  impl_->start();
  return impl_->mqtt.start();
}

void engine::stop() {
  auto s = impl_;
  if (!s) return;
  std::promise<void> done;
  auto f = done.get_future();
  asio::post(s->ex, [s, &done] {
    if (!s->stopped) {
      s->stopped = true;
      s->linger_timer.cancel();
      s->tick_timer.cancel();
      s->rate_timer.cancel();
    }
    done.set_value();
  });
  // The executor may already be gone (io_context stopped): do not wait forever.
  if (f.wait_for(std::chrono::seconds(2)) != std::future_status::ready)
    spdlog::debug("[sync] strand did not run the stop request");
  // The trainer only posts; the strand is stopped, so its result is dropped.
  if (s->trainer.joinable()) s->trainer.join();
  s->mqtt.stop(std::chrono::milliseconds(1000), s->state_topic,
               schemas::encode_presence({false, s->opts.agent_id, wall_ns(), s->opts.version}));
}

void engine::publish_retained(std::string topic, std::string payload) {
  auto s = impl_;
  asio::post(s->ex, [s, t = std::move(topic), p = std::move(payload)]() mutable {
    if (s->stopped || !s->mqtt.connected()) return;
    s->mqtt.publish(std::move(t), std::move(p), 1, true, [](error_code) {});
  });
}

void engine::set_central_keys(std::vector<schemas::ed25519_public_key> keys) {
  auto s = impl_;
  asio::post(s->ex, [s, k = std::move(keys)]() mutable { s->opts.central_keys = std::move(k); });
}

engine_stats engine::stats() const {
  std::lock_guard lk(impl_->stats_mu);
  auto s = impl_->st;
  s.broker_connected = impl_->mqtt.connected();
  return s;
}

}  // namespace semilab::sync
