#include <semilab/central/api.hpp>
#include <semilab/central/spc.hpp>
#include <semilab/central/users.hpp>

#include "api_util.hpp"
#include "log.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <utility>
#include <vector>
#include <optional>

namespace semilab::central {

namespace json = boost::json;

namespace {

using detail::error_reply;
using detail::json_reply;
using detail::prom_label;
using detail::prom_number;

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

// Direct JSON writing for the hot routes (the same text boost::json would accept back).
void append_json_string(std::string& out, std::string_view v) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  std::size_t run = 0;  // start of the pending stretch that needs no escape
  for (std::size_t i = 0; i < v.size(); ++i) {
    const auto c = static_cast<unsigned char>(v[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(v.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 15];
    }
  }
  out.append(v.data() + run, v.size() - run);
  out += '"';
}

template <class T>
void append_int(std::string& out, T v) {
  char buf[24];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, ec == std::errc() ? p : buf);
}

// Shortest round-trip form, always read back as a double ("1.0", not "1"); null when not finite.
void append_json_double(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  if (ec != std::errc()) {
    out += "null";
    return;
  }
  const std::string_view s(buf, static_cast<std::size_t>(p - buf));
  out += s;
  if (s.find_first_of(".e") == std::string_view::npos) out += ".0";
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

// key=value pairs of a query string, %-decoded; nullopt (and `bad` = the key) on a broken escape.
std::optional<std::vector<std::pair<std::string, std::string>>> query_pairs(std::string_view query,
                                                                            std::string& bad) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    auto key = url_decode(pair.substr(0, eq));
    auto value = url_decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
    if (!key || !value) {
      bad = std::string(pair.substr(0, eq));
      return std::nullopt;
    }
    out.emplace_back(std::move(*key), std::move(*value));
  }
  return out;
}

std::optional<double> parse_double(const std::string& s) {
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty() || !std::isfinite(v))
    return std::nullopt;
  return v;
}

json::value opt_number(const std::optional<double>& v) {
  return v ? json::value(*v) : json::value(nullptr);
}

}  // namespace

namespace {

// Parameters of the routes (the OpenAPI document lists them; the handlers refuse others).
constexpr api_param kMeasurementParams[] = {
    {"agent", false, "string", "agent id"},
    {"instrument", false, "string", "instrument id"},
    {"channel", false, "string", "channel"},
    {"from_ns", false, "integer", "from this UTC timestamp (ns, inclusive)"},
    {"to_ns", false, "integer", "to this UTC timestamp (ns, exclusive)"},
    {"limit", false, "integer", "rows per page, 1..10000 (100)"},
    {"after", false, "string", "cursor: `next` of the previous page"},
    {"format", false, "string", "json (default) or csv"},
};
constexpr api_param kSpcParams[] = {
    {"parameter", false, "string", "measurement channel to chart (required here or in the path)",
     false, "curr"},
    {"chart", false, "string", "imr (default), xbar_r or xbar_s"},
    {"subgroup", false, "integer", "subgroup size of X-bar charts (5)"},
    {"instrument", false, "string", "instrument id"},
    {"agent", false, "string", "agent id"},
    {"from_ns", false, "integer", "from (ns, inclusive)"},
    {"to_ns", false, "integer", "to (ns, exclusive)"},
    {"lsl", false, "number", "lower specification limit"},
    {"usl", false, "number", "upper specification limit"},
    {"max_points", false, "integer", "most values charted, 1..100000 (10000)"},
};
constexpr api_param kSpcPathParams[] = {
    {"parameter", true, "string", "measurement channel to chart", true, "curr"},
    {"chart", false, "string", "imr (default), xbar_r or xbar_s"},
    {"subgroup", false, "integer", "subgroup size of X-bar charts (5)"},
    {"instrument", false, "string", "instrument id"},
    {"agent", false, "string", "agent id"},
    {"from_ns", false, "integer", "from (ns, inclusive)"},
    {"to_ns", false, "integer", "to (ns, exclusive)"},
    {"lsl", false, "number", "lower specification limit"},
    {"usl", false, "number", "upper specification limit"},
    {"max_points", false, "integer", "most values charted, 1..100000 (10000)"},
};
constexpr api_param kAgentParam[] = {{"agent", false, "string", "agent id"}};
constexpr api_param kDailyParams[] = {
    {"agent", false, "string", "agent id"},
    {"instrument", false, "string", "instrument id"},
    {"from_day", false, "integer", "first UTC day (days since 1970)"},
    {"to_day", false, "integer", "last UTC day (inclusive)"},
    {"limit", false, "integer", "rows, 1..10000 (1000)"},
};
constexpr api_param kRunsParams[] = {
    {"agent", false, "string", "agent id"},
    {"instrument", false, "string", "instrument id"},
    {"run", false, "string", "run id"},
    {"from_ns", false, "integer", "runs started from (ns, inclusive)"},
    {"to_ns", false, "integer", "runs started before (ns, exclusive)"},
    {"limit", false, "integer", "rows, 1..10000 (100)"},
};
constexpr api_param kRunParams[] = {
    {"run_id", true, "string", "run id", true, "run-1"},
    {"agent", false, "string", "agent id (when several agents used the run id)"},
};
constexpr api_param kResultsParams[] = {
    {"agent", false, "string", "agent id"},
    {"instrument", false, "string", "instrument id"},
    {"run", false, "string", "run id"},
    {"parameter", false, "string", "result parameter (channel)"},
    {"from_ns", false, "integer", "from (ns, inclusive)"},
    {"to_ns", false, "integer", "to (ns, exclusive)"},
    {"limit", false, "integer", "rows per page, 1..10000 (100)"},
    {"after", false, "string", "cursor: `next` of the previous page"},
};
constexpr api_param kSamplesParams[] = {
    {"group", false, "string", "sample (default), wafer or lot: one row per group"},
    {"lot", false, "string", "lot id"},
    {"wafer", false, "string", "wafer id"},
    {"sample", false, "string", "sample id"},
    {"die", false, "string", "die label, e.g. 3,-2"},
    {"agent", false, "string", "only samples measured by runs of this agent"},
    {"from_ns", false, "integer", "last seen from (ns, inclusive)"},
    {"to_ns", false, "integer", "first seen before (ns, exclusive)"},
    {"limit", false, "integer", "rows per page, 1..10000 (100)"},
    {"after", false, "string", "cursor: `next` of the previous page"},
    {"format", false, "string", "json (default) or csv"},
};
constexpr api_param kGapsParams[] = {
    {"agent", false, "string", "agent id"},
    {"limit", false, "integer", "rows, 1..100000 (1000)"},
};
constexpr api_param kQuarantineParams[] = {
    {"limit", false, "integer", "rows, 1..10000 (50)"},
    {"before", false, "integer", "entries with an id below this (paging)"},
};
constexpr api_param kTokensParams[] = {
    {"all", false, "boolean", "include revoked tokens (true/false)"},
};

constexpr api_param kBlobsParams[] = {
    {"sha256", false, "string", "content hash (lowercase hex)"},
    {"agent", false, "string", "agent id"},
    {"instrument", false, "string", "file-drop id ([[filedrop]] id)"},
    {"format", false, "string", "detected format (csv, jcamp-dx, xrdml, vamas, spc, sem-tiff)"},
    {"parse_error", false, "boolean", "true: only files that did not parse; false: only those that did"},
    {"from_ns", false, "integer", "taken from (ns, inclusive)"},
    {"to_ns", false, "integer", "taken before (ns, exclusive)"},
    {"limit", false, "integer", "rows, 1..1000 (100)"},
};
constexpr api_param kBlobParams[] = {
    {"sha256", true, "string", "content hash (lowercase hex)", true,
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
};

const std::string_view kMethods = "GET, HEAD";

constexpr api_param kTokenRevokeParams[] = {
    {"id", true, "string", "token id (12 hex digits)", true, "0123456789ab"},
};

std::string retry_after(double seconds) {
  return std::to_string(static_cast<long long>(std::ceil(std::max(seconds, 0.001))));
}

}  // namespace

std::span<const api_route> api::routes() {
  static const api_route t[] = {
      {"/healthz", role::none, false, nullptr, "Liveness: 200 `ok` while the process answers",
       "text/plain"},
      {"/readyz", role::none, false, &api::ready,
       "Readiness: 200 when the store answers and MQTT is connected, else 503 with reasons",
       "text/plain"},
      {"/api/v1/openapi.json", role::none, false, &api::openapi,
       "This OpenAPI document, generated from the route table"},
      {"/metrics", role::viewer, false, &api::metrics,
       "Prometheus text format 0.0.4 (no token when [auth] metrics_public)",
       "text/plain; version=0.0.4"},
      {"/api/v1/agents", role::viewer, true, &api::agents, "Agents known to the store"},
      {"/api/v1/stats", role::viewer, false, &api::stats,
       "Store totals and this process's ingest counters"},
      {"/api/v1/measurements", role::viewer, true, &api::measurements,
       "Records by time with filters and keyset pages, JSON or CSV", "application/json",
       kMeasurementParams},
      {"/api/v1/spc", role::viewer, true, &api::spc,
       "Control chart (I-MR, X-bar R/S) with run rules and capability", "application/json",
       kSpcParams},
      {"/api/v1/spc/{parameter}", role::viewer, true, &api::spc,
       "Control chart of the parameter named in the path", "application/json", kSpcPathParams,
       "parameter"},
      {"/api/v1/instruments", role::viewer, true, &api::instruments, "Instruments per agent",
       "application/json", kAgentParam},
      {"/api/v1/daily", role::viewer, true, &api::daily,
       "Daily summaries per instrument (utilisation)", "application/json", kDailyParams},
      {"/api/v1/runs", role::viewer, true, &api::runs, "Runs by start time", "application/json",
       kRunsParams},
      {"/api/v1/runs/{run_id}", role::viewer, true, &api::runs, "One run with its records",
       "application/json", kRunParams, "run", "detail=1"},
      {"/api/v1/samples", role::viewer, true, &api::samples,
       "Samples, wafers and lots (die coordinates, runs) from run metadata, keyset pages, JSON "
       "or CSV", "application/json", kSamplesParams},
      {"/api/v1/results", role::viewer, true, &api::results,
       "run_result records as results, keyset pages", "application/json", kResultsParams},
      {"/api/v1/gaps", role::viewer, true, &api::gaps,
       "Gaps in each agent's sequences, explained by drop notices or not", "application/json",
       kGapsParams},
      {"/api/v1/blobs", role::viewer, true, &api::blobs,
       "Export files (file drops) with metadata, parse errors and parameters, newest first",
       "application/json", kBlobsParams},
      {"/api/v1/blobs/{sha256}", role::viewer, false, &api::blob_content,
       "The raw bytes of one export file, stored once per content", "application/octet-stream",
       kBlobParams, "sha256"},
      {"/api/v1/quarantine", role::engineer, false, &api::quarantine,
       "Frames rejected as invalid, newest first (without payloads)", "application/json",
       kQuarantineParams},
      {"/api/v1/tokens", role::admin, false, &api::tokens,
       "API tokens (id, name, role, created, revoked; never secrets)", "application/json",
       kTokensParams},
      // POST routes (api_login.cpp).
      {"/api/v1/login", role::none, false, nullptr,
       "Log in as a central user: sets the session cookie (HttpOnly, SameSite=Strict) and "
       "answers the CSRF token that later POSTs with the cookie send as X-CSRF-Token",
       "application/json", {}, {}, {}, &api::login},
      {"/api/v1/logout", role::viewer, false, nullptr,
       "End the caller's session (or revoke the presented bearer token's session) and clear "
       "the cookie", "application/json", {}, {}, {}, &api::logout},
      {"/api/v1/tokens", role::admin, false, nullptr,
       "Create an API token; the answer holds the bearer string once", "application/json",
       {}, {}, {}, &api::token_create},
      {"/api/v1/tokens/{id}/revoke", role::admin, false, nullptr, "Revoke an API token",
       "application/json", kTokenRevokeParams, {}, {}, &api::token_revoke},
  };
  return t;
}

reader_pool::reader_pool(std::vector<storage*> conns) : all_(std::move(conns)), free_(all_) {}

reader_pool::lease reader_pool::acquire() {
  std::unique_lock lock(mutex_);
  freed_.wait(lock, [this] { return !free_.empty(); });
  storage* s = free_.back();
  free_.pop_back();
  return lease(*this, s);
}

reader_pool::lease::~lease() {
  if (!s_) return;
  {
    std::lock_guard lock(pool_->mutex_);
    pool_->free_.push_back(s_);
  }
  pool_->freed_.notify_one();
}

namespace {
std::vector<storage*> pool_of(const api_sources& s) {
  std::vector<storage*> v;
  if (s.reader) v.push_back(s.reader);
  for (auto* r : s.more_readers)
    if (r) v.push_back(r);
  return v;
}
}  // namespace

api::api(api_sources s)
    : src_(std::move(s)),
      readers_(pool_of(src_)),
      limiter_(src_.auth ? src_.auth->rate_per_s : 0.0,
               src_.auth ? std::max(1.0, src_.auth->rate_burst) : 1.0) {}

http_response api::handle(std::string_view method, std::string_view target) {
  return handle(http_request{method, target, {}, {}});
}

std::optional<role> api::authenticate(const presented_token& t) {
  std::lock_guard lock(auth_mutex_);
  const std::int64_t now = src_.steady();
  const std::int64_t age = now - tokens_at_;
  const bool due = !tokens_loaded_ || age >= src_.auth->token_refresh.count() * 1'000'000 ||
                   (!tokens_.knows(t.id) && age >= 1'000'000'000);  // a token made just now
  if (due) {
    std::string why;
    const auto ec = read([&](storage& db) {
      auto e = tokens_.load(db);
      if (e) why = db.last_error();
      return e;
    });
    if (ec)
      logger("http")->warn("reading API tokens failed (keeping the last table): {}", why);
    else
      tokens_loaded_ = true;
    tokens_at_ = now;  // failed or not: at most one store read per interval
  }
  return tokens_.check(t, src_.clock());
}

std::optional<http_response> api::cache_get(const std::string& key) {
  const std::uint64_t gen = src_.ingest ? src_.ingest().commits : 0;
  std::lock_guard lock(cache_mutex_);
  auto it = cache_.find(key);
  if (it == cache_.end()) return std::nullopt;
  if (it->second.generation != gen ||
      src_.steady() - it->second.at >= src_.cache.ttl.count() * 1'000'000) {
    cache_bytes_ -= it->second.res.body.size();
    lru_.erase(it->second.lru);
    cache_.erase(it);
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return it->second.res;
}

void api::cache_put(const std::string& key, const http_response& r, std::uint64_t gen) {
  if (r.body.size() > src_.cache.max_bytes / 4) return;  // one answer never fills the cache
  std::lock_guard lock(cache_mutex_);
  if (auto it = cache_.find(key); it != cache_.end()) {
    cache_bytes_ -= it->second.res.body.size();
    lru_.erase(it->second.lru);
    cache_.erase(it);
  }
  while (!lru_.empty() && (cache_.size() >= src_.cache.max_entries ||
                           cache_bytes_ + r.body.size() > src_.cache.max_bytes)) {
    auto old = cache_.find(lru_.back());
    cache_bytes_ -= old->second.res.body.size();
    cache_.erase(old);
    lru_.pop_back();
  }
  lru_.push_front(key);
  cache_bytes_ += r.body.size();
  cache_.emplace(key, cached{r, src_.steady(), gen, lru_.begin()});
}

api_http_stats api::http_stats() const {
  api_http_stats s;
  s.cache_hits = hits_.load();
  s.cache_misses = misses_.load();
  {
    std::lock_guard lock(cache_mutex_);
    s.cache_entries = cache_.size();
  }
  s.rate_limited = rate_limited_.load();
  s.unauthorized = unauthorized_.load();
  s.forbidden = forbidden_.load();
  s.logins = logins_.load();
  s.login_failures = login_failures_.load();
  s.csrf_refused = csrf_refused_.load();
  return s;
}

std::optional<http_response> api::identify(const http_request& req, api_caller& who) {
  who.r = src_.auth ? src_.auth->anonymous : role::admin;
  std::optional<presented_token> t;
  if (!req.authorization.empty()) {
    t = parse_bearer(req.authorization);
  } else if (auto c = cookie_value(req.cookie, kSessionCookie); !c.empty()) {
    t = parse_token(c);
    who.by_cookie = true;
  } else {
    return std::nullopt;  // anonymous
  }
  auto r = t && src_.auth ? authenticate(*t) : std::nullopt;
  if (!r) {
    ++unauthorized_;
    if (auth_failures().record(now_ns()))
      logger("http")->error("alarm: more than {} failed authentications in the last minute",
                            failure_monitor::kAlarmPerMinute);
    auto reply = error_reply(401, who.by_cookie ? "invalid, expired or ended session"
                                                : "invalid, unknown or revoked token");
    reply.headers.emplace_back("WWW-Authenticate",
                               "Bearer realm=\"semilab-central\", error=\"invalid_token\"");
    if (who.by_cookie) reply.headers.emplace_back("Set-Cookie", session_cookie("", 0, req.secure));
    return reply;
  }
  who.r = *r;
  who.token_id = t->id;
  who.secret = t->secret;
  return std::nullopt;
}

std::optional<http_response> api::throttle(const std::string& key) {
  double wait = 0;
  {
    std::lock_guard lock(auth_mutex_);
    wait = limiter_.take(key, src_.steady());
  }
  if (wait <= 0) return std::nullopt;
  ++rate_limited_;
  auto reply = error_reply(429, "rate limit of this caller exceeded");
  reply.headers.emplace_back("Retry-After", retry_after(wait));
  return reply;
}

http_response api::handle(const http_request& req) {
  const auto target = req.target;
  const auto q = target.find('?');
  const auto path = target.substr(0, q);
  const auto query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  const bool post = req.method == "POST";
  const bool get = req.method == "GET" || req.method == "HEAD";

  // The route of this path and method; `allow` collects the methods of the path.
  const api_route* route = nullptr;
  std::string_view segment;
  std::string allow;
  for (const auto& r : routes()) {
    const auto brace = r.path.find('{');
    std::string_view seg;
    if (brace == std::string_view::npos) {
      if (r.path != path) continue;
    } else {
      // "/prefix/{x}" or "/prefix/{x}/suffix": one segment, no '/'.
      const auto close = r.path.find('}', brace);
      const auto suffix = r.path.substr(close + 1);
      if (path.size() <= brace + suffix.size() || path.substr(0, brace) != r.path.substr(0, brace) ||
          !path.ends_with(suffix))
        continue;
      seg = path.substr(brace, path.size() - brace - suffix.size());
      if (seg.empty() || seg.find('/') != std::string_view::npos) continue;
    }
    const bool is_post = r.action != nullptr;
    allow += allow.empty() ? "" : ", ";
    allow += is_post ? "POST" : kMethods;
    if (!route && (is_post ? post : get)) {
      route = &r;
      segment = seg;
    }
  }
  if (allow.empty()) return error_reply(404, "not found");
  if (!route) {
    auto reply = error_reply(405, "method not allowed");
    reply.allow = allow;
    return reply;
  }

  api_caller who;
  if (route->action == &api::login) {
    // Whatever cookie the browser still holds (an expired session) does not matter here; the
    // per-address bucket and the per-user lockout bound guessing.
    if (src_.auth)
      if (auto e = throttle("login:" + req.remote)) return std::move(*e);
    return login(req, who, segment);
  }
  role need = route->min_role;
  if (src_.auth && route->fn == &api::metrics && src_.auth->metrics_public) need = role::none;
  // Credentials are checked where a role is needed and on every POST (logout and the token
  // actions act as the caller; login ignores them).
  if (src_.auth && (need != role::none || post)) {
    if (auto e = identify(req, who)) return std::move(*e);
    if (who.r < need) {
      if (who.token_id.empty()) {
        ++unauthorized_;
        auto reply = error_reply(401, "a bearer token or a session with role " +
                                          std::string(to_string(need)) + " or higher is needed");
        reply.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"semilab-central\"");
        return reply;
      }
      ++forbidden_;
      return error_reply(403, "this caller's role is " + std::string(to_string(who.r)) + "; " +
                                  std::string(route->path) + " needs " +
                                  std::string(to_string(need)));
    }
    // A state-changing request riding on the session cookie must prove it comes from a page
    // that read the login answer (double-submit: the header is not sent cross-site by a
    // browser, and SameSite=Strict keeps the cookie away from other sites anyway).
    if (post && who.by_cookie && route->action != &api::login &&
        !equal_secret(req.csrf_token, csrf_token_for(who.secret))) {
      ++csrf_refused_;
      return error_reply(403, "missing or wrong X-CSRF-Token for this session");
    }
    if (auto e = throttle(who.token_id.empty() ? "anon:" + req.remote : "token:" + who.token_id))
      return std::move(*e);
  } else if (!src_.auth) {
    who.r = role::admin;  // no access control configured (tests of the routes)
  }

  if (route->action) return (this->*route->action)(req, who, segment);
  if (!route->fn) return http_response{200, "text/plain", "ok\n", {}};
  std::string args;
  std::string_view effective = query;
  if (!route->path_key.empty()) {
    args = std::string(route->path_key) + "=" + std::string(segment);
    if (!route->fixed_query.empty()) args += "&" + std::string(route->fixed_query);
    if (!query.empty()) args += "&" + std::string(query);
    effective = args;
  }
  const bool use_cache = route->cacheable && src_.cache.ttl.count() > 0;
  std::string cache_key;
  // Taken before the store is read: an answer computed while a commit lands is tagged with the
  // generation before it and dies as soon as the commit is counted.
  const std::uint64_t gen = use_cache && src_.ingest ? src_.ingest().commits : 0;
  if (use_cache) {
    cache_key = std::string(target);
    if (auto hit = cache_get(cache_key)) {
      ++hits_;
      return std::move(*hit);
    }
    ++misses_;
  }
  auto res = (this->*route->fn)(effective);
  if (use_cache && res.status == 200) cache_put(cache_key, res, gen);
  return res;
}

std::string api::openapi_json() const {
  json::object paths;
  for (const auto& r : routes()) {
    json::object op;
    op["summary"] = r.summary;
    const bool is_post = r.action != nullptr;
    std::string id;
    for (char c : r.path) id += (std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
    op["operationId"] = (is_post ? "post" : "get") + id;
    const bool is_metrics = r.fn == &api::metrics;
    role need = r.min_role;
    if (src_.auth && is_metrics && src_.auth->metrics_public) need = role::none;
    op["x-semilab-min-role"] = to_string(need);
    op["x-semilab-cached"] = r.cacheable;
    op["description"] =
        std::string("Minimum role: ") + std::string(to_string(need)) +
        (need == role::none ? " (no token)" : "") +
        (is_post ? ". Changes state: with the session cookie, X-CSRF-Token is required."
                 : ". HEAD answers like GET without a body.") +
        (is_metrics ? " With [auth] metrics_public = true no token is needed." : "");
    json::array params;
    for (const auto& p : r.params) {
      json::object o{{"name", p.name},
                     {"in", p.in_path ? "path" : "query"},
                     {"required", p.in_path || p.required},
                     {"description", p.description},
                     {"schema", json::object{{"type", p.type}}}};
      if (!p.example.empty()) o["example"] = p.example;
      params.push_back(std::move(o));
    }
    if (!params.empty()) op["parameters"] = std::move(params);
    if (need == role::none)
      op["security"] = json::array{};
    else
      op["security"] = json::array{json::object{{"bearerAuth", json::array{}}},
                                   json::object{{"sessionCookie", json::array{}}}};
    json::object responses;
    responses["200"] = json::object{
        {"description", "OK"},
        {"content", json::object{{std::string(r.content_type), json::object{}}}}};
    auto err = [](std::string_view d) {
      return json::object{
          {"description", d},
          {"content", json::object{{"application/json",
                                    json::object{{"schema", json::object{{"$ref",
                                                                          "#/components/schemas/"
                                                                          "Error"}}}}}}}};
    };
    if (!r.params.empty()) responses["400"] = err("Bad parameter");
    if (need != role::none) {
      responses["401"] = err("No token, or an invalid, unknown or revoked one");
      responses["403"] = err("The token's role is below the route's minimum");
      responses["429"] = err("Rate limit of the caller exceeded (see Retry-After)");
    }
    if (r.fn == &api::ready) responses["503"] = err("Not ready, with reasons");
    else if ((r.fn && r.fn != &api::openapi) || is_post) responses["503"] = err("Store unavailable");
    if (r.fn == &api::spc) responses["422"] = err("Too few values for the chart");
    if (is_post && need != role::none)
      responses["403"] = err("Role too low, or the session's X-CSRF-Token missing or wrong");
    if (r.action == &api::login) {
      responses["401"] = err("Unknown user or wrong password");
      responses["423"] = err("User locked after repeated failures, or disabled");
      responses["429"] = err("Rate limit of the address exceeded (see Retry-After)");
    }
    op["responses"] = std::move(responses);
    // The JSON bodies of the POST routes (strings, all required).
    std::vector<std::string_view> fields;
    if (r.action == &api::login) fields = {"user", "password"};
    if (r.action == &api::token_create) fields = {"role", "name"};
    if (!fields.empty()) {
      json::object props;
      json::array required;
      for (auto f : fields) {
        props[f] = json::object{{"type", "string"}};
        required.emplace_back(f);
      }
      op["requestBody"] = json::object{
          {"required", true},
          {"content",
           json::object{{"application/json",
                         json::object{{"schema", json::object{{"type", "object"},
                                                               {"properties", std::move(props)},
                                                               {"required", std::move(required)}}}}}}}};
    }
    auto& entry = paths[r.path];
    if (!entry.is_object()) entry.emplace_object();
    entry.as_object()[is_post ? "post" : "get"] = std::move(op);
  }
  json::object doc;
  doc["openapi"] = "3.0.3";
  doc["info"] = json::object{
      {"title", "semilab-central API"},
      {"version", "1"},
      {"description",
       "API of semilab-central: data reads (GET) and login/logout and token actions (POST). "
       "u64 and nanosecond values travel as JSON strings. Roles: viewer < engineer < admin; "
       "tokens from `semilab-central tokens create` or POST /api/v1/tokens, sessions from POST "
       "/api/v1/login (cookie; POSTs with it need X-CSRF-Token)."}};
  doc["paths"] = std::move(paths);
  doc["components"] = json::object{
      {"securitySchemes",
       json::object{{"bearerAuth", json::object{{"type", "http"}, {"scheme", "bearer"}}},
                    {"sessionCookie", json::object{{"type", "apiKey"},
                                                   {"in", "cookie"},
                                                   {"name", std::string(kSessionCookie)}}}}},
      {"schemas",
       json::object{{"Error",
                     json::object{{"type", "object"},
                                  {"properties",
                                   json::object{{"error", json::object{{"type", "string"}}}}}}}}}};
  return json::serialize(doc) + "\n";
}

http_response api::openapi(std::string_view) {
  return http_response{200, "application/json", openapi_json(), {}};
}

http_response api::quarantine(std::string_view query) {
  std::string bad;
  auto pairs = query_pairs(query, bad);
  if (!pairs) return error_reply(400, "parameter " + bad + ": bad %-escape");
  std::int64_t limit = 50, before = 0;
  for (const auto& [k, v] : *pairs) {
    auto n = parse_i64(v);
    if (k == "limit" && n && *n >= 1 && *n <= 10000)
      limit = *n;
    else if (k == "before" && n)
      before = *n;
    else if (k == "limit" || k == "before")
      return error_reply(400, k + ": expected an integer" + (k == "limit" ? " 1..10000" : ""));
    else
      return error_reply(400, "unknown parameter " + k + " (limit, before)");
  }
  auto rows = read([&](storage& db) { return db.quarantine_list(static_cast<std::size_t>(limit), before); });
  if (!rows) return store_failed("quarantine");
  json::array list;
  for (const auto& e : *rows)
    list.push_back(json::object{{"id", e.id},
                                {"received_ns", ns_string(e.received_ns)},
                                {"topic", e.topic},
                                {"agent_id", e.agent_id},
                                {"reason", e.reason},
                                {"bytes", e.bytes},
                                {"kept_bytes", e.kept_bytes}});
  return json_reply(200, json::object{{"quarantine", std::move(list)}});
}

http_response api::tokens(std::string_view query) {
  std::string bad;
  auto pairs = query_pairs(query, bad);
  if (!pairs) return error_reply(400, "parameter " + bad + ": bad %-escape");
  bool all = false;
  for (const auto& [k, v] : *pairs) {
    if (k != "all") return error_reply(400, "unknown parameter " + k + " (all)");
    if (v != "true" && v != "false") return error_reply(400, "all: expected true or false");
    all = v == "true";
  }
  auto rows = read([&](storage& db) { return list_tokens(db, all); });
  if (!rows) return store_failed("tokens");
  json::array list;
  for (const auto& t : *rows)
    list.push_back(json::object{
        {"id", t.id},
        {"name", t.name},
        {"role", to_string(t.r)},
        {"created_ns", ns_string(t.created_ns)},
        {"revoked_ns", t.revoked_ns ? ns_string(*t.revoked_ns) : json::value(nullptr)}});
  return json_reply(200, json::object{{"tokens", std::move(list)}});
}

http_response api::agents(std::string_view) {
  auto r = read([](storage& db) { return db.agents(); });
  if (!r) return store_failed("agents");
  const std::vector<agent_row> rows = std::move(*r);
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
  auto r = read([](storage& db) { return db.totals(); });
  if (!r) return store_failed("stats");
  const store_totals t = *r;
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
  auto r = read([&](storage& db) { return db.measurements(q); });
  if (!r) return store_failed("measurements");
  const std::vector<measurement_row> rows = std::move(*r);
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
  read([&](storage& db) {
    if (db.ping()) why.push_back(json::value("store: " + db.last_error()));
  });
  if (src_.mqtt_connected && !src_.mqtt_connected()) why.push_back(json::value("mqtt: not connected"));
  if (why.empty()) return http_response{200, "text/plain", "ready\n", {}};
  return json_reply(503, json::object{{"ready", false}, {"reasons", std::move(why)}});
}

http_response api::metrics(std::string_view) {
  std::vector<agent_row> agents;
  store_totals t;
  const bool ok = read([&](storage& db) {
    auto a = db.agents();
    auto tt = a ? db.totals() : result<store_totals>(a.error());
    if (!a || !tt) return false;
    agents = std::move(*a);
    t = *tt;
    return true;
  });
  // A store that does not answer is a metric (database_up 0), not a failed scrape.
  if (!ok) logger("http")->warn("metrics: store unavailable: {}", last_read_error());
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
  metric("semilab_central_ingest_agent_mismatch_total", "counter",
         "Frames whose agent id differs from their topic's (refused, quarantined).",
         s.agent_mismatch);
  metric("semilab_central_ingest_bad_signatures_total", "counter",
         "Batches refused for their signature: unsigned, unknown key or not verifying "
         "(quarantined; alarm on any increase).",
         s.bad_signatures);
  metric("semilab_central_ingest_unapproved_total", "counter",
         "Batches refused because signatures are required and no key is approved for the agent.",
         s.unapproved);
  metric("semilab_central_ingest_signatures_verified_total", "counter",
         "Batches whose Ed25519 signature verified.", s.signed_verified);
  metric("semilab_central_ingest_dictionaries_stored_total", "counter",
         "zstd dictionaries received from agents and stored.", s.dictionaries_stored);
  metric("semilab_central_ingest_dictionary_requests_total", "counter",
         "Dictionary requests sent to agents (a batch named a dictionary central lacked).",
         s.dictionary_requests);
  metric("semilab_central_ingest_held_for_dictionary", "gauge",
         "Batches held (not acked) until their agent's dictionary arrives.", s.held_for_dictionary);
  metric("semilab_central_audit_entries_total", "counter",
         "batch.store audit entries appended by this instance.", s.audit_entries);
  metric("semilab_central_audit_errors_total", "counter",
         "Failed audit trail appends (retried; alarm on any increase).", s.audit_errors);
  {
    const auto now = now_ns();
    metric("semilab_central_auth_failures_total", "counter",
           "Failed authentications (API tokens and user logins) in this process.",
           auth_failures().total());
    metric("semilab_central_auth_failures_last_minute", "gauge",
           "Failed authentications in the last 60 s.", auth_failures().last_minute(now));
    metric("semilab_central_auth_failure_alarm", "gauge",
           "1 while more than 50 authentications failed in the last 60 s.",
           auth_failures().alarm(now) ? 1 : 0);
  }
  metric("semilab_central_ingest_storage_errors_total", "counter", "Failed group commits.",
         s.storage_errors);
  metric("semilab_central_ingest_commits_total", "counter", "Successful group commits.",
         s.commits);
  metric("semilab_central_ingest_queue_depth", "gauge", "Messages waiting in the ingest queue.",
         s.queue_depth);
  metric("semilab_central_mqtt_connected", "gauge", "1 when connected to the broker.",
         src_.mqtt_connected && src_.mqtt_connected() ? 1 : 0);
  // The HTTP API of this process.
  const auto h = http_stats();
  metric("semilab_central_http_cache_hits_total", "counter",
         "API answers served from the response cache.", h.cache_hits);
  metric("semilab_central_http_cache_misses_total", "counter",
         "Cacheable API requests computed from the store.", h.cache_misses);
  out += "# HELP semilab_central_http_cache_hit_ratio Cache hits / cacheable requests since start "
         "(0 before the first).\n# TYPE semilab_central_http_cache_hit_ratio gauge\n"
         "semilab_central_http_cache_hit_ratio " +
         fmt_double(h.cache_hits + h.cache_misses == 0
                        ? 0.0
                        : static_cast<double>(h.cache_hits) /
                              static_cast<double>(h.cache_hits + h.cache_misses)) +
         "\n";
  metric("semilab_central_http_cache_entries", "gauge", "Answers held by the response cache.",
         h.cache_entries);
  metric("semilab_central_http_rate_limited_total", "counter",
         "Requests answered 429 (caller's token bucket empty).", h.rate_limited);
  metric("semilab_central_http_unauthorized_total", "counter",
         "Requests answered 401 (no token where one is needed, or an invalid one).",
         h.unauthorized);
  metric("semilab_central_http_forbidden_total", "counter",
         "Requests answered 403 (the token's role is too low).", h.forbidden);
  metric("semilab_central_database_up", "gauge",
         "1 when the store answered this scrape's queries, 0 when it did not.", ok ? 1 : 0);
  if (src_.more_metrics)
    read([&](storage& db) {
      src_.more_metrics(out, ok ? &db : nullptr, agents);
      return 0;
    });
  if (!ok) return http_response{200, "text/plain; version=0.0.4; charset=utf-8", std::move(out), {}};
  // The store (all instances, since it was created).
  metric("semilab_central_store_records", "gauge", "Distinct records in the store.", t.records);
  metric("semilab_central_store_agents", "gauge", "Agents known to the store.", t.agents);
  metric("semilab_central_quarantine_entries", "gauge", "Rows in the quarantine table.",
         t.quarantined);
  out += "# HELP semilab_central_agent_last_batch_timestamp_seconds Receipt time of the agent's "
         "last stored batch (Unix seconds).\n"
         "# TYPE semilab_central_agent_last_batch_timestamp_seconds gauge\n";
  for (const auto& a : agents)
    out += "semilab_central_agent_last_batch_timestamp_seconds{agent=\"" + prom_label(a.agent_id) +
           "\",site=\"" + prom_label(a.site) + "\"} " +
           prom_number(static_cast<double>(a.last_batch_ns) / 1e9) + "\n";
  out += "# HELP semilab_central_agent_records Distinct records stored per agent.\n"
         "# TYPE semilab_central_agent_records gauge\n";
  for (const auto& a : agents)
    out += "semilab_central_agent_records{agent=\"" + prom_label(a.agent_id) + "\",site=\"" +
           prom_label(a.site) + "\"} " + std::to_string(a.records) + "\n";
  return http_response{200, "text/plain; version=0.0.4; charset=utf-8", std::move(out), {}};
}

http_response api::spc(std::string_view query) {
  std::string bad;
  auto pairs = query_pairs(query, bad);
  if (!pairs) return error_reply(400, "parameter " + bad + ": bad %-escape");
  measurement_query q;
  std::string parameter;
  auto kind = spc::chart_kind::imr;
  std::int64_t subgroup = 5, max_points = 10000;
  std::optional<double> lsl, usl;
  for (const auto& [key, value] : *pairs) {
    auto int_param = [&text = value](std::int64_t& out) {  // clang < 16: no binding captures
      auto v = parse_i64(text);
      if (v) out = *v;
      return v.has_value();
    };
    if (key == "parameter") {
      parameter = value;
    } else if (key == "chart") {
      auto k = spc::parse_chart_kind(value);
      if (!k) return error_reply(400, "chart: expected imr, xbar_r or xbar_s");
      kind = *k;
    } else if (key == "subgroup") {
      if (!int_param(subgroup) || subgroup < 1 || subgroup > 100)
        return error_reply(400, "subgroup: expected an integer 1..100");
    } else if (key == "instrument") {
      q.instrument = value;
    } else if (key == "agent") {
      q.agent_id = value;
    } else if (key == "from_ns") {
      if (!int_param(q.from_ns)) return error_reply(400, "from_ns: expected integer nanoseconds");
    } else if (key == "to_ns") {
      if (!int_param(q.to_ns)) return error_reply(400, "to_ns: expected integer nanoseconds");
    } else if (key == "lsl" || key == "usl") {
      auto v = parse_double(value);
      if (!v) return error_reply(400, key + ": expected a number");
      (key == "lsl" ? lsl : usl) = *v;
    } else if (key == "max_points") {
      if (!int_param(max_points) || max_points < 1 || max_points > 100000)
        return error_reply(400, "max_points: expected an integer 1..100000");
    } else {
      return error_reply(400, "unknown parameter " + key +
                                  " (parameter, chart, subgroup, instrument, agent, from_ns, "
                                  "to_ns, lsl, usl, max_points)");
    }
  }
  if (parameter.empty()) return error_reply(400, "parameter: required (a measurement channel)");
  if (lsl && usl && !(*lsl < *usl)) return error_reply(400, "lsl must be below usl");
  q.channel = parameter;

  // Numeric values in time order, read page by page (keyset), text values skipped.
  std::vector<double> values;
  std::vector<std::int64_t> stamps;
  bool truncated = false;
  q.limit = 10000;
  for (;;) {
    // One lease per page: a long chart does not hold a connection between pages.
    auto r = read([&](storage& db) { return db.measurements(q); });
    if (!r) return store_failed("spc");
    for (const auto& m : *r) {
      std::optional<double> v;
      if (m.integer)
        v = static_cast<double>(*m.integer);
      else if (m.real && std::isfinite(*m.real))
        v = *m.real;
      if (!v) continue;
      if (values.size() == static_cast<std::size_t>(max_points)) {
        truncated = true;
        break;
      }
      values.push_back(*v);
      stamps.push_back(m.ts_ns);
    }
    if (truncated || r->size() < q.limit) break;
    const auto& last = r->back();
    q.has_after = true;
    q.after_ts_ns = last.ts_ns;
    q.after_agent = last.agent_id;
    q.after_epoch = last.store_epoch;
    q.after_seq = last.seq;
  }
  std::string why;
  auto c = spc::make_chart(kind, values, static_cast<int>(subgroup), why);
  if (!c) return error_reply(422, "cannot chart " + parameter + ": " + why);

  const char* disp_name = kind == spc::chart_kind::xbar_r   ? "R"
                          : kind == spc::chart_kind::xbar_s ? "S"
                                                            : "MR";
  auto lim = [](const spc::limits& l) {
    return json::object{{"lcl", l.lcl}, {"cl", l.cl}, {"ucl", l.ucl}};
  };
  auto names = [](std::uint32_t bits) {
    json::array a;
    for (auto& n : spc::rule_names(bits)) a.emplace_back(n);
    return a;
  };
  json::array points, violations;
  const std::size_t per = kind == spc::chart_kind::imr ? 1 : static_cast<std::size_t>(c->subgroup);
  for (std::size_t i = 0; i < c->center_points.size(); ++i) {
    json::object p;
    p["index"] = i;
    p["ts_ns"] = ns_string(stamps[i * per]);  // first value of the subgroup
    p["value"] = c->center_points[i];
    std::uint32_t drules = 0;
    if (kind == spc::chart_kind::imr) {
      if (i > 0) {
        p["dispersion"] = c->dispersion_points[i - 1];
        drules = c->dispersion_rules[i - 1];
      } else {
        p["dispersion"] = nullptr;
      }
    } else {
      p["dispersion"] = c->dispersion_points[i];
      drules = c->dispersion_rules[i];
    }
    p["rules"] = names(c->center_rules[i]);
    p["dispersion_rules"] = names(drules);
    if (c->center_rules[i] || drules) {
      json::object v{{"index", i}};
      if (c->center_rules[i]) v["rules"] = names(c->center_rules[i]);
      if (drules) v["dispersion_rules"] = names(drules);
      violations.push_back(std::move(v));
    }
    points.push_back(std::move(p));
  }
  auto cap = spc::capability_of(c->mean, c->sigma_within, c->sigma_overall, lsl, usl);
  json::object body;
  body["parameter"] = parameter;
  body["chart"] = spc::to_string(kind);
  body["subgroup"] = c->subgroup;
  body["values"] = c->values;
  body["truncated"] = truncated;
  body["mean"] = c->mean;
  body["sigma_within"] = c->sigma_within;
  body["sigma_overall"] = c->sigma_overall;
  body["center"] = lim(c->center);
  auto d = lim(c->dispersion);
  d["name"] = disp_name;
  body["dispersion"] = std::move(d);
  body["points"] = std::move(points);
  body["violations"] = std::move(violations);
  body["capability"] = json::object{
      {"lsl", opt_number(lsl)},     {"usl", opt_number(usl)},     {"cp", opt_number(cap.cp)},
      {"cpk", opt_number(cap.cpk)}, {"cpu", opt_number(cap.cpu)}, {"cpl", opt_number(cap.cpl)},
      {"pp", opt_number(cap.pp)},   {"ppk", opt_number(cap.ppk)}, {"ppu", opt_number(cap.ppu)},
      {"ppl", opt_number(cap.ppl)}};
  return json_reply(200, body);
}

namespace {
// Parses the query into `known` keys (values %-decoded); an error reply on anything else.
std::optional<http_response> parse_known(std::string_view query,
                                         std::initializer_list<std::string_view> known,
                                         std::vector<std::pair<std::string, std::string>>& out) {
  std::string bad;
  auto pairs = query_pairs(query, bad);
  if (!pairs) return error_reply(400, "parameter " + bad + ": bad %-escape");
  for (auto& [k, v] : *pairs) {
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      std::string list;
      for (auto n : known) list += (list.empty() ? "" : ", ") + std::string(n);
      return error_reply(400, "unknown parameter " + k + " (" + list + ")");
    }
  }
  out = std::move(*pairs);
  return std::nullopt;
}

// An integer parameter: nullopt when absent, an error reply when malformed or out of range.
std::optional<http_response> int_arg(const std::string& key, const std::string& value,
                                     std::int64_t lo, std::int64_t hi, std::int64_t& out) {
  auto v = parse_i64(value);
  if (!v || *v < lo || *v > hi)
    return error_reply(400, key + ": expected an integer " + std::to_string(lo) + ".." +
                                std::to_string(hi));
  out = *v;
  return std::nullopt;
}

json::object measurement_json(const measurement_row& m) {
  json::object o;
  o["agent_id"] = m.agent_id;
  o["store_epoch"] = std::to_string(m.store_epoch);
  o["seq"] = std::to_string(m.seq);
  o["class"] = schemas::to_string(static_cast<schemas::record_class>(m.cls));
  o["ts_ns"] = ns_string(m.ts_ns);
  o["instrument"] = m.instrument;
  o["channel"] = m.channel;
  o["unit"] = m.unit;
  o["quality"] = m.quality;
  if (m.integer)
    o["value"] = std::to_string(*m.integer);
  else if (m.text)
    o["value"] = *m.text;
  else if (m.real)
    o["value"] = *m.real;
  else
    o["value"] = nullptr;
  if (m.repr) o["value_repr"] = *m.repr;
  if (!m.run_id.empty()) o["run_id"] = m.run_id;
  return o;
}

json::object run_json(const run_row& r) {
  return json::object{{"agent_id", r.agent_id},         {"run_id", r.run_id},
                      {"instrument", r.instrument},     {"first_ts_ns", ns_string(r.first_ts_ns)},
                      {"last_ts_ns", ns_string(r.last_ts_ns)}, {"records", r.records},
                      {"results", r.results}};
}

constexpr std::int64_t kMaxI = INT64_MAX;

// The window and page size of a listing: from_ns and to_ns (any int64) and limit (1..10000)
// into the query; nothing for any other key, an error reply for a malformed value.
template <class Query>
std::optional<http_response> window_arg(const std::string& k, const std::string& v, Query& q) {
  std::int64_t n = 0;
  if (k == "from_ns") {
    if (auto e = int_arg(k, v, INT64_MIN, kMaxI, n)) return e;
    q.from_ns = n;
  } else if (k == "to_ns") {
    if (auto e = int_arg(k, v, INT64_MIN, kMaxI, n)) return e;
    q.to_ns = n;
  } else if (k == "limit") {
    if (auto e = int_arg(k, v, 1, 10000, n)) return e;
    q.limit = static_cast<std::size_t>(n);
  }
  return std::nullopt;
}
}  // namespace

namespace {
// Cursor of /api/v1/samples: the last row's key, each part hex-encoded, joined by '.'.
std::string hex_of(std::string_view v) {
  static const char* d = "0123456789abcdef";
  std::string o;
  for (unsigned char c : v) {
    o += d[c >> 4];
    o += d[c & 15];
  }
  return o;
}
std::optional<std::string> unhex(std::string_view v) {
  if (v.size() % 2) return std::nullopt;
  std::string o;
  for (std::size_t i = 0; i < v.size(); i += 2) {
    unsigned x = 0;
    auto [p, ec] = std::from_chars(v.data() + i, v.data() + i + 2, x, 16);
    if (ec != std::errc{} || p != v.data() + i + 2) return std::nullopt;
    o += static_cast<char>(x);
  }
  return o;
}
}  // namespace

http_response api::samples(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> args;
  if (auto e = parse_known(query,
                           {"group", "lot", "wafer", "sample", "die", "agent", "from_ns", "to_ns",
                            "limit", "after", "format"},
                           args))
    return *e;
  sample_query q;
  bool csv = false;
  std::string after;
  for (auto& [k, v] : args) {
    if (k == "group") {
      if (v == "wafer") q.group = sample_group::wafer;
      else if (v == "lot") q.group = sample_group::lot;
      else if (v != "sample") return error_reply(400, "group: expected sample, wafer or lot");
    }
    if (k == "lot") q.lot = v;
    if (k == "wafer") q.wafer = v;
    if (k == "sample") q.sample = v;
    if (k == "die") q.die = v;
    if (k == "agent") q.agent_id = v;
    if (auto e = window_arg(k, v, q)) return *e;
    if (k == "after") after = v;
    if (k == "format") {
      if (v == "csv") csv = true;
      else if (v != "json") return error_reply(400, "format: expected json or csv");
    }
  }
  if (!after.empty()) {
    // Parsed after `group`, whatever the order of the parameters: the parts are its key's.
    std::vector<std::string> parts;
    std::string_view rest = after;
    while (true) {
      const auto dot = rest.find('.');
      auto part = unhex(rest.substr(0, dot));
      if (!part) return error_reply(400, "after: not a cursor from a previous page's `next`");
      parts.push_back(std::move(*part));
      if (dot == std::string_view::npos) break;
      rest.remove_prefix(dot + 1);
    }
    const std::size_t want = q.group == sample_group::lot ? 1 : q.group == sample_group::wafer ? 2 : 4;
    if (parts.size() != want)
      return error_reply(400, "after: not a cursor of this group");
    parts.resize(4);
    q.has_after = true;
    q.after_lot = parts[0];
    q.after_wafer = parts[1];
    q.after_sample = parts[2];
    q.after_die = parts[3];
  }
  auto rows_r = read([&](storage& db) { return db.samples(q); });
  if (!rows_r) return store_failed("samples");
  const auto& rows = *rows_r;
  std::optional<std::string> next;
  if (rows.size() == q.limit && !rows.empty()) {
    const auto& b = rows.back();
    std::string c = hex_of(b.lot);
    for (const std::string* part : {&b.wafer, &b.sample, &b.die}) {
      if (part == &b.wafer ? q.group == sample_group::lot : q.group != sample_group::sample)
        break;
      c += '.';
      c += hex_of(*part);
    }
    next = std::move(c);
  }
  if (csv) {
    http_response res;
    res.content_type = "text/csv; charset=utf-8";
    res.body = "lot,wafer,sample,die,die_x,die_y,first_seen_ns,last_seen_ns,runs,samples\n";
    for (const auto& r : rows)
      res.body += csv_field(r.lot) + "," + csv_field(r.wafer) + "," + csv_field(r.sample) + "," +
                  csv_field(r.die) + "," + (r.die_x ? std::to_string(*r.die_x) : "") + "," +
                  (r.die_y ? std::to_string(*r.die_y) : "") + "," +
                  std::to_string(r.first_seen_ns) + "," + std::to_string(r.last_seen_ns) + "," +
                  std::to_string(r.runs) + "," + std::to_string(r.samples) + "\n";
    if (next) res.body += "# next=" + *next + "\n";
    return res;
  }
  json::array list;
  list.reserve(rows.size());
  for (const auto& r : rows) {
    json::object o{{"lot", r.lot},
                   {"first_seen_ns", ns_string(r.first_seen_ns)},
                   {"last_seen_ns", ns_string(r.last_seen_ns)},
                   {"runs", r.runs}};
    if (q.group != sample_group::lot) o["wafer"] = r.wafer;
    if (q.group == sample_group::sample) {
      o["sample"] = r.sample;
      o["die"] = r.die;
      o["die_x"] = r.die_x ? json::value(*r.die_x) : json::value(nullptr);
      o["die_y"] = r.die_y ? json::value(*r.die_y) : json::value(nullptr);
    } else {
      o["samples"] = r.samples;
    }
    list.push_back(std::move(o));
  }
  json::object body{{"samples", std::move(list)}};
  body["next"] = next ? json::value(*next) : json::value(nullptr);
  return json_reply(200, body);
}

std::string& api::last_read_error() {
  thread_local std::string e;
  return e;
}

http_response api::store_failed(std::string_view what) {
  logger("http")->warn("{} query failed: {}", what, last_read_error());
  return error_reply(503, "store unavailable");
}

http_response api::instruments(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> args;
  if (auto e = parse_known(query, {"agent"}, args)) return *e;
  std::string agent;
  for (auto& [k, v] : args) agent = v;
  auto rows_r = read([&](storage& db) { return db.instruments(agent); });
  if (!rows_r) return store_failed("instruments");
  auto rows = std::move(*rows_r);
  json::array list;
  for (const auto& i : rows) {
    json::object o{{"agent_id", i.agent_id},
                   {"instrument", i.instrument},
                   {"first_seen_ns", ns_string(i.first_seen_ns)},
                   {"last_seen_ns", ns_string(i.last_seen_ns)},
                   {"records", i.records}};
    o["identity"] = i.identity ? json::value(*i.identity) : json::value(nullptr);
    o["calibration_due_ns"] =
        i.calibration_due_ns ? ns_string(*i.calibration_due_ns) : json::value(nullptr);
    list.push_back(std::move(o));
  }
  return json_reply(200, json::object{{"instruments", std::move(list)}});
}

http_response api::daily(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> args;
  if (auto e = parse_known(query, {"agent", "instrument", "from_day", "to_day", "limit"}, args))
    return *e;
  daily_query q;
  for (auto& [k, v] : args) {
    std::int64_t n = 0;
    if (k == "agent") q.agent_id = v;
    if (k == "instrument") q.instrument = v;
    if (k == "from_day") {
      if (auto e = int_arg(k, v, 0, kMaxI, n)) return *e;
      q.from_day = n;
    }
    if (k == "to_day") {
      if (auto e = int_arg(k, v, 0, kMaxI, n)) return *e;
      q.to_day = n;
    }
    if (k == "limit") {
      if (auto e = int_arg(k, v, 1, 10000, n)) return *e;
      q.limit = static_cast<std::size_t>(n);
    }
  }
  auto rows_r = read([&](storage& db) { return db.daily(q); });
  if (!rows_r) return store_failed("daily");
  auto rows = std::move(*rows_r);
  json::array list;
  for (const auto& d : rows)
    list.push_back(json::object{{"agent_id", d.agent_id},
                                {"instrument", d.instrument},
                                {"day", d.day},
                                {"measurements", d.measurements},
                                {"results", d.results},
                                {"events", d.events},
                                {"runs", d.runs},
                                {"active_minutes", d.active_minutes},
                                {"utilisation", d.utilisation()}});
  return json_reply(200, json::object{{"daily", std::move(list)}});
}

http_response api::runs(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> args;
  if (auto e = parse_known(query,
                           {"agent", "instrument", "run", "detail", "from_ns", "to_ns", "limit"},
                           args))
    return *e;
  run_query q;
  bool detail = false;
  for (auto& [k, v] : args) {
    if (k == "agent") q.agent_id = v;
    if (k == "instrument") q.instrument = v;
    if (k == "run") q.run_id = v;
    if (k == "detail") detail = v == "1";
    if (auto e = window_arg(k, v, q)) return *e;
  }
  auto rows_r = read([&](storage& db) { return db.runs(q); });
  if (!rows_r) return store_failed("runs");
  auto rows = std::move(*rows_r);
  if (!detail) {
    json::array list;
    for (const auto& r : rows) list.push_back(run_json(r));
    return json_reply(200, json::object{{"runs", std::move(list)}});
  }
  if (rows.empty()) return error_reply(404, "no run " + q.run_id);
  if (rows.size() > 1)
    return error_reply(409, "run id " + q.run_id + " exists for several agents: add ?agent=");
  // The run's records, oldest first (at most 10000).
  // Through records_instrument_ts: the run's instrument and time bounds (a run spanning
  // several instruments lists the records of its first instrument).
  const sql_param p[] = {sql_param{true, 0, rows[0].agent_id}, sql_param{true, 0, q.run_id},
                         sql_param{true, 0, rows[0].instrument},
                         sql_param{false, rows[0].first_ts_ns, {}},
                         sql_param{false, rows[0].last_ts_ns, {}}};
  auto recs_r = read([&](storage& db) { return db.query("SELECT agent_id, store_epoch, record_seq, class, ts_ns, instrument, "
                         "channel, unit, quality, value_real, value_int, value_text, value_repr "
                         "FROM records WHERE instrument = ?3 AND ts_ns >= ?4 AND ts_ns <= ?5 "
                         "AND agent_id = ?1 AND run_id = ?2 "
                         "ORDER BY ts_ns, record_seq LIMIT 10000",
                         p); });
  if (!recs_r) return store_failed("run records");
  auto recs = std::move(*recs_r);
  json::array list;
  for (const auto& row : recs) {
    measurement_row m;
    auto i64 = [](const sql_cell& c) {
      std::int64_t v = 0;
      if (c) std::from_chars(c->data(), c->data() + c->size(), v);
      return v;
    };
    m.agent_id = row[0].value_or("");
    m.store_epoch = static_cast<std::uint64_t>(i64(row[1]));
    m.seq = static_cast<std::uint64_t>(i64(row[2]));
    m.cls = static_cast<int>(i64(row[3]));
    m.ts_ns = i64(row[4]);
    m.instrument = row[5].value_or("");
    m.channel = row[6].value_or("");
    m.unit = row[7].value_or("");
    m.quality = static_cast<std::uint32_t>(i64(row[8]));
    if (row[9]) m.real = parse_double(*row[9]);
    if (row[10]) m.integer = i64(row[10]);
    m.text = row[11];
    m.repr = row[12];
    list.push_back(measurement_json(m));
  }
  auto body = run_json(rows[0]);
  body["records_list"] = std::move(list);
  return json_reply(200, body);
}

http_response api::results(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> args;
  if (auto e = parse_known(
          query, {"agent", "instrument", "run", "parameter", "from_ns", "to_ns", "limit", "after"},
          args))
    return *e;
  // The typed measurement query restricted to class run_result (and a run); the JSON is
  // written straight into the body (the hot path of the API bench: no DOM, no text round trip
  // of the values).
  measurement_query q;
  q.cls = static_cast<int>(schemas::record_class::run_result);
  for (auto& [k, v] : args) {
    if (k == "run") q.run_id = v;
    if (k == "agent") q.agent_id = v;
    if (k == "instrument") q.instrument = v;
    if (k == "parameter") q.channel = v;
    if (auto e = window_arg(k, v, q)) return *e;
    if (k == "after" && !parse_cursor(v, q))
      return error_reply(400, "after: not a cursor from a previous page's `next`");
  }
  auto rows_r = read([&](storage& db) { return db.measurements(q); });
  if (!rows_r) return store_failed("results");
  const auto& rows = *rows_r;
  http_response res;
  res.status = 200;
  auto& b = res.body;
  b.reserve(64 + rows.size() * 256);
  b += "{\"results\":[";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& m = rows[i];
    if (i) b += ',';
    b += "{\"agent_id\":";
    append_json_string(b, m.agent_id);
    b += ",\"store_epoch\":\"";
    append_int(b, m.store_epoch);
    b += "\",\"seq\":\"";
    append_int(b, m.seq);
    b += "\",\"ts_ns\":\"";
    append_int(b, m.ts_ns);
    b += "\",\"instrument\":";
    append_json_string(b, m.instrument);
    b += ",\"unit\":";
    append_json_string(b, m.unit);
    b += ",\"quality\":";
    append_int(b, m.quality);
    b += ",\"value\":";
    if (m.integer) {
      b += '"';  // exact beyond 2^53
      append_int(b, *m.integer);
      b += '"';
    } else if (m.text) {
      append_json_string(b, *m.text);
    } else if (m.real) {
      append_json_double(b, *m.real);
    } else {
      b += "null";
    }
    if (m.repr) {
      b += ",\"value_repr\":";
      append_json_string(b, *m.repr);
    }
    if (!m.run_id.empty()) {
      b += ",\"run_id\":";
      append_json_string(b, m.run_id);
    }
    b += ",\"parameter\":";
    append_json_string(b, m.channel);
    // Not on the wire yet (schemas/WIRE.md).
    b += ",\"uncertainty\":null,\"method_version\":null}";
  }
  b += "],\"next\":";
  if (rows.size() == q.limit && !rows.empty())
    append_json_string(b, make_cursor(rows.back()));
  else
    b += "null";
  b += "}\n";
  return res;
}

http_response api::gaps(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> args;
  if (auto e = parse_known(query, {"agent", "limit"}, args)) return *e;
  std::string agent;
  std::int64_t limit = 1000;
  for (auto& [k, v] : args) {
    if (k == "agent") agent = v;
    if (k == "limit")
      if (auto e = int_arg(k, v, 1, 100000, limit)) return *e;
  }
  auto rows_r = read([&](storage& db) { return db.gaps(agent, static_cast<std::size_t>(limit)); });
  if (!rows_r) return store_failed("gaps");
  auto rows = std::move(*rows_r);
  json::array list;
  std::uint64_t unexplained = 0;
  for (const auto& g : rows) {
    if (!g.explained) ++unexplained;
    list.push_back(json::object{{"agent_id", g.agent_id},
                                {"store_epoch", std::to_string(g.store_epoch)},
                                {"first", std::to_string(g.first)},
                                {"last", std::to_string(g.last)},
                                {"explained", g.explained},
                                {"reason", g.reason}});
  }
  return json_reply(200, json::object{{"gaps", std::move(list)}, {"unexplained", unexplained}});
}

}  // namespace semilab::central
