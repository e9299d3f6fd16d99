#include "health.hpp"

#include <boost/json/array.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace semilab::agent::health {

namespace json = boost::json;

namespace {

constexpr double kNsPerS = 1e9;

double age_s(std::int64_t now_ns, std::int64_t then_ns) {
  return static_cast<double>(now_ns - then_ns) / kNsPerS;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// "42 s", "7.5 min", "3.2 h", "2.1 d"
std::string duration_text(double s) {
  if (s < 120) return fmt("%.0f s", s);
  if (s < 7200) return fmt("%.1f min", s / 60);
  if (s < 172800) return fmt("%.1f h", s / 3600);
  return fmt("%.1f d", s / 86400);
}

std::string bytes_text(double b) {
  if (b < 1024 * 1024) return fmt("%.0f KiB", b / 1024);
  if (b < 1024.0 * 1024 * 1024) return fmt("%.1f MiB", b / (1024 * 1024));
  return fmt("%.2f GiB", b / (1024.0 * 1024 * 1024));
}

std::string date_text(std::int64_t ns) {
  auto days = std::chrono::sys_days(std::chrono::floor<std::chrono::days>(
      std::chrono::sys_time<std::chrono::nanoseconds>(std::chrono::nanoseconds(ns))));
  std::chrono::year_month_day ymd(days);
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
  return buf;
}

level worst(const std::vector<reason>& rs) {
  level l = level::ok;
  for (const auto& r : rs) l = std::max(l, r.lvl);
  return l;
}

json::array reasons_json(const std::vector<reason>& rs) {
  json::array a;
  for (const auto& r : rs)
    a.push_back(json::object{{"level", to_string(r.lvl)}, {"code", r.code}, {"text", r.text}});
  return a;
}

}  // namespace

std::string_view to_string(level l) noexcept {
  switch (l) {
    case level::ok: return "ok";
    case level::degraded: return "degraded";
    case level::failed: return "failed";
  }
  return "failed";
}

instrument_health evaluate_instrument(const instrument_input& in, std::int64_t now_ns,
                                      std::int64_t started_ns, const thresholds& t) {
  instrument_health h;
  h.id = in.id;
  auto& rs = h.reasons;
  auto add = [&](level l, std::string code, std::string text) {
    rs.push_back({l, std::move(code), std::move(text)});
  };
  if (in.paused) {
    h.paused = true;
    std::string text = "acquisition paused";
    if (!in.paused_by.empty()) text += " by " + in.paused_by;
    if (in.paused_ns != 0) text += " " + duration_text(age_s(now_ns, in.paused_ns)) + " ago";
    add(level::ok, "paused", text + ": not polled until resumed");
  } else if (!in.run_id.empty()) {
    add(level::ok, "in_run", "measuring for run " + in.run_id + " (polling paused)");
  }
  if (!in.finished && !in.paused && in.run_id.empty()) {
    std::string why = in.last_error.empty() ? std::string() : ": " + in.last_error;
    if (in.consecutive_errors >= t.failed_after_errors)
      add(level::failed, "not_answering",
          std::to_string(in.consecutive_errors) + " polls failed in a row" + why);
    else if (in.consecutive_errors > 0)
      add(level::degraded, "poll_errors",
          std::to_string(in.consecutive_errors) + " poll(s) failed in a row" + why);
    double stale_after = std::max(t.stale_min_s, t.stale_intervals * in.poll_interval_s);
    if (in.last_good_ns == 0) {
      if (age_s(now_ns, started_ns) > std::max(t.start_grace_s, stale_after))
        add(level::failed, "no_reading", "no good reading since the agent started " +
                                             duration_text(age_s(now_ns, started_ns)) + " ago");
    } else if (age_s(now_ns, in.last_good_ns) > stale_after) {
      add(level::failed, "stale",
          "last good reading " + duration_text(age_s(now_ns, in.last_good_ns)) + " ago");
    }
    if (in.latency_p99_ms && *in.latency_p99_ms > t.slow_fraction * in.timeout_ms)
      add(level::degraded, "slow",
          fmt("replies slow: p99 %.0f ms", *in.latency_p99_ms) +
              fmt(" against a %.0f ms timeout", in.timeout_ms));
  }
  if (in.last_error_queue_ns != 0 && age_s(now_ns, in.last_error_queue_ns) <= t.recent_s)
    add(level::degraded, "error_queue",
        "instrument reported errors (" + std::to_string(in.error_queue_entries) +
            " since start, last " + duration_text(age_s(now_ns, in.last_error_queue_ns)) + " ago)");
  if (in.last_compliance_ns != 0 && age_s(now_ns, in.last_compliance_ns) <= t.recent_s)
    add(level::degraded, "compliance",
        "in compliance (" + std::to_string(in.compliance_hits) + " readings since start, last " +
            duration_text(age_s(now_ns, in.last_compliance_ns)) + " ago)");
  if (in.calibration_due_ns != 0) {
    double left_s = -age_s(now_ns, in.calibration_due_ns);
    if (left_s < 0)
      add(level::degraded, "calibration_overdue",
          "calibration overdue since " + date_text(in.calibration_due_ns));
    else if (left_s < t.calibration_warn_days * 86400)
      add(level::ok, "calibration_due",
          "calibration due " + date_text(in.calibration_due_ns) + " (in " + duration_text(left_s) +
              ")");
  }
  if (in.check && in.check->judged()) {
    const auto& c = *in.check;
    std::string dev = fmt("deviation %+.4g ohm", c.deviation);
    if (c.deviation_rel) dev += fmt(" (%+.1f ppm)", *c.deviation_rel * 1e6);
    std::string lim;
    auto bound = [&](const char* what, const std::optional<double>& lo,
                     const std::optional<double>& hi, double scale, const char* unit) {
      if (!lo && !hi) return;
      lim += lim.empty() ? "" : ", ";
      lim += what;
      lim += " [";
      lim += lo ? fmt("%.4g", *lo * scale) : std::string("-inf");
      lim += ", ";
      lim += hi ? fmt("%.4g", *hi * scale) : std::string("+inf");
      lim += "] ";
      lim += unit;
    };
    bound("deviation", c.min, c.max, 1, "ohm");
    bound("relative", c.rel_min, c.rel_max, 1e6, "ppm");
    std::string when = c.finished_ns ? ", " + duration_text(age_s(now_ns, c.finished_ns)) + " ago"
                                     : std::string();
    if (c.exceeded())
      add(level::degraded, "check_standard_drift",
          "check standard out of limits: " + dev + " outside the recipe's " + lim + " (run " +
              c.run_id + when + ")");
    else
      add(level::ok, "check_standard",
          "check standard within limits: " + dev + " (run " + c.run_id + when + ")");
  }
  h.state = worst(rs);
  return h;
}

report evaluate(const agent_input& a, const std::vector<instrument_input>& instruments,
                std::int64_t now_ns, const thresholds& t) {
  report r;
  auto& rs = r.reasons;
  auto add = [&](level l, std::string code, std::string text) {
    rs.push_back({l, std::move(code), std::move(text)});
  };

  // Outbox: intake paused means measurements are being refused: data is lost now.
  if (a.paused_classes != 0)
    add(level::failed, "intake_paused", "outbox full: new records are refused");
  for (const auto& al : a.alarms) add(level::degraded, "alarm", al);
  if (a.held > 0 && a.oldest_ts_ns != 0) {
    double age = age_s(now_ns, a.oldest_ts_ns);
    std::string text = std::to_string(a.held) + " records wait, oldest " + duration_text(age);
    if (age > t.backlog_failed_s) add(level::failed, "outbox_backlog", text);
    else if (age > t.backlog_degraded_s) add(level::degraded, "outbox_backlog", text);
  }
  if (a.quota_bytes > 0) {
    double used = static_cast<double>(a.held_bytes) / static_cast<double>(a.quota_bytes);
    std::string text = fmt("outbox at %.0f %% of its quota", used * 100) + " (" +
                       bytes_text(static_cast<double>(a.held_bytes)) + " of " +
                       bytes_text(static_cast<double>(a.quota_bytes)) + ")";
    if (used >= t.quota_failed) add(level::failed, "quota", text);
    else if (used >= t.quota_degraded) add(level::degraded, "quota", text);
  }

  // Upload.
  if (!a.broker_connected) {
    std::string since = a.broker_down_since_ns
                            ? " for " + duration_text(age_s(now_ns, a.broker_down_since_ns))
                            : std::string();
    add(level::degraded, "broker_down", "not connected to the broker" + since);
  } else if (!a.central_online) {
    add(level::degraded, "central_offline", "every central instance says offline");
  }
  if (a.held > 0) {
    bool silent = a.last_ack_ns == 0 ? age_s(now_ns, a.started_ns) > t.ack_silence_s
                                     : age_s(now_ns, a.last_ack_ns) > t.ack_silence_s;
    if (silent)
      add(level::degraded, "no_ack",
          (a.last_ack_ns == 0 ? std::string("no central ack yet")
                              : "no central ack for " +
                                    duration_text(age_s(now_ns, a.last_ack_ns))) +
              ", " + std::to_string(a.held) + " records held");
  }
  if (a.cap_bytes_per_s > 0 && a.held > 0 &&
      a.upload_bytes_per_s >= t.cap_fraction * a.cap_bytes_per_s)
    add(level::degraded, "at_cap",
        fmt("upload at its cap (%.0f", a.upload_bytes_per_s) +
            fmt(" of %.0f bytes/s) with a backlog", a.cap_bytes_per_s));

  // Host.
  if (a.disk_free_bytes) {
    std::string text = "disk free " + bytes_text(static_cast<double>(*a.disk_free_bytes));
    if (*a.disk_free_bytes < t.disk_failed_bytes) add(level::failed, "disk_low", text);
    else if (*a.disk_free_bytes < t.disk_degraded_bytes) add(level::degraded, "disk_low", text);
  }
  if (a.clock_synced && !*a.clock_synced)
    add(t.clock_unsynced_degrades ? level::degraded : level::ok, "clock_unsynced",
        "system clock not synchronised (NTP)");
  if (a.last_clock_step_ns != 0 && age_s(now_ns, a.last_clock_step_ns) <= t.recent_s)
    add(level::degraded, "clock_step",
        "wall clock stepped " + duration_text(age_s(now_ns, a.last_clock_step_ns)) + " ago (" +
            std::to_string(a.clock_steps) + " since start); records are flagged");
  if (a.rss_bytes && *a.rss_bytes > t.rss_degraded_bytes)
    add(level::degraded, "memory", "resident memory " + bytes_text(static_cast<double>(*a.rss_bytes)));
  if (a.cpu_percent && *a.cpu_percent > t.cpu_degraded_percent)
    add(level::degraded, "cpu", fmt("CPU %.0f %% of a core", *a.cpu_percent));

  r.agent_state = worst(rs);
  r.state = r.agent_state;
  for (const auto& in : instruments) {
    r.instruments.push_back(evaluate_instrument(in, now_ns, a.started_ns, t));
    r.state = std::max(r.state, r.instruments.back().state);
  }
  return r;
}

bool same_health(const report& a, const report& b) noexcept {
  auto same = [](const std::vector<reason>& x, const std::vector<reason>& y) {
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i)
      if (x[i].lvl != y[i].lvl || x[i].code != y[i].code) return false;
    return true;
  };
  if (a.state != b.state || a.agent_state != b.agent_state || !same(a.reasons, b.reasons) ||
      a.instruments.size() != b.instruments.size())
    return false;
  for (std::size_t i = 0; i < a.instruments.size(); ++i) {
    const auto &x = a.instruments[i], &y = b.instruments[i];
    if (x.id != y.id || x.state != y.state || x.paused != y.paused || !same(x.reasons, y.reasons))
      return false;
  }
  return true;
}

json::object to_json(const instrument_health& h) {
  return {{"id", h.id},
          {"state", h.paused ? std::string_view("paused") : to_string(h.state)},
          {"level", to_string(h.state)},
          {"paused", h.paused},
          {"reasons", reasons_json(h.reasons)}};
}

json::object to_json(const report& r) {
  json::array ins;
  for (const auto& h : r.instruments) ins.push_back(to_json(h));
  return {{"state", to_string(r.state)},
          {"agent_state", to_string(r.agent_state)},
          {"reasons", reasons_json(r.reasons)},
          {"instruments", std::move(ins)}};
}

std::optional<std::int64_t> parse_date_ns(std::string_view s) {
  int y = 0;
  unsigned m = 0, d = 0;
  char tail = 0;
  if (s.size() != 10) return std::nullopt;
  std::string z(s);
  if (std::sscanf(z.c_str(), "%4d-%2u-%2u%c", &y, &m, &d, &tail) != 3) return std::nullopt;
  std::chrono::year_month_day ymd{std::chrono::year(y), std::chrono::month(m), std::chrono::day(d)};
  if (!ymd.ok()) return std::nullopt;
  auto tp = std::chrono::sys_days(ymd);
  return std::chrono::duration_cast<std::chrono::nanoseconds>(tp.time_since_epoch()).count();
}

}  // namespace semilab::agent::health
