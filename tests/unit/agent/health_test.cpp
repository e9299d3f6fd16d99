// Health rules: each input that should change the state does, with a reason naming it.
#include <doctest/doctest.h>

#include <algorithm>

#include "health.hpp"

using namespace semilab::agent::health;

namespace {

constexpr std::int64_t kS = 1'000'000'000;
constexpr std::int64_t kNow = 1'800'000'000 * kS;  // 2027-01-15

instrument_input good_instrument() {
  instrument_input in;
  in.id = "smu1";
  in.connected = true;
  in.last_good_ns = kNow - kS / 2;
  in.poll_interval_s = 1;
  in.latency_p50_ms = 2;
  in.latency_p99_ms = 5;
  in.timeout_ms = 2000;
  return in;
}

agent_input good_agent() {
  agent_input a;
  a.started_ns = kNow - 3600 * kS;
  a.held = 10;
  a.held_bytes = 1000;
  a.oldest_ts_ns = kNow - 2 * kS;
  a.quota_bytes = 1ull << 30;
  a.broker_connected = true;
  a.last_ack_ns = kNow - kS;
  a.disk_free_bytes = 50ull << 30;
  a.disk_total_bytes = 100ull << 30;
  a.clock_synced = true;
  a.rss_bytes = 40ull << 20;
  a.cpu_percent = 3;
  return a;
}

bool has(const std::vector<reason>& rs, std::string_view code, level l) {
  return std::any_of(rs.begin(), rs.end(), [&](const reason& r) { return r.code == code && r.lvl == l; });
}

}  // namespace

TEST_CASE("a healthy agent with a healthy instrument is ok, without reasons") {
  auto r = evaluate(good_agent(), {good_instrument()}, kNow);
  CHECK(r.state == level::ok);
  CHECK(r.agent_state == level::ok);
  CHECK(r.reasons.empty());
  REQUIRE(r.instruments.size() == 1);
  CHECK(r.instruments[0].state == level::ok);
  CHECK(r.instruments[0].reasons.empty());
}

TEST_CASE("instrument: consecutive errors degrade, then fail; stale and never fail") {
  auto in = good_instrument();
  in.consecutive_errors = 1;
  in.last_error = "timeout";
  auto h = evaluate_instrument(in, kNow, kNow - 3600 * kS);
  CHECK(h.state == level::degraded);
  CHECK(has(h.reasons, "poll_errors", level::degraded));
  CHECK(h.reasons[0].text.find("timeout") != std::string::npos);

  in.consecutive_errors = 3;
  in.connected = false;
  h = evaluate_instrument(in, kNow, kNow - 3600 * kS);
  CHECK(h.state == level::failed);
  CHECK(has(h.reasons, "not_answering", level::failed));

  auto stale = good_instrument();
  stale.last_good_ns = kNow - 11 * kS;  // > max(10 s, 5 intervals)
  CHECK(evaluate_instrument(stale, kNow, kNow - 3600 * kS).state == level::failed);
  stale.poll_interval_s = 10;  // 5 intervals = 50 s: still fresh
  CHECK(evaluate_instrument(stale, kNow, kNow - 3600 * kS).state == level::ok);

  auto never = good_instrument();
  never.last_good_ns = 0;
  CHECK(evaluate_instrument(never, kNow, kNow - 5 * kS).state == level::ok);  // start grace
  auto h2 = evaluate_instrument(never, kNow, kNow - 60 * kS);
  CHECK(h2.state == level::failed);
  CHECK(has(h2.reasons, "no_reading", level::failed));
}

TEST_CASE("instrument: a finished instrument is not stale, slow replies degrade") {
  auto in = good_instrument();
  in.finished = true;
  in.connected = false;
  in.last_good_ns = kNow - 3600 * kS;
  CHECK(evaluate_instrument(in, kNow, kNow - 7200 * kS).state == level::ok);

  auto slow = good_instrument();
  slow.latency_p99_ms = 1700;  // > 0.8 * 2000
  auto h = evaluate_instrument(slow, kNow, kNow - 3600 * kS);
  CHECK(h.state == level::degraded);
  CHECK(has(h.reasons, "slow", level::degraded));
}

TEST_CASE("instrument: recent error-queue entries and compliance degrade; old ones do not") {
  auto in = good_instrument();
  in.error_queue_entries = 2;
  in.last_error_queue_ns = kNow - 10 * kS;
  CHECK(has(evaluate_instrument(in, kNow, 0).reasons, "error_queue", level::degraded));
  in.last_error_queue_ns = kNow - 301 * kS;
  CHECK(evaluate_instrument(in, kNow, kNow - 3600 * kS).state == level::ok);

  auto c = good_instrument();
  c.compliance_hits = 5;
  c.last_compliance_ns = kNow - kS;
  auto h = evaluate_instrument(c, kNow, kNow - 3600 * kS);
  CHECK(h.state == level::degraded);
  CHECK(has(h.reasons, "compliance", level::degraded));
}

TEST_CASE("instrument: calibration due soon is a note, overdue degrades") {
  auto in = good_instrument();
  in.calibration_due_ns = kNow + 7 * 86400 * kS;
  auto h = evaluate_instrument(in, kNow, kNow - 3600 * kS);
  CHECK(h.state == level::ok);
  CHECK(has(h.reasons, "calibration_due", level::ok));
  in.calibration_due_ns = kNow + 30 * 86400 * kS;
  CHECK(evaluate_instrument(in, kNow, kNow - 3600 * kS).reasons.empty());
  in.calibration_due_ns = kNow - 86400 * kS;
  h = evaluate_instrument(in, kNow, kNow - 3600 * kS);
  CHECK(h.state == level::degraded);
  CHECK(has(h.reasons, "calibration_overdue", level::degraded));
  CHECK(h.reasons[0].text.find("2027-01-14") != std::string::npos);
}

TEST_CASE("agent: outbox backlog, quota and paused intake") {
  auto a = good_agent();
  a.oldest_ts_ns = kNow - 400 * kS;
  CHECK(has(evaluate(a, {}, kNow).reasons, "outbox_backlog", level::degraded));
  a.oldest_ts_ns = kNow - 7 * 3600 * kS;
  CHECK(evaluate(a, {}, kNow).state == level::failed);

  a = good_agent();
  a.held_bytes = a.quota_bytes * 85 / 100;
  CHECK(has(evaluate(a, {}, kNow).reasons, "quota", level::degraded));
  a.held_bytes = a.quota_bytes * 96 / 100;
  CHECK(has(evaluate(a, {}, kNow).reasons, "quota", level::failed));

  a = good_agent();
  a.paused_classes = 1u << 2;
  auto r = evaluate(a, {}, kNow);
  CHECK(r.state == level::failed);
  CHECK(has(r.reasons, "intake_paused", level::failed));

  a = good_agent();
  a.alarms = {"outbox replaced: corrupt"};
  r = evaluate(a, {}, kNow);
  CHECK(r.state == level::degraded);
  CHECK(r.reasons[0].text == "outbox replaced: corrupt");
}

TEST_CASE("agent: broker, central, acks and the upload cap") {
  auto a = good_agent();
  a.broker_connected = false;
  a.broker_down_since_ns = kNow - 90 * kS;
  auto r = evaluate(a, {}, kNow);
  CHECK(r.state == level::degraded);
  CHECK(has(r.reasons, "broker_down", level::degraded));
  CHECK(r.reasons[0].text.find("90 s") != std::string::npos);

  a = good_agent();
  a.central_online = false;
  CHECK(has(evaluate(a, {}, kNow).reasons, "central_offline", level::degraded));

  a = good_agent();
  a.last_ack_ns = kNow - 200 * kS;
  CHECK(has(evaluate(a, {}, kNow).reasons, "no_ack", level::degraded));
  a.held = 0;  // nothing waiting: silence is fine
  CHECK(evaluate(a, {}, kNow).state == level::ok);

  a = good_agent();
  a.cap_bytes_per_s = 10000;
  a.upload_bytes_per_s = 9900;
  CHECK(has(evaluate(a, {}, kNow).reasons, "at_cap", level::degraded));
  a.upload_bytes_per_s = 5000;
  CHECK(evaluate(a, {}, kNow).state == level::ok);
}

TEST_CASE("agent: disk, clock, memory and CPU") {
  auto a = good_agent();
  a.disk_free_bytes = 500ull << 20;
  CHECK(has(evaluate(a, {}, kNow).reasons, "disk_low", level::degraded));
  a.disk_free_bytes = 50ull << 20;
  CHECK(has(evaluate(a, {}, kNow).reasons, "disk_low", level::failed));

  a = good_agent();
  a.clock_synced = false;
  auto r = evaluate(a, {}, kNow);
  CHECK(r.state == level::ok);  // a note by default
  CHECK(has(r.reasons, "clock_unsynced", level::ok));
  thresholds strict;
  strict.clock_unsynced_degrades = true;
  CHECK(evaluate(a, {}, kNow, strict).state == level::degraded);

  a = good_agent();
  a.clock_steps = 1;
  a.last_clock_step_ns = kNow - 30 * kS;
  CHECK(has(evaluate(a, {}, kNow).reasons, "clock_step", level::degraded));

  a = good_agent();
  a.rss_bytes = 2ull << 30;
  a.cpu_percent = 99;
  r = evaluate(a, {}, kNow);
  CHECK(has(r.reasons, "memory", level::degraded));
  CHECK(has(r.reasons, "cpu", level::degraded));
}

TEST_CASE("the overall state is the worst of agent and instruments; changes ignore texts") {
  auto bad = good_instrument();
  bad.consecutive_errors = 5;
  auto r1 = evaluate(good_agent(), {good_instrument(), bad}, kNow);
  CHECK(r1.agent_state == level::ok);
  CHECK(r1.state == level::failed);

  auto later = bad;
  later.consecutive_errors = 6;  // the text changes, the meaning does not
  auto r2 = evaluate(good_agent(), {good_instrument(), later}, kNow + kS);
  CHECK(r1.instruments[1].reasons[0].text != r2.instruments[1].reasons[0].text);
  CHECK(same_health(r1, r2));
  auto r3 = evaluate(good_agent(), {good_instrument(), good_instrument()}, kNow);
  CHECK_FALSE(same_health(r1, r3));

  auto j = to_json(r1);
  CHECK(j.at("state").as_string() == "failed");
  CHECK(j.at("agent_state").as_string() == "ok");
  CHECK(j.at("instruments").as_array()[1].as_object().at("reasons").as_array()[0].as_object().at(
            "code") == "not_answering");
}

TEST_CASE("calibration dates parse strictly") {
  CHECK(parse_date_ns("1970-01-02") == std::optional<std::int64_t>(86400 * kS));
  CHECK(parse_date_ns("2027-02-28").has_value());
  CHECK_FALSE(parse_date_ns("2027-02-30").has_value());
  CHECK_FALSE(parse_date_ns("2027-2-3").has_value());
  CHECK_FALSE(parse_date_ns("tomorrow").has_value());
  CHECK_FALSE(parse_date_ns("").has_value());
}

TEST_CASE("a paused instrument is paused, with who and when, not stale or failed") {
  auto in = good_instrument();
  in.last_good_ns = kNow - 3600 * kS;  // not polled for an hour: stale if it were not paused
  in.consecutive_errors = 4;           // left over from before the pause
  in.paused = true;
  in.paused_by = "eng";
  in.paused_ns = kNow - 3600 * kS;
  auto r = evaluate(good_agent(), {in}, kNow);
  REQUIRE(r.instruments.size() == 1);
  const auto& h = r.instruments[0];
  CHECK(h.paused);
  CHECK(h.state == level::ok);
  CHECK(r.state == level::ok);
  CHECK(has(h.reasons, "paused", level::ok));
  CHECK_FALSE(has(h.reasons, "stale", level::failed));
  CHECK_FALSE(has(h.reasons, "not_answering", level::failed));
  REQUIRE_FALSE(h.reasons.empty());
  CHECK(h.reasons[0].text.find("paused by eng") != std::string::npos);
  CHECK(h.reasons[0].text.find("60.0 min ago") != std::string::npos);
  auto j = to_json(h);
  CHECK(j.at("state").as_string() == "paused");
  CHECK(j.at("level").as_string() == "ok");
  CHECK(j.at("paused").as_bool());

  // The same instrument, not paused: failed (stale, not answering).
  auto running = in;
  running.paused = false;
  auto r2 = evaluate(good_agent(), {running}, kNow);
  CHECK(r2.instruments[0].state == level::failed);
  CHECK(has(r2.instruments[0].reasons, "stale", level::failed));
  CHECK(to_json(r2.instruments[0]).at("state").as_string() == "failed");
  CHECK_FALSE(same_health(r, r2));

  // Paused with an overdue calibration: still shown paused; its level says degraded.
  in.calibration_due_ns = kNow - 86400 * kS;
  auto r3 = evaluate(good_agent(), {in}, kNow);
  CHECK(r3.instruments[0].state == level::degraded);
  CHECK(to_json(r3.instruments[0]).at("state").as_string() == "paused");
  CHECK(to_json(r3.instruments[0]).at("level").as_string() == "degraded");

  // Pausing changes the meaning even when the level does not.
  auto idle = good_instrument();
  auto paused_idle = idle;
  paused_idle.paused = true;
  CHECK_FALSE(same_health(evaluate(good_agent(), {idle}, kNow),
                          evaluate(good_agent(), {paused_idle}, kNow)));
}

TEST_CASE("an instrument a run owns is not stale while the run lasts") {
  auto in = good_instrument();
  in.last_good_ns = kNow - 600 * kS;
  in.run_id = "run-1-abcd";
  auto h = evaluate_instrument(in, kNow, kNow - 3600 * kS);
  CHECK(h.state == level::ok);
  CHECK(has(h.reasons, "in_run", level::ok));
  CHECK_FALSE(has(h.reasons, "stale", level::failed));
  CHECK(h.reasons[0].text.find("run-1-abcd") != std::string::npos);
}

TEST_CASE("check-standard drift beyond the recipe's limit degrades the instrument") {
  auto in = good_instrument();
  check_standard c;
  c.run_id = "run-cs-1";
  c.finished_ns = kNow - 120 * kS;
  c.r = 100.05;
  c.deviation = 0.05;  // ohm
  c.deviation_rel = 5e-4;
  c.max = 0.02;
  c.min = -0.02;
  in.check = c;
  auto h = evaluate_instrument(in, kNow, kNow - 3600 * kS);
  CHECK(h.state == level::degraded);
  REQUIRE(has(h.reasons, "check_standard_drift", level::degraded));
  const auto& text = h.reasons.back().text;
  CHECK(text.find("+0.05 ohm") != std::string::npos);
  CHECK(text.find("+500.0 ppm") != std::string::npos);
  CHECK(text.find("[-0.02, 0.02] ohm") != std::string::npos);
  CHECK(text.find("run-cs-1") != std::string::npos);

  // Below the lower limit too.
  in.check->deviation = -0.03;
  CHECK(has(evaluate_instrument(in, kNow, 0).reasons, "check_standard_drift", level::degraded));
  // Within the limits: a note, the instrument stays ok.
  in.check->deviation = 0.01;
  h = evaluate_instrument(in, kNow, 0);
  CHECK(h.state == level::ok);
  CHECK(has(h.reasons, "check_standard", level::ok));
  // A relative limit alone judges the relative deviation.
  in.check->min.reset();
  in.check->max.reset();
  in.check->rel_max = 1e-4;
  in.check->deviation_rel = 2e-4;
  h = evaluate_instrument(in, kNow, 0);
  CHECK(h.state == level::degraded);
  CHECK(h.reasons.back().text.find("relative [-inf, 100] ppm") != std::string::npos);
  // No limit in the recipe: not judged, no reason.
  in.check->rel_max.reset();
  h = evaluate_instrument(in, kNow, 0);
  CHECK(h.state == level::ok);
  CHECK(h.reasons.empty());
  // The drift makes the whole agent degraded.
  in.check->max = 0.001;
  auto r = evaluate(good_agent(), {in}, kNow);
  CHECK(r.state == level::degraded);
  CHECK(r.agent_state == level::ok);
}
