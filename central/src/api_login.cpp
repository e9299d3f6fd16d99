// The POST routes of the API: login/logout of central users (sessions in a cookie) and token
// actions. Sessions are API tokens with an expiry (auth.hpp), so every instance on the store
// knows them and the store keeps only hashes; the users' lockout is the one of
// `semilab-central users login` (users.cpp: the same rows, the same failure monitor).
#include <semilab/central/api.hpp>
#include <semilab/central/audit.hpp>
#include <semilab/central/users.hpp>

#include "api_util.hpp"
#include "log.hpp"

#include <boost/json.hpp>

#include <openssl/crypto.h>

namespace semilab::central {

namespace json = boost::json;

namespace {

using detail::error_reply;
using detail::json_reply;

bool iequals_ascii(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  auto lo = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lo(a[i]) != lo(b[i])) return false;
  return true;
}

// The JSON object body of a POST with the string fields `keys`; an error reply when it is not
// one (the message names the field, never its value).
std::optional<http_response> json_fields(const http_request& req,
                                         std::initializer_list<std::string_view> keys,
                                         std::vector<std::string>& out) {
  auto ct = req.content_type.substr(0, req.content_type.find(';'));
  while (!ct.empty() && ct.back() == ' ') ct.remove_suffix(1);
  if (!iequals_ascii(ct, "application/json"))
    return error_reply(415, "expected a Content-Type: application/json body");
  boost::system::error_code ec;
  auto v = json::parse(req.body, ec);
  if (ec || !v.is_object()) return error_reply(400, "the body is not a JSON object");
  const auto& o = v.as_object();
  out.clear();
  for (auto k : keys) {
    const auto* f = o.if_contains(k);
    if (!f || !f->is_string() || f->as_string().empty())
      return error_reply(400, std::string(k) + ": expected a non-empty string");
    out.emplace_back(f->as_string().c_str(), f->as_string().size());
  }
  return std::nullopt;
}

// Overwrites a password copy before it is freed.
struct wipe {
  std::string& s;
  ~wipe() { OPENSSL_cleanse(s.data(), s.size()); }
};

}  // namespace

std::string api::session_cookie(std::string_view value, std::int64_t max_age_s,
                                 bool secure) const {
  std::string c(kSessionCookie);
  c += '=';
  c += value;
  c += "; Path=/; Max-Age=";
  c += std::to_string(max_age_s);
  c += "; HttpOnly; SameSite=Strict";
  if (secure || (src_.auth && src_.auth->cookie_secure)) c += "; Secure";
  return c;
}

http_response api::login(const http_request& req, const api_caller&, std::string_view) {
  std::vector<std::string> f;
  if (auto e = json_fields(req, {"user", "password"}, f)) return std::move(*e);
  const std::string& user = f[0];
  std::string& password = f[1];
  wipe w{password};
  if (!src_.writer) return error_reply(503, "login is not available (no read-write store connection)");
  const auto policy = src_.auth ? src_.auth->lockout : lockout_policy{};
  const auto ttl = src_.auth ? src_.auth->session_ttl : std::chrono::seconds(8 * 3600);
  const std::int64_t now = src_.clock();
  result<login_outcome> o = make_error_code(errc::store_read_failed);
  result<new_token> t = make_error_code(errc::store_write_failed);
  std::string why;
  {
    // One login at a time on the one read-write connection (scrypt: tens of ms, 32 MiB).
    std::lock_guard lock(writer_mutex_);
    o = authenticate_user(*src_.writer, user, password, now, policy);
    if (!o) {
      logger("http")->warn("login: store: {}", src_.writer->last_error());
      return error_reply(503, "store unavailable");
    }
    if (o->status != login_status::ok) {
      // The same entry as the CLI's; never the password.
      audit_record(*src_.writer,
                   {"user.login_failed", user, std::nullopt, std::string(to_string(o->status)),
                    user, "POST /api/v1/login from " + req.remote},
                   now, why);
    } else {
      t = create_token(*src_.writer, o->r, "session:" + user, now, now + ttl.count() * 1'000'000'000,
                       why);
    }
  }
  if (o->status != login_status::ok) {
    ++login_failures_;
    logger("http")->warn("login refused for user '{}' from {}: {}", user, req.remote,
                         to_string(o->status));
    if (o->status == login_status::bad_credentials)
      return error_reply(401, "unknown user or wrong password");  // which of the two is not told
    return error_reply(423, o->status == login_status::locked
                           ? "user locked after repeated failures; try later or ask an admin"
                           : "user disabled");
  }
  if (!t) {
    logger("http")->warn("login: session not created: {}", why);
    return error_reply(503, "store unavailable");
  }
  const auto parsed = parse_token(t->token);
  const std::int64_t expires = now + ttl.count() * 1'000'000'000;
  {
    std::lock_guard lock(auth_mutex_);
    tokens_.add(*t, o->r, expires);  // usable at once on this instance
  }
  ++logins_;
  logger("http")->info("user '{}' logged in from {} (session {}, {})", user, req.remote, t->id,
                       to_string(o->r));
  auto r = json_reply(200, json::object{{"user", user},
                                   {"role", to_string(o->r)},
                                   {"session", t->id},
                                   {"csrf_token", csrf_token_for(parsed ? parsed->secret : "")},
                                   {"expires_ns", std::to_string(expires)}});
  r.headers.emplace_back("Set-Cookie", session_cookie(t->token, ttl.count(), req.secure));
  return r;
}

http_response api::logout(const http_request& req, const api_caller& who, std::string_view) {
  if (who.token_id.empty()) return error_reply(400, "no session to end");
  if (!src_.writer) return error_reply(503, "logout is not available (no read-write store connection)");
  // Only sessions end here; a bearer token made by `tokens create` stays (revoke it as admin).
  const sql_param id[] = {sql_param{true, 0, who.token_id}};
  std::string why;
  bool is_session = false;
  result<std::uint64_t> n = std::uint64_t{0};
  {
    std::lock_guard lock(writer_mutex_);
    auto rows = src_.writer->query(
        "SELECT name FROM api_tokens WHERE id = ?1 AND revoked_ns IS NULL", id);
    if (!rows) {
      logger("http")->warn("logout: store: {}", src_.writer->last_error());
      return error_reply(503, "store unavailable");
    }
    is_session = !rows->empty() && (*rows)[0][0].value_or("").starts_with("session:");
    if (is_session) n = revoke_token(*src_.writer, who.token_id, src_.clock(), why);
  }
  if (!n) {
    logger("http")->warn("logout: {}", why);
    return error_reply(503, "store unavailable");
  }
  if (!is_session) return error_reply(400, "the presented credential is an API token, not a session");
  {
    std::lock_guard lock(auth_mutex_);
    tokens_.forget(who.token_id);
  }
  auto r = json_reply(200, json::object{{"logged_out", true}, {"session", who.token_id}});
  r.headers.emplace_back("Set-Cookie", session_cookie("", 0, req.secure));
  return r;
}

http_response api::token_create(const http_request& req, const api_caller& who,
                                std::string_view) {
  std::vector<std::string> f;
  if (auto e = json_fields(req, {"role", "name"}, f)) return std::move(*e);
  auto r = parse_role(f[0]);
  if (!r) return error_reply(400, "role: expected viewer, engineer or admin");
  if (!src_.writer) return error_reply(503, "not available (no read-write store connection)");
  std::string why;
  result<new_token> t = make_error_code(errc::store_write_failed);
  {
    std::lock_guard lock(writer_mutex_);
    t = create_token(*src_.writer, *r, f[1], src_.clock(), why);
  }
  if (!t) {
    if (why.starts_with("a token needs")) return error_reply(400, why);
    logger("http")->warn("token create: {}", why);
    return error_reply(503, "store unavailable");
  }
  {
    std::lock_guard lock(auth_mutex_);
    tokens_.add(*t, *r, 0);  // usable at once on this instance
  }
  logger("http")->info("token {} ({}) created by {}", t->id, to_string(*r),
                       who.token_id.empty() ? std::string("anonymous") : "token " + who.token_id);
  return json_reply(201, json::object{{"id", t->id},
                                 {"name", f[1]},
                                 {"role", to_string(*r)},
                                 {"token", t->token}});  // shown once; no-store on every answer
}

http_response api::token_revoke(const http_request&, const api_caller& who, std::string_view id) {
  if (id.size() != 12 || id.find_first_not_of("0123456789abcdef") != std::string_view::npos)
    return error_reply(400, "expected a token id (12 lowercase hex digits)");
  if (!src_.writer) return error_reply(503, "not available (no read-write store connection)");
  std::string why;
  result<std::uint64_t> n = std::uint64_t{0};
  {
    std::lock_guard lock(writer_mutex_);
    n = revoke_token(*src_.writer, id, src_.clock(), why);
  }
  if (!n) {
    if (why.starts_with("several valid tokens")) return error_reply(409, why);
    logger("http")->warn("token revoke: {}", why);
    return error_reply(503, "store unavailable");
  }
  if (*n == 0) return error_reply(404, "no valid token with this id or name");
  {
    std::lock_guard lock(auth_mutex_);
    tokens_.forget(id);
  }
  logger("http")->info("token {} revoked by {}", std::string(id),
                       who.token_id.empty() ? std::string("anonymous") : "token " + who.token_id);
  return json_reply(200, json::object{{"revoked", std::string(id)}});
}

}  // namespace semilab::central
