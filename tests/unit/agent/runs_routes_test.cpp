// The /api/v1/runs endpoints (agent/src/runs.hpp) without instruments: authentication, body and
// recipe validation, the refusals' messages, lookups.
#include <doctest/doctest.h>

#include <semilab/agent/recorder.hpp>
#include <support/processes.hpp>

#include <boost/asio/io_context.hpp>

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
