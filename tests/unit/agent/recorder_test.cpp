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
  auto stamp = rec.stamp();
  auto ts = stamp.ts_ns;
  CHECK(stamp.quality == 0);
  rec.submit("smu1", stamp, rd, [&](boost::system::error_code ec, schemas::seq_range r) {
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

TEST_CASE("clock_watch flags wall-clock steps against the monotonic clock, not slewing") {
  std::int64_t wall = 1'764'250'000'000'000'000, mono = 5'000'000'000;
  agent::clock_watch cw([&] { return wall; }, [&] { return mono; });
  CHECK(cw.now().quality == 0);
  for (int i = 0; i < 100; ++i) {  // one poll a second, NTP slewing at 500 ppm
    mono += 1'000'000'000;
    wall += 1'000'500'000;
    CHECK(cw.now().quality == 0);
  }
  mono += 1'000'000'000;
  wall += 1'000'000'000 - 3'600'000'000'000;  // an hour backwards (a time zone mix-up corrected)
  auto t = cw.now();
  CHECK(t.quality == schemas::quality::clock_step);
  CHECK(t.step_ns == -3'600'000'000'000);
  mono += 1'000'000'000;
  wall += 1'000'000'000;
  CHECK(cw.now().quality == 0);  // flagged once, at the step
  CHECK(cw.steps() == 1);
}

TEST_CASE("a dead RTC gives flagged timestamps, never rejected ones") {
  std::int64_t wall = 86'400'000'000'000, mono = 1;  // 2 January 1970
  agent::clock_watch cw([&] { return wall; }, [&] { return mono; });
  CHECK(cw.now().quality == schemas::quality::bad_timestamp);
}

TEST_CASE("the recorder records a clock step as an event and flags the readings") {
  test::temp_dir d;
  std::string err;
  auto box = *sync::outbox::open({d.path() / "o.db", "agent-1", sync::durability::normal}, err);
  std::int64_t wall = 1'764'250'000'000'000'000, mono = 0;
  agent::recorder rec(*box, [&] { return wall; }, [&] { return mono; });
  std::vector<drivers::reading> rd{{"curr", "A", schemas::decimal{1, -3}, 0}};
  REQUIRE(box->enqueue_wait({}).has_value());
  (void)rec.stamp();
  mono += 1'000'000'000;
  wall += 5'000'000'000;  // +4 s step
  auto st = rec.stamp();
  std::promise<void> p;
  rec.submit("smu1", st, rd, [&](boost::system::error_code, schemas::seq_range) { p.set_value(); });
  p.get_future().wait();
  std::promise<std::vector<schemas::record>> q;
  box->read({}, 10, [&](boost::system::error_code, std::vector<schemas::record> v) { q.set_value(v); });
  auto got = q.get_future().get();
  REQUIRE(got.size() == 2);
  CHECK(got[0].channel == "clock_step");
  CHECK(std::get<std::int64_t>(got[0].val) == 4'000'000'000);
  CHECK((got[1].quality & schemas::quality::clock_step) != 0);
}
