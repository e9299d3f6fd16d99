#include <semilab/agent/recorder.hpp>

#include <chrono>

namespace semilab::agent {

std::int64_t utc_now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void recorder::submit(std::string_view instrument, std::int64_t ts_ns,
                      std::span<const drivers::reading> readings, sync::outbox::insert_done done) {
  std::vector<schemas::record> recs;
  recs.reserve(readings.size());
  for (const auto& r : readings) {
    schemas::record rec;
    rec.cls = schemas::record_class::telemetry;
    rec.ts_ns = ts_ns;
    rec.instrument = instrument;
    rec.channel = r.channel;
    rec.unit = r.unit;
    rec.quality = r.quality;
    rec.val = r.value;
    recs.push_back(std::move(rec));
  }
  box_.enqueue(std::move(recs), std::move(done));
}

}  // namespace semilab::agent
