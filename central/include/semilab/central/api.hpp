#pragma once
// The versioned read-only JSON API, as a plain function of (method, target) so it is testable
// without sockets:
//   GET /api/v1/agents  {"agents":[{"agent_id","site","records","batches","duplicates","bytes",
//                        "first_seen_ns","last_batch_ns","last_ack_ns" (strings: > 2^53),
//                        "last_ack_age_s" (number, null if never)}]}
//   GET /api/v1/stats   {"instance","records","quarantined","agents","batches_received",...}
//   GET /healthz        200 "ok"
// Unknown path: 404 {"error":...}; known path, other method: 405 with Allow.
#include <semilab/central/http.hpp>
#include <semilab/central/ingest.hpp>
#include <semilab/central/store.hpp>

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

namespace semilab::central {

struct api_sources {
  store* reader = nullptr;  // read-only connection; the api serialises its use
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
  http_response agents();
  http_response stats();

  api_sources src_;
  std::mutex reader_mutex_;  // a store is used by one thread at a time
};

}  // namespace semilab::central
