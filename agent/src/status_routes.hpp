#pragma once
// The status page's endpoints as a plain function of the request, so they are tested without
// sockets; http_status.cpp (the only Beast translation unit) carries bytes. Every answer comes
// from the last published snapshot (built once a second by status_sampler), so a request costs a
// lookup and a copy, never a database read.
//
//   GET  /                                       the page (assets compiled into the binary)
//   GET  /app.js, /app.css
//   GET  /api/v1/status        (/api/status)      the page's JSON (status_sampler::page_json)
//   GET  /api/v1/health                           the health report (as on the health topic)
//   GET  /api/v1/instruments/ID/transactions  (/api/instruments/ID/transactions)
//                                                the instrument's last SCPI transactions
//   POST /api/v1/instruments/ID/reconnect         action: drop the link, re-run the init;
//                                                needs "Authorization: Bearer <operator_token>"
//   POST /api/v1/login, /api/v1/logout; GET /api/v1/session    local users (control_routes.hpp)
//   GET  /api/v1/acquisition; POST /api/v1/acquisition/pause|resume (engineer),
//   POST /api/v1/outbox/flush (technician)                          actions (control_routes.hpp)
//   GET  /api/v1/runs[/ID]; POST /api/v1/runs, /api/v1/runs/ID/abort|confirm (runs.hpp): a
//                                                bearer token, or a logged-in user's session
//                                                cookie with its X-CSRF-Token (technician)
//   GET  /api/v1/events        (/events)          server-sent events: `status` every publish
//   GET  /metrics                                 Prometheus text format 0.0.4
//   GET  /healthz                                 200 "ok" while the process answers
//   GET  /readyz                                  200 once a snapshot exists and the agent's own
//                                                health is not failed; else 503 with reasons
//
// Actions: 401 without credentials (a session cookie plus its X-CSRF-Token, or a bearer token),
// 403 with wrong ones, a missing CSRF token or a role too low (control_routes.hpp). Neither a
// bearer header nor the CSRF header is sent by a browser on its own, so a cross-site form cannot
// trigger an action (and the cookie is SameSite=Strict). On a loopback bind the Host header must name
// a loopback address or `localhost` (DNS rebinding).
#include <boost/json/fwd.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace semilab::agent {

class control_routes;
enum class user_role;

struct http_request_view {
  std::string_view method;
  std::string_view target;
  std::string_view authorization;  // header value, may be empty
  std::string_view host;           // header value, may be empty
  // Sessions and actions (control_routes.hpp): Cookie, X-CSRF-Token, Content-Type, the body,
  // and whether the connection is HTTPS (cookies get Secure).
  std::string_view cookie;
  std::string_view csrf;
  std::string_view content_type;
  std::string_view body;
  bool secure = false;
  // Set by status_routes for /api/v1/runs: a logged-in user (technician or engineer) sent the
  // session cookie with its X-CSRF-Token (control_routes.hpp); the runs handler then needs no
  // token.
  bool preauthorized = false;
};

struct http_reply {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::string allow;  // for 405
  bool event_stream = false;  // start a server-sent event stream (body is the first event)
  std::string set_cookie;     // a Set-Cookie header value, "" = none
};

enum class action_outcome { done, unknown_instrument, not_supported };

struct status_actions {
  // JSON text, or nullopt for an unknown instrument. Any thread.
  std::function<std::optional<std::string>(std::string_view id)> transactions;
  std::function<action_outcome(std::string_view id)> reconnect;
  // /api/v1/runs... (runs.hpp handle_runs_request, which authenticates its POSTs itself);
  // nullopt: not handled. Empty: runs are not served.
  std::function<std::optional<http_reply>(const http_request_view&, std::string_view target)> runs;
};

struct status_snapshot {
  std::string status_json;
  std::string health_json;
  std::string metrics;
  bool ready = false;
  std::string not_ready_json;  // {"ready":false,"reasons":[...]} when !ready
};

// One server-sent event: "event: status\ndata: <json>\n\n".
std::string sse_event(std::string_view event, std::string_view data);

struct static_asset {
  std::string_view path;
  std::string_view content_type;
  std::string_view body;
};
// Generated from agent/assets/ at build time (agent/assets/embed.cmake).
std::span<const static_asset> embedded_assets() noexcept;

class status_routes {
 public:
  status_routes(std::string token, bool check_host, status_actions actions)
      : token_(std::move(token)), check_host_(check_host), actions_(std::move(actions)) {}

  // Thread-safe.
  void publish(std::shared_ptr<const status_snapshot> s);
  std::shared_ptr<const status_snapshot> snapshot() const;
  http_reply handle(const http_request_view& req) const;

  // Login, sessions and the agent-wide actions (control_routes.hpp). Set before the server
  // starts; without it actions only accept the bearer token.
  void set_control(std::shared_ptr<const control_routes> c) { control_ = std::move(c); }
  // For action routes: nullopt when `req` may run an action needing `min` (bearer token, or a
  // session cookie with its CSRF token), else the 401/403 reply to send.
  std::optional<http_reply> refuse_unless(const http_request_view& req, user_role min) const;

 private:
  http_reply action(const http_request_view& req, std::string_view id) const;
  http_reply reconnect(std::string_view id) const;

  std::string token_;
  bool check_host_;
  status_actions actions_;
  std::shared_ptr<const control_routes> control_;
  mutable std::mutex mu_;
  std::shared_ptr<const status_snapshot> snap_;
};

// Constant-time comparison of secrets (no early exit on the first differing byte).
bool same_secret(std::string_view a, std::string_view b) noexcept;

}  // namespace semilab::agent
