#include "status_model.hpp"

#include <semilab/agent/recorder.hpp>
#include <semilab/sync/engine.hpp>
#include <semilab/sync/outbox.hpp>

#include <boost/json.hpp>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/timex.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>

#include "instrument_runner.hpp"
#include "metrics.hpp"
#include "runs.hpp"

namespace semilab::agent {

namespace json = boost::json;

// ---------------------------------------------------------------------------------------------

void live_values::observe(std::span<const schemas::record> records) {
  std::lock_guard lk(mu_);
  for (const auto& r : records) {
    if (r.cls != schemas::record_class::telemetry) continue;
    auto& ins = by_id_[r.instrument];
    if (r.quality & schemas::quality::compliance) {
      ++ins.compliance_hits;
      ins.last_compliance_ns = r.ts_ns;
    }
    auto it = ins.channels.find(r.channel);
    if (it == ins.channels.end()) {
      if (ins.channels.size() >= kChannels) continue;
      it = ins.channels.emplace(r.channel, channel{}).first;
    }
    auto& ch = it->second;
    ch.unit = r.unit;
    ch.last_text = value_text(r.val);
    ch.last_ts_ns = r.ts_ns;
    ch.last_quality = r.quality;
    ++ch.count;
    double v = schemas::value_as_double(r.val);
    if (std::isfinite(v)) {
      ch.points.emplace_back(r.ts_ns, v);
      if (ch.points.size() > kPoints) ch.points.pop_front();
    }
  }
}

std::optional<live_values::instrument> live_values::get(const std::string& id) const {
  std::lock_guard lk(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return std::nullopt;
  return it->second;
}

void event_log::add(std::int64_t ts_ns, std::string_view level, std::string_view source,
                    std::string text) {
  std::lock_guard lk(mu_);
  entries_.push_back({ts_ns, std::string(level), std::string(source), std::move(text)});
  while (entries_.size() > cap_) entries_.pop_front();
}

json::array event_log::to_json() const {
  std::lock_guard lk(mu_);
  json::array a;
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it)
    a.push_back(json::object{{"ts_ns", std::to_string(it->ts_ns)},
                             {"level", it->level},
                             {"source", it->source},
                             {"text", it->text}});
  return a;
}

json::object instrument_fields(const instrument_status& st) {
  return json::object{{"id", st.id},
                      {"model", st.model},
                      {"resource", st.resource},
                      {"idn", st.idn},
                      {"connected", st.connected},
                      {"finished", st.finished},
                      {"readings", st.readings},
                      {"errors", st.errors},
                      {"consecutive_errors", st.consecutive_errors},
                      {"last_good_ns", std::to_string(st.last_good_ns)},
                      {"last_value", st.last_value},
                      {"last_error", st.last_error}};
}

std::string value_text(const schemas::value& v) {
  struct visitor {
    std::string operator()(double d) const {
      char buf[32];
      auto r = std::to_chars(buf, buf + sizeof buf, d);
      return std::string(buf, r.ptr);
    }
    std::string operator()(std::int64_t i) const { return std::to_string(i); }
    std::string operator()(const schemas::decimal& d) const { return d.to_string(); }
    std::string operator()(const std::string& s) const { return s; }
  };
  return std::visit(visitor{}, v);
}

// ---------------------------------------------------------------------------------------------

namespace {

// Nearest rank over successful transactions (microseconds -> ms).
std::pair<std::optional<double>, std::optional<double>> percentiles(
    const std::vector<drivers::scpi_session::transaction>& ts) {
  std::vector<double> d;
  for (const auto& t : ts)
    if (!t.outcome) d.push_back(static_cast<double>(t.duration.count()) / 1000.0);
  if (d.empty()) return {};
  std::sort(d.begin(), d.end());
  auto rank = [&](double p) {
    auto i = static_cast<std::size_t>(std::ceil(p * static_cast<double>(d.size())));
    return d[std::clamp<std::size_t>(i, 1, d.size()) - 1];
  };
  return {rank(0.50), rank(0.99)};
}

json::value opt_json(const std::optional<double>& v) {
  if (!v) return nullptr;
  return std::round(*v * 1000) / 1000;
}

}  // namespace

status_sampler::status_sampler(sources s, std::int64_t started_ns, health::thresholds t)
    : src_(s), started_ns_(started_ns), thr_(t) {}

status_sampler::host_figures status_sampler::host(std::int64_t now_ns) {
  host_figures h;
  struct statvfs vfs {};
  if (::statvfs(src_.cfg.data_dir.c_str(), &vfs) == 0) {
    h.disk_free = static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    h.disk_total = static_cast<std::uint64_t>(vfs.f_blocks) * vfs.f_frsize;
  }
  {
    std::ifstream f("/proc/self/statm");
    std::uint64_t size = 0, resident = 0;
    if (f >> size >> resident)
      h.rss = resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  }
  struct rusage ru {};
  if (::getrusage(RUSAGE_SELF, &ru) == 0) {
    h.cpu_seconds = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                    static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    // Over at least half a second, else the figure is noise.
    if (prev_cpu_s_ >= 0 && now_ns - prev_cpu_ns_ >= 500'000'000) {
      h.cpu_percent = 100.0 * (h.cpu_seconds - prev_cpu_s_) /
                      (static_cast<double>(now_ns - prev_cpu_ns_) / 1e9);
      prev_cpu_s_ = h.cpu_seconds;
      prev_cpu_ns_ = now_ns;
      cpu_percent_ = h.cpu_percent;
    } else if (prev_cpu_s_ < 0) {
      prev_cpu_s_ = h.cpu_seconds;
      prev_cpu_ns_ = now_ns;
    } else {
      h.cpu_percent = cpu_percent_;
    }
  }
  // Read-only query (modes = 0) needs no privilege; TIME_ERROR means "not synchronised".
  struct timex tx {};
  int state = ::adjtimex(&tx);
  if (state >= 0) h.clock_synced = state != TIME_ERROR && !(tx.status & STA_UNSYNC);
  return h;
}

status_sampler::sample status_sampler::take(std::int64_t now_ns, json::object counters) {
  const auto& cfg = src_.cfg;
  auto es = src_.engine.stats();
  auto oc = src_.box.counters();
  auto alarms = src_.box.alarms();
  auto hf = host(now_ns);
  auto& events = src_.events;

  if (prev_ns_ != 0 && now_ns > prev_ns_ && es.bytes_published >= prev_bytes_)
    upload_rate_ = static_cast<double>(es.bytes_published - prev_bytes_) /
                   (static_cast<double>(now_ns - prev_ns_) / 1e9);
  if (first_ || es.broker_connected != prev_broker_) {
    if (!es.broker_connected) broker_down_since_ = now_ns;
    if (!first_ || !es.broker_connected)
      events.add(now_ns, es.broker_connected ? "ok" : "degraded", "broker",
                 es.broker_connected ? "connected to " + cfg.broker
                                     : "not connected to " + cfg.broker);
  }
  if (es.broker_connected) broker_down_since_ = 0;
  auto steps = src_.rec.clock_steps();
  if (steps > prev_steps_) {
    last_step_ns_ = now_ns;
    events.add(now_ns, "degraded", "clock",
               "wall clock stepped (" + std::to_string(steps) + " since start)");
  }
  for (const auto& a : alarms)
    if (std::find(prev_alarms_.begin(), prev_alarms_.end(), a) == prev_alarms_.end())
      events.add(now_ns, "degraded", "outbox", a);

  // Acquisition pause and recipe runs: which instruments a run owns, their check standards.
  const acquisition_state acq = acquisition_ ? acquisition_() : acquisition_state{};
  std::vector<run_view> run_list;
  std::map<std::string, std::string> owner;  // instrument -> run id (running or waiting)
  std::map<std::string, health::check_standard> checks;
  if (runs_) {
    run_list = runs_->list();
    for (const auto& r : run_list)
      if (r.state == run_state::running || r.state == run_state::waiting)
        for (const auto& [role, inst] : r.bindings) owner[inst] = r.id;
    for (auto& cs : runs_->check_standards()) checks[cs.instrument] = cs;
  }

  // Instruments.
  std::vector<health::instrument_input> hin;
  json::array file_ins, page_ins;
  metrics::exposition mx;
  std::vector<instrument_status> statuses;
  for (std::size_t i = 0; i < src_.runners.size(); ++i) {
    auto st = src_.runners[i]->status();
    const auto& ic = cfg.instruments[i];
    auto lv = src_.values.get(st.id);
    auto [p50, p99] = percentiles(st.transactions);

    health::instrument_input in;
    in.id = st.id;
    in.finished = st.finished;
    in.connected = st.connected;
    in.last_good_ns = st.last_good_ns;
    in.poll_interval_s = ic.poll_interval_s;
    in.consecutive_errors = st.consecutive_errors;
    in.last_error = st.last_error;
    in.latency_p50_ms = p50;
    in.latency_p99_ms = p99;
    in.timeout_ms = static_cast<double>(ic.timeout_ms);
    in.error_queue_entries = st.error_queue_entries;
    in.last_error_queue_ns = st.last_error_queue_ns;
    if (lv) {
      in.compliance_hits = lv->compliance_hits;
      in.last_compliance_ns = lv->last_compliance_ns;
    }
    if (!ic.calibration_due.empty())
      in.calibration_due_ns = health::parse_date_ns(ic.calibration_due).value_or(0);
    in.paused = acq.paused;
    in.paused_by = acq.by;
    in.paused_ns = acq.since_ns;
    if (auto o = owner.find(st.id); o != owner.end()) in.run_id = o->second;
    if (auto c = checks.find(st.id); c != checks.end()) in.check = c->second;
    hin.push_back(in);

    auto pc = prev_connected_.find(st.id);
    if ((pc == prev_connected_.end() && st.connected) ||
        (pc != prev_connected_.end() && pc->second != st.connected))
      events.add(now_ns, st.connected ? "ok" : "degraded", st.id,
                 st.connected ? "answering" + (st.idn.empty() ? std::string() : ": " + st.idn)
                              : "not answering: " + st.last_error);
    prev_connected_[st.id] = st.connected;

    json::object o = instrument_fields(st);
    o["poll_interval_s"] = ic.poll_interval_s;
    o["latency_p50_ms"] = opt_json(p50);
    o["latency_p99_ms"] = opt_json(p99);
    o["polls"] = st.poll_latency.count;
    o["error_queue_entries"] = st.error_queue_entries;
    o["compliance_hits"] = lv ? lv->compliance_hits : 0;
    o["calibration_due"] = ic.calibration_due;
    o["reconnects_requested"] = st.reconnects_requested;
    o["connects"] = st.connects;
    o["paused"] = acq.paused;
    o["run_id"] = in.run_id;
    o["supports_transactions"] = !ic.modbus_map;
    json::array chans, page_chans;
    if (lv) {
      for (const auto& [name, ch] : lv->channels) {
        json::object c{{"channel", name},
                       {"unit", ch.unit},
                       {"value", ch.last_text},
                       {"ts_ns", std::to_string(ch.last_ts_ns)},
                       {"quality", ch.last_quality},
                       {"count", ch.count}};
        json::object pcj = c;
        // Plot points as [seconds before written_ns, value]: small numbers a browser keeps exact
        // enough for a plot, no 64-bit integers.
        json::array pts;
        for (const auto& [ts, v] : ch.points)
          pts.push_back(json::array{std::round(static_cast<double>(ts - now_ns) / 1e6) / 1e3, v});
        pcj["points"] = std::move(pts);
        chans.push_back(std::move(c));
        page_chans.push_back(std::move(pcj));
      }
    }
    o["channels"] = std::move(chans);
    json::object po = o;
    po["channels"] = std::move(page_chans);
    file_ins.push_back(std::move(o));
    page_ins.push_back(std::move(po));
    statuses.push_back(std::move(st));
  }

  // Health.
  health::agent_input ai;
  ai.started_ns = started_ns_;
  ai.held = oc.held;
  ai.held_bytes = oc.held_bytes;
  ai.oldest_ts_ns = oc.oldest_ts_ns;
  ai.quota_bytes = static_cast<std::uint64_t>(cfg.quota_mb) << 20;
  ai.paused_classes = oc.paused_classes;
  ai.alarms = alarms;
  ai.upload_bytes_per_s = upload_rate_;
  ai.cap_bytes_per_s = cfg.max_bytes_per_s;
  ai.last_ack_ns = es.last_ack_ns;
  ai.broker_connected = es.broker_connected;
  ai.broker_down_since_ns = broker_down_since_;
  ai.central_online = es.central_online;
  ai.disk_free_bytes = hf.disk_free;
  ai.disk_total_bytes = hf.disk_total;
  ai.clock_synced = hf.clock_synced;
  ai.clock_steps = steps;
  ai.last_clock_step_ns = last_step_ns_;
  ai.rss_bytes = hf.rss;
  ai.cpu_percent = hf.cpu_percent;
  sample out;
  out.health = health::evaluate(ai, hin, now_ns, thr_);
  if (acq.paused)  // a note: pausing is deliberate, the instruments say "paused"
    out.health.reasons.push_back(
        {health::level::ok, "acquisition_paused",
         "acquisition paused" + (acq.by.empty() ? std::string() : " by " + acq.by)});
  out.health_changed = !prev_health_ || !health::same_health(*prev_health_, out.health);
  if (out.health_changed) {
    auto lvl = health::to_string(out.health.state);
    std::string why;
    for (const auto& r : out.health.reasons)
      if (r.lvl != health::level::ok) why += (why.empty() ? "" : "; ") + r.text;
    for (const auto& ih : out.health.instruments)
      for (const auto& r : ih.reasons)
        if (r.lvl != health::level::ok) why += (why.empty() ? "" : "; ") + ih.id + ": " + r.text;
    events.add(now_ns, lvl, "health", std::string("health ") + std::string(lvl) +
                                           (why.empty() ? std::string() : ": " + why));
  }
  auto hj = health::to_json(out.health);
  hj["agent_id"] = cfg.id;
  hj["site"] = cfg.site;
  hj["ts_ns"] = std::to_string(now_ns);
  out.health_json = json::serialize(hj);

  double oldest_age =
      oc.held && oc.oldest_ts_ns ? static_cast<double>(now_ns - oc.oldest_ts_ns) / 1e9 : 0.0;
  json::array alarms_json;
  for (const auto& a : alarms) alarms_json.push_back(json::value(a));
  auto opt_u = [](const std::optional<std::uint64_t>& v) -> json::value {
    if (!v) return nullptr;
    return *v;
  };
  json::object live{
      {"agent_id", cfg.id},
      {"site", cfg.site},
      {"pid", ::getpid()},
      {"started_ns", std::to_string(started_ns_)},
      {"written_ns", std::to_string(now_ns)},
      {"clock_steps", steps},
      {"clock_synced", hf.clock_synced ? json::value(*hf.clock_synced) : json::value(nullptr)},
      {"broker", {{"url", cfg.broker}, {"connected", es.broker_connected}}},
      {"sync",
       {{"batches_sent", es.batches_sent},
        {"batches_resent", es.batches_resent},
        {"batches_acked", es.batches_acked},
        {"batches_rejected", es.batches_rejected},
        {"records_acked", es.records_acked},
        {"bytes_published", es.bytes_published},
        {"inflight_batches", es.inflight},
        {"last_ack_ns", std::to_string(es.last_ack_ns)},
        {"rate_limited", es.rate_limited},
        {"central_online", es.central_online},
        {"upload_bytes_per_s", std::round(upload_rate_)},
        {"cap_bytes_per_s", cfg.max_bytes_per_s},
        {"acks_refused", es.acks_refused},
        {"commands_refused", es.commands_refused}}},
      {"acquisition",
       {{"state", acq.paused ? "paused" : "running"},
        {"by", acq.by},
        {"since_ns", std::to_string(acq.since_ns)}}},
      {"outbox",
       {{"records", oc.held},
        {"bytes", oc.held_bytes},
        {"oldest_age_s", oldest_age},
        {"quota_bytes", static_cast<std::uint64_t>(cfg.quota_mb) << 20},
        {"paused_classes", oc.paused_classes}}},
      {"host",
       {{"disk_free_bytes", opt_u(hf.disk_free)},
        {"disk_total_bytes", opt_u(hf.disk_total)},
        {"rss_bytes", opt_u(hf.rss)},
        {"cpu_percent", opt_json(hf.cpu_percent)}}},
      {"alarms", std::move(alarms_json)},
      {"counters", std::move(counters)},
      {"health", hj}};
  // Runs: those in progress (queued, running, waiting) and the last few finished, newest first,
  // with what the page's progress bar needs.
  {
    json::array runs_json;
    std::size_t finished_shown = 0;
    for (const auto& r : run_list) {
      if (finished(r.state) && finished_shown++ >= 5) continue;
      json::object o{{"run_id", r.id},
                     {"state", to_string(r.state)},
                     {"recipe", r.recipe_name},
                     {"method", r.method},
                     {"step", r.step},
                     {"steps", r.steps},
                     {"repeat", r.repeat},
                     {"repeats", r.repeats},
                     {"prompt", r.prompt},
                     {"prompt_seq", r.prompt_seq},
                     {"reason", r.reason},
                     {"started_ns", std::to_string(r.started_ns)},
                     {"finished_ns", std::to_string(r.finished_ns)}};
      if (auto it = r.metadata.find("sample"); it != r.metadata.end()) o["sample"] = it->second;
      json::array insts;
      for (const auto& [role, inst] : r.bindings) insts.push_back(json::value(inst));
      o["instruments"] = std::move(insts);
      if (!r.result_json.empty()) {
        boost::system::error_code ec;
        auto v = json::parse(r.result_json, ec);
        if (!ec && v.is_object())
          if (auto* p = v.as_object().if_contains("pass"); p && p->is_bool()) o["pass"] = p->as_bool();
      }
      runs_json.push_back(std::move(o));
    }
    live["runs"] = std::move(runs_json);
  }
  json::object page = live;
  live["instruments"] = std::move(file_ins);
  page["instruments"] = std::move(page_ins);
  page["events"] = events.to_json();
  out.file_json = json::serialize(live);
  out.page_json = json::serialize(page);

  // Prometheus.
  using T = metrics::exposition::type;
  auto fam = [&](const char* name, T t, const char* help, double v) {
    mx.family(name, t, help);
    mx.sample(v);
  };
  auto d = [](auto v) { return static_cast<double>(v); };
  fam("semilab_agent_records_produced_total", T::counter,
      "Records committed to the outbox (persisted across restarts)", d(oc.produced));
  fam("semilab_agent_records_acked_total", T::counter,
      "Records central acknowledged as durably stored", d(oc.acked));
  fam("semilab_agent_records_dropped_total", T::counter,
      "Records evicted from the outbox by policy (quota)", d(oc.dropped));
  fam("semilab_agent_records_refused_total", T::counter,
      "Records refused while a class's intake was paused (never produced)", d(oc.refused));
  fam("semilab_agent_records_held", T::gauge, "Records in the outbox (dead letters included)",
      d(oc.held));
  fam("semilab_agent_dead_letters", T::gauge, "Records central rejected permanently",
      d(oc.dead_letters));
  fam("semilab_agent_outbox_bytes", T::gauge, "Stored bytes of held records", d(oc.held_bytes));
  fam("semilab_agent_outbox_quota_bytes", T::gauge, "Outbox quota (0 = none)",
      d(static_cast<std::uint64_t>(cfg.quota_mb) << 20));
  fam("semilab_agent_outbox_oldest_age_seconds", T::gauge, "Age of the oldest held record",
      oldest_age);
  fam("semilab_agent_batches_sent_total", T::counter, "Batches published (first sends)",
      d(es.batches_sent));
  fam("semilab_agent_batches_resent_total", T::counter, "Batches published again",
      d(es.batches_resent));
  fam("semilab_agent_batches_acked_total", T::counter, "Batches central acknowledged",
      d(es.batches_acked));
  fam("semilab_agent_batches_rejected_total", T::counter, "Batches central rejected",
      d(es.batches_rejected));
  fam("semilab_agent_upload_bytes_total", T::counter, "Batch payload bytes published",
      d(es.bytes_published));
  fam("semilab_agent_upload_cap_bytes_per_second", T::gauge, "Upload bandwidth cap (0 = none)",
      cfg.max_bytes_per_s);
  fam("semilab_agent_inflight_batches", T::gauge, "Batches sent and not yet acked",
      d(es.inflight));
  fam("semilab_agent_broker_connected", T::gauge, "1 while connected to the broker",
      es.broker_connected ? 1 : 0);
  fam("semilab_agent_central_online", T::gauge, "0 while every central instance says offline",
      es.central_online ? 1 : 0);
  fam("semilab_agent_last_ack_timestamp_seconds", T::gauge,
      "Wall clock of the last central ack (0 = never)", d(es.last_ack_ns) / 1e9);
  fam("semilab_agent_clock_steps_total", T::counter, "Wall-clock steps detected", d(steps));
  fam("semilab_agent_acks_refused_total", T::counter,
      "Acks ignored: unsigned or not signed by a pinned central key ([sync] central_public_keys)",
      d(es.acks_refused));
  fam("semilab_agent_commands_refused_total", T::counter,
      "Commands on the cmd topic refused (bad signature, malformed, rate-limited)",
      d(es.commands_refused));
  fam("semilab_agent_acquisition_paused", T::gauge, "1 while an operator has paused acquisition",
      acq.paused ? 1 : 0);
  {
    std::size_t active = 0;
    for (const auto& r : run_list) active += !finished(r.state);
    fam("semilab_agent_runs_active", T::gauge, "Recipe runs queued, running or waiting",
        d(active));
  }
  if (hf.disk_free)
    fam("semilab_agent_disk_free_bytes", T::gauge, "Free bytes on the data_dir file system",
        d(*hf.disk_free));
  if (hf.rss)
    fam("process_resident_memory_bytes", T::gauge, "Resident memory size in bytes", d(*hf.rss));
  fam("process_cpu_seconds_total", T::counter, "User and system CPU time spent in seconds",
      hf.cpu_seconds);
  fam("semilab_agent_health", T::gauge, "Overall health: 0 ok, 1 degraded, 2 failed",
      d(static_cast<int>(out.health.state)));

  auto per_instrument = [&](const char* name, T t, const char* help, auto get) {
    mx.family(name, t, help);
    for (std::size_t i = 0; i < statuses.size(); ++i)
      mx.sample({{"instrument", statuses[i].id}}, get(i));
  };
  per_instrument("semilab_agent_instrument_readings_total", T::counter,
                 "Readings stored per instrument",
                 [&](std::size_t i) { return d(statuses[i].readings); });
  per_instrument("semilab_agent_instrument_errors_total", T::counter,
                 "Failed polls and storage errors per instrument",
                 [&](std::size_t i) { return d(statuses[i].errors); });
  per_instrument("semilab_agent_instrument_error_queue_total", T::counter,
                 "Polls failed by errors the instrument queued (SYST:ERR?)",
                 [&](std::size_t i) { return d(statuses[i].error_queue_entries); });
  per_instrument("semilab_agent_instrument_compliance_total", T::counter,
                 "Readings flagged compliance",
                 [&](std::size_t i) { return d(hin[i].compliance_hits); });
  per_instrument("semilab_agent_instrument_connected", T::gauge, "1 while the instrument answers",
                 [&](std::size_t i) { return statuses[i].connected ? 1.0 : 0.0; });
  per_instrument("semilab_agent_instrument_health", T::gauge,
                 "Instrument health: 0 ok, 1 degraded, 2 failed",
                 [&](std::size_t i) { return d(static_cast<int>(out.health.instruments[i].state)); });
  per_instrument("semilab_agent_instrument_paused", T::gauge,
                 "1 while the instrument is not polled because acquisition is paused",
                 [&](std::size_t i) { return hin[i].paused ? 1.0 : 0.0; });
  if (!checks.empty()) {
    mx.family("semilab_agent_instrument_check_standard_deviation_ohms", T::gauge,
              "Latest check-standard deviation (measured - nominal) per instrument");
    for (const auto& [id, c] : checks) mx.sample({{"instrument", id}}, c.deviation);
  }
  mx.family("semilab_agent_instrument_poll_duration_seconds", T::histogram,
            "Duration of one poll (init sequences included), SCPI instruments");
  for (const auto& st : statuses) mx.histogram({{"instrument", st.id}}, st.poll_latency);
  out.metrics = mx.text();

  prev_ns_ = now_ns;
  prev_bytes_ = es.bytes_published;
  prev_broker_ = es.broker_connected;
  prev_steps_ = steps;
  prev_alarms_ = std::move(alarms);
  prev_health_ = out.health;
  first_ = false;
  return out;
}

std::optional<std::string> transactions_json(const std::vector<std::shared_ptr<runner>>& runners,
                                             std::string_view id) {
  for (const auto& r : runners) {
    auto st = r->status();
    if (st.id != id) continue;
    json::array a;
    for (auto it = st.transactions.rbegin(); it != st.transactions.rend(); ++it) {
      auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(it->time.time_since_epoch());
      a.push_back(json::object{{"time_ns", std::to_string(ns.count())},
                               {"command", it->command},
                               {"bytes_out", it->bytes_out},
                               {"bytes_in", it->bytes_in},
                               {"duration_us", it->duration.count()},
                               {"ok", !it->outcome},
                               {"outcome", it->outcome ? it->outcome.message() : "ok"}});
    }
    return json::serialize(json::object{{"instrument", st.id}, {"transactions", std::move(a)}});
  }
  return std::nullopt;
}

}  // namespace semilab::agent
