// The API's access control (roles, 401 vs 403, public probes, /metrics policy), per-caller rate
// limits, the response cache, and the OpenAPI document generated from the route table.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <semilab/central/api.hpp>
#include <semilab/central/auth.hpp>
#include <semilab/central/store.hpp>
#include <semilab/schemas/topics.hpp>
#include <set>

#include "test_util.hpp"

using namespace semilab::central;
namespace sc = semilab::schemas;
namespace json = boost::json;

namespace {

struct fixture {
  central_test::temp_dir d;
  std::unique_ptr<sqlite_store> w, r;
  std::int64_t steady = 1'000'000'000;  // injected monotonic clock (ns)
  ingest_stats st;
  std::string viewer, engineer, admin;
  std::unique_ptr<api> a;

  explicit fixture(api_auth auth, std::chrono::milliseconds ttl = std::chrono::milliseconds(0),
                   bool with_auth = true) {
    std::string err;
    auto ws = sqlite_store::open(store_options{d.file("central.db")}, err);
    REQUIRE(ws.has_value());
    w = std::move(*ws);
    store(1);
    auto rs = sqlite_store::open(store_options{d.file("central.db"), open_mode::read_only}, err);
    REQUIRE(rs.has_value());
    r = std::move(*rs);
    viewer = make(role::viewer, "dash");
    engineer = make(role::engineer, "eng");
    admin = make(role::admin, "ops");
    api_sources s{r.get(), [this] { return st; }, [] { return true; }, "c1"};
    if (with_auth) s.auth = auth;
    s.cache.ttl = ttl;
    s.steady = [this] { return steady; };
    a = std::make_unique<api>(std::move(s));
  }
  std::string make(role ro, const char* name) {
    std::string err;
    auto t = create_token(*w, ro, name, now_ns(), err);
    REQUIRE_MESSAGE(t.has_value(), err);
    return "Bearer " + t->token;
  }
  void store(std::uint64_t first) {
    sc::frame_decoder dec;
    auto bytes = central_test::encode(central_test::sample_batch("agent-01", 3, first, first, 8));
    auto f = dec.decode(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
    REQUIRE(f.has_value());
    sc::agent_topic_parts t{"lab1", "agent-01", sc::agent_topic_kind::batch};
    REQUIRE(w->store_batch(t, *f, bytes.size(), "c").has_value());
  }
  http_response get(std::string_view target, std::string_view authz = {},
                    std::string remote = "10.0.0.9") {
    return a->handle(http_request{"GET", target, authz, std::move(remote)});
  }
};

std::string header(const http_response& r, std::string_view name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return {};
}

api_auth closed() {
  api_auth p;
  p.anonymous = role::none;
  return p;
}

}  // namespace

TEST_CASE("auth: tokens parse, check in constant time against the stored hash, and revoke") {
  CHECK_FALSE(parse_bearer("Basic abc").has_value());
  CHECK_FALSE(parse_bearer("Bearer slc_short").has_value());
  CHECK_FALSE(parse_bearer("Bearer slc_0123456789ab_" + std::string(64, 'g')).has_value());
  auto p = parse_bearer("bearer  slc_0123456789ab_" + std::string(64, 'f') + " ");
  REQUIRE(p.has_value());
  CHECK(p->id == "0123456789ab");
  CHECK(parse_role("engineer") == role::engineer);
  CHECK_FALSE(parse_role("root").has_value());
  CHECK(role::viewer < role::engineer);
  CHECK(role::engineer < role::admin);
}

TEST_CASE("api access: public probes, 401 without or with a bad token, 403 for a low role") {
  fixture fx(closed());
  CHECK(fx.get("/healthz").status == 200);
  CHECK(fx.get("/readyz").status == 200);
  CHECK(fx.get("/api/v1/openapi.json").status == 200);

  auto r = fx.get("/api/v1/agents");
  CHECK(r.status == 401);
  CHECK(header(r, "WWW-Authenticate") == "Bearer realm=\"semilab-central\"");
  CHECK(fx.get("/metrics").status == 401);

  r = fx.get("/api/v1/agents", "Bearer slc_0123456789ab_" + std::string(64, 'a'));
  CHECK(r.status == 401);
  CHECK(header(r, "WWW-Authenticate").find("invalid_token") != std::string::npos);
  r = fx.get("/api/v1/agents", "Bearer nonsense");
  CHECK(r.status == 401);
  // Right id, wrong secret.
  std::string forged = fx.viewer;
  forged.back() = forged.back() == '0' ? '1' : '0';
  CHECK(fx.get("/api/v1/agents", forged).status == 401);

  CHECK(fx.get("/api/v1/agents", fx.viewer).status == 200);
  CHECK(fx.get("/metrics", fx.viewer).status == 200);
  r = fx.get("/api/v1/quarantine", fx.viewer);
  CHECK(r.status == 403);
  CHECK(json::parse(r.body).at("error").as_string().find("engineer") != json::string::npos);
  CHECK(fx.get("/api/v1/quarantine", fx.engineer).status == 200);
  CHECK(fx.get("/api/v1/tokens", fx.engineer).status == 403);
  r = fx.get("/api/v1/tokens", fx.admin);
  REQUIRE(r.status == 200);
  auto list = json::parse(r.body).at("tokens").as_array();
  CHECK(list.size() == 3);
  CHECK(r.body.find(fx.admin.substr(7 + 4 + 12 + 1)) == std::string::npos);  // no secret
  // Unknown path and wrong method are answered before access control.
  CHECK(fx.get("/api/v1/nothing").status == 404);
  CHECK(fx.a->handle(http_request{"POST", "/api/v1/agents", {}, {}}).status == 405);

  SUBCASE("revocation takes effect at the next token refresh") {
    std::string err;
    auto id = fx.viewer.substr(7 + 4, 12);
    auto n = revoke_token(*fx.w, id, now_ns(), err);
    REQUIRE(n.has_value());
    CHECK(*n == 1);
    CHECK(fx.get("/api/v1/agents", fx.viewer).status == 200);  // table still fresh
    fx.steady += 5'000'000'000;
    CHECK(fx.get("/api/v1/agents", fx.viewer).status == 401);
    CHECK(fx.get("/api/v1/agents", fx.admin).status == 200);
  }
  SUBCASE("a token created after the table was read works at once (unknown id: re-read)") {
    auto fresh = fx.make(role::viewer, "late");
    fx.steady += 1'000'000'000;
    CHECK(fx.get("/api/v1/agents", fresh).status == 200);
  }
}

TEST_CASE("api access: anonymous viewer reads but needs tokens above; metrics_public") {
  api_auth p;
  p.anonymous = role::viewer;
  fixture fx(p);
  CHECK(fx.get("/api/v1/agents").status == 200);
  CHECK(fx.get("/metrics").status == 200);
  auto r = fx.get("/api/v1/quarantine");
  CHECK(r.status == 401);  // a token would help: 401, not 403
  CHECK_FALSE(header(r, "WWW-Authenticate").empty());

  api_auth m = closed();
  m.metrics_public = true;
  fixture fm(m);
  CHECK(fm.get("/metrics").status == 200);
  CHECK(fm.get("/api/v1/agents").status == 401);
  auto doc = json::parse(fm.a->openapi_json());
  CHECK(doc.at("paths").at("/metrics").at("get").at("x-semilab-min-role").as_string() == "none");
}

TEST_CASE("api access: token bucket per caller, 429 with Retry-After; probes not counted") {
  api_auth p = closed();
  p.rate_per_s = 2;
  p.rate_burst = 3;
  fixture fx(p);
  for (int i = 0; i < 3; ++i) CHECK(fx.get("/api/v1/agents", fx.viewer).status == 200);
  auto r = fx.get("/api/v1/agents", fx.viewer);
  CHECK(r.status == 429);
  CHECK(header(r, "Retry-After") == "1");
  CHECK(fx.get("/api/v1/agents", fx.admin).status == 200);  // another token, its own bucket
  for (int i = 0; i < 10; ++i) CHECK(fx.get("/healthz").status == 200);
  fx.steady += 500'000'000;  // +1 token
  CHECK(fx.get("/api/v1/agents", fx.viewer).status == 200);
  CHECK(fx.get("/api/v1/agents", fx.viewer).status == 429);
  auto m = fx.get("/metrics", fx.admin);
  REQUIRE(m.status == 200);
  CHECK(m.body.find("semilab_central_http_rate_limited_total 2\n") != std::string::npos);
  CHECK(m.body.find("semilab_central_http_unauthorized_total 0\n") != std::string::npos);

  SUBCASE("anonymous callers are limited per address") {
    api_auth q;
    q.anonymous = role::viewer;
    q.rate_per_s = 1;
    q.rate_burst = 1;
    fixture fa(q);
    CHECK(fa.get("/api/v1/agents", {}, "10.0.0.1").status == 200);
    CHECK(fa.get("/api/v1/agents", {}, "10.0.0.1").status == 429);
    CHECK(fa.get("/api/v1/agents", {}, "10.0.0.2").status == 200);
  }
}

TEST_CASE("api cache: hits until TTL or an ingest commit; hit ratio in /metrics") {
  fixture fx(api_auth{role::viewer}, std::chrono::milliseconds(1000));
  auto first = fx.get("/api/v1/measurements?agent=agent-01");
  REQUIRE(first.status == 200);
  CHECK(json::parse(first.body).at("measurements").as_array().size() == 8);
  fx.store(100);  // new records, but no commit of *this* process's ingest yet
  auto again = fx.get("/api/v1/measurements?agent=agent-01");
  CHECK(again.body == first.body);  // served from the cache
  fx.st.commits = 1;                // this instance's ingest committed: entries die
  auto fresh = fx.get("/api/v1/measurements?agent=agent-01");
  CHECK(json::parse(fresh.body).at("measurements").as_array().size() == 16);
  fx.store(200);
  CHECK(fx.get("/api/v1/measurements?agent=agent-01").body == fresh.body);
  fx.steady += 1'000'000'000;  // TTL (another instance's ingest is seen this late at most)
  CHECK(json::parse(fx.get("/api/v1/measurements?agent=agent-01").body)
            .at("measurements")
            .as_array()
            .size() == 24);
  // Not cacheable: stats carries live counters.
  fx.get("/api/v1/stats");
  fx.get("/api/v1/stats");
  auto s = fx.a->http_stats();
  CHECK(s.cache_hits == 2);
  CHECK(s.cache_misses == 3);
  auto m = fx.get("/metrics");
  CHECK(m.body.find("semilab_central_http_cache_hits_total 2\n") != std::string::npos);
  CHECK(m.body.find("semilab_central_http_cache_hit_ratio 0.4\n") != std::string::npos);

  SUBCASE("no cache when the TTL is 0") {
    fixture off(api_auth{role::viewer});
    off.get("/api/v1/agents");
    off.get("/api/v1/agents");
    CHECK(off.a->http_stats().cache_hits == 0);
    CHECK(off.a->http_stats().cache_misses == 0);
  }
}

TEST_CASE("openapi: every dispatched route is documented, and every documented route answers") {
  fixture fx(api_auth{}, std::chrono::milliseconds(0), false);
  auto res = fx.get("/api/v1/openapi.json");
  REQUIRE(res.status == 200);
  auto doc = json::parse(res.body);
  CHECK(doc.at("openapi").as_string().starts_with("3."));
  const auto& paths = doc.at("paths").as_object();
  std::set<std::string> documented;
  for (const auto& [p, v] : paths) documented.insert(std::string(p));
  std::set<std::string> dispatched;
  for (const auto& r : api::routes()) dispatched.insert(std::string(r.path));
  CHECK(documented == dispatched);
  CHECK(paths.contains("/api/v1/spc/{parameter}"));
  CHECK(paths.contains("/api/v1/runs/{run_id}"));

  // The path of an operation with its examples filled in.
  auto fill = [](std::string target, const json::object& op) {
    if (op.contains("parameters"))
      for (const auto& prm : op.at("parameters").as_array()) {
        const auto& o = prm.as_object();
        const std::string name(o.at("name").as_string());
        if (o.at("in").as_string() == "path")
          target.replace(target.find("{" + name + "}"), name.size() + 2,
                         std::string(o.at("example").as_string()));
      }
    return target;
  };
  for (const auto& [p, v] : paths) {
    if (const auto* post = v.as_object().if_contains("post")) {
      // POST routes (login, logout, token actions): dispatched as POST only.
      const auto& op = post->as_object();
      CHECK(op.contains("responses"));
      CHECK(op.contains("x-semilab-min-role"));
      const auto target = fill(std::string(p), op);
      INFO("POST route " << p);
      http_request q{"POST", target, {}, "10.0.0.9"};
      q.content_type = "application/json";
      q.body = "{}";
      auto r = fx.a->handle(q);
      CHECK(r.status != 405);
      CHECK((r.status != 404 || r.body.find("\"not found\"") == std::string::npos));
      if (!v.as_object().contains("get")) {
        CHECK(fx.get(target).status == 405);
        continue;
      }
    }
    const auto& op = v.at("get").as_object();
    CHECK(op.contains("responses"));
    CHECK(op.contains("x-semilab-min-role"));
    // The path with its examples filled in, and every documented query parameter accepted.
    std::string target(p);
    std::string query;
    if (op.contains("parameters"))
      for (const auto& prm : op.at("parameters").as_array()) {
        const auto& o = prm.as_object();
        const std::string name(o.at("name").as_string());
        if (o.at("in").as_string() == "path") {
          const std::string example(o.at("example").as_string());
          target.replace(target.find("{" + name + "}"), name.size() + 2, example);
        }
      }
    INFO("route " << p);
    auto r = fx.get(target);
    // Dispatched: a 404 may only be the resource's own (e.g. no blob with that hash), never the
    // router's {"error":"not found"}.
    CHECK((r.status != 404 || r.body.find("\"not found\"") == std::string::npos));
    CHECK(r.status != 405);
    CHECK(r.status < 500);
    if (op.contains("parameters"))
      for (const auto& prm : op.at("parameters").as_array()) {
        const auto& o = prm.as_object();
        if (o.at("in").as_string() != "query") continue;
        const std::string name(o.at("name").as_string());
        const std::string type(o.at("schema").at("type").as_string());
        std::string value = type == "integer" ? "1" : type == "number" ? "1.5"
                            : type == "boolean" ? "true" : "x";
        if (name == "chart") value = "imr";
        if (name == "format") value = "json";
        if (name == "after") value = "1:1:1:agent-01";
        if (name == "parameter") value = "curr";
        auto q = fx.get(target + (target.find('?') == std::string::npos ? "?" : "&") + name +
                        "=" + value);
        INFO("parameter " << name);
        if (q.status == 400)
          CHECK(json::parse(q.body).at("error").as_string().find("unknown parameter") ==
                json::string::npos);
      }
  }
  // An undocumented parameter is refused.
  CHECK(fx.get("/api/v1/daily?bogus=1").status == 400);
}
