#include <semilab/central/ops_metrics.hpp>
#include <semilab/central/spc.hpp>

#include "api_util.hpp"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <limits>
#include <map>

namespace semilab::central {

namespace {

using detail::prom_label;
using detail::prom_number;

void head(std::string& out, std::string_view name, std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += " gauge\n";
}

void gauge(std::string& out, std::string_view name, std::string_view help, const std::string& v) {
  head(out, name, help);
  out += name;
  out += ' ';
  out += v;
  out += '\n';
}

constexpr std::uint32_t kWesternElectric =
    spc::rule::n1 | spc::rule::n5 | spc::rule::n6 | spc::rule::we4;

}  // namespace

backup_state scan_backups(const std::string& dir) {
  namespace fs = std::filesystem;
  backup_state st;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const bool ours = name.rfind("central-", 0) == 0 &&
                      ((name.size() > 11 && name.ends_with(".db")) || name.ends_with(".pgdump"));
    if (!ours) continue;
    struct stat m {};
    if (::stat((it->path().string() + ".json").c_str(), &m) != 0) continue;  // not verified
    ++st.count;
    st.last_success_s = std::max<std::int64_t>(st.last_success_s, m.st_mtime);
  }
  return st;
}

ops_metrics::ops_metrics(ops_metrics_options o) : o_(std::move(o)) {}

std::vector<gap_totals> ops_metrics::gaps() const {
  std::lock_guard lock(m_);
  return gaps_;
}

std::vector<spc_series_state> ops_metrics::spc() const {
  std::lock_guard lock(m_);
  return spc_;
}

bool ops_metrics::refresh(storage& store) {
  // Gaps: every unexplained hole among the records held, summed per agent.
  auto g = store.gaps({}, std::numeric_limits<std::int32_t>::max());
  if (!g) return false;
  std::map<std::string, gap_totals> per_agent;
  for (const auto& row : *g) {
    if (row.explained) continue;
    auto& t = per_agent[row.agent_id];
    t.agent_id = row.agent_id;
    ++t.gaps;
    t.missing += row.last - row.first + 1;
  }
  std::vector<gap_totals> gaps;
  for (auto& [_, t] : per_agent) gaps.push_back(std::move(t));

  // SPC: the most recently measured numeric run-result series.
  const sql_param lp[] = {sql_param{false, static_cast<std::int64_t>(o_.spc_max_series), {}}};
  auto series = store.query(
      "SELECT agent_id, instrument, channel, MAX(ts_ns) AS newest FROM records "
      "WHERE class = 1 AND value_real IS NOT NULL "
      "GROUP BY agent_id, instrument, channel ORDER BY newest DESC, agent_id, instrument, "
      "channel LIMIT ?1",
      lp);
  if (!series) return false;
  std::vector<spc_series_state> charts;
  for (const auto& row : *series) {
    spc_series_state s;
    s.agent_id = row[0].value_or("");
    s.instrument = row[1].value_or("");
    s.parameter = row[2].value_or("");
    const sql_param vp[] = {sql_param{true, 0, s.agent_id}, sql_param{true, 0, s.instrument},
                            sql_param{true, 0, s.parameter},
                            sql_param{false, static_cast<std::int64_t>(o_.spc_window), {}}};
    auto vals = store.query(
        "SELECT value_real FROM records WHERE agent_id = ?1 AND instrument = ?2 AND channel = ?3 "
        "AND class = 1 AND value_real IS NOT NULL "
        "ORDER BY ts_ns DESC, store_epoch DESC, record_seq DESC LIMIT ?4",
        vp);
    if (!vals) return false;
    std::vector<double> v;
    v.reserve(vals->size());
    for (auto it = vals->rbegin(); it != vals->rend(); ++it) {  // oldest first
      double x = 0;
      const auto& c = (*it)[0];
      if (!c || std::from_chars(c->data(), c->data() + c->size(), x).ec != std::errc()) continue;
      v.push_back(x);
    }
    s.values = v.size();
    if (v.size() < o_.spc_min_values) continue;  // too few to chart
    std::string why;
    auto chart = spc::make_chart(spc::chart_kind::imr, v, 1, why);
    if (!chart) continue;  // e.g. a non-finite value
    const auto& flags = chart->center_rules;
    const std::size_t from = flags.size() > o_.spc_recent ? flags.size() - o_.spc_recent : 0;
    for (std::size_t i = from; i < flags.size(); ++i)
      if (flags[i] & kWesternElectric) ++s.violations;
    charts.push_back(std::move(s));
  }
  std::lock_guard lock(m_);
  gaps_ = std::move(gaps);
  spc_ = std::move(charts);
  return true;
}

void ops_metrics::append(std::string& out, storage* store, const std::vector<agent_row>& agents,
                         std::int64_t now_ns) {
  const auto b = scan_backups(o_.backup_dir);
  gauge(out, "semilab_central_backup_last_success_timestamp_seconds",
        "Time of the newest verified backup in the backup directory (Unix seconds; 0 = none).",
        std::to_string(b.last_success_s));
  gauge(out, "semilab_central_backups", "Verified backups (with their manifest) in the directory.",
        std::to_string(b.count));

  struct statvfs fs {};
  if (::statvfs(o_.data_dir.c_str(), &fs) == 0) {
    const double frag = static_cast<double>(fs.f_frsize);
    gauge(out, "semilab_central_data_dir_free_bytes",
          "Bytes available to central on the file system of data_dir.",
          prom_number(static_cast<double>(fs.f_bavail) * frag));
    gauge(out, "semilab_central_data_dir_size_bytes", "Size of the file system of data_dir.",
          prom_number(static_cast<double>(fs.f_blocks) * frag));
  }

  if (!store) return;  // database down: no stale store-derived figures
  bool have = false;
  std::int64_t at = 0;
  {
    std::lock_guard lock(m_);
    have = refreshed_ns_ != 0 && now_ns - refreshed_ns_ <
                                     std::chrono::nanoseconds(o_.refresh).count();
    at = refreshed_ns_;
  }
  if (!have && refresh(*store)) {
    std::lock_guard lock(m_);
    refreshed_ns_ = now_ns;
    at = now_ns;
  }
  if (at == 0) return;  // never computed (the queries failed)
  std::lock_guard lock(m_);
  gauge(out, "semilab_central_ops_refresh_timestamp_seconds",
        "When the gap and SPC figures below were computed (Unix seconds).",
        prom_number(static_cast<double>(at) / 1e9));

  std::map<std::string, std::string> site;
  for (const auto& a : agents) site[a.agent_id] = a.site;
  std::map<std::string, const gap_totals*> by_agent;
  for (const auto& g : gaps_) by_agent[g.agent_id] = &g;
  for (const auto& a : agents) by_agent.try_emplace(a.agent_id, nullptr);
  auto labels = [&](const std::string& agent) {
    return "{agent=\"" + prom_label(agent) + "\",site=\"" + prom_label(site[agent]) + "\"} ";
  };
  head(out, "semilab_central_agent_unexplained_gaps",
       "Sequence gaps of the agent that no drop notice explains (records held only).");
  for (const auto& [agent, g] : by_agent)
    out += "semilab_central_agent_unexplained_gaps" + labels(agent) +
           std::to_string(g ? g->gaps : 0) + "\n";
  head(out, "semilab_central_agent_unexplained_missing_records",
       "Sequence numbers missing in those gaps.");
  for (const auto& [agent, g] : by_agent)
    out += "semilab_central_agent_unexplained_missing_records" + labels(agent) +
           std::to_string(g ? g->missing : 0) + "\n";

  gauge(out, "semilab_central_spc_series", "Run-result series charted for SPC.",
        std::to_string(spc_.size()));
  head(out, "semilab_central_spc_violations",
       "Newest points of the series' I-MR chart that trip a Western Electric rule.");
  for (const auto& s : spc_)
    out += "semilab_central_spc_violations{agent=\"" + prom_label(s.agent_id) + "\",instrument=\"" +
           prom_label(s.instrument) + "\",parameter=\"" + prom_label(s.parameter) + "\"} " +
           std::to_string(s.violations) + "\n";
}

}  // namespace semilab::central
