#include "status_routes.hpp"

#include <boost/json.hpp>

#include "control_routes.hpp"

namespace semilab::agent {

namespace json = boost::json;

namespace {

http_reply json_error(unsigned status, std::string_view msg) {
  return {status, "application/json", json::serialize(json::object{{"error", msg}}) + "\n", {}, false};
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// "127.0.0.1", "127.0.0.1:8470", "[::1]:8470", "localhost:8470" -> loopback.
bool loopback_host(std::string_view host) {
  if (host.empty()) return true;  // HTTP/1.0 clients (curl -0, wrk) may omit it
  std::string_view name = host;
  if (name.front() == '[') {
    auto e = name.find(']');
    if (e == std::string_view::npos) return false;
    name = name.substr(1, e - 1);
    return name == "::1";
  }
  if (auto c = name.rfind(':'); c != std::string_view::npos) name = name.substr(0, c);
  if (name == "localhost") return true;
  if (!starts_with(name, "127.")) return false;
  for (char ch : name)
    if (!(ch == '.' || (ch >= '0' && ch <= '9'))) return false;
  return true;
}

}  // namespace

std::string sse_event(std::string_view event, std::string_view data) {
  std::string s = "event: ";
  s += event;
  s += "\ndata: ";
  // A data line may not contain a newline: every line is its own "data:" field.
  for (char c : data) {
    if (c == '\n') s += "\ndata: ";
    else s += c;
  }
  s += "\n\n";
  return s;
}

bool same_secret(std::string_view a, std::string_view b) noexcept {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  std::size_t n = std::max(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    auto x = static_cast<unsigned char>(i < a.size() ? a[i] : 0);
    auto y = static_cast<unsigned char>(i < b.size() ? b[i] : 0);
    diff = static_cast<unsigned char>(diff | (x ^ y));
  }
  return diff == 0;
}

void status_routes::publish(std::shared_ptr<const status_snapshot> s) {
  std::lock_guard lk(mu_);
  snap_ = std::move(s);
}

std::shared_ptr<const status_snapshot> status_routes::snapshot() const {
  std::lock_guard lk(mu_);
  return snap_;
}

std::optional<http_reply> status_routes::refuse_unless(const http_request_view& req,
                                                       user_role min) const {
  if (control_) return control_->refuse_unless(req, min);
  constexpr std::string_view kBearer = "Bearer ";
  if (!starts_with(req.authorization, kBearer))
    return json_error(401, "this action needs an operator token (Authorization: Bearer ...)");
  if (token_.empty())
    return json_error(403, "actions are disabled: no [status] operator_token is configured");
  if (!same_secret(req.authorization.substr(kBearer.size()), token_))
    return json_error(403, "wrong operator token");
  return std::nullopt;
}

http_reply status_routes::action(const http_request_view& req, std::string_view id) const {
  if (req.method != "POST") return {405, "application/json", "{\"error\":\"use POST\"}\n", "POST", false};
  if (control_) {
    if (auto refused = control_->refuse_unless(req, user_role::technician)) return std::move(*refused);
    return reconnect(id);
  }
  constexpr std::string_view kBearer = "Bearer ";
  if (!starts_with(req.authorization, kBearer))
    return json_error(401, "this action needs an operator token (Authorization: Bearer ...)");
  if (token_.empty())
    return json_error(403, "actions are disabled: no [status] operator_token is configured");
  if (!same_secret(req.authorization.substr(kBearer.size()), token_))
    return json_error(403, "wrong operator token");
  return reconnect(id);
}

http_reply status_routes::reconnect(std::string_view id) const {
  if (!actions_.reconnect) return json_error(501, "not available");
  switch (actions_.reconnect(id)) {
    case action_outcome::unknown_instrument: return json_error(404, "no such instrument");
    case action_outcome::not_supported:
      return json_error(501, "this instrument's link does not support reconnect");
    case action_outcome::done: break;
  }
  return {202, "application/json",
          json::serialize(json::object{{"action", "reconnect"}, {"instrument", id}, {"accepted", true}}) +
              "\n",
          {}, false};
}

http_reply status_routes::handle(const http_request_view& req) const {
  if (check_host_ && !loopback_host(req.host))
    return json_error(421, "Host must be a loopback address or localhost");
  std::string_view target = req.target;
  if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  if (control_)
    if (auto r = control_->handle(req, target)) return std::move(*r);
  if (actions_.runs && starts_with(target, "/api/v1/runs")) {
    http_request_view rv = req;
    // The page's logged-in user: session cookie plus the CSRF token only this page knows (a
    // cross-site request cannot send the header). Bearer tokens stay with the runs handler.
    if (control_ && req.method == "POST" && req.authorization.empty() && !req.csrf.empty()) {
      if (auto refused = control_->refuse_unless(req, user_role::technician)) return std::move(*refused);
      rv.preauthorized = true;
    }
    if (auto r = actions_.runs(rv, target)) return std::move(*r);
  }

  // Actions first: they are the only non-GET routes.
  constexpr std::string_view kIns = "/api/v1/instruments/";
  constexpr std::string_view kInsAlias = "/api/instruments/";
  std::string_view rest;
  if (starts_with(target, kIns)) rest = target.substr(kIns.size());
  else if (starts_with(target, kInsAlias)) rest = target.substr(kInsAlias.size());
  if (!rest.empty()) {
    auto slash = rest.find('/');
    if (slash != std::string_view::npos && slash > 0) {
      auto id = rest.substr(0, slash);
      auto what = rest.substr(slash + 1);
      if (what == "reconnect") return action(req, id);
      if (what == "transactions") {
        if (req.method != "GET" && req.method != "HEAD")
          return {405, "application/json", "{\"error\":\"use GET\"}\n", "GET, HEAD", false};
        auto t = actions_.transactions ? actions_.transactions(id) : std::nullopt;
        if (!t) return json_error(404, "no such instrument");
        return {200, "application/json", std::move(*t), {}, false};
      }
    }
    return json_error(404, "not found");
  }

  if (req.method != "GET" && req.method != "HEAD")
    return {405, "application/json", "{\"error\":\"use GET\"}\n", "GET, HEAD", false};
  if (target == "/healthz") return {200, "text/plain; charset=utf-8", "ok\n", {}, false};

  for (const auto& a : embedded_assets())
    if (target == a.path || (target == "/" && a.path == "/index.html"))
      return {200, std::string(a.content_type), std::string(a.body), {}, false};

  auto snap = snapshot();
  if (target == "/readyz") {
    if (snap && snap->ready) return {200, "text/plain; charset=utf-8", "ready\n", {}, false};
    return {503, "application/json",
            snap ? snap->not_ready_json : "{\"ready\":false,\"reasons\":[\"starting\"]}\n", {}, false};
  }
  if (!snap) return json_error(503, "starting: no status yet");
  if (target == "/api/v1/status" || target == "/api/status")
    return {200, "application/json", snap->status_json, {}, false};
  if (target == "/api/v1/health") return {200, "application/json", snap->health_json, {}, false};
  if (target == "/metrics")
    return {200, "text/plain; version=0.0.4; charset=utf-8", snap->metrics, {}, false};
  if (target == "/api/v1/events" || target == "/events")
    return {200, "text/event-stream", sse_event("status", snap->status_json), {}, true};
  return json_error(404, "not found");
}

}  // namespace semilab::agent
