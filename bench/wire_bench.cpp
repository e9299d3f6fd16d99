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

}  // namespace

int main(int argc, char** argv) {
  bench::args a(argc, argv);
  auto inst = sim::make_sim_instrument("keithley2450", 42);
  const auto& model = *drivers::find_model("keithley2450");
  auto settings = *drivers::resolve_settings(model, {});
  for (auto& cmd : drivers::render_init(model, settings)) (void)sim::execute_line(*inst, cmd);

  constexpr std::size_t kMeasurements = 20'000;
  constexpr std::size_t kBatch = 2000;  // the agent's default batch_max_records
  std::int64_t t0 = 1'764'250'001'223'431'000;
  std::vector<schemas::record> recs;
  std::mt19937_64 jitter(7);
  for (std::size_t i = 0; i < kMeasurements; ++i) {
    // Sweep the bias slowly, as a process drifts, so values are not all alike.
    if (i % 100 == 0) (void)sim::execute_line(*inst, ":SOUR:VOLT " + std::to_string(0.45 + 0.002 * static_cast<double>(i / 100 % 100)));
    auto reply = sim::execute_line(*inst, ":READ?");
    auto rd = drivers::keithley2450::parse_read(reply.value_or(""), settings);
    if (!rd || rd->empty()) {
      std::fprintf(stderr, "driver could not parse the simulator's reply\n");
      return 1;
    }
    schemas::record r;
    r.seq = i + 1;
    // 10 Hz polling with scheduler jitter, as timestamps come out of a real agent.
    r.ts_ns = t0 + static_cast<std::int64_t>(i) * 100'000'000 + static_cast<std::int64_t>(jitter() % 2'000'000);
    r.instrument = "smu1";
    r.channel = (*rd)[0].channel;
    r.unit = (*rd)[0].unit;
    r.quality = (*rd)[0].quality;
    r.val = (*rd)[0].value;
    recs.push_back(std::move(r));
  }
  std::printf("sample readings: %s %s %s\n", std::get<schemas::decimal>(recs[0].val).to_string().c_str(),
              std::get<schemas::decimal>(recs[1].val).to_string().c_str(),
              std::get<schemas::decimal>(recs[5000].val).to_string().c_str());

  std::string topic = schemas::agent_topic("lab1", "lab1-agent-01", schemas::agent_topic_kind::batch);
  schemas::frame_encoder enc;
  std::size_t ours = 0;
  for (std::size_t i = 0; i < recs.size(); i += kBatch) {
    schemas::batch b{"lab1-agent-01", 0x1234567890abcdefull, i / kBatch + 1,
                     {recs.begin() + static_cast<std::ptrdiff_t>(i),
                      recs.begin() + static_cast<std::ptrdiff_t>(std::min(i + kBatch, recs.size()))}};
    auto f = enc.encode(b);
    if (!f) return 1;
    ours += publish_bytes(topic.size(), f->size());
  }

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
  double per = static_cast<double>(ours) / kMeasurements;
  double per_base = static_cast<double>(base) / kMeasurements;
  bench::publish(a.results, {{"wire_bytes_per_measurement", per, "bytes", per_base,
                              "one JSON message per value, per-channel topic"}});
  return 0;
}
