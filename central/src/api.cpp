#include <semilab/central/api.hpp>

#include "log.hpp"

#include <boost/json.hpp>

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

}  // namespace

http_response api::handle(std::string_view method, std::string_view target) {
  auto path = target.substr(0, target.find('?'));
  struct route {
    std::string_view path;
    http_response (api::*fn)();
  };
  static constexpr route kRoutes[] = {
      {"/api/v1/agents", &api::agents},
      {"/api/v1/stats", &api::stats},
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
    return (this->*r.fn)();
  }
  return error_reply(404, "not found");
}

http_response api::agents() {
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

http_response api::stats() {
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

}  // namespace semilab::central
