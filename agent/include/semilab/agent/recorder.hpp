#pragma once
// The acquisition API: turns instrument readings into telemetry records and hands them to the
// outbox, which commits them before anything else happens to them. Timestamps come from a
// clock_watch that notices wall-clock steps (NTP corrections, a dead RTC) against the monotonic
// clock and flags them; ordering never depends on wall time (the outbox's seq does that).
#include <semilab/drivers/model.hpp>
#include <semilab/sync/outbox.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string_view>

namespace semilab::agent {

std::int64_t utc_now_ns() noexcept;
std::int64_t monotonic_ns() noexcept;

struct timestamp {
  std::int64_t ts_ns = 0;     // UTC
  std::uint32_t quality = 0;  // schemas::quality::clock_step / bad_timestamp
  std::int64_t step_ns = 0;   // the wall-clock step detected at this stamp (0 = none)
};

// Thread-safe. A step is a change of (wall - monotonic) between two consecutive stamps larger
// than `threshold`; NTP slewing (at most 500 ppm) never comes near it between two polls.
class clock_watch {
 public:
  using clock_fn = std::function<std::int64_t()>;
  static constexpr std::int64_t kDefaultThresholdNs = 100'000'000;  // 100 ms
  // Before 2020-01-01 a lab PC's clock is not set (dead RTC battery): flag, never reject.
  static constexpr std::int64_t kSaneAfterNs = 1'577'836'800'000'000'000;

  explicit clock_watch(clock_fn wall = utc_now_ns, clock_fn mono = monotonic_ns,
                       std::int64_t threshold_ns = kDefaultThresholdNs);
  timestamp now();
  std::uint64_t steps() const noexcept { return steps_; }

 private:
  clock_fn wall_, mono_;
  std::int64_t threshold_;
  std::mutex mu_;
  bool first_ = true;
  std::int64_t offset_ = 0;  // wall - mono at the previous stamp
  std::atomic<std::uint64_t> steps_{0};
};

class recorder {
 public:
  explicit recorder(sync::outbox& box, clock_watch::clock_fn wall = utc_now_ns,
                    clock_watch::clock_fn mono = monotonic_ns)
      : box_(box), clock_(std::move(wall), std::move(mono)) {}

  // The timestamp for readings taken now. A detected wall-clock step is itself recorded as an
  // event (`agent` / `clock_step`, value = step in ns) and flagged on this stamp.
  timestamp stamp();

  // One reading set of one instrument. `done` runs on the outbox writer thread after the commit
  // (or with the storage error); post it to your strand.
  void submit(std::string_view instrument, const timestamp& ts,
              std::span<const drivers::reading> readings, sync::outbox::insert_done done);

  // Records built by the caller (e.g. Modbus points with exact integer values).
  void submit(std::vector<schemas::record> records, sync::outbox::insert_done done) {
    if (observer_) observer_(records);
    box_.enqueue(std::move(records), std::move(done));
  }

  // Sees every record set of submit() just before the outbox takes it (the status page's live
  // values). Set before acquisition starts; runs on the caller's strand: thread-safe and quick.
  using observer = std::function<void(std::span<const schemas::record>)>;
  void set_observer(observer o) { observer_ = std::move(o); }

  std::uint64_t clock_steps() const noexcept { return clock_.steps(); }

 private:
  sync::outbox& box_;
  clock_watch clock_;
  observer observer_;
};

}  // namespace semilab::agent
