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
//   GET /api/v1/spc?parameter=&chart=imr|xbar_r|xbar_s&subgroup=&instrument=&agent=&from_ns=
//                   &to_ns=&lsl=&usl=&max_points=    (also /api/v1/spc/{parameter}?...)
//                       control chart of the numeric values of one parameter (measurement
//                       channel) in time order: limits, points with the Western Electric /
//                       Nelson rules they trip, capability against lsl/usl (src/spc.hpp).
//                       chart default imr; subgroup default 5 (X̄ charts); max_points
//                       1..100000 (default 10000): more values than that -> "truncated": true.
//   GET /api/v1/instruments?agent=       instruments seen per agent (first/last seen, records,
//                       identity and calibration_due_ns: null until the wire carries them)
//   GET /api/v1/daily?agent=&instrument=&from_day=&to_day=&limit=   daily summaries per
//                       instrument (UTC day numbers): measurements, results, events, runs,
//                       active_minutes, utilisation = active_minutes / 1440
//   GET /api/v1/runs?agent=&instrument=&from_ns=&to_ns=&limit=       runs by start time
//   GET /api/v1/runs/{run_id}?agent=      one run and its records (results and curves)
//   GET /api/v1/results?agent=&instrument=&run=&parameter=&from_ns=&to_ns=&limit=&after=
//                       run_result records as results (parameter = channel); uncertainty and
//                       method_version null until the wire carries them; keyset pages as for
//                       measurements
//   GET /api/v1/gaps?agent=&limit=        gaps in each agent's sequences, explained by drop
//                       notices or flagged ("explained": false)
//   GET /api/v1/blobs?sha256=&agent=&instrument=&format=&parse_error=&from_ns=&to_ns=&limit=
//                       export files as agents recorded them, newest first (blobs.hpp):
//                       {"files":[{"agent_id","store_epoch","record_seq","sha256","ts_ns",
//                       "instrument","name","folder","size","format","parse_error"|null,
//                       "analysis_error"|null,"stored","meta","parameters":[{"name","unit",
//                       "value"}]}]}; one content sent twice is two files and one blob
//   GET /api/v1/blobs/{sha256}            the stored content itself (application/octet-stream,
//                       ETag = sha256); 404 while its chunks are not all there
//   GET /metrics        Prometheus text exposition (names in docs/OPERATIONS.md)
//   GET /healthz        200 "ok" (the process answers)
//   GET /readyz         200 when the store answers and MQTT is connected, else 503 with why
//   GET /api/v1/quarantine?limit=&before=   frames rejected as invalid (no payloads; engineer)
//   GET /api/v1/tokens?all=             API tokens without their secrets (admin)
//   GET /api/v1/openapi.json            OpenAPI 3 document generated from the route table
//   POST /api/v1/login  {"user","password"} (application/json): a central user (users.hpp) with
//                       the CLI's lockout rules -> 200 {"user","role","session","csrf_token",
//                       "expires_ns"} and Set-Cookie semilab_session=... (HttpOnly,
//                       SameSite=Strict, Path=/, Max-Age = [auth] session_ttl_s; Secure when the
//                       request is secure or [auth] cookie_secure); 401 unknown user or wrong
//                       password (not told apart), 423 locked or disabled, 415 not JSON
//   POST /api/v1/logout                  ends the caller's session (viewer), clears the cookie
//   POST /api/v1/tokens {"role","name"}  creates a token (admin), 201 with the bearer string once
//   POST /api/v1/tokens/{id}/revoke      revokes one (admin); 404 when no valid token has the id
// Unknown path: 404 {"error":...}; known path, other method: 405 with Allow.
//
// Access (when api_sources::auth is set): every route declares its minimum role (routes());
// /healthz, /readyz and /api/v1/openapi.json need none, /metrics needs viewer unless
// metrics_public. A request without Authorization acts with the anonymous role; a missing,
// unknown, revoked or malformed token where one is needed is 401 (WWW-Authenticate: Bearer), a
// valid token whose role is too low 403. Then the caller's token bucket (per token id; per
// address for anonymous callers): empty -> 429 with Retry-After. Then the response cache for
// cacheable routes (key: path + query as sent; an entry lives `ttl` and dies with the next
// ingest commit of this process). A session cookie counts like a bearer token (the Authorization
// header wins when both are sent); a POST authenticated by the cookie also needs
// X-CSRF-Token = the session's csrf_token, else 403.
//
// Threads: handle() may run on several threads at once (one per connection strand); store calls
// lease a connection from the reader pool.
#include <semilab/central/auth.hpp>
#include <semilab/central/http.hpp>
#include <semilab/central/ingest.hpp>
#include <semilab/central/storage.hpp>
#include <semilab/central/users.hpp>

#include <atomic>
#include <condition_variable>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace semilab::central {

// Access control of the API ([auth] in the configuration).
struct api_auth {
  role anonymous = role::none;  // role of a request without a token
  bool metrics_public = false;  // /metrics without a token whatever `anonymous` is
  double rate_per_s = 0;        // per caller; 0 = unlimited
  double rate_burst = 1;
  std::chrono::milliseconds token_refresh{5000};  // store re-read: revocations take this long
  std::chrono::seconds session_ttl{8 * 3600};     // lifetime of a login session
  bool cookie_secure = false;  // Secure on session cookies even over plain HTTP (TLS proxy)
  lockout_policy lockout;      // the same rules as `semilab-central users login`
};

struct api_cache_options {
  std::chrono::milliseconds ttl{0};  // 0 = no cache
  std::size_t max_entries = 256;
  std::size_t max_bytes = 32u << 20;
};

struct api_sources {
  // Read-only connections: `reader` and `more_readers` (below) form a pool; each store call of
  // a request leases one, so with N connections N requests read the store at once (SQLite WAL
  // readers do not block each other or the writer). A connection is used by one thread at a time.
  storage* reader = nullptr;
  std::function<ingest_stats()> ingest;       // optional
  std::function<bool()> mqtt_connected;       // optional
  std::string instance;
  std::function<std::int64_t()> clock = [] { return now_ns(); };  // for last_ack_age_s
  std::optional<api_auth> auth;  // nullopt: no access control, no rate limit
  api_cache_options cache;
  // Monotonic nanoseconds: cache ages, token buckets, token refresh.
  std::function<std::int64_t()> steady = [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  // More /metrics lines (ops_metrics.hpp: backups, disk, gaps, SPC), optional: called with a
  // read connection, or nullptr when the store does not answer, and the agents it listed.
  std::function<void(std::string& out, storage* db, const std::vector<agent_row>& agents)>
      more_metrics;
  std::vector<storage*> more_readers = {};
  // A read-write connection for POST routes (login, logout, token actions); nullptr: those
  // answer 503. Used under a mutex (one at a time).
  storage* writer = nullptr;
};

class api;

// One parameter of a route, for the OpenAPI document.
struct api_param {
  std::string_view name;
  bool in_path = false;
  std::string_view type = "string";  // string | integer | number | boolean
  std::string_view description;
  bool required = false;
  std::string_view example = {};
};

// Name of the session cookie set by POST /api/v1/login.
inline constexpr std::string_view kSessionCookie = "semilab_session";

// Who is calling, as handle() established it before the route runs.
struct api_caller {
  role r = role::none;
  std::string token_id;    // "" for anonymous callers
  std::string secret;      // the presented secret (session cookie or bearer), for CSRF checks
  bool by_cookie = false;  // authenticated by the session cookie
};

// The route table: the server dispatches on it and /api/v1/openapi.json is generated from it.
// GET routes answer GET and HEAD through `fn`; POST routes (`action` set) change something:
// when the caller authenticated by the session cookie they need the session's X-CSRF-Token.
struct api_route {
  std::string_view path;  // OpenAPI path; at most one trailing {segment}
  role min_role = role::viewer;
  bool cacheable = false;
  http_response (api::*fn)(std::string_view query) = nullptr;  // nullptr: /healthz
  std::string_view summary;
  std::string_view content_type = "application/json";
  std::span<const api_param> params = {};
  std::string_view path_key = {};     // {segment} is handed to fn as this query key
  std::string_view fixed_query = {};  // appended to the query for path-parameter routes
  // POST routes: the handler (segment = the {segment} of the path, "" when none).
  http_response (api::*action)(const http_request& req, const api_caller& who,
                               std::string_view segment) = nullptr;
};

struct api_http_stats {
  std::uint64_t cache_hits = 0, cache_misses = 0, cache_entries = 0, rate_limited = 0,
                unauthorized = 0, forbidden = 0, logins = 0, login_failures = 0,
                csrf_refused = 0;
};

// Read connections shared by the HTTP threads: acquire() leases a free one (waiting while all are
// leased), the lease gives it back when it goes.
class reader_pool {
 public:
  explicit reader_pool(std::vector<storage*> conns);
  class lease {
   public:
    lease(reader_pool& p, storage* s) : pool_(&p), s_(s) {}
    lease(lease&& o) noexcept : pool_(o.pool_), s_(std::exchange(o.s_, nullptr)) {}
    lease(const lease&) = delete;
    lease& operator=(const lease&) = delete;
    lease& operator=(lease&&) = delete;
    ~lease();
    storage& operator*() const noexcept { return *s_; }
    storage* operator->() const noexcept { return s_; }

   private:
    reader_pool* pool_;
    storage* s_;
  };
  lease acquire();
  std::size_t size() const noexcept { return all_.size(); }

 private:
  std::vector<storage*> all_;
  std::mutex mutex_;
  std::condition_variable freed_;
  std::vector<storage*> free_;  // guarded by mutex_
};

class api {
 public:
  explicit api(api_sources s);
  // method and target only: an anonymous request from nowhere (tests of the routes).
  http_response handle(std::string_view method, std::string_view target);
  http_response handle(const http_request& req);

  static std::span<const api_route> routes();
  // The OpenAPI 3 document of routes() (what /api/v1/openapi.json serves).
  std::string openapi_json() const;
  api_http_stats http_stats() const;

 private:
  http_response agents(std::string_view query);
  http_response stats(std::string_view query);
  http_response measurements(std::string_view query);
  http_response spc(std::string_view query);
  http_response instruments(std::string_view query);
  http_response daily(std::string_view query);
  http_response runs(std::string_view query);
  http_response results(std::string_view query);
  http_response samples(std::string_view query);
  http_response gaps(std::string_view query);
  http_response blobs(std::string_view query);         // src/blobs.cpp
  http_response blob_content(std::string_view query);  // src/blobs.cpp
  http_response quarantine(std::string_view query);
  http_response tokens(std::string_view query);
  http_response metrics(std::string_view query);
  http_response ready(std::string_view query);
  http_response openapi(std::string_view query);
  // POST routes (api_login.cpp).
  http_response login(const http_request& req, const api_caller& who, std::string_view);
  http_response logout(const http_request& req, const api_caller& who, std::string_view);
  http_response token_create(const http_request& req, const api_caller& who, std::string_view);
  http_response token_revoke(const http_request& req, const api_caller& who,
                             std::string_view id);

  // Runs a store call on a leased read connection: f(storage&). The connection's last error is
  // kept (per thread) for store_failed().
  template <class F>
  auto read(F&& f) {
    auto db = readers_.acquire();
    struct keep_error {
      storage& s;
      ~keep_error() { last_read_error() = s.last_error(); }
    } keep{*db};
    return f(*db);
  }
  static std::string& last_read_error();
  // Set-Cookie value of the session cookie (HttpOnly, SameSite=Strict, Path=/; Secure when the
  // request is secure or [auth] cookie_secure); "" with max_age 0 clears it.
  std::string session_cookie(std::string_view value, std::int64_t max_age_s, bool secure) const;
  http_response store_failed(std::string_view what);  // logs, 503
  // Who calls: bearer token, else session cookie, else anonymous; an error reply when a
  // credential was presented and is not valid.
  std::optional<http_response> identify(const http_request& req, api_caller& who);
  // The caller's token bucket ("key" per token id, or per address): a 429 reply when empty.
  std::optional<http_response> throttle(const std::string& key);
  // The role of a presented token (re-reading the store's tokens when due), nullopt if invalid.
  std::optional<role> authenticate(const presented_token& t);
  std::optional<http_response> cache_get(const std::string& key);
  void cache_put(const std::string& key, const http_response& r, std::uint64_t generation);

  api_sources src_;
  reader_pool readers_;
  std::mutex writer_mutex_;  // src_.writer is used by one thread at a time

  std::mutex auth_mutex_;  // guards tokens_, limiter_, tokens_at_ (taken before a reader lease)
  token_table tokens_;
  bool tokens_loaded_ = false;
  std::int64_t tokens_at_ = 0;
  rate_limiter limiter_;

  struct cached {
    http_response res;
    std::int64_t at = 0;            // steady ns
    std::uint64_t generation = 0;   // ingest commits when made
    std::list<std::string>::iterator lru;
  };
  mutable std::mutex cache_mutex_;  // guards cache_, lru_, cache_bytes_
  std::unordered_map<std::string, cached> cache_;
  std::list<std::string> lru_;  // most recent first
  std::size_t cache_bytes_ = 0;
  std::atomic<std::uint64_t> hits_{0}, misses_{0}, rate_limited_{0}, unauthorized_{0},
      forbidden_{0}, logins_{0}, login_failures_{0}, csrf_refused_{0};
};

}  // namespace semilab::central
