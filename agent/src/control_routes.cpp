#include "control_routes.hpp"

#include <semilab/agent/recorder.hpp>

#include <boost/json.hpp>
#include <spdlog/spdlog.h>

namespace semilab::agent {

namespace json = boost::json;

namespace {

http_reply json_reply(unsigned status, const json::value& v) {
  return {status, "application/json", json::serialize(v) + "\n", {}, false, {}};
}

http_reply error_reply(unsigned status, std::string_view msg) {
  return json_reply(status, json::object{{"error", msg}});
}

std::string cookie(const std::string& id, bool secure, bool clear = false) {
  std::string c = std::string(auth::kCookie) + "=" + (clear ? "" : id) +
                  "; Path=/; HttpOnly; SameSite=Strict";
  if (clear) c += "; Max-Age=0";
  if (secure) c += "; Secure";
  return c;
}

}  // namespace

std::optional<http_reply> control_routes::refuse_unless(const http_request_view& req,
                                                        user_role min) const {
  auto r = auth_->authorize(req.authorization, req.cookie, req.csrf, min, utc_now_ns());
  if (auto* d = std::get_if<auth::denied>(&r)) {
    auto rep = error_reply(d->status, d->message);
    if (d->status == 401) rep.body = json::serialize(json::object{{"error", d->message}, {"login", "/api/v1/login"}}) + "\n";
    return rep;
  }
  return std::nullopt;
}

http_reply control_routes::login(const http_request_view& req) const {
  if (req.content_type.substr(0, 16) != "application/json")
    return error_reply(415, "send the credentials as JSON (Content-Type: application/json)");
  boost::system::error_code ec;
  auto v = json::parse(req.body, ec);
  const json::object* o = !ec ? v.if_object() : nullptr;
  const json::value* u = o ? o->if_contains("user") : nullptr;
  const json::value* p = o ? o->if_contains("password") : nullptr;
  if (!u || !p || !u->is_string() || !p->is_string())
    return error_reply(400, "expected {\"user\": \"...\", \"password\": \"...\"}");
  std::string_view user = u->as_string();
  auto r = auth_->login(user, p->as_string(), utc_now_ns());
  if (auto* d = std::get_if<auth::denied>(&r)) {
    // Never the password; the name only when it is a valid one (no log injection).
    spdlog::warn("[http] login refused for {}: {}", valid_user_name(user) ? std::string(user) : "(invalid name)",
                 d->message);
    return error_reply(d->status, d->message);
  }
  auto& s = std::get<auth::session_info>(r);
  spdlog::info("[http] {} ({}) logged in", s.user, to_string(s.role));
  auto rep = json_reply(200, json::object{{"user", s.user}, {"role", to_string(s.role)}, {"csrf", s.csrf}});
  rep.set_cookie = cookie(s.id, req.secure);
  return rep;
}

http_reply control_routes::act(const http_request_view& req, const char* cmd, user_role min) const {
  if (req.method != "POST") return {405, "application/json", "{\"error\":\"use POST\"}\n", "POST", false, {}};
  std::string who;
  {
    auto r = auth_->authorize(req.authorization, req.cookie, req.csrf, min, utc_now_ns());
    if (auto* d = std::get_if<auth::denied>(&r)) return error_reply(d->status, d->message);
    auto& pr = std::get<principal>(r);
    who = pr.via_token ? "operator token" : pr.name;
  }
  if (!control_) return error_reply(503, "not available");
  auto reply = control_(json::object{{"cmd", cmd}, {"who", who}});
  auto* o = reply.if_object();
  bool ok = o && o->if_contains("ok") && o->at("ok").is_bool() && o->at("ok").as_bool();
  if (!ok) {
    // A refusal may name its HTTP status (409: pause while a recipe run is in progress).
    unsigned status = 500;
    if (auto* st = o ? o->if_contains("status") : nullptr; st && st->is_int64())
      status = static_cast<unsigned>(st->as_int64());
    return json_reply(status, reply);
  }
  (*o)["action"] = cmd;
  (*o)["by"] = who;
  return json_reply(200, reply);
}

std::optional<http_reply> control_routes::handle(const http_request_view& req,
                                                 std::string_view target) const {
  if (target == "/api/v1/login") {
    if (req.method != "POST") return http_reply{405, "application/json", "{\"error\":\"use POST\"}\n", "POST", false, {}};
    return login(req);
  }
  if (target == "/api/v1/logout") {
    if (req.method != "POST") return http_reply{405, "application/json", "{\"error\":\"use POST\"}\n", "POST", false, {}};
    if (auto s = auth_->session(req.cookie, utc_now_ns())) {
      auth_->logout(s->id);
      spdlog::info("[http] {} logged out", s->user);
    }
    http_reply r{204, "application/json", "", {}, false, cookie("", req.secure, true)};
    return r;
  }
  if (target == "/api/v1/session") {
    auto s = auth_->session(req.cookie, utc_now_ns());
    if (!s) return error_reply(401, "not logged in");
    return json_reply(200, json::object{{"user", s->user}, {"role", to_string(s->role)}, {"csrf", s->csrf}});
  }
  if (target == "/api/v1/acquisition") {
    if (!paused_) return error_reply(503, "not available");
    return json_reply(200, json::object{{"acquisition", paused_() ? "paused" : "running"}});
  }
  if (target == "/api/v1/acquisition/pause") return act(req, "pause", user_role::engineer);
  if (target == "/api/v1/acquisition/resume") return act(req, "resume", user_role::engineer);
  if (target == "/api/v1/outbox/flush") return act(req, "flush", user_role::technician);
  return std::nullopt;
}

}  // namespace semilab::agent
