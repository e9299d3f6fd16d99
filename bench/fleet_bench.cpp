// semilab-bench-fleet: one process of the fleet bench (bench/fleet_bench.py, issue #6): N
// simulated agents, each its own MQTT client (Paho, MQTT 5, as sync/src/mqtt.cpp sets it up),
// publishing one batch frame a second (schemas/frame.hpp, zstd like the agent) on its batch topic
// and timing central's ack for it on its ack topic (decoded with schemas/ack.hpp).
//
// Timeline (wall clock, shared by every process the driver starts): clients connect, publishing
// begins at --start-at (Unix seconds), each agent at a random phase within the first second and
// then every second ± --jitter-ms. Batches published within [start + warmup, start + warmup +
// measure) are the window: their ack latencies are written out; a window batch without an ack
// --drain seconds after the window closes is lost. Output (--out): one JSON object with the
// counts and the window's latencies in milliseconds.
//
// --inflight K (closed loop, bench/multi_central_bench.py): instead of one batch a second, every
// agent keeps K batches unacked at all times (a new one as soon as an ack arrives), so the
// window's acked batches per second measure what central(s) can take.
//
// Not a stand-alone bench: `./dev bench` runs bench/fleet_bench.py, which starts mosquitto,
// central and several of these.
#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/frame.hpp>
#include <semilab/schemas/topics.hpp>

#include <boost/json.hpp>
#include <mqtt/async_client.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <queue>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace sc = semilab::schemas;
using clk = std::chrono::steady_clock;
using sys_clk = std::chrono::system_clock;

namespace {

struct options {
  std::string broker = "tcp://127.0.0.1:1883";
  std::string prefix = "fleet";  // agent ids: <prefix>-0000 ...
  std::string site = "fleet";
  int agents = 250;
  int records = 30;  // per batch
  double start_at = 0;  // Unix seconds; 0 = 3 s after all clients are connected
  double warmup = 10;
  double measure = 30;
  double drain = 10;
  int jitter_ms = 50;
  int inflight = 0;  // > 0: closed loop with this many unacked batches per agent
  std::string out = "fleet.json";
  unsigned seed = 1;
};

struct agent {
  std::string id;
  std::string batch_topic;
  std::unique_ptr<mqtt::async_client> cli;
  std::uint64_t store_epoch = 0;
  std::uint64_t next_seq = 1;
  std::uint64_t next_batch = 1;
  // batch id -> (sent time, in window); guarded by `mu` (the ack arrives on Paho's thread).
  std::map<std::uint64_t, std::pair<clk::time_point, bool>> pending;
};

struct totals {
  std::uint64_t published = 0, publish_errors = 0, window_published = 0, acked = 0,
                window_acked = 0, rejected = 0, unknown_acks = 0;
  std::vector<double> window_ms;
  std::map<std::string, std::uint64_t> reject_codes;  // rejections by code
};

std::mutex mu;  // pending maps and totals
totals tot;

bool parse(int argc, char** argv, options& o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "fleet: %s needs a value\n", a.c_str());
      return false;
    }
    std::string v = argv[++i];
    try {
      if (a == "--broker") o.broker = v;
      else if (a == "--prefix") o.prefix = v;
      else if (a == "--site") o.site = v;
      else if (a == "--agents") o.agents = std::stoi(v);
      else if (a == "--records") o.records = std::stoi(v);
      else if (a == "--start-at") o.start_at = std::stod(v);
      else if (a == "--warmup") o.warmup = std::stod(v);
      else if (a == "--measure") o.measure = std::stod(v);
      else if (a == "--drain") o.drain = std::stod(v);
      else if (a == "--jitter-ms") o.jitter_ms = std::stoi(v);
      else if (a == "--out") o.out = v;
      else if (a == "--seed") o.seed = static_cast<unsigned>(std::stoul(v));
      else if (a == "--inflight") o.inflight = std::stoi(v);
      else {
        std::fprintf(stderr, "fleet: unknown option %s\n", a.c_str());
        return false;
      }
    } catch (const std::exception&) {
      std::fprintf(stderr, "fleet: bad value for %s: %s\n", a.c_str(), v.c_str());
      return false;
    }
  }
  if (o.agents < 1 || o.records < 1 || o.measure <= 0) {
    std::fprintf(stderr, "fleet: --agents, --records and --measure must be positive\n");
    return false;
  }
  return true;
}

// A batch as an agent polling a few instruments would send it: telemetry of three
// instruments/channels, decimal readings as reported, one record per poll.
sc::batch make_batch(agent& a, int records, std::minstd_rand& rng) {
  static const char* const inst[] = {"smu1", "smu2", "dmm1"};
  static const char* const chan[] = {"curr", "volt", "volt"};
  static const char* const unit[] = {"A", "V", "V"};
  sc::batch b;
  b.agent_id = a.id;
  b.store_epoch = a.store_epoch;
  b.batch_id = a.next_batch++;
  const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                       sys_clk::now().time_since_epoch())
                       .count();
  std::uniform_int_distribution<std::int64_t> noise(0, 9999);
  for (int i = 0; i < records; ++i) {
    sc::record r;
    r.seq = a.next_seq++;
    r.cls = sc::record_class::telemetry;
    r.ts_ns = now - static_cast<std::int64_t>(records - i) * 33'000'000;
    const auto k = static_cast<std::size_t>(i % 3);
    r.instrument = inst[k];
    r.channel = chan[k];
    r.unit = unit[k];
    r.val = sc::decimal{39785000 + noise(rng), static_cast<std::int8_t>(k == 0 ? -13 : -7)};
    b.records.push_back(std::move(r));
  }
  return b;
}

void on_ack(agent& a, const std::string& payload, clk::time_point now) {
  auto ack = sc::decode_ack(payload);
  std::lock_guard lk(mu);
  if (!ack || ack->agent_id != a.id) {
    ++tot.unknown_acks;
    return;
  }
  auto it = a.pending.find(ack->batch_id);
  if (it == a.pending.end()) {
    ++tot.unknown_acks;  // a duplicate ack
    return;
  }
  if (!ack->stored) {
    ++tot.rejected;
    ++tot.reject_codes[std::string(sc::to_string(ack->code))];
    a.pending.erase(it);
    return;
  }
  ++tot.acked;
  if (it->second.second) {
    ++tot.window_acked;
    tot.window_ms.push_back(
        std::chrono::duration<double, std::milli>(now - it->second.first).count());
  }
  a.pending.erase(it);
}

double unix_now() {
  return std::chrono::duration<double>(sys_clk::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  if (!parse(argc, argv, o)) {
    std::fprintf(stderr,
                 "usage: semilab-bench-fleet --broker URL --agents N --prefix ID --out FILE "
                 "[--start-at UNIX_S --warmup S --measure S --drain S --records N --jitter-ms MS "
                 "--site ID --seed N --inflight K]\n(run by bench/fleet_bench.py and "
                 "bench/multi_central_bench.py)\n");
    return 2;
  }
  std::minstd_rand rng(o.seed);
  std::vector<std::unique_ptr<agent>> fleet;
  const auto epoch = static_cast<std::uint64_t>(sys_clk::now().time_since_epoch().count());
  for (int i = 0; i < o.agents; ++i) {
    auto a = std::make_unique<agent>();
    char id[80];
    std::snprintf(id, sizeof id, "%s-%04d", o.prefix.c_str(), i);
    a->id = id;
    if (!sc::valid_id(a->id)) {
      std::fprintf(stderr, "fleet: invalid agent id %s\n", id);
      return 2;
    }
    a->batch_topic = sc::agent_topic(o.site, a->id, sc::agent_topic_kind::batch);
    a->store_epoch = epoch + static_cast<std::uint64_t>(i);
    fleet.push_back(std::move(a));
  }

  // Connect every client (MQTT 5, clean start, as the agent does), subscribed to its ack topic.
  std::atomic<int> connected{0};
  std::vector<mqtt::token_ptr> conn;
  for (auto& ap : fleet) {
    agent& a = *ap;
    try {
      mqtt::create_options co(MQTTVERSION_5);
      co.set_max_buffered_messages(1000);
      a.cli = std::make_unique<mqtt::async_client>(o.broker, a.id, co, nullptr);
      a.cli->set_message_callback([&a](mqtt::const_message_ptr m) {
        if (m) on_ack(a, m->get_payload_str(), clk::now());
      });
      mqtt::connect_options cop;
      cop.set_mqtt_version(MQTTVERSION_5);
      cop.set_clean_start(true);
      cop.set_keep_alive_interval(20);
      cop.set_connect_timeout(30);
      cop.set_automatic_reconnect(false);
      conn.push_back(a.cli->connect(cop));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fleet: %s: connect: %s\n", a.id.c_str(), e.what());
      conn.push_back(nullptr);
    }
  }
  std::vector<mqtt::token_ptr> subs;
  for (std::size_t i = 0; i < fleet.size(); ++i) {
    agent& a = *fleet[i];
    try {
      if (!conn[i] || !conn[i]->wait_for(std::chrono::seconds(60))) continue;
      subs.push_back(a.cli->subscribe(sc::agent_topic(o.site, a.id, sc::agent_topic_kind::ack), 1));
      ++connected;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fleet: %s: %s\n", a.id.c_str(), e.what());
    }
  }
  for (auto& t : subs) {
    try {
      t->wait_for(std::chrono::seconds(30));
    } catch (const std::exception&) {
    }
  }
  std::printf("connected %d\n", connected.load());
  std::fflush(stdout);

  // Schedule: each connected agent at a random phase in the first second, then every second.
  const double start_unix = o.start_at > 0 ? o.start_at : unix_now() + 3;
  const auto start = clk::now() + std::chrono::duration_cast<clk::duration>(
                                      std::chrono::duration<double>(start_unix - unix_now()));
  const auto win_from = start + std::chrono::duration_cast<clk::duration>(
                                    std::chrono::duration<double>(o.warmup));
  const auto win_to = win_from + std::chrono::duration_cast<clk::duration>(
                                     std::chrono::duration<double>(o.measure));
  using slot = std::pair<clk::time_point, std::size_t>;
  std::priority_queue<slot, std::vector<slot>, std::greater<>> due;
  std::uniform_int_distribution<int> phase(0, 999'999);
  std::uniform_int_distribution<int> jitter(-o.jitter_ms, o.jitter_ms);
  for (std::size_t i = 0; i < fleet.size(); ++i)
    if (fleet[i]->cli && fleet[i]->cli->is_connected())
      due.emplace(start + std::chrono::microseconds(phase(rng)), i);

  sc::frame_encoder enc;  // one thread encodes: one encoder
  // Publishes the next batch of agent `i`; false when encoding failed.
  auto publish_next = [&](std::size_t i, bool in_window) {
    agent& a = *fleet[i];
    auto frame = enc.encode(make_batch(a, o.records, rng));
    if (!frame) {
      std::fprintf(stderr, "fleet: encode: %s\n", frame.error().message().c_str());
      return false;
    }
    const auto bid = a.next_batch - 1;
    {
      std::lock_guard lk(mu);
      a.pending[bid] = {clk::now(), in_window};
      ++tot.published;
      if (in_window) ++tot.window_published;
    }
    try {
      a.cli->publish(mqtt::make_message(a.batch_topic, frame->data(), frame->size(), 1, false));
    } catch (const std::exception&) {
      std::lock_guard lk(mu);
      ++tot.publish_errors;
      a.pending.erase(bid);
      --tot.published;
      if (in_window) --tot.window_published;
    }
    return true;
  };
  if (o.inflight > 0) {
    // Closed loop: top every connected agent up to K unacked batches until the window ends.
    std::this_thread::sleep_until(start);
    std::vector<std::size_t> live;
    for (std::size_t i = 0; i < fleet.size(); ++i)
      if (fleet[i]->cli && fleet[i]->cli->is_connected()) live.push_back(i);
    for (auto now = clk::now(); now < win_to; now = clk::now()) {
      bool sent = false;
      for (const std::size_t i : live) {
        std::size_t pending;
        {
          std::lock_guard lk(mu);
          pending = fleet[i]->pending.size();
        }
        if (pending >= static_cast<std::size_t>(o.inflight)) continue;
        if (!publish_next(i, clk::now() >= win_from)) return 1;
        sent = true;
      }
      if (!sent) std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    due = {};
  }
  while (!due.empty()) {
    auto [when, i] = due.top();
    if (when >= win_to) break;
    due.pop();
    std::this_thread::sleep_until(when);
    if (!publish_next(i, when >= win_from)) return 1;
    due.emplace(when + std::chrono::milliseconds(1000 + jitter(rng)), i);
  }
  // Drain: wait for the window's acks (or the deadline).
  const auto drain_to = clk::now() + std::chrono::duration_cast<clk::duration>(
                                         std::chrono::duration<double>(o.drain));
  while (clk::now() < drain_to) {
    {
      std::lock_guard lk(mu);
      if (tot.window_acked + tot.rejected >= tot.window_published) {
        bool left = false;
        for (auto& a : fleet)
          for (auto& [b, p] : a->pending) left = left || p.second;
        if (!left) break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }

  boost::json::object out;
  int still = 0;
  std::uint64_t window_lost = 0;
  {
    std::lock_guard lk(mu);
    for (auto& a : fleet) {
      if (a->cli && a->cli->is_connected()) ++still;
      for (auto& [b, p] : a->pending)
        if (p.second) ++window_lost;
    }
    out["agents"] = o.agents;
    out["connected"] = connected.load();
    out["connected_at_end"] = still;
    out["published"] = tot.published;
    out["publish_errors"] = tot.publish_errors;
    out["window_published"] = tot.window_published;
    out["window_acked"] = tot.window_acked;
    out["window_lost"] = window_lost;
    out["acked"] = tot.acked;
    out["rejected"] = tot.rejected;
    out["unknown_acks"] = tot.unknown_acks;
    out["measure_s"] = o.measure;
    out["records_per_batch"] = o.records;
    boost::json::object codes;
    for (const auto& [c, n] : tot.reject_codes) codes[c] = n;
    out["reject_codes"] = std::move(codes);
    boost::json::array ms;
    for (double v : tot.window_ms) ms.push_back(v);
    out["window_ms"] = std::move(ms);
  }
  for (auto& a : fleet) {
    if (!a->cli) continue;
    try {
      if (a->cli->is_connected()) a->cli->disconnect()->wait_for(std::chrono::seconds(2));
    } catch (const std::exception&) {
    }
  }
  std::ofstream(o.out, std::ios::trunc) << boost::json::serialize(out) << "\n";
  std::printf("published %llu window %llu acked %llu lost %llu rejected %llu\n",
              static_cast<unsigned long long>(tot.published),
              static_cast<unsigned long long>(tot.window_published),
              static_cast<unsigned long long>(tot.window_acked),
              static_cast<unsigned long long>(window_lost),
              static_cast<unsigned long long>(tot.rejected));
  return 0;
}
