#include <semilab/agent/recorder.hpp>

#include <doctest/doctest.h>

#include <future>

#include "support/processes.hpp"

using namespace semilab;

TEST_CASE("the recorder commits readings as telemetry records before completing") {
  test::temp_dir d;
  std::string err;
  auto box = sync::outbox::open({d.path() / "o.db", "agent-1", sync::durability::normal}, err);
  REQUIRE(box.has_value());
  agent::recorder rec(**box);
  std::vector<drivers::reading> rd{{"curr", "A", schemas::decimal{3978508, -13}, schemas::quality::compliance},
                                   {"volt", "V", schemas::decimal{600000, -6}, 0}};
  std::promise<schemas::seq_range> p;
  auto ts = agent::utc_now_ns();
  rec.submit("smu1", ts, rd, [&](boost::system::error_code ec, schemas::seq_range r) {
    CHECK_FALSE(ec);
    p.set_value(r);
  });
  auto r = p.get_future().get();
  CHECK(r.count() == 2);
  // Durable: a second, independent reader sees them at once.
  auto st = sync::outbox::read_status(d.path() / "o.db", err);
  REQUIRE(st.has_value());
  CHECK(st->produced == 2);
  CHECK(st->held == 2);
  std::promise<std::vector<schemas::record>> q;
  (*box)->read({}, 10, [&](boost::system::error_code, std::vector<schemas::record> v) { q.set_value(v); });
  auto got = q.get_future().get();
  REQUIRE(got.size() == 2);
  CHECK(got[0].cls == schemas::record_class::telemetry);
  CHECK(got[0].instrument == "smu1");
  CHECK(got[0].ts_ns == ts);
  CHECK(got[0].quality == schemas::quality::compliance);
  CHECK(std::get<schemas::decimal>(got[0].val).to_string() == "3.978508E-07");
  CHECK(got[1].unit == "V");
}
