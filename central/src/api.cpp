#include <semilab/central/api.hpp>

#include "log.hpp"

#include <boost/json.hpp>

#include <charconv>
#include <optional>

namespace semilab::central {

namespace json = boost::json;

namespace {

http_response json_reply(unsigned status, const json::value& v) {
  http_response r;
  r.status = status;
  r.body = json::serialize(v);
  r.body += '\n';
  return r;
}

http_response error_reply(unsigned status, std::string_view message) {
  return json_reply(status, json::object{{"error", message}});
}

// Beyond 2^53: strings (DESIGN-NOTES, "Integers beyond 2^53 ... travel as JSON strings").
json::value ns_string(std::int64_t ns) { return json::value(std::to_string(ns)); }

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded value; nullopt on a broken %-escape.
std::optional<std::string> url_decode(std::string_view v) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '+') {
      out += ' ';
    } else if (v[i] == '%') {
      if (i + 2 >= v.size()) return std::nullopt;
      const int hi = hex_digit(v[i + 1]), lo = hex_digit(v[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += v[i];
    }
  }
  return out;
}

std::optional<std::int64_t> parse_i64(const std::string& s) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// "ts_ns:epoch:seq:agent" (agent ids cannot hold ':').
std::string make_cursor(const measurement_row& m) {
  return std::to_string(m.ts_ns) + ":" + std::to_string(m.store_epoch) + ":" +
         std::to_string(m.seq) + ":" + m.agent_id;
}

bool parse_cursor(std::string_view c, measurement_query& q) {
  std::string_view parts[4];
  for (int i = 0; i < 3; ++i) {
    auto k = c.find(':');
    if (k == std::string_view::npos) return false;
    parts[i] = c.substr(0, k);
    c.remove_prefix(k + 1);
  }
  parts[3] = c;
  auto ts = parse_i64(std::string(parts[0]));
  auto ep = parse_u64(parts[1]);
  auto sq = parse_u64(parts[2]);
  if (!ts || !ep || !sq || parts[3].empty()) return false;
  q.has_after = true;
  q.after_ts_ns = *ts;
  q.after_epoch = *ep;
  q.after_seq = *sq;
  q.after_agent = std::string(parts[3]);
  return true;
}

std::string csv_field(std::string_view v) {
  if (v.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(v);
  std::string s = "\"";
  for (char c : v) {
    if (c == '"') s += '"';
    s += c;
  }
  return s + "\"";
}

std::string fmt_double(double v) {
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip
  return ec == std::errc() ? std::string(buf, p) : std::string("nan");
}

// Prometheus label value escaping: backslash, double quote, newline.
std::string label(std::string_view v) {
  std::string s;
  for (char c : v) {
    if (c == '\\' || c == '"') s += '\\';
    if (c == '\n') {
      s += "\\n";
      continue;
    }
    s += c;
  }
  return s;
}

}  // namespace

http_response api::handle(std::string_view method, std::string_view target) {
  const auto q = target.find('?');
  auto path = target.substr(0, q);
  const auto query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  struct route {
    std::string_view path;
    http_response (api::*fn)(std::string_view);
  };
  static constexpr route kRoutes[] = {
      {"/api/v1/agents", &api::agents},
      {"/api/v1/stats", &api::stats},
      {"/api/v1/measurements", &api::measurements},
      {"/metrics", &api::metrics},
      {"/readyz", &api::ready},
      {"/healthz", nullptr},
  };
  for (const auto& r : kRoutes) {
    if (r.path != path) continue;
    if (method != "GET" && method != "HEAD") {
      auto reply = error_reply(405, "method not allowed");
      reply.allow = "GET, HEAD";
      return reply;
    }
    if (!r.fn) return http_response{200, "text/plain", "ok\n", {}};
    return (this->*r.fn)(query);
  }
  return error_reply(404, "not found");
}

http_response api::agents(std::string_view) {
  std::vector<agent_row> rows;
  {
    std::lock_guard lock(reader_mutex_);
    auto r = src_.reader->agents();
    if (!r) {
      logger("http")->warn("agents query failed: {}", src_.reader->last_error());
      return error_reply(503, "store unavailable");
    }
    rows = std::move(*r);
  }
  const std::int64_t now = src_.clock();
  json::array list;
  list.reserve(rows.size());
  for (const auto& a : rows) {
    json::object o;
    o["agent_id"] = a.agent_id;
    o["site"] = a.site;
    o["records"] = a.records;
    o["batches"] = a.batches;
    o["duplicates"] = a.duplicates;
    o["bytes"] = a.bytes;
    o["first_seen_ns"] = ns_string(a.first_seen_ns);
    o["last_batch_ns"] = ns_string(a.last_batch_ns);
    o["last_ack_ns"] = ns_string(a.last_ack_ns);
    if (a.last_ack_ns > 0)
      o["last_ack_age_s"] = static_cast<double>(now - a.last_ack_ns) / 1e9;
    else
      o["last_ack_age_s"] = nullptr;
    list.push_back(std::move(o));
  }
  return json_reply(200, json::object{{"agents", std::move(list)}});
}

http_response api::stats(std::string_view) {
  store_totals t;
  {
    std::lock_guard lock(reader_mutex_);
    auto r = src_.reader->totals();
    if (!r) {
      logger("http")->warn("stats query failed: {}", src_.reader->last_error());
      return error_reply(503, "store unavailable");
    }
    t = *r;
  }
  json::object o;
  o["instance"] = src_.instance;
  o["records"] = t.records;
  o["quarantined"] = t.quarantined;
  o["agents"] = t.agents;
  o["duplicates"] = t.duplicates;
  o["bytes"] = t.bytes;
  o["batches_stored_total"] = t.batches;  // all instances, since the store was created
  ingest_stats s;
  if (src_.ingest) s = src_.ingest();
  // This process since start:
  o["batches_received"] = s.received;
  o["batches_stored"] = s.batches_stored;
  o["records_new"] = s.records_new;
  o["records_duplicate"] = s.records_duplicate;
  o["rejected"] = s.rejected;
  o["quarantined_since_start"] = s.quarantined;
  o["overloaded"] = s.overloaded;
  o["storage_errors"] = s.storage_errors;
  o["commits"] = s.commits;
  o["queue_depth"] = s.queue_depth;
  o["mqtt_connected"] = src_.mqtt_connected ? src_.mqtt_connected() : false;
  return json_reply(200, o);
}

http_response api::measurements(std::string_view query) {
  measurement_query q;
  bool csv = false;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    const auto key = pair.substr(0, eq);
    auto value = url_decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
    if (!value) return error_reply(400, "parameter " + std::string(key) + ": bad %-escape");
    auto int_param = [&](std::int64_t& out) -> bool {
      auto v = parse_i64(*value);
      if (!v) return false;
      out = *v;
      return true;
    };
    if (key == "agent") {
      q.agent_id = *value;
    } else if (key == "instrument") {
      q.instrument = *value;
    } else if (key == "channel") {
      q.channel = *value;
    } else if (key == "from_ns") {
      if (!int_param(q.from_ns)) return error_reply(400, "from_ns: expected integer nanoseconds");
    } else if (key == "to_ns") {
      if (!int_param(q.to_ns)) return error_reply(400, "to_ns: expected integer nanoseconds");
    } else if (key == "limit") {
      std::int64_t l = 0;
      if (!int_param(l) || l < 1 || l > 10000)
        return error_reply(400, "limit: expected an integer 1..10000");
      q.limit = static_cast<std::size_t>(l);
    } else if (key == "after") {
      if (!parse_cursor(*value, q))
        return error_reply(400, "after: not a cursor from a previous page's `next`");
    } else if (key == "format") {
      if (*value == "csv")
        csv = true;
      else if (*value != "json")
        return error_reply(400, "format: expected json or csv");
    } else {
      return error_reply(400, "unknown parameter " + std::string(key) +
                                  " (agent, instrument, channel, from_ns, to_ns, limit, after, "
                                  "format)");
    }
  }
  std::vector<measurement_row> rows;
  {
    std::lock_guard lock(reader_mutex_);
    auto r = src_.reader->measurements(q);
    if (!r) {
      logger("http")->warn("measurements query failed: {}", src_.reader->last_error());
      return error_reply(503, "store unavailable");
    }
    rows = std::move(*r);
  }
  std::optional<std::string> next;
  if (rows.size() == q.limit && !rows.empty()) next = make_cursor(rows.back());

  if (csv) {
    http_response res;
    res.content_type = "text/csv; charset=utf-8";
    res.body = "agent_id,store_epoch,seq,class,ts_ns,instrument,channel,unit,quality,value,"
               "value_repr,run_id\n";
    for (const auto& m : rows) {
      std::string value;
      if (m.integer)
        value = std::to_string(*m.integer);
      else if (m.text)
        value = csv_field(*m.text);
      else if (m.real)
        value = fmt_double(*m.real);
      res.body += csv_field(m.agent_id) + "," + std::to_string(m.store_epoch) + "," +
                  std::to_string(m.seq) + "," +
                  std::string(schemas::to_string(static_cast<schemas::record_class>(m.cls))) + "," +
                  std::to_string(m.ts_ns) + "," + csv_field(m.instrument) + "," +
                  csv_field(m.channel) + "," + csv_field(m.unit) + "," + std::to_string(m.quality) +
                  "," + value + "," + (m.repr ? *m.repr : "") + "," + csv_field(m.run_id) + "\n";
    }
    if (next) res.body += "# next=" + *next + "\n";
    return res;
  }
  json::array list;
  list.reserve(rows.size());
  for (const auto& m : rows) {
    json::object o;
    o["agent_id"] = m.agent_id;
    o["store_epoch"] = std::to_string(m.store_epoch);  // u64: strings
    o["seq"] = std::to_string(m.seq);
    o["class"] = schemas::to_string(static_cast<schemas::record_class>(m.cls));
    o["ts_ns"] = ns_string(m.ts_ns);
    o["instrument"] = m.instrument;
    o["channel"] = m.channel;
    o["unit"] = m.unit;
    o["quality"] = m.quality;
    if (m.integer)
      o["value"] = std::to_string(*m.integer);  // exact beyond 2^53
    else if (m.text)
      o["value"] = *m.text;
    else if (m.real)
      o["value"] = *m.real;
    else
      o["value"] = nullptr;
    if (m.repr) o["value_repr"] = *m.repr;
    if (!m.run_id.empty()) o["run_id"] = m.run_id;
    list.push_back(std::move(o));
  }
  json::object body{{"measurements", std::move(list)}};
  if (next)
    body["next"] = *next;
  else
    body["next"] = nullptr;
  return json_reply(200, body);
}

http_response api::ready(std::string_view) {
  json::array why;
  {
    std::lock_guard lock(reader_mutex_);
    if (src_.reader->ping()) why.push_back(json::value("store: " + src_.reader->last_error()));
  }
  if (src_.mqtt_connected && !src_.mqtt_connected()) why.push_back(json::value("mqtt: not connected"));
  if (why.empty()) return http_response{200, "text/plain", "ready\n", {}};
  return json_reply(503, json::object{{"ready", false}, {"reasons", std::move(why)}});
}

http_response api::metrics(std::string_view) {
  std::vector<agent_row> agents;
  store_totals t;
  {
    std::lock_guard lock(reader_mutex_);
    auto a = src_.reader->agents();
    auto tt = a ? src_.reader->totals() : result<store_totals>(a.error());
    if (!a || !tt) {
      logger("http")->warn("metrics query failed: {}", src_.reader->last_error());
      return error_reply(503, "store unavailable");
    }
    agents = std::move(*a);
    t = *tt;
  }
  ingest_stats s;
  if (src_.ingest) s = src_.ingest();
  std::string out;
  auto metric = [&out](const char* name, const char* type, const char* help, auto value) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
    out += name;
    out += ' ';
    out += std::to_string(value);
    out += '\n';
  };
  // This process since start (counters reset on restart).
  metric("semilab_central_ingest_messages_total", "counter", "Batch messages handed to ingest.",
         s.received);
  metric("semilab_central_ingest_batches_stored_total", "counter",
         "Batches acked as stored (redeliveries included).", s.batches_stored);
  metric("semilab_central_ingest_records_total", "counter", "Records newly stored.",
         s.records_new);
  metric("semilab_central_ingest_duplicate_records_total", "counter",
         "Records received again and ignored.", s.records_duplicate);
  metric("semilab_central_ingest_rejected_total", "counter",
         "Rejection acks (all codes) plus unackable messages.", s.rejected);
  metric("semilab_central_ingest_quarantined_total", "counter", "Frames quarantined.",
         s.quarantined);
  metric("semilab_central_ingest_overload_total", "counter",
         "Batches refused because the ingest queue was full.", s.overloaded);
  metric("semilab_central_ingest_quota_rejected_total", "counter",
         "Batches refused by the per-agent quota.", s.quota_rejected);
  metric("semilab_central_ingest_bad_timestamps_total", "counter",
         "Records stored with the bad_timestamp flag.", s.bad_timestamps);
  metric("semilab_central_ingest_storage_errors_total", "counter", "Failed group commits.",
         s.storage_errors);
  metric("semilab_central_ingest_commits_total", "counter", "Successful group commits.",
         s.commits);
  metric("semilab_central_ingest_queue_depth", "gauge", "Messages waiting in the ingest queue.",
         s.queue_depth);
  metric("semilab_central_mqtt_connected", "gauge", "1 when connected to the broker.",
         src_.mqtt_connected && src_.mqtt_connected() ? 1 : 0);
  // The store (all instances, since it was created).
  metric("semilab_central_store_records", "gauge", "Distinct records in the store.", t.records);
  metric("semilab_central_store_agents", "gauge", "Agents known to the store.", t.agents);
  metric("semilab_central_quarantine_entries", "gauge", "Rows in the quarantine table.",
         t.quarantined);
  out += "# HELP semilab_central_agent_last_batch_timestamp_seconds Receipt time of the agent's "
         "last stored batch (Unix seconds).\n"
         "# TYPE semilab_central_agent_last_batch_timestamp_seconds gauge\n";
  for (const auto& a : agents)
    out += "semilab_central_agent_last_batch_timestamp_seconds{agent=\"" + label(a.agent_id) +
           "\",site=\"" + label(a.site) + "\"} " +
           fmt_double(static_cast<double>(a.last_batch_ns) / 1e9) + "\n";
  out += "# HELP semilab_central_agent_records Distinct records stored per agent.\n"
         "# TYPE semilab_central_agent_records gauge\n";
  for (const auto& a : agents)
    out += "semilab_central_agent_records{agent=\"" + label(a.agent_id) + "\",site=\"" +
           label(a.site) + "\"} " + std::to_string(a.records) + "\n";
  return http_response{200, "text/plain; version=0.0.4; charset=utf-8", std::move(out), {}};
}

}  // namespace semilab::central
