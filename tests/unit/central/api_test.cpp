#include <semilab/central/api.hpp>
#include <semilab/schemas/topics.hpp>

#include <boost/json.hpp>
#include <doctest/doctest.h>

#include "test_util.hpp"

using namespace semilab::central;
namespace sc = semilab::schemas;
namespace json = boost::json;

TEST_CASE("api: agents, stats, healthz, 404 and 405") {
  central_test::temp_dir d;
  std::string err;
  auto w = store::open(store_options{d.file("central.db")}, err);
  REQUIRE(w.has_value());
  sc::frame_decoder dec;
  auto bytes = central_test::encode(central_test::sample_batch("agent-01", 3, 1, 1, 6));
  auto f = dec.decode(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
  REQUIRE(f.has_value());
  sc::agent_topic_parts t{"lab1", "agent-01", sc::agent_topic_kind::batch};
  REQUIRE((*w)->store_batch(t, *f, bytes.size(), "c").has_value());

  auto r = store::open(store_options{d.file("central.db"), open_mode::read_only}, err);
  REQUIRE(r.has_value());
  ingest_stats fake;
  fake.received = 11;
  fake.rejected = 2;
  std::int64_t last_ack = (*w)->agents()->front().last_ack_ns;
  api a(api_sources{r->get(), [&] { return fake; }, [] { return true; }, "central-x",
                    [&] { return last_ack + 2'500'000'000; }});

  auto res = a.handle("GET", "/api/v1/agents");
  CHECK(res.status == 200);
  CHECK(res.content_type == "application/json");
  auto v = json::parse(res.body);
  auto& list = v.at("agents").as_array();
  REQUIRE(list.size() == 1);
  auto& o = list[0].as_object();
  CHECK(o.at("agent_id").as_string() == "agent-01");
  CHECK(o.at("site").as_string() == "lab1");
  CHECK(o.at("records").to_number<std::int64_t>() == 6);
  CHECK(o.at("batches").to_number<std::int64_t>() == 1);
  CHECK(o.at("duplicates").to_number<std::int64_t>() == 0);
  CHECK(o.at("last_ack_ns").as_string() == std::to_string(last_ack));  // string: > 2^53
  CHECK(o.at("first_seen_ns").is_string());
  CHECK(o.at("last_ack_age_s").as_double() == doctest::Approx(2.5));

  res = a.handle("GET", "/api/v1/stats?x=1");
  CHECK(res.status == 200);
  v = json::parse(res.body);
  CHECK(v.at("records").to_number<std::int64_t>() == 6);
  CHECK(v.at("quarantined").to_number<std::int64_t>() == 0);
  CHECK(v.at("batches_received").to_number<std::int64_t>() == 11);
  CHECK(v.at("rejected").to_number<std::int64_t>() == 2);
  CHECK(v.at("instance").as_string() == "central-x");
  CHECK(v.at("mqtt_connected").as_bool());

  res = a.handle("GET", "/healthz");
  CHECK(res.status == 200);
  CHECK(res.body == "ok\n");

  res = a.handle("GET", "/api/v1/nothing");
  CHECK(res.status == 404);
  CHECK(json::parse(res.body).at("error").is_string());

  res = a.handle("POST", "/api/v1/agents");
  CHECK(res.status == 405);
  CHECK(res.allow == "GET, HEAD");
}
