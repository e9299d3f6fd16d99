#pragma once
// The health model: what the agent and each instrument look like to a technician, as a pure
// function of a snapshot of inputs (no clocks, no I/O: the daemon samples, this decides).
//
// Levels: ok < degraded (data still safe, someone should look) < failed (data is being lost or
// not produced). The state of a scope is the worst level among its reasons; reasons of level
// `ok` are notes (e.g. calibration due soon) that do not change the state. The agent's overall
// state is the worst of its own reasons and its instruments' states.
//
// Instruments also have a `paused` flag: acquisition paused by an operator (control.hpp). A paused
// instrument is not polled on purpose, so it is neither stale nor failed: its JSON state is
// "paused" (its level, from any other reasons such as an overdue calibration, is in "level"), and
// it does not lower the agent's state. An instrument a recipe run owns is not polled either: a
// note ("in_run") replaces the staleness checks until the run releases it.
//
// Check standards (runs.hpp): the latest completed check-standard run of an instrument feeds its
// health: a deviation beyond the recipe's limits is `degraded` ("check_standard_drift"); within
// them, a note.
//
// Change detection (`same_health`) compares states and reason codes only, not their texts,
// whose numbers (ages, counts) move every second: the health topic is republished on a change
// of meaning, and periodically.
#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace semilab::agent::health {

enum class level : std::uint8_t { ok = 0, degraded = 1, failed = 2 };
std::string_view to_string(level l) noexcept;

struct reason {
  level lvl = level::ok;
  std::string code;  // stable identifier, e.g. "not_answering", "outbox_backlog"
  std::string text;  // for people, with the figures
  friend bool operator==(const reason&, const reason&) = default;
};

// The latest check-standard result of an instrument: `deviation` = r - nominal (ohm),
// `deviation_rel` = deviation / nominal, judged against the recipe's [limits.deviation] and
// [limits.deviation_rel] (no limit: not judged).
struct check_standard {
  std::string run_id;
  std::int64_t finished_ns = 0;
  double deviation = 0;
  std::optional<double> r, deviation_rel;
  std::optional<double> min, max;
  std::optional<double> rel_min, rel_max;
  [[nodiscard]] bool exceeded() const noexcept {
    bool rel = deviation_rel && ((rel_min && *deviation_rel < *rel_min) ||
                                 (rel_max && *deviation_rel > *rel_max));
    return rel || (min && deviation < *min) || (max && deviation > *max);
  }
  [[nodiscard]] bool judged() const noexcept {
    return min || max || (deviation_rel && (rel_min || rel_max));
  }
};

struct instrument_input {
  std::string id;
  bool finished = false;        // `count` readings taken: no longer polled, not a fault
  bool connected = false;
  std::int64_t last_good_ns = 0;  // 0 = never
  double poll_interval_s = 1.0;
  std::uint64_t consecutive_errors = 0;
  std::string last_error;
  std::optional<double> latency_p50_ms;  // from the session's transaction ring
  std::optional<double> latency_p99_ms;
  double timeout_ms = 2000;
  std::uint64_t error_queue_entries = 0;  // instrument-reported errors since start
  std::int64_t last_error_queue_ns = 0;
  std::uint64_t compliance_hits = 0;  // readings flagged compliance since start
  std::int64_t last_compliance_ns = 0;
  std::int64_t calibration_due_ns = 0;  // 0 = not configured
  bool paused = false;                  // acquisition paused by an operator
  std::string paused_by;                // who paused it ("" = unknown)
  std::int64_t paused_ns = 0;           // when (0 = unknown)
  std::string run_id;                   // a recipe run owns the session ("" = none)
  std::optional<check_standard> check;  // latest check-standard result
};

struct agent_input {
  std::int64_t started_ns = 0;  // daemon start (grace period for "never")
  // outbox
  std::uint64_t held = 0;
  std::uint64_t held_bytes = 0;
  std::int64_t oldest_ts_ns = 0;  // 0 = empty
  std::uint64_t quota_bytes = 0;  // 0 = no quota
  std::uint32_t paused_classes = 0;
  std::vector<std::string> alarms;  // the outbox's alarms
  // upload
  double upload_bytes_per_s = 0;  // measured over the last sampling window
  double cap_bytes_per_s = 0;     // 0 = no cap
  std::int64_t last_ack_ns = 0;   // 0 = never
  bool broker_connected = false;
  std::int64_t broker_down_since_ns = 0;  // 0 = connected
  bool central_online = true;
  // host
  std::optional<std::uint64_t> disk_free_bytes;
  std::optional<std::uint64_t> disk_total_bytes;
  std::optional<bool> clock_synced;  // adjtimex; nullopt = unknown
  std::uint64_t clock_steps = 0;
  std::int64_t last_clock_step_ns = 0;
  std::optional<std::uint64_t> rss_bytes;
  std::optional<double> cpu_percent;  // of one core, over the last sampling window
};

struct thresholds {
  std::uint64_t failed_after_errors = 3;   // consecutive poll errors: failed (fewer: degraded)
  double stale_intervals = 5;              // no good reading for this many intervals ...
  double stale_min_s = 10;                 // ... and at least this long: failed
  double start_grace_s = 30;               // "never" is fine for this long after start
  double slow_fraction = 0.8;              // p99 above this fraction of the timeout: degraded
  double recent_s = 300;                   // error-queue / compliance / clock-step window
  double calibration_warn_days = 14;       // note before due; overdue: degraded
  double backlog_degraded_s = 300;         // oldest held record older: degraded
  double backlog_failed_s = 6 * 3600.0;    // ... older: failed
  double quota_degraded = 0.8;             // held bytes / quota
  double quota_failed = 0.95;
  double cap_fraction = 0.95;              // upload at this fraction of the cap with a backlog
  double ack_silence_s = 120;              // records held and no central ack for this long
  std::uint64_t disk_degraded_bytes = 1ull << 30;
  std::uint64_t disk_failed_bytes = 100ull << 20;
  bool clock_unsynced_degrades = false;    // an unsynchronised clock: note (default) or degraded
  std::uint64_t rss_degraded_bytes = 1ull << 30;
  double cpu_degraded_percent = 90;
};

struct instrument_health {
  std::string id;
  level state = level::ok;
  bool paused = false;  // JSON state "paused" (state keeps the level of the other reasons)
  std::vector<reason> reasons;
};

struct report {
  level state = level::ok;       // overall: worst of agent and instruments
  level agent_state = level::ok; // the agent's own reasons only
  std::vector<reason> reasons;   // the agent's own
  std::vector<instrument_health> instruments;
};

instrument_health evaluate_instrument(const instrument_input& in, std::int64_t now_ns,
                                      std::int64_t started_ns, const thresholds& t = {});
report evaluate(const agent_input& agent, const std::vector<instrument_input>& instruments,
                std::int64_t now_ns, const thresholds& t = {});

// Same states and reason codes everywhere (texts ignored).
bool same_health(const report& a, const report& b) noexcept;

// {"state","agent_state","reasons":[{"level","code","text"}],"instruments":[{"id","state",
// "level","paused","reasons"}]}; an instrument's "state" is "paused" while paused, else its level.
boost::json::object to_json(const report& r);
boost::json::object to_json(const instrument_health& h);

// "2027-03-31" (UTC midnight) -> ns since the epoch; nullopt when not a valid date.
std::optional<std::int64_t> parse_date_ns(std::string_view ymd);

}  // namespace semilab::agent::health
