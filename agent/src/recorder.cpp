#include <semilab/agent/recorder.hpp>

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>

namespace semilab::agent {

std::int64_t utc_now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t monotonic_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

clock_watch::clock_watch(clock_fn wall, clock_fn mono, std::int64_t threshold_ns)
    : wall_(std::move(wall)), mono_(std::move(mono)), threshold_(threshold_ns) {}

timestamp clock_watch::now() {
  std::lock_guard lk(mu_);
  timestamp t;
  t.ts_ns = wall_();
  std::int64_t offset = t.ts_ns - mono_();
  if (!first_) {
    std::int64_t step = offset - offset_;
    if (std::llabs(step) > threshold_) {
      t.step_ns = step;
      t.quality |= schemas::quality::clock_step;
      ++steps_;
    }
  }
  first_ = false;
  offset_ = offset;
  if (t.ts_ns < kSaneAfterNs) t.quality |= schemas::quality::bad_timestamp;
  return t;
}

timestamp recorder::stamp() {
  auto t = clock_.now();
  if (t.step_ns != 0) {
    spdlog::warn("[acq] wall clock stepped by {:.3f} s; records are flagged clock_step",
                 static_cast<double>(t.step_ns) / 1e9);
    schemas::record ev;
    ev.cls = schemas::record_class::event;
    ev.ts_ns = t.ts_ns;
    ev.instrument = "agent";
    ev.channel = "clock_step";
    ev.unit = "ns";
    ev.quality = t.quality;
    ev.val = t.step_ns;
    box_.enqueue({std::move(ev)}, [](boost::system::error_code ec, schemas::seq_range) {
      if (ec) spdlog::error("[acq] storing the clock_step event failed: {}", ec.message());
    });
  }
  return t;
}

void recorder::submit(std::string_view instrument, const timestamp& ts,
                      std::span<const drivers::reading> readings, sync::outbox::insert_done done) {
  std::vector<schemas::record> recs;
  recs.reserve(readings.size());
  for (const auto& r : readings) {
    schemas::record rec;
    rec.cls = schemas::record_class::telemetry;
    rec.ts_ns = ts.ts_ns;
    rec.instrument = instrument;
    rec.channel = r.channel;
    rec.unit = r.unit;
    rec.quality = r.quality | ts.quality;
    rec.val = r.value;
    recs.push_back(std::move(rec));
  }
  if (observer_) observer_(recs);
  box_.enqueue(std::move(recs), std::move(done));
}

}  // namespace semilab::agent
