// The /api/v1/runs endpoints (agent/src/runs.hpp) without instruments: authentication, body and
// recipe validation, the refusals' messages, lookups.
#include <doctest/doctest.h>

#include <semilab/agent/recorder.hpp>
#include <support/processes.hpp>

#include <boost/asio/io_context.hpp>
#include <sqlite3.h>

#include "runs.hpp"

using namespace semilab;
using namespace semilab::agent;

namespace {

struct fixture {
  test::temp_dir d;
  std::string err;
  std::unique_ptr<sync::outbox> box;
  std::unique_ptr<recorder> rec;
  boost::asio::io_context io;
  std::shared_ptr<run_executor> ex;
  fixture() {
    auto b = sync::outbox::open({d.path() / "o.db", "agent-1", sync::durability::normal}, err);
    REQUIRE(b.has_value());
    box = std::move(*b);
    rec = std::make_unique<recorder>(*box);
    runs_options o;
    o.db_path = d.path() / "o.db";
    ex = run_executor::create(io, o, *rec, [](std::string_view) { return nullptr; }, err);
    REQUIRE(ex);
  }
  http_reply call(std::string_view method, std::string_view target, std::string_view body,
                  std::string_view auth, const std::string& token, bool loopback = true,
                  std::string_view content_type = "application/json") {
    http_request_view req{method, target, auth, "127.0.0.1"};
    req.body = body;
    req.content_type = content_type;
    auto r = handle_runs_request(*ex, req, target, token, loopback);
    REQUIRE(r.has_value());
    return *r;
  }
};

constexpr const char* kBody =
    R"({"recipe": "[recipe]\nformat = 1\nname = \"d\"\nversion = \"1.0.0\"\nmethod = \"diode-iv\"\n[roles.smu]\nkind = \"source-measure\"\ncompliance = 2.0\n[sweep]\nrole = \"smu\"\nmode = \"linear\"\nstart = 0\nstop = 1\npoints = 3\n", "metadata": {"sample": "S"}})";

}  // namespace

TEST_CASE("runs routes: tokens, bodies, validation messages, lookups") {
  fixture f;
  // Not a runs route.
  http_request_view other{"GET", "/api/v1/status", "", ""};
  CHECK_FALSE(handle_runs_request(*f.ex, other, "/api/v1/status", "", true).has_value());
  // Tokens.
  CHECK(f.call("POST", "/api/v1/runs", kBody, "", "tok").status == 401);
  CHECK(f.call("POST", "/api/v1/runs", kBody, "Bearer nope", "tok").status == 403);
  CHECK(f.call("POST", "/api/v1/runs", kBody, "", "", false).status == 403);  // no token, not loopback
  // Loopback without a token: a form post (what another web site could make the browser send) is
  // refused; a JSON body needs a CORS preflight this server never grants.
  CHECK(f.call("POST", "/api/v1/runs", kBody, "", "", true, "application/x-www-form-urlencoded").status == 415);
  CHECK(f.call("POST", "/api/v1/runs", kBody, "", "", true, "text/plain").status == 415);
  // Loopback without a token: accepted for validation; the role has no instrument.
  auto r = f.call("POST", "/api/v1/runs", kBody, "", "");
  CHECK(r.status == 422);
  CHECK(r.body.find("role 'smu' is bound to no instrument") != std::string::npos);
  r = f.call("POST", "/api/v1/runs", kBody, "Bearer tok", "tok");
  CHECK(r.status == 422);
  // Bodies.
  CHECK(f.call("POST", "/api/v1/runs", "not json", "Bearer tok", "tok").status == 400);
  CHECK(f.call("POST", "/api/v1/runs", "{}", "Bearer tok", "tok").status == 400);
  CHECK(f.call("POST", "/api/v1/runs", R"({"recipe": "x", "metadata": {"a": 1}})", "Bearer tok", "tok")
            .status == 400);
  // A broken recipe: the message names the file and the line.
  r = f.call("POST", "/api/v1/runs", R"({"recipe": "[recipe]\nformat = 1\nmethod = \"nope\"\n", "recipe_file": "x.toml"})",
             "Bearer tok", "tok");
  CHECK(r.status == 422);
  CHECK(r.body.find("x.toml:") != std::string::npos);
  // Lookups.
  CHECK(f.call("GET", "/api/v1/runs/run-0", "", "", "tok").status == 404);
  CHECK(f.call("POST", "/api/v1/runs/run-0/abort", "", "Bearer tok", "tok").status == 404);
  auto list = f.call("GET", "/api/v1/runs", "", "", "tok");
  CHECK(list.status == 200);
  CHECK(list.body == "{\"runs\":[]}\n");
  CHECK(f.call("DELETE", "/api/v1/runs", "", "", "tok").status == 405);
}

TEST_CASE("runs routes: confirm, refusals while paused, a logged-in user's session") {
  fixture f;
  // Confirm: unknown run, wrong method, bad bodies.
  CHECK(f.call("POST", "/api/v1/runs/run-0/confirm", "", "Bearer tok", "tok").status == 404);
  CHECK(f.call("POST", "/api/v1/runs/run-0/confirm", R"({"prompt": 1})", "Bearer tok", "tok").status == 404);
  CHECK(f.call("GET", "/api/v1/runs/run-0/confirm", "", "", "tok").status == 405);
  CHECK(f.call("POST", "/api/v1/runs/run-0/confirm", "nope", "Bearer tok", "tok").status == 400);
  CHECK(f.call("POST", "/api/v1/runs/run-0/confirm", R"({"prompt": 0})", "Bearer tok", "tok").status == 400);
  CHECK(f.call("POST", "/api/v1/runs/run-0/confirm", "", "", "tok").status == 401);
  CHECK(f.call("POST", "/api/v1/runs/run-0/other", "", "Bearer tok", "tok").status == 404);
  CHECK(f.ex->confirm("run-0") == run_executor::confirm_outcome::not_found);
  CHECK(f.ex->unfinished().empty());

  // While acquisition is paused a submission is refused with 409 and says why.
  bool paused = true;
  f.ex->set_paused_check([&paused] { return paused; });
  auto r = f.call("POST", "/api/v1/runs", kBody, "Bearer tok", "tok");
  CHECK(r.status == 409);
  CHECK(r.body.find("acquisition is paused") != std::string::npos);
  paused = false;
  CHECK(f.call("POST", "/api/v1/runs", kBody, "Bearer tok", "tok").status == 422);  // validation

  // A session that status_routes authorised (cookie + CSRF) needs no token here.
  http_request_view req{"POST", "/api/v1/runs", "", "127.0.0.1"};
  req.body = kBody;
  req.content_type = "application/json";
  req.preauthorized = true;
  auto s = handle_runs_request(*f.ex, req, "/api/v1/runs", "tok", false);
  REQUIRE(s.has_value());
  CHECK(s->status == 422);  // past authentication: the role has no instrument
  req.preauthorized = false;
  s = handle_runs_request(*f.ex, req, "/api/v1/runs", "tok", false);
  REQUIRE(s.has_value());
  CHECK(s->status == 401);
}

namespace {

constexpr const char* kCheckStandardToml = R"([recipe]
format = 1
name = "cs-100"
version = "1.0.0"
method = "check-standard"
[roles.smu]
kind = "source-measure"
source = "current"
compliance = 2.0
[sweep]
role = "smu"
mode = "list"
values = [1e-3, -1e-3]
[device]
nominal = 100.0
[limits.deviation]
min = -0.02
max = 0.02
)";

run_view check_standard_run(double deviation) {
  run_view v;
  v.id = "run-cs";
  v.state = run_state::completed;
  v.method = "check-standard";
  v.recipe_name = "cs-100";
  v.recipe_version = "1.0.0";
  v.finished_ns = 1'800'000'000'000'000'000;
  v.created_ns = v.finished_ns - 1'000'000'000;
  v.bindings = {{"smu", "smu1"}};
  v.result_json = R"({"parameters": {"r": {"value": )" + std::to_string(100 + deviation) +
                  R"(, "unit": "ohm"}, "deviation": {"value": )" + std::to_string(deviation) +
                  R"(, "unit": "ohm"}}})";
  return v;
}

}  // namespace

TEST_CASE("check standards: read from a run's summary and recipe, and from the database at start") {
  auto cs = check_standard_of(check_standard_run(0.05), kCheckStandardToml);
  REQUIRE(cs.size() == 1);
  CHECK(cs[0].instrument == "smu1");
  CHECK(cs[0].run_id == "run-cs");
  CHECK(cs[0].deviation == doctest::Approx(0.05));
  REQUIRE(cs[0].r.has_value());
  CHECK(*cs[0].r == doctest::Approx(100.05));
  REQUIRE(cs[0].max.has_value());
  CHECK(*cs[0].max == doctest::Approx(0.02));
  CHECK(cs[0].exceeded());
  CHECK_FALSE(check_standard_of(check_standard_run(0.01), kCheckStandardToml)[0].exceeded());
  // Not a completed check-standard run, or no deviation: nothing.
  auto other = check_standard_run(0.05);
  other.method = "diode-iv";
  CHECK(check_standard_of(other, kCheckStandardToml).empty());
  auto failed = check_standard_run(0.05);
  failed.state = run_state::failed;
  CHECK(check_standard_of(failed, kCheckStandardToml).empty());
  auto none = check_standard_run(0.05);
  none.result_json = R"({"parameters": {}})";
  CHECK(check_standard_of(none, kCheckStandardToml).empty());

  // A daemon restarted finds the latest check standard of each instrument in the runs table.
  fixture f;
  CHECK(f.ex->check_standards().empty());
  f.ex->stop();
  f.ex.reset();
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open((f.d.path() / "o.db").c_str(), &db) == SQLITE_OK);
  auto insert = [&](const char* id, std::int64_t finished, double deviation) {
    auto v = check_standard_run(deviation);
    std::string sql =
        "INSERT INTO runs(run_id, state, recipe_name, recipe_version, method, recipe_toml, metadata,"
        " bindings, result, created_ns, started_ns, finished_ns) VALUES(?1, 'completed', 'cs-100',"
        " '1.0.0', 'check-standard', ?2, '{}', '{\"smu\":\"smu1\"}', ?3, ?4, ?4, ?4)";
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, kCheckStandardToml, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, v.result_json.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, finished);
    CHECK(sqlite3_step(st) == SQLITE_DONE);
    sqlite3_finalize(st);
  };
  insert("run-old", 1000, 0.001);
  insert("run-new", 2000, 0.05);
  sqlite3_close(db);
  runs_options o;
  o.db_path = f.d.path() / "o.db";
  f.ex = run_executor::create(f.io, o, *f.rec, [](std::string_view) { return nullptr; }, f.err);
  REQUIRE(f.ex);
  auto loaded = f.ex->check_standards();
  REQUIRE(loaded.size() == 1);
  CHECK(loaded[0].instrument == "smu1");
  CHECK(loaded[0].run_id == "run-new");
  CHECK(loaded[0].exceeded());
}
