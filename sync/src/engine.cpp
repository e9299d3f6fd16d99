#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/command.hpp>
#include <semilab/schemas/state.hpp>
#include <semilab/schemas/topics.hpp>
#include <semilab/sync/engine.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <deque>
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
  bool linger_armed = false;
  bool stopped = false;
  std::uint64_t next_batch_id;
  std::map<std::uint64_t, inflight_batch> inflight;
  std::deque<replay_job> replays;
  bool replay_reading = false;
  std::map<std::string, std::int64_t> seen_nonces;  // accepted commands within the window

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
    box.on_committed([w] {
      // Writer thread: hop to the strand.
      if (auto s = w.lock()) asio::post(s->ex, [s] { s->records_arrived(); });
    });
    tick();
  }

  void connected() {
    if (stopped) return;
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
    if (stopped || reading || !mqtt.connected() || inflight.size() >= opts.max_inflight_batches)
      return;
    if (!central_available() || !rate_allows()) return;
    reading = true;
    box.read(cursors, opts.batch_max_records,
             outbox::read_epoch_done([w = weak_from_this()](error_code ec,
                                                           std::vector<schemas::record> recs,
                                                           std::uint64_t ep) {
               if (auto s = w.lock())
                 asio::post(s->ex, [s, ec, recs = std::move(recs), ep]() mutable {
                   s->got_records(ec, std::move(recs), ep);
                 });
             }));
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
    if (opts.command_key.empty()) return refuse_command("no command key configured");
    auto c = schemas::decode_command(payload);
    if (!c) return refuse_command("malformed (" + c.error().message() + ")");
    const auto now = wall_ns();
    auto v = schemas::verify_command(*c, opts.command_key, now);
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

engine_stats engine::stats() const {
  std::lock_guard lk(impl_->stats_mu);
  auto s = impl_->st;
  s.broker_connected = impl_->mqtt.connected();
  return s;
}

}  // namespace semilab::sync
