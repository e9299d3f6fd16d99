#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/state.hpp>
#include <semilab/schemas/topics.hpp>

#include <doctest/doctest.h>

#include <cmath>

using namespace semilab::schemas;

TEST_CASE("topics") {
  CHECK(agent_topic("lab1", "a-01", agent_topic_kind::batch) == "semilab/v1/lab1/a-01/batch");
  CHECK(central_batch_subscription() == "$share/semilab-central/semilab/v1/+/+/batch");
  CHECK(central_state_topic("c1") == "semilab/v1/central/c1/state");
  auto p = parse_agent_topic("semilab/v1/lab1/a-01/ack");
  REQUIRE(p.has_value());
  CHECK(p->site == "lab1");
  CHECK(p->agent == "a-01");
  CHECK(p->kind == agent_topic_kind::ack);
  for (auto t : {"semilab/v1/lab1/a-01", "semilab/v1/lab1/a-01/nope", "semilab/v2/l/a/batch",
                 "semilab/v1/l/a+b/batch", "semilab/v1//a/batch", "semilab/v1/l/a/batch/x"})
    CHECK_MESSAGE(!parse_agent_topic(t), t);
  CHECK(valid_id("agent_01.x-y"));
  CHECK_FALSE(valid_id(""));
  CHECK_FALSE(valid_id(".hidden"));
  CHECK_FALSE(valid_id(std::string(65, 'a')));
  CHECK_FALSE(valid_id("a#"));
}

TEST_CASE("ack round trip, stored and rejected") {
  ack a;
  a.agent_id = "a1";
  a.store_epoch = 18'446'744'073'709'551'615ull;  // 2^64-1 as a string, not a JSON number
  a.batch_id = 12;
  a.ranges = {{1, 10}, {15, 20}};
  a.central_instance = "c1";
  auto j = encode_ack(a);
  CHECK(j.find("\"18446744073709551615\"") != std::string::npos);
  auto b = decode_ack(j);
  REQUIRE(b.has_value());
  CHECK(b->stored);
  CHECK(b->store_epoch == a.store_epoch);
  CHECK(b->ranges == a.ranges);
  CHECK(b->central_instance == "c1");

  ack r;
  r.agent_id = "a1";
  r.stored = false;
  r.code = reject_code::overload;
  r.retry = retryable(r.code);
  r.reason = "busy";
  auto d = decode_ack(encode_ack(r));
  REQUIRE(d.has_value());
  CHECK_FALSE(d->stored);
  CHECK(d->code == reject_code::overload);
  CHECK(d->retry);
  CHECK_FALSE(retryable(reject_code::invalid_frame));
}

TEST_CASE("malformed acks are typed errors") {
  for (auto s : {"", "[]", "{\"v\":1}", "{\"v\":\"1\"}", "{\"v\":1,\"agent\":\"a\",\"epoch\":1}",
                 "{\"v\":1,\"agent\":\"a\",\"epoch\":\"x\",\"batch\":\"1\",\"status\":\"stored\",\"ranges\":[]}",
                 "{\"v\":1,\"agent\":\"a\",\"epoch\":\"1\",\"batch\":\"1\",\"status\":\"stored\",\"ranges\":[[\"5\",\"1\"]]}",
                 "{\"v\":1,\"agent\":\"a\",\"epoch\":\"1\",\"batch\":\"1\",\"status\":\"odd\"}",
                 "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]"})
    CHECK_MESSAGE(!decode_ack(s), s);
  CHECK(decode_ack("{\"v\":2}").error() == errc::unsupported_version);
}

TEST_CASE("presence round trip") {
  presence p{true, "agent-1", 1'764'250'001'223'431'000, "0.1.0"};
  auto q = decode_presence(encode_presence(p));
  REQUIRE(q.has_value());
  CHECK(q->online);
  CHECK(q->id == "agent-1");
  CHECK(q->ts_ns == p.ts_ns);
  CHECK_FALSE(decode_presence("{\"state\":\"maybe\",\"id\":\"x\"}").has_value());
}
