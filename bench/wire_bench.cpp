// wire_bytes_per_measurement: MQTT PUBLISH bytes (fixed header, topic, packet id, properties,
// payload) per measurement, for telemetry produced by the simulator's Keithley 2450 (its diode
// physics, noise and reported digits), read through the real driver parser, in semilab batch
// frames of the agent's default size. Baseline, same measurements: one MQTT message per value with
// a JSON payload on a per-channel topic, the layout of common collectors.
#include <semilab/drivers/model.hpp>
#include <semilab/schemas/frame.hpp>
#include <semilab/schemas/topics.hpp>
#include <semilab/sim/instrument.hpp>

#include <cstdio>
#include <random>

#include "results.hpp"

using namespace semilab;

namespace {

std::size_t varint_len(std::size_t n) {
  std::size_t l = 1;
  while (n >= 128) {
    n >>= 7;
    ++l;
  }
  return l;
}

// MQTT 5 PUBLISH at QoS 1 with no properties.
std::size_t publish_bytes(std::size_t topic, std::size_t payload) {
  std::size_t remaining = 2 + topic + 2 + 1 + payload;
  return 1 + varint_len(remaining) + remaining;
}

// Telemetry of `instruments` simulated Keithley 2450s polled at 10 Hz each (scheduler jitter,
// a slowly drifting bias so values are not all alike), read through the real driver parser.
std::vector<schemas::record> telemetry(std::size_t n, std::size_t instruments, bool& ok) {
  const auto& model = *drivers::find_model("keithley2450");
  auto settings = *drivers::resolve_settings(model, {});
  std::vector<std::unique_ptr<sim::sim_instrument>> sims;
  for (std::size_t k = 0; k < instruments; ++k) {
    sims.push_back(sim::make_sim_instrument("keithley2450", 42 + static_cast<unsigned>(k)));
    for (auto& cmd : drivers::render_init(model, settings)) (void)sim::execute_line(*sims.back(), cmd);
  }
  std::int64_t t0 = 1'764'250'001'223'431'000;
  std::vector<schemas::record> recs;
  std::mt19937_64 jitter(7);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t k = i % instruments, round = i / instruments;
    auto& inst = *sims[k];
    if (round % 100 == 0)
      (void)sim::execute_line(inst, ":SOUR:VOLT " + std::to_string(0.45 + 0.002 * static_cast<double>(round / 100 % 100) + 0.01 * static_cast<double>(k)));
    auto reply = sim::execute_line(inst, ":READ?");
    auto rd = drivers::keithley2450::parse_read(reply.value_or(""), settings);
    if (!rd || rd->empty()) {
      ok = false;
      return recs;
    }
    schemas::record r;
    r.seq = i + 1;
    r.ts_ns = t0 + static_cast<std::int64_t>(round) * 100'000'000 + static_cast<std::int64_t>(k) * 3'000'000 +
              static_cast<std::int64_t>(jitter() % 2'000'000);
    r.instrument = "smu" + std::to_string(k + 1);
    r.channel = (*rd)[0].channel;
    r.unit = (*rd)[0].unit;
    r.quality = (*rd)[0].quality;
    r.val = (*rd)[0].value;
    recs.push_back(std::move(r));
  }
  ok = true;
  return recs;
}

// PUBLISH bytes per measurement of `recs` cut into batches of `per_batch` records.
double wire_per_measurement(const std::vector<schemas::record>& recs, std::size_t per_batch,
                            schemas::frame_encoder& enc, const std::string& topic) {
  std::size_t total = 0;
  for (std::size_t i = 0; i < recs.size(); i += per_batch) {
    schemas::batch b{"lab1-agent-01", 0x1234567890abcdefull, i / per_batch + 1,
                     {recs.begin() + static_cast<std::ptrdiff_t>(i),
                      recs.begin() + static_cast<std::ptrdiff_t>(std::min(i + per_batch, recs.size()))}};
    auto f = enc.encode(b);
    if (!f) return -1;
    total += publish_bytes(topic.size(), f->size());
  }
  return static_cast<double>(total) / static_cast<double>(recs.size());
}

}  // namespace

int main(int argc, char** argv) {
  bench::args a(argc, argv);
  constexpr std::size_t kMeasurements = 20'000;
  constexpr std::size_t kBatch = 2000;  // the agent's default batch_max_records
  bool ok = false;
  auto recs = telemetry(kMeasurements, 1, ok);
  if (!ok) {
    std::fprintf(stderr, "driver could not parse the simulator's reply\n");
    return 1;
  }
  std::printf("sample readings: %s %s %s\n", std::get<schemas::decimal>(recs[0].val).to_string().c_str(),
              std::get<schemas::decimal>(recs[1].val).to_string().c_str(),
              std::get<schemas::decimal>(recs[5000].val).to_string().c_str());

  std::string topic = schemas::agent_topic("lab1", "lab1-agent-01", schemas::agent_topic_kind::batch);
  schemas::frame_encoder enc;
  const double per = wire_per_measurement(recs, kBatch, enc, topic);
  if (per < 0) return 1;

  std::size_t base = 0;
  std::string per_value_topic = "lab1/lab1-agent-01/smu1/curr";
  for (auto& r : recs) {
    char payload[160];
    int n = std::snprintf(payload, sizeof payload,
                          R"({"ts":%lld,"instrument":"smu1","channel":"curr","value":%s,"unit":"A","q":%u})",
                          static_cast<long long>(r.ts_ns), std::get<schemas::decimal>(r.val).to_string().c_str(),
                          r.quality);
    base += publish_bytes(per_value_topic.size(), static_cast<std::size_t>(n));
  }
  double per_base = static_cast<double>(base) / kMeasurements;

  // Live traffic: 10 instruments at 10 Hz and the default linger of 100 ms make batches of about
  // 10 records. The dictionary is trained as the agent trains it (engine defaults: 20 000 recent
  // telemetry records, 16-record samples, 16 KiB) on the first records and measured on the next
  // ones, never on its own training data.
  constexpr std::size_t kTrain = 20'000, kLiveBatch = 10;
  auto live = telemetry(kTrain + kMeasurements, 10, ok);
  if (!ok) return 1;
  std::vector<schemas::record> train(live.begin(), live.begin() + kTrain);
  std::vector<schemas::record> test(live.begin() + kTrain, live.end());
  auto dict = schemas::train_dictionary(train, 16, 16u << 10);
  if (!dict) {
    std::fprintf(stderr, "dictionary training failed: %s\n", dict.error().message().c_str());
    return 1;
  }
  schemas::frame_encoder plain, with;
  with.set_dictionary(std::make_shared<schemas::zstd_dictionary>(*dict));
  const double live_plain = wire_per_measurement(test, kLiveBatch, plain, topic);
  const double live_dict = wire_per_measurement(test, kLiveBatch, with, topic);
  const double backlog_plain = wire_per_measurement(test, kBatch, plain, topic);
  const double backlog_dict = wire_per_measurement(test, kBatch, with, topic);
  std::printf("dictionary %u: %zu bytes\n", dict->id, dict->bytes.size());
  std::printf("10 instruments, %zu-record batches: %.2f B/measurement without, %.2f with the dictionary\n",
              kLiveBatch, live_plain, live_dict);
  std::printf("10 instruments, %zu-record batches: %.2f B/measurement without, %.2f with the dictionary\n",
              kBatch, backlog_plain, backlog_dict);
  bench::publish(a.results,
                 {{"wire_bytes_per_measurement", per, "bytes", per_base,
                   "one JSON message per value, per-channel topic"},
                  {"wire_bytes_live_batch_dict", live_dict, "bytes", live_plain,
                   "same 10-record live batches (10 instruments at 10 Hz, 100 ms linger) without the dictionary"},
                  {"wire_bytes_backlog_dict", backlog_dict, "bytes", backlog_plain,
                   "same 2000-record batches of 10 instruments without the dictionary"}});
  return 0;
}
