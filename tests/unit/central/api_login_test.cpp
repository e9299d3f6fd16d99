// Central's HTTP login (POST /api/v1/login, logout): session cookie attributes, CSRF on
// state-changing requests with the cookie, roles on the POST routes, the lockout shared with the
// CLI path (`semilab-central users login` = authenticate_user on the same rows), session expiry,
// and no password in any answer.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <semilab/central/api.hpp>
#include <semilab/central/auth.hpp>
#include <semilab/central/store.hpp>
#include <semilab/central/users.hpp>

#include "test_util.hpp"

using namespace semilab::central;
namespace json = boost::json;

namespace {

constexpr std::string_view kPw = "correct horse battery";

struct fixture {
  central_test::temp_dir d;
  std::unique_ptr<sqlite_store> w, r;
  std::int64_t clock = 1'700'000'000'000'000'000;  // injected wall clock (ns)
  std::int64_t steady = 1'000'000'000;
  std::unique_ptr<api> a;

  explicit fixture(api_auth auth = closed()) {
    std::string err;
    auto ws = sqlite_store::open(store_options{d.file("central.db")}, err);
    REQUIRE(ws.has_value());
    w = std::move(*ws);
    auto rs = sqlite_store::open(store_options{d.file("central.db"), open_mode::read_only}, err);
    REQUIRE(rs.has_value());
    r = std::move(*rs);
    REQUIRE_FALSE(create_user(*w, "alice", role::engineer, kPw, clock, err));
    REQUIRE_FALSE(create_user(*w, "vic", role::viewer, kPw, clock, err));
    api_sources s{r.get(), {}, [] { return true; }, "c1"};
    s.auth = auth;
    s.writer = w.get();
    s.clock = [this] { return clock; };
    s.steady = [this] { return steady; };
    a = std::make_unique<api>(std::move(s));
  }
  static api_auth closed() {
    api_auth p;
    p.anonymous = role::none;
    p.session_ttl = std::chrono::seconds(3600);
    return p;
  }
  http_response post(std::string_view target, const std::string& body,
                     std::string_view cookie = {}, std::string_view csrf = {},
                     std::string_view authz = {}, bool secure = false) {
    http_request q{"POST", target, authz, "10.0.0.7"};
    q.cookie = cookie;
    q.csrf_token = csrf;
    q.content_type = "application/json";
    q.body = body;
    q.secure = secure;
    return a->handle(q);
  }
  http_response get(std::string_view target, std::string_view cookie = {},
                    std::string_view authz = {}) {
    http_request q{"GET", target, authz, "10.0.0.7"};
    q.cookie = cookie;
    return a->handle(q);
  }
  http_response login(std::string_view user, std::string_view pw, bool secure = false) {
    return post("/api/v1/login",
                json::serialize(json::object{{"user", user}, {"password", pw}}), {}, {}, {},
                secure);
  }
};

std::string header(const http_response& r, std::string_view name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return {};
}

// "semilab_session=VALUE; ..." -> "semilab_session=VALUE" (what a browser sends back).
std::string cookie_of(const http_response& r) {
  auto c = header(r, "Set-Cookie");
  return c.substr(0, c.find(';'));
}

std::string csrf_of(const http_response& r) {
  return std::string(json::parse(r.body).at("csrf_token").as_string());
}

const user_row* user(const std::vector<user_row>& rows, std::string_view name) {
  for (const auto& u : rows)
    if (u.name == name) return &u;
  return nullptr;
}

}  // namespace

TEST_CASE("login: a session cookie (HttpOnly, SameSite=Strict) that reads with the user's role") {
  fixture f;
  auto r = f.login("alice", kPw);
  REQUIRE(r.status == 200);
  const auto set = header(r, "Set-Cookie");
  CHECK(set.starts_with("semilab_session=slc_"));
  CHECK(set.find("; HttpOnly") != std::string::npos);
  CHECK(set.find("; SameSite=Strict") != std::string::npos);
  CHECK(set.find("; Path=/") != std::string::npos);
  CHECK(set.find("; Max-Age=3600") != std::string::npos);
  CHECK(set.find("Secure") == std::string::npos);  // plain HTTP, no TLS proxy
  auto body = json::parse(r.body).as_object();
  CHECK(body.at("user") == "alice");
  CHECK(body.at("role") == "engineer");
  CHECK(body.at("csrf_token").as_string().size() == 64);
  CHECK(r.body.find(kPw) == std::string::npos);
  // The store keeps the session as a token named after the user, only its hash.
  auto toks = list_tokens(*f.w, false);
  REQUIRE(toks.has_value());
  REQUIRE(toks->size() == 1);
  CHECK((*toks)[0].name == "session:alice");
  const auto cookie = cookie_of(r);
  CHECK(f.get("/api/v1/agents", cookie).status == 200);
  CHECK(f.get("/api/v1/quarantine", cookie).status == 200);  // engineer
  CHECK(f.get("/api/v1/tokens", cookie).status == 403);      // admin only
  CHECK(f.get("/api/v1/agents").status == 401);              // no cookie, anonymous none
  CHECK(f.get("/api/v1/agents", "semilab_session=slc_0123456789ab_" + std::string(64, 'a'))
            .status == 401);

  // Behind a TLS proxy (X-Forwarded-Proto: https -> secure), the cookie is Secure.
  auto s = f.login("alice", kPw, true);
  REQUIRE(s.status == 200);
  CHECK(header(s, "Set-Cookie").find("; Secure") != std::string::npos);

  // The session ends with its ttl.
  f.clock += 3601LL * 1'000'000'000;
  CHECK(f.get("/api/v1/agents", cookie).status == 401);
}

TEST_CASE("login: wrong password, then lockout shared with the CLI path, then unlock") {
  fixture f;
  const auto failures0 = auth_failures().total();
  auto bad = f.login("alice", "not the password!");
  CHECK(bad.status == 401);
  CHECK(header(bad, "Set-Cookie").empty());
  CHECK(bad.body.find("not the password") == std::string::npos);
  CHECK(f.login("nobody", kPw).status == 401);  // unknown user: the same answer
  CHECK(json::parse(f.login("nobody", kPw).body).at("error") ==
        json::parse(bad.body).at("error"));
  // Two more failures over HTTP, two through the CLI's function: the same counter.
  CHECK(f.login("alice", "wrong password 2").status == 401);
  CHECK(f.login("alice", "wrong password 3").status == 401);
  auto cli = authenticate_user(*f.w, "alice", "wrong password 4", f.clock);
  REQUIRE(cli.has_value());
  CHECK(cli->status == login_status::bad_credentials);
  auto users = list_users(*f.w);
  REQUIRE(users.has_value());
  REQUIRE(user(*users, "alice") != nullptr);
  CHECK(user(*users, "alice")->failed_count == 4);
  cli = authenticate_user(*f.w, "alice", "wrong password 5", f.clock);
  REQUIRE(cli.has_value());
  // The fifth failure locks: now even the right password is refused, over HTTP and the CLI.
  auto locked = f.login("alice", kPw);
  CHECK(locked.status == 423);
  CHECK(header(locked, "Set-Cookie").empty());
  cli = authenticate_user(*f.w, "alice", kPw, f.clock);
  REQUIRE(cli.has_value());
  CHECK(cli->status == login_status::locked);
  CHECK(auth_failures().total() >= failures0 + 6);
  CHECK(f.a->http_stats().login_failures >= 5);
  // Another user is not affected; an admin unlock (CLI) lets alice in again.
  CHECK(f.login("vic", kPw).status == 200);
  std::string err;
  REQUIRE_FALSE(unlock_user(*f.w, "alice", f.clock, err));
  CHECK(f.login("alice", kPw).status == 200);
}

TEST_CASE("login: POST with the cookie needs the session's X-CSRF-Token; logout ends the session") {
  fixture f;
  auto r = f.login("alice", kPw);
  REQUIRE(r.status == 200);
  const auto cookie = cookie_of(r);
  const auto csrf = csrf_of(r);
  // Missing or wrong CSRF token: refused, nothing changes.
  auto missing = f.post("/api/v1/logout", "", cookie);
  CHECK(missing.status == 403);
  CHECK(missing.body.find("X-CSRF-Token") != std::string::npos);
  CHECK(f.post("/api/v1/logout", "", cookie, std::string(64, '0')).status == 403);
  // Another session's token does not fit this one.
  auto other = f.login("vic", kPw);
  REQUIRE(other.status == 200);
  CHECK(f.post("/api/v1/logout", "", cookie, csrf_of(other)).status == 403);
  CHECK(f.a->http_stats().csrf_refused == 3);
  CHECK(f.get("/api/v1/agents", cookie).status == 200);  // still logged in
  // With it: logged out, the cookie cleared, the session revoked in the store.
  auto out = f.post("/api/v1/logout", "", cookie, csrf);
  CHECK(out.status == 200);
  CHECK(header(out, "Set-Cookie").find("Max-Age=0") != std::string::npos);
  CHECK(f.get("/api/v1/agents", cookie).status == 401);
  auto toks = list_tokens(*f.w, true);
  REQUIRE(toks.has_value());
  int revoked = 0;
  for (const auto& t : *toks)
    if (t.name == "session:alice" && t.revoked_ns) ++revoked;
  CHECK(revoked == 1);
  // A bearer token is not a session: logout leaves it alone (revoked by an admin instead).
  std::string err;
  auto t = create_token(*f.w, role::viewer, "script", f.clock, err);
  REQUIRE(t.has_value());
  f.steady += 2'000'000'000;  // a token made elsewhere is read from the store within a second
  CHECK(f.post("/api/v1/logout", "", {}, {}, "Bearer " + t->token).status == 400);
}

TEST_CASE("login: roles on the POST routes; bearer callers need no CSRF token") {
  fixture f;
  std::string err;
  auto admin = create_token(*f.w, role::admin, "ops", f.clock, err);
  REQUIRE(admin.has_value());
  const std::string admin_h = "Bearer " + admin->token;
  const std::string body = R"({"role":"viewer","name":"dash"})";
  // A viewer session with a valid CSRF token: the role is too low.
  auto v = f.login("vic", kPw);
  REQUIRE(v.status == 200);
  auto refused = f.post("/api/v1/tokens", body, cookie_of(v), csrf_of(v));
  CHECK(refused.status == 403);
  CHECK(refused.body.find("needs admin") != std::string::npos);
  // An engineer session too.
  auto e = f.login("alice", kPw);
  REQUIRE(e.status == 200);
  CHECK(f.post("/api/v1/tokens", body, cookie_of(e), csrf_of(e)).status == 403);
  // No credentials at all: 401.
  CHECK(f.post("/api/v1/tokens", body).status == 401);
  // An admin bearer token creates one (shown once) and revokes it.
  auto made = f.post("/api/v1/tokens", body, {}, {}, admin_h);
  REQUIRE(made.status == 201);
  auto o = json::parse(made.body).as_object();
  const std::string tok(o.at("token").as_string()), id(o.at("id").as_string());
  CHECK(f.get("/api/v1/agents", {}, "Bearer " + tok).status == 200);
  CHECK(f.post("/api/v1/tokens/" + id + "/revoke", "", {}, {}, "Bearer " + tok).status == 403);
  CHECK(f.post("/api/v1/tokens/" + id + "/revoke", "", {}, {}, admin_h).status == 200);
  CHECK(f.get("/api/v1/agents", {}, "Bearer " + tok).status == 401);
  CHECK(f.post("/api/v1/tokens/" + id + "/revoke", "", {}, {}, admin_h).status == 404);
  CHECK(f.post("/api/v1/tokens/nothex/revoke", "", {}, {}, admin_h).status == 400);
  // Bad bodies and methods.
  CHECK(f.post("/api/v1/tokens", R"({"role":"root","name":"x"})", {}, {}, admin_h).status == 400);
  CHECK(f.post("/api/v1/login", "not json").status == 400);
  CHECK(f.post("/api/v1/login", R"({"user":"alice"})").status == 400);
  http_request form{"POST", "/api/v1/login", {}, "10.0.0.7"};
  form.content_type = "application/x-www-form-urlencoded";
  form.body = "user=alice";
  CHECK(f.a->handle(form).status == 415);
  auto g = f.get("/api/v1/login");
  CHECK(g.status == 405);
  CHECK(g.allow == "POST");
  auto p = f.post("/api/v1/agents", "{}", {}, {}, admin_h);
  CHECK(p.status == 405);
  CHECK(p.allow == "GET, HEAD");
  // GET and POST on one path.
  auto t = f.a->handle(http_request{"PUT", "/api/v1/tokens", admin_h, "10.0.0.7"});
  CHECK(t.status == 405);
  CHECK(t.allow == "GET, HEAD, POST");
  // Both methods of /api/v1/tokens are in the OpenAPI document.
  auto doc = json::parse(f.a->openapi_json()).as_object();
  const auto& tokens = doc.at("paths").at("/api/v1/tokens").as_object();
  CHECK(tokens.contains("get"));
  CHECK(tokens.contains("post"));
  CHECK(doc.at("paths").at("/api/v1/login").as_object().contains("post"));
}

TEST_CASE("login: cookie and CSRF helpers") {
  CHECK(cookie_value("a=1; semilab_session=xyz; b=2", "semilab_session") == "xyz");
  CHECK(cookie_value("semilab_session=\"q\"", "semilab_session") == "q");
  CHECK(cookie_value("xsemilab_session=1", "semilab_session").empty());
  CHECK(cookie_value("", "semilab_session").empty());
  const auto c = csrf_token_for("secret");
  CHECK(c.size() == 64);
  CHECK(c == csrf_token_for("secret"));
  CHECK(c != csrf_token_for("secreT"));
  CHECK(equal_secret(c, c));
  CHECK_FALSE(equal_secret(c, c.substr(1)));
  CHECK_FALSE(equal_secret("", ""));
}
