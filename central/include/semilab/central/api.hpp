#pragma once
// The versioned read-only JSON API, as a plain function of (method, target) so it is testable
// without sockets:
//   GET /api/v1/agents  {"agents":[{"agent_id","site","records","batches","duplicates","bytes",
//                        "first_seen_ns","last_batch_ns","last_ack_ns" (strings: > 2^53),
//                        "last_ack_age_s" (number, null if never)}]}
//   GET /api/v1/stats   {"instance","records","quarantined","agents","batches_received",...}
//   GET /api/v1/measurements?agent=&instrument=&channel=&from_ns=&to_ns=&limit=&after=&format=
//                       records in (ts_ns, agent, epoch, seq) order; JSON
//                       {"measurements":[...],"next":cursor|null} or CSV (format=csv; a
//                       last line "# next=CURSOR" when there may be more). Pass the cursor
//                       back as after=CURSOR for the next page.
//                       limit 1..10000 (default 100); from_ns inclusive, to_ns exclusive.
//   GET /metrics        Prometheus text exposition (names in docs/OPERATIONS.md)
//   GET /healthz        200 "ok" (the process answers)
//   GET /readyz         200 when the store answers and MQTT is connected, else 503 with why
// Unknown path: 404 {"error":...}; known path, other method: 405 with Allow.
#include <semilab/central/http.hpp>
#include <semilab/central/ingest.hpp>
#include <semilab/central/storage.hpp>

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

namespace semilab::central {

struct api_sources {
  storage* reader = nullptr;  // read-only connection; the api serialises its use
  std::function<ingest_stats()> ingest;       // optional
  std::function<bool()> mqtt_connected;       // optional
  std::string instance;
  std::function<std::int64_t()> clock = [] { return now_ns(); };  // for last_ack_age_s
};

class api {
 public:
  explicit api(api_sources s) : src_(std::move(s)) {}
  http_response handle(std::string_view method, std::string_view target);

 private:
  http_response agents(std::string_view query);
  http_response stats(std::string_view query);
  http_response measurements(std::string_view query);
  http_response metrics(std::string_view query);
  http_response ready(std::string_view query);

  api_sources src_;
  std::mutex reader_mutex_;  // a store is used by one thread at a time
};

}  // namespace semilab::central
