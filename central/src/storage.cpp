#include <algorithm>
#include <charconv>
#include <chrono>
#include <semilab/central/pg_store.hpp>
#include <semilab/central/storage.hpp>
#include <semilab/central/store.hpp>
#include <semilab/schemas/drop_notice.hpp>

namespace semilab::central {

std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

result<stored_info> storage::store_batch(const schemas::agent_topic_parts& topic,
                                         const schemas::decoded_frame& frame, std::size_t raw_bytes,
                                         std::string_view instance) {
  batch_to_store b{&topic, &frame, raw_bytes, now_ns()};
  auto r = store_group(std::span<const batch_to_store>(&b, 1), {}, instance);
  if (!r) return r.error();
  return r->front();
}

boost::system::error_code storage::quarantine(std::string_view topic, std::string_view agent,
                                              std::string_view reason,
                                              std::span<const std::uint8_t> bytes) {
  quarantine_entry q{std::string(topic), std::string(agent), std::string(reason), bytes, now_ns()};
  auto r = store_group({}, std::span<const quarantine_entry>(&q, 1), {});
  return r ? boost::system::error_code{} : r.error();
}

std::string redact_url(std::string_view url) {
  // URI form: scheme://user:password@host...; key=value form: password=...
  if (auto scheme = url.find("://"); scheme != std::string_view::npos) {
    const auto auth_start = scheme + 3;
    const auto at = url.find('@', auth_start);
    const auto slash = url.find('/', auth_start);
    if (at != std::string_view::npos && (slash == std::string_view::npos || at < slash)) {
      const auto colon = url.find(':', auth_start);
      if (colon != std::string_view::npos && colon < at)
        return std::string(url.substr(0, colon + 1)) + "***" + std::string(url.substr(at));
    }
    // password=... as a query parameter
    std::string s(url);
    if (auto p = s.find("password="); p != std::string::npos) {
      auto end = s.find('&', p);
      s.replace(p + 9, (end == std::string::npos ? s.size() : end) - (p + 9), "***");
    }
    return s;
  }
  std::string s(url);
  if (auto p = s.find("password"); p != std::string::npos) {
    auto eq = s.find('=', p);
    if (eq != std::string::npos) {
      auto v = eq + 1;
      while (v < s.size() && s[v] == ' ') ++v;
      auto end = s.find(' ', v);
      s.replace(v, (end == std::string::npos ? s.size() : end) - v, "***");
    }
  }
  return s;
}

result<std::unique_ptr<storage>> open_storage(const storage_options& opts, std::string& error) {
  if (opts.backend == storage_backend::postgresql) {
    auto s = pg_store::open(pg_options{opts.url, opts.mode, opts.busy_timeout}, error);
    if (!s) return s.error();
    return std::unique_ptr<storage>(std::move(*s));
  }
  auto s = sqlite_store::open(store_options{opts.sqlite_path, opts.mode, opts.busy_timeout}, error);
  if (!s) return s.error();
  return std::unique_ptr<storage>(std::move(*s));
}

std::string measurement_sql(const measurement_query& q, std::vector<sql_param>& params,
                            bool dollar) {
  params.clear();
  auto ph = [&](sql_param p) {
    params.push_back(std::move(p));
    // Appended, not `const char* + string`: GCC 12 -O2 warns falsely (-Wrestrict) on that form.
    std::string mark(1, dollar ? '$' : '?');
    mark += std::to_string(params.size());
    return mark;
  };
  auto text = [](const std::string& v) { return sql_param{true, 0, v}; };
  auto num = [](std::int64_t v) { return sql_param{false, v, {}}; };
  std::string sql =
      "SELECT agent_id, store_epoch, record_seq, class, ts_ns, instrument, channel, unit, "
      "quality, value_real, value_int, value_text, value_repr, run_id FROM records WHERE ts_ns "
      ">= " +
      ph(num(q.from_ns));
  sql += " AND ts_ns < " + ph(num(q.to_ns));
  if (!q.agent_id.empty()) sql += " AND agent_id = " + ph(text(q.agent_id));
  if (!q.instrument.empty()) sql += " AND instrument = " + ph(text(q.instrument));
  if (!q.channel.empty()) sql += " AND channel = " + ph(text(q.channel));
  // The class as a literal (a small integer, never outside input as text): the planner can then
  // use partial indexes on it (records_results, WHERE class = 1).
  if (q.cls >= 0) sql += " AND class = " + std::to_string(q.cls);
  if (!q.run_id.empty()) sql += " AND run_id = " + ph(text(q.run_id));
  if (q.has_after) {
    sql += " AND (ts_ns, agent_id, store_epoch, record_seq) > (" + ph(num(q.after_ts_ns));
    sql += ", " + ph(text(q.after_agent));
    sql += ", " + ph(num(static_cast<std::int64_t>(q.after_epoch)));
    sql += ", " + ph(num(static_cast<std::int64_t>(q.after_seq))) + ")";
  }
  sql += " ORDER BY ts_ns, agent_id, store_epoch, record_seq LIMIT " +
         ph(num(static_cast<std::int64_t>(q.limit)));
  return sql;
}

namespace {

std::int64_t i64_of(const sql_cell& c) {
  std::int64_t v = 0;
  if (c) std::from_chars(c->data(), c->data() + c->size(), v);
  return v;
}
std::uint64_t u64_of(const sql_cell& c) { return static_cast<std::uint64_t>(i64_of(c)); }
std::string text_of(const sql_cell& c) { return c ? *c : std::string(); }
sql_param text_p(std::string v) { return sql_param{true, 0, std::move(v)}; }
sql_param num_p(std::int64_t v) { return sql_param{false, v, {}}; }

constexpr std::int64_t kNsPerDay = 86'400'000'000'000;

}  // namespace

result<std::vector<instrument_row>> storage::instruments(std::string_view agent_id) {
  const sql_param p[] = {text_p(std::string(agent_id))};
  auto r = query(
      "SELECT agent_id, instrument, first_seen_ns, last_seen_ns, records, identity, "
      "calibration_due_ns FROM instruments WHERE ?1 = '' OR agent_id = ?1 "
      "ORDER BY agent_id, instrument",
      p);
  if (!r) return r.error();
  std::vector<instrument_row> out;
  for (const auto& row : *r) {
    instrument_row i;
    i.agent_id = text_of(row[0]);
    i.instrument = text_of(row[1]);
    i.first_seen_ns = i64_of(row[2]);
    i.last_seen_ns = i64_of(row[3]);
    i.records = u64_of(row[4]);
    i.identity = row[5];
    if (row[6]) i.calibration_due_ns = i64_of(row[6]);
    out.push_back(std::move(i));
  }
  return out;
}

result<std::vector<daily_row>> storage::daily(const daily_query& q) {
  const sql_param p[] = {text_p(q.agent_id), text_p(q.instrument), num_p(q.from_day),
                         num_p(q.to_day), num_p(static_cast<std::int64_t>(q.limit))};
  auto r = query(
      "SELECT agent_id, instrument, day, measurements, results, events, runs, active_minutes "
      "FROM daily_summaries WHERE (?1 = '' OR agent_id = ?1) AND (?2 = '' OR instrument = ?2) "
      "AND day >= ?3 AND day <= ?4 ORDER BY day, agent_id, instrument LIMIT ?5",
      p);
  if (!r) return r.error();
  std::vector<daily_row> out;
  for (const auto& row : *r) {
    daily_row d;
    d.agent_id = text_of(row[0]);
    d.instrument = text_of(row[1]);
    d.day = i64_of(row[2]);
    d.measurements = u64_of(row[3]);
    d.results = u64_of(row[4]);
    d.events = u64_of(row[5]);
    d.runs = u64_of(row[6]);
    d.active_minutes = u64_of(row[7]);
    out.push_back(std::move(d));
  }
  return out;
}

result<std::vector<run_row>> storage::runs(const run_query& q) {
  const sql_param p[] = {text_p(q.agent_id), text_p(q.instrument), text_p(q.run_id),
                         num_p(q.from_ns), num_p(q.to_ns),
                         num_p(static_cast<std::int64_t>(q.limit))};
  auto r = query(
      "SELECT agent_id, run_id, instrument, first_ts_ns, last_ts_ns, records, results FROM runs "
      "WHERE (?1 = '' OR agent_id = ?1) AND (?2 = '' OR instrument = ?2) "
      "AND (?3 = '' OR run_id = ?3) AND first_ts_ns >= ?4 AND first_ts_ns < ?5 "
      "ORDER BY first_ts_ns, agent_id, run_id LIMIT ?6",
      p);
  if (!r) return r.error();
  std::vector<run_row> out;
  for (const auto& row : *r) {
    run_row x;
    x.agent_id = text_of(row[0]);
    x.run_id = text_of(row[1]);
    x.instrument = text_of(row[2]);
    x.first_ts_ns = i64_of(row[3]);
    x.last_ts_ns = i64_of(row[4]);
    x.records = u64_of(row[5]);
    x.results = u64_of(row[6]);
    out.push_back(std::move(x));
  }
  return out;
}

result<std::vector<sample_row>> storage::samples(const sample_query& q) {
  // One statement per grouping; the key columns a group keeps are compared with the keyset
  // (row values, both backends) and the others come out as ''. Only the parameters a statement
  // uses are bound (PostgreSQL cannot type an unused one).
  const bool by_wafer = q.group == sample_group::wafer, by_lot = q.group == sample_group::lot;
  const bool by_sample = q.group == sample_group::sample;
  std::vector<sql_param> p;
  auto ph = [&p](sql_param v) {
    p.push_back(std::move(v));
    std::string mark(1, '?');
    mark += std::to_string(p.size());
    return mark;
  };
  const char* key = by_lot     ? "s.lot_id"
                    : by_wafer ? "s.lot_id, s.wafer_id"
                               : "s.lot_id, s.wafer_id, s.sample_id, s.die";
  const char* match = by_lot     ? "rs.lot_id = s.lot_id"
                      : by_wafer ? "rs.lot_id = s.lot_id AND rs.wafer_id = s.wafer_id"
                                 : "rs.lot_id = s.lot_id AND rs.wafer_id = s.wafer_id AND "
                                   "rs.sample_id = s.sample_id AND rs.die = s.die";
  const std::string sample_match = "rs.lot_id = s.lot_id AND rs.wafer_id = s.wafer_id AND "
                                   "rs.sample_id = s.sample_id AND rs.die = s.die";
  std::string sql = "SELECT ";
  sql += by_sample ? "s.lot_id, s.wafer_id, s.sample_id, s.die, s.die_x, s.die_y, "
                     "s.first_seen_ns, s.last_seen_ns"
                   : std::string(by_lot ? "s.lot_id, ''" : "s.lot_id, s.wafer_id") +
                         ", '', '', NULL, NULL, MIN(s.first_seen_ns), MAX(s.last_seen_ns)";
  sql += ", (SELECT COUNT(*) FROM run_samples rs WHERE ";
  sql += match;
  // Appended piece by piece ("literal" + std::string draws GCC 12's false -Wrestrict at -O2).
  auto cond = [&sql, &ph](const char* text, sql_param v) {
    sql += text;
    sql += ph(std::move(v));
  };
  if (!q.agent_id.empty()) cond(" AND rs.agent_id = ", text_p(q.agent_id));
  sql += "), ";
  sql += by_sample ? "1" : "COUNT(*)";
  cond(" FROM samples s WHERE s.last_seen_ns >= ", num_p(q.from_ns));
  cond(" AND s.first_seen_ns < ", num_p(q.to_ns));
  if (!q.lot.empty()) cond(" AND s.lot_id = ", text_p(q.lot));
  if (!q.wafer.empty()) cond(" AND s.wafer_id = ", text_p(q.wafer));
  if (!q.sample.empty()) cond(" AND s.sample_id = ", text_p(q.sample));
  if (!q.die.empty()) cond(" AND s.die = ", text_p(q.die));
  if (!q.agent_id.empty()) {
    cond(" AND EXISTS (SELECT 1 FROM run_samples rs WHERE rs.agent_id = ", text_p(q.agent_id));
    sql += " AND ";
    sql += sample_match;
    sql += ")";
  }
  if (q.has_after) {
    if (by_lot) {
      cond(" AND s.lot_id > ", text_p(q.after_lot));
    } else {
      sql += " AND (";
      sql += key;
      cond(") > (", text_p(q.after_lot));
      cond(", ", text_p(q.after_wafer));
      if (by_sample) {
        cond(", ", text_p(q.after_sample));
        cond(", ", text_p(q.after_die));
      }
      sql += ")";
    }
  }
  if (!by_sample) {
    sql += " GROUP BY ";
    sql += key;
  }
  sql += " ORDER BY ";
  sql += key;
  sql += " LIMIT ";
  sql += ph(num_p(static_cast<std::int64_t>(q.limit)));
  auto r = query(sql, p);
  if (!r) return r.error();
  std::vector<sample_row> out;
  out.reserve(r->size());
  for (const auto& row : *r) {
    sample_row x;
    x.lot = text_of(row[0]);
    x.wafer = text_of(row[1]);
    x.sample = text_of(row[2]);
    x.die = text_of(row[3]);
    if (row[4]) x.die_x = i64_of(row[4]);
    if (row[5]) x.die_y = i64_of(row[5]);
    x.first_seen_ns = i64_of(row[6]);
    x.last_seen_ns = i64_of(row[7]);
    x.runs = u64_of(row[8]);
    x.samples = u64_of(row[9]);
    out.push_back(std::move(x));
  }
  return out;
}

result<std::vector<gap_row>> storage::gaps(std::string_view agent_id, std::size_t limit) {
  const sql_param p[] = {text_p(std::string(agent_id)), num_p(static_cast<std::int64_t>(limit))};
  auto r = query(
      "SELECT agent_id, store_epoch, prev + 1, record_seq - 1 FROM ("
      " SELECT agent_id, store_epoch, record_seq, LAG(record_seq) OVER ("
      "  PARTITION BY agent_id, store_epoch ORDER BY record_seq) AS prev"
      " FROM records WHERE ?1 = '' OR agent_id = ?1) g "
      "WHERE prev IS NOT NULL AND record_seq > prev + 1 "
      "ORDER BY agent_id, store_epoch, prev LIMIT ?2",
      p);
  if (!r) return r.error();
  // Drop notices (schemas/drop_notice.hpp, WIRE.md "Drop notice"): the ranges they name, in
  // the epoch they name (the notice's own epoch when it says 0 = unknown).
  const sql_param np[] = {text_p(std::string(agent_id)),
                          text_p(std::string(schemas::kDropNoticeInstrument)),
                          text_p(std::string(schemas::kDropNoticeChannel))};
  auto notices = query(
      "SELECT agent_id, store_epoch, value_text FROM records WHERE class = 0 AND "
      "instrument = ?2 AND channel = ?3 AND value_text IS NOT NULL AND "
      "(?1 = '' OR agent_id = ?1)",
      np);
  if (!notices) return notices.error();
  struct notice {
    std::string agent;
    std::uint64_t epoch, first, last;
    std::string reason;
  };
  std::vector<notice> ns;
  for (const auto& row : *notices) {
    auto n = schemas::decode_drop_notice(text_of(row[2]));
    if (!n) continue;  // not a notice this central reads: the gap stays unexplained
    const std::uint64_t epoch = n->store_epoch != 0 ? n->store_epoch : u64_of(row[1]);
    for (const auto& range : n->ranges)
      ns.push_back(notice{text_of(row[0]), epoch, range.first, range.last, n->reason});
  }
  std::sort(ns.begin(), ns.end(), [](const notice& a, const notice& b) { return a.first < b.first; });
  std::vector<gap_row> out;
  for (const auto& row : *r) {
    gap_row g;
    g.agent_id = text_of(row[0]);
    g.store_epoch = u64_of(row[1]);
    g.first = u64_of(row[2]);
    g.last = u64_of(row[3]);
    // Explained when notices of this agent and epoch cover first..last without a hole.
    std::uint64_t next = g.first;
    for (const auto& n : ns) {
      if (n.agent != g.agent_id || n.epoch != g.store_epoch || n.last < next) continue;
      if (n.first > next) break;
      next = n.last + 1;
      if (!n.reason.empty() && g.reason.find(n.reason) == std::string::npos)
        g.reason += (g.reason.empty() ? "" : "; ") + n.reason;
      if (next > g.last) break;
    }
    g.explained = next > g.last;
    if (!g.explained) g.reason.clear();
    out.push_back(std::move(g));
  }
  return out;
}

result<retention_report> storage::apply_retention(const retention_policy& p, std::int64_t now) {
  retention_report rep;
  auto cutoff = [now](std::int64_t days) { return now - days * kNsPerDay; };
  auto run = [this](const char* sql, std::initializer_list<sql_param> ps,
                    std::uint64_t& count) -> boost::system::error_code {
    std::vector<sql_param> v(ps);
    auto r = execute(sql, v);
    if (!r) return r.error();
    count += *r;
    return {};
  };
  const std::int64_t days[4] = {p.event_days, p.run_result_days, p.telemetry_days, p.blob_days};
  for (int cls = 0; cls < 4; ++cls) {
    if (days[cls] <= 0) continue;
    if (auto ec = run("DELETE FROM records WHERE class = ?1 AND received_ns < ?2",
                      {num_p(cls), num_p(cutoff(days[cls]))}, rep.records[cls]))
      return ec;
  }
  if (p.quarantine_days > 0)
    if (auto ec = run("DELETE FROM quarantine WHERE received_ns < ?1",
                      {num_p(cutoff(p.quarantine_days))}, rep.quarantine))
      return ec;
  if (p.batch_ledger_days > 0)
    if (auto ec = run("DELETE FROM batches WHERE received_ns < ?1",
                      {num_p(cutoff(p.batch_ledger_days))}, rep.batches))
      return ec;
  if (p.summary_days > 0)
    if (auto ec = run("DELETE FROM daily_summaries WHERE day < ?1",
                      {num_p(cutoff(p.summary_days) / kNsPerDay)}, rep.summaries))
      return ec;
  if (p.activity_minutes_days > 0)
    if (auto ec = run("DELETE FROM instrument_minutes WHERE minute < ?1",
                      {num_p(cutoff(p.activity_minutes_days) / 60'000'000'000)}, rep.minutes))
      return ec;
  return rep;
}

}  // namespace semilab::central
