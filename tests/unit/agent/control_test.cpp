// Local users (scrypt hashes, lockout), the page's sessions and CSRF tokens, the login and
// action routes without sockets, the control socket with a plain client, and the CLI's time
// arguments and export from a real outbox.
#include <semilab/schemas/record.hpp>
#include <semilab/sync/outbox.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "cli_data.hpp"
#include "control.hpp"
#include "control_routes.hpp"
#include "status_routes.hpp"
#include "users.hpp"

using namespace semilab::agent;
namespace json = boost::json;

namespace {

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    char tmpl[] = "/tmp/semilab-control-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

constexpr std::int64_t kNow = 1'790'000'000'000'000'000;  // 2026-09-21

std::shared_ptr<user_store> store_in(const temp_dir& d) {
  std::string err;
  auto s = user_store::open(d.path / "outbox.db", err);
  REQUIRE_MESSAGE(s.has_value(), err);
  return std::shared_ptr<user_store>(std::move(*s));
}

}  // namespace

TEST_CASE("passwords: scrypt hashes verify, are salted, and reject tampering") {
  auto h = hash_password("correct horse");
  REQUIRE(h.rfind("scrypt$15$8$1$", 0) == 0);
  CHECK(verify_password(h, "correct horse"));
  CHECK_FALSE(verify_password(h, "correct hors"));
  CHECK_FALSE(verify_password(h, ""));
  CHECK(hash_password("correct horse") != h);  // a new salt each time
  auto bad = h;
  bad.back() = bad.back() == 'A' ? 'B' : 'A';
  CHECK_FALSE(verify_password(bad, "correct horse"));
  CHECK_FALSE(verify_password("scrypt$40$8$1$AAAA$AAAA", "x"));  // absurd cost refused
  CHECK_FALSE(verify_password("md5$abc", "x"));
  CHECK_FALSE(verify_password("", "x"));
}

TEST_CASE("user store: add, duplicate, short password, passwd, del; no plain text stored") {
  temp_dir d;
  auto s = store_in(d);
  CHECK(s->add("alice", user_role::technician, "alice-pass-1") == "");
  CHECK(s->add("alice", user_role::engineer, "other-pass-1").find("exists") != std::string::npos);
  CHECK(s->add("bob", user_role::engineer, "short").find("too short") != std::string::npos);
  CHECK(s->add("bad name", user_role::engineer, "long-enough-1").find("not allowed") != std::string::npos);
  CHECK(s->login("alice", "alice-pass-1", kNow).result == user_store::login_result::ok);
  CHECK(s->login("alice", "alice-pass-1", kNow).role == user_role::technician);
  CHECK(s->set_password("alice", "new-pass-123") == "");
  CHECK(s->login("alice", "alice-pass-1", kNow).result == user_store::login_result::bad_credentials);
  CHECK(s->login("alice", "new-pass-123", kNow).result == user_store::login_result::ok);
  CHECK(s->login("nobody", "new-pass-123", kNow).result == user_store::login_result::bad_credentials);
  CHECK(s->set_password("nobody", "whatever-123").find("no user") != std::string::npos);
  std::string err;
  auto list = s->list(err);
  REQUIRE(list.size() == 1);
  CHECK(list[0].name == "alice");
  CHECK(list[0].last_login_ns == kNow);
  CHECK(s->remove("alice") == "");
  CHECK(s->remove("alice").find("no user") != std::string::npos);
  // The file never holds the password itself.
  s.reset();
  std::ifstream f(d.path / "outbox.db", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  CHECK(bytes.find("new-pass-123") == std::string::npos);
}

TEST_CASE("user store: lockout after repeated failures, persisted, lifted by time or passwd") {
  temp_dir d;
  auto s = store_in(d);
  REQUIRE(s->add("eve", user_role::engineer, "eve-pass-123") == "");
  for (int i = 0; i < user_store::kMaxFailures - 1; ++i)
    CHECK(s->login("eve", "wrong", kNow + i).result == user_store::login_result::bad_credentials);
  auto r = s->login("eve", "wrong", kNow + 10);
  CHECK(r.result == user_store::login_result::locked);
  // Locked: even the right password is refused until the lock expires; a new connection to
  // the database (a restarted daemon) sees the same lock.
  s.reset();
  s = store_in(d);
  CHECK(s->login("eve", "eve-pass-123", kNow + 20).result == user_store::login_result::locked);
  auto after = r.locked_until_ns + 1;
  CHECK(s->login("eve", "eve-pass-123", after).result == user_store::login_result::ok);
  for (int i = 0; i < user_store::kMaxFailures; ++i) s->login("eve", "wrong", after + i);
  CHECK(s->login("eve", "eve-pass-123", after + 100).result == user_store::login_result::locked);
  CHECK(s->set_password("eve", "eve-pass-456") == "");
  CHECK(s->login("eve", "eve-pass-456", after + 200).result == user_store::login_result::ok);
}

TEST_CASE("auth: sessions, CSRF token, roles and the bearer token") {
  temp_dir d;
  auto s = store_in(d);
  REQUIRE(s->add("tech", user_role::technician, "tech-pass-123") == "");
  REQUIRE(s->add("eng", user_role::engineer, "eng-pass-1234") == "");
  auth a(s, "bearer-token-0123456789");
  auto l = a.login("tech", "tech-pass-123", kNow);
  REQUIRE(std::holds_alternative<auth::session_info>(l));
  auto t = std::get<auth::session_info>(l);
  CHECK(t.id.size() == 64);
  CHECK(t.csrf.size() == 64);
  std::string cookie = "x=1; semilab_session=" + t.id + "; y=2";
  CHECK(auth::session_cookie(cookie) == t.id);
  using R = std::variant<principal, auth::denied>;
  auto status_of = [](const R& r) { return std::holds_alternative<auth::denied>(r) ? std::get<auth::denied>(r).status : 200u; };
  // No credentials: 401. Cookie without CSRF (a cross-site request): 403. With it: allowed.
  CHECK(status_of(a.authorize("", "", "", user_role::technician, kNow)) == 401);
  CHECK(status_of(a.authorize("", cookie, "", user_role::technician, kNow)) == 403);
  CHECK(status_of(a.authorize("", cookie, "nope", user_role::technician, kNow)) == 403);
  CHECK(status_of(a.authorize("", cookie, t.csrf, user_role::technician, kNow)) == 200);
  // The technician may not run an engineer's action.
  CHECK(status_of(a.authorize("", cookie, t.csrf, user_role::engineer, kNow)) == 403);
  auto e = std::get<auth::session_info>(a.login("eng", "eng-pass-1234", kNow));
  CHECK(status_of(a.authorize("", "semilab_session=" + e.id, e.csrf, user_role::engineer, kNow)) == 200);
  // Bearer token: an engineer without a session.
  CHECK(status_of(a.authorize("Bearer bearer-token-0123456789", "", "", user_role::engineer, kNow)) == 200);
  CHECK(status_of(a.authorize("Bearer wrong", "", "", user_role::technician, kNow)) == 403);
  // Idle sessions expire; logout ends one at once.
  auto idle = std::chrono::duration_cast<std::chrono::nanoseconds>(auth::kSessionIdle).count();
  CHECK(status_of(a.authorize("", cookie, t.csrf, user_role::technician, kNow + idle / 2)) == 200);
  CHECK(status_of(a.authorize("", cookie, t.csrf, user_role::technician, kNow + idle / 2 + idle + 1)) == 401);
  a.logout(e.id);
  CHECK(status_of(a.authorize("", "semilab_session=" + e.id, e.csrf, user_role::engineer, kNow)) == 401);
  // Wrong passwords: 401, then the lock (429).
  for (int i = 0; i < user_store::kMaxFailures - 1; ++i)
    CHECK(std::get<auth::denied>(a.login("tech", "bad", kNow)).status == 401);
  CHECK(std::get<auth::denied>(a.login("tech", "bad", kNow)).status == 429);
  CHECK(std::get<auth::denied>(a.login("tech", "tech-pass-123", kNow)).status == 429);
  // Without a token configured, bearer headers are refused.
  auth no_token(s, "");
  CHECK(status_of(no_token.authorize("Bearer x", "", "", user_role::technician, kNow)) == 403);
}

TEST_CASE("control routes: login sets a strict cookie; actions need it with CSRF and the role") {
  temp_dir d;
  auto s = store_in(d);
  REQUIRE(s->add("tech", user_role::technician, "tech-pass-123") == "");
  REQUIRE(s->add("eng", user_role::engineer, "eng-pass-1234") == "");
  std::vector<std::string> calls;
  bool paused = false;
  auto cr = std::make_shared<control_routes>(
      std::make_shared<auth>(s, ""),
      [&](json::object req) -> json::value {
        std::string cmd(req.at("cmd").as_string());
        calls.push_back(cmd + " by " + std::string(req.at("who").as_string()));
        if (cmd == "pause") paused = true;
        if (cmd == "resume") paused = false;
        return json::object{{"ok", true}, {"acquisition", paused ? "paused" : "running"}};
      },
      [&] { return paused; });
  status_routes routes("", true, {});
  routes.set_control(cr);
  auto req = [&](std::string_view method, std::string_view target, std::string_view cookie = {},
                 std::string_view csrf = {}, std::string_view body = {},
                 std::string_view ctype = "application/json") {
    http_request_view v{method, target, "", "127.0.0.1", cookie, csrf, ctype, body, false};
    return routes.handle(v);
  };
  CHECK(req("POST", "/api/v1/acquisition/pause").status == 401);
  CHECK(req("POST", "/api/v1/login", {}, {}, R"({"user":"tech","password":"nope"})").status == 401);
  CHECK(req("POST", "/api/v1/login", {}, {}, R"({"user":"tech","password":"tech-pass-123"})", "text/plain").status == 415);
  CHECK(req("GET", "/api/v1/login").status == 405);
  auto login = req("POST", "/api/v1/login", {}, {}, R"({"user":"tech","password":"tech-pass-123"})");
  REQUIRE(login.status == 200);
  CHECK(login.set_cookie.find("HttpOnly") != std::string::npos);
  CHECK(login.set_cookie.find("SameSite=Strict") != std::string::npos);
  CHECK(login.set_cookie.find("Secure") == std::string::npos);  // plain HTTP here
  auto j = json::parse(login.body).as_object();
  std::string csrf(j.at("csrf").as_string());
  std::string cookie = login.set_cookie.substr(0, login.set_cookie.find(';'));
  CHECK(json::parse(req("GET", "/api/v1/session", cookie).body).at("user") == "tech");
  CHECK(req("GET", "/api/v1/session").status == 401);
  // The technician: flush yes, pause no (engineer), and never without the CSRF token.
  CHECK(req("POST", "/api/v1/outbox/flush", cookie).status == 403);
  CHECK(req("POST", "/api/v1/outbox/flush", cookie, csrf).status == 200);
  CHECK(req("POST", "/api/v1/acquisition/pause", cookie, csrf).status == 403);
  CHECK_FALSE(paused);
  auto eng = req("POST", "/api/v1/login", {}, {}, R"({"user":"eng","password":"eng-pass-1234"})");
  REQUIRE(eng.status == 200);
  std::string ecookie = eng.set_cookie.substr(0, eng.set_cookie.find(';'));
  std::string ecsrf(json::parse(eng.body).at("csrf").as_string());
  CHECK(req("POST", "/api/v1/acquisition/pause", ecookie, ecsrf).status == 200);
  CHECK(paused);
  CHECK(json::parse(req("GET", "/api/v1/acquisition").body).at("acquisition") == "paused");
  CHECK(req("POST", "/api/v1/acquisition/resume", ecookie, ecsrf).status == 200);
  CHECK_FALSE(paused);
  CHECK(calls == std::vector<std::string>{"flush by tech", "pause by eng", "resume by eng"});
  // Logout clears the cookie and ends the session.
  auto out = req("POST", "/api/v1/logout", ecookie);
  CHECK(out.status == 204);
  CHECK(out.set_cookie.find("Max-Age=0") != std::string::npos);
  CHECK(req("POST", "/api/v1/acquisition/pause", ecookie, ecsrf).status == 401);
  // The instrument action (status_routes) goes through the same check.
  CHECK(req("POST", "/api/v1/instruments/smu1/reconnect").status == 401);
  CHECK(routes.refuse_unless({"POST", "/x", "", "", cookie, csrf, "", "", false}, user_role::technician) == std::nullopt);
}

TEST_CASE("control socket: line-delimited JSON, mode 0660, bad input answered, stale file replaced") {
  temp_dir d;
  auto path = d.path / "control.sock";
  boost::asio::io_context io;
  std::string err;
  // A stale file (a crashed daemon) is replaced; a regular file is never removed.
  std::ofstream(path) << "not a socket";
  auto refused = control_server::start(io, path, [](const json::object&) { return json::value(); }, err);
  CHECK_FALSE(refused.has_value());
  CHECK(err.find("not a socket") != std::string::npos);
  std::filesystem::remove(path);
  std::atomic<int> served{0};
  auto srv = control_server::start(
      io, path,
      [&](const json::object& req) -> json::value {
        ++served;
        if (req.at("cmd") == "boom") throw std::runtime_error("handler failed");
        return json::object{{"ok", true}, {"echo", req.at("cmd")}};
      },
      err);
  REQUIRE_MESSAGE(srv.has_value(), err);
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0660);
  std::thread t([&] { io.run(); });
  bool not_running = false;
  auto r = control_call(path, {{"cmd", "status"}}, std::chrono::seconds(5), err, not_running);
  REQUIRE_MESSAGE(r.has_value(), err);
  CHECK(r->at("echo") == "status");
  // An exception in the handler becomes an error reply; the server keeps serving.
  r = control_call(path, {{"cmd", "boom"}}, std::chrono::seconds(5), err, not_running);
  REQUIRE(r.has_value());
  CHECK(r->at("ok") == false);
  CHECK(control_call(path, {{"cmd", "again"}}, std::chrono::seconds(5), err, not_running).has_value());
  // A second daemon on the same path is refused.
  boost::asio::io_context io2;
  CHECK_FALSE(control_server::start(io2, path, [](const json::object&) { return json::value(); }, err).has_value());
  CHECK(err.find("another semilab-agent") != std::string::npos);
  boost::asio::post(io, [&] { (*srv)->stop(); });
  t.join();
  CHECK_FALSE(std::filesystem::exists(path));
  CHECK_FALSE(control_call(path, {{"cmd", "status"}}, std::chrono::seconds(1), err, not_running).has_value());
  CHECK(not_running);
  CHECK(served == 4);  // status, boom, again, and the second server's ping
}

TEST_CASE("time arguments: RFC 3339 and relative") {
  const std::int64_t now = 1'800'000'000'000'000'000;
  CHECK(parse_time_arg("2h", now) == now - 7200LL * 1'000'000'000);
  CHECK(parse_time_arg("30m", now) == now - 1800LL * 1'000'000'000);
  CHECK(parse_time_arg("7d", now) == now - 7 * 86400LL * 1'000'000'000);
  CHECK(parse_time_arg("now", now) == now);
  CHECK(parse_time_arg("2026-11-27T10:00:00Z", now) == 1'795'773'600'000'000'000);
  CHECK(parse_time_arg("2026-11-27T12:00:00+02:00", now) == 1'795'773'600'000'000'000);
  CHECK(parse_time_arg("2026-11-27T10:00:00.25Z", now) == 1'795'773'600'250'000'000);
  CHECK(parse_time_arg("2026-11-27", now) == 1'795'737'600'000'000'000);
  CHECK_FALSE(parse_time_arg("2026-11-27T10:00:00", now));  // no offset
  CHECK_FALSE(parse_time_arg("2026-02-30T10:00:00Z", now));
  CHECK_FALSE(parse_time_arg("2x", now));
  CHECK_FALSE(parse_time_arg("yesterday", now));
  CHECK(rfc3339_ns(1'795'773'600'250'000'000) == "2026-11-27T10:00:00.250000000Z");
}

TEST_CASE("export: held and acked records in the window, every digit, csv and jsonl") {
  temp_dir d;
  std::string err;
  semilab::sync::outbox_options o{d.path / "outbox.db", "agent-x"};
  o.retention.max_age = std::chrono::hours(1);
  o.retention.max_bytes = 1 << 20;
  auto box = semilab::sync::outbox::open(o, err);
  REQUIRE_MESSAGE(box.has_value(), err);
  const std::int64_t t0 = 1'795'773'600'000'000'000;
  std::vector<semilab::schemas::record> recs;
  for (int i = 0; i < 4; ++i) {
    semilab::schemas::record r;
    r.ts_ns = t0 + i * 1'000'000'000LL;
    r.instrument = "smu1";
    r.channel = i == 3 ? "note" : "curr";
    r.unit = "A";
    if (i == 0) r.val = semilab::schemas::decimal{12345000, -10};
    else if (i == 1) r.val = std::int64_t{9'007'199'254'740'993};  // 2^53 + 1
    else if (i == 2) r.val = 0.1;
    else r.val = std::string("a, \"quoted\" note");
    recs.push_back(r);
  }
  auto range = (*box)->enqueue_wait(recs);
  REQUIRE(range.has_value());
  // The first record is acked: it moves to the retention window and is still exported.
  std::promise<void> acked;
  (*box)->ack({{range->first, range->first}}, [&](boost::system::error_code, std::uint64_t) { acked.set_value(); });
  acked.get_future().wait();
  box->reset();
  std::ostringstream csv;
  auto n = export_records(d.path / "outbox.db", t0, t0 + 3'000'000'000LL, export_format::csv, csv, err);
  REQUIRE_MESSAGE(n.has_value(), err);
  CHECK(*n == 3);  // the 4th is at t0 + 3 s: outside [since, until)
  auto text = csv.str();
  CHECK(text.find(",acked,telemetry,2026-11-27T10:00:00.000000000Z,") != std::string::npos);
  CHECK(text.find(",1.2345000E-03,A,") != std::string::npos);
  CHECK(text.find(",9007199254740993,A,") != std::string::npos);
  CHECK(text.find(",0.1,A,") != std::string::npos);
  std::ostringstream jl;
  n = export_records(d.path / "outbox.db", t0, t0 + 10'000'000'000LL, export_format::jsonl, jl, err);
  REQUIRE(n == 4);
  std::istringstream lines(jl.str());
  std::string line;
  std::vector<json::object> rows;
  while (std::getline(lines, line)) rows.push_back(json::parse(line).as_object());
  REQUIRE(rows.size() == 4);
  CHECK(rows[0].at("state") == "acked");
  CHECK(rows[1].at("state") == "held");
  CHECK(rows[1].at("value") == "9007199254740993");  // a string: nothing rounds it
  CHECK(rows[3].at("value") == "a, \"quoted\" note");
  auto q = queue_depth(d.path / "outbox.db", err);
  CHECK(q.at("classes").at("telemetry").at("records") == 3);
  CHECK(q.at("retained").at("records") == 1);
}
