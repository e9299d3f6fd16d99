#include <chrono>
#include <semilab/central/pg_store.hpp>
#include <semilab/central/storage.hpp>
#include <semilab/central/store.hpp>

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
    return (dollar ? "$" : "?") + std::to_string(params.size());
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

}  // namespace semilab::central
