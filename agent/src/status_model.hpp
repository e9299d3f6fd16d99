#pragma once
// What the status page, /metrics, the health topic and `semilab-agent status` show, gathered
// once a second on the main thread by status_sampler from thread-safe snapshots (runner status,
// engine stats, outbox counters, live values, host figures). No Beast here.
#include <semilab/agent/config.hpp>
#include <semilab/schemas/record.hpp>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "health.hpp"

namespace semilab::sync {
class outbox;
class engine;
}  // namespace semilab::sync

namespace semilab::agent {

struct instrument_status;

class runner;
class recorder;
class run_executor;

// Acquisition as the operator left it (control.hpp: pause / resume).
struct acquisition_state {
  bool paused = false;
  std::string by;            // who paused ("cli", a user name, "operator token")
  std::int64_t since_ns = 0;  // when
};

// Recent values per instrument and channel, fed by the recorder's observer (every record set
// just before the outbox takes it). Thread-safe.
class live_values {
 public:
  static constexpr std::size_t kPoints = 120;    // per channel, for the live plot
  static constexpr std::size_t kChannels = 16;   // per instrument at most (first seen)

  void observe(std::span<const schemas::record> records);

  struct channel {
    std::string unit;
    std::string last_text;  // every reported digit
    std::int64_t last_ts_ns = 0;
    std::uint32_t last_quality = 0;
    std::uint64_t count = 0;
    std::deque<std::pair<std::int64_t, double>> points;  // (ts_ns, value), oldest first
  };
  struct instrument {
    std::map<std::string, channel> channels;
    std::uint64_t compliance_hits = 0;
    std::int64_t last_compliance_ns = 0;
  };
  std::optional<instrument> get(const std::string& id) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, instrument> by_id_;
};

// Recent events for the page (state changes, operator actions, clock steps). Thread-safe.
class event_log {
 public:
  explicit event_log(std::size_t cap = 100) : cap_(cap) {}
  void add(std::int64_t ts_ns, std::string_view level, std::string_view source, std::string text);
  boost::json::array to_json() const;  // newest first

 private:
  struct entry {
    std::int64_t ts_ns;
    std::string level, source, text;
  };
  mutable std::mutex mu_;
  std::deque<entry> entries_;
  std::size_t cap_;
};

// The value as text with every digit it carries.
std::string value_text(const schemas::value& v);

// An instrument runner's own fields (id, model, connection, counters, last value and error), as
// the status page and the control socket's `instruments` both report them.
boost::json::object instrument_fields(const instrument_status& st);

class status_sampler {
 public:
  struct sources {
    const agent_config& cfg;
    sync::outbox& box;
    sync::engine& engine;
    recorder& rec;
    const std::vector<std::shared_ptr<runner>>& runners;
    live_values& values;
    event_log& events;
  };
  struct sample {
    std::string file_json;  // agent-status.json (what `status` reads): no plot points
    std::string page_json;  // /api/v1/status: the same plus plot points and events
    std::string health_json;
    std::string metrics;  // Prometheus text
    health::report health;
    bool health_changed = false;  // states or reason codes differ from the previous sample
  };

  status_sampler(sources s, std::int64_t started_ns, health::thresholds t = {});
  // Acquisition pause (instruments show `paused`, not stale) and recipe runs (runs in progress
  // on the page; instruments a run owns; check standards in instrument health). Set before the
  // first take(); either may be empty. `acquisition` is called on the sampling thread.
  void set_acquisition(std::function<acquisition_state()> acquisition) {
    acquisition_ = std::move(acquisition);
  }
  void set_runs(std::shared_ptr<run_executor> runs) { runs_ = std::move(runs); }
  // Main thread, about once a second. `counters`: the outbox counters as `status` shows them.
  sample take(std::int64_t now_ns, boost::json::object counters);

 private:
  struct host_figures {
    std::optional<std::uint64_t> disk_free, disk_total, rss;
    std::optional<double> cpu_percent;
    std::optional<bool> clock_synced;
    double cpu_seconds = 0;
  };
  host_figures host(std::int64_t now_ns);

  sources src_;
  std::function<acquisition_state()> acquisition_;
  std::shared_ptr<run_executor> runs_;
  std::int64_t started_ns_;
  health::thresholds thr_;
  // Previous sample, for rates and transitions.
  std::int64_t prev_ns_ = 0;
  std::uint64_t prev_bytes_ = 0;
  double prev_cpu_s_ = -1;
  std::int64_t prev_cpu_ns_ = 0;
  std::optional<double> cpu_percent_;
  double upload_rate_ = 0;
  bool prev_broker_ = false;
  bool first_ = true;
  std::int64_t broker_down_since_ = 0;
  std::uint64_t prev_steps_ = 0;
  std::int64_t last_step_ns_ = 0;
  std::map<std::string, bool> prev_connected_;
  std::vector<std::string> prev_alarms_;
  std::optional<health::report> prev_health_;
};

// {"instrument","transactions":[{"time_ns","command","bytes_out","bytes_in","duration_us","ok",
// "outcome"}]} newest first, or nullopt for an unknown instrument. Thread-safe.
std::optional<std::string> transactions_json(const std::vector<std::shared_ptr<runner>>& runners,
                                             std::string_view id);

}  // namespace semilab::agent
