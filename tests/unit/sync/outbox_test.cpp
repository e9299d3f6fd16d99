#include <semilab/schemas/drop_notice.hpp>
#include <semilab/sync/outbox.hpp>

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <algorithm>
#include <future>

#include "support/processes.hpp"

using namespace semilab;
using semilab::schemas::record;
using semilab::schemas::record_class;

namespace {

std::vector<record> make(std::size_t n, record_class c = record_class::telemetry) {
  std::vector<record> v;
  for (std::size_t i = 0; i < n; ++i) {
    record r;
    r.cls = c;
    r.ts_ns = 1'700'000'000'000'000'000 + static_cast<std::int64_t>(i);
    r.instrument = "smu1";
    r.channel = "curr";
    r.unit = "A";
    r.val = schemas::decimal{static_cast<std::int64_t>(1000 + i), -6};
    v.push_back(r);
  }
  return v;
}

std::vector<record> read_all(sync::outbox& box, sync::class_cursors after, std::size_t max) {
  std::promise<std::vector<record>> p;
  box.read(after, max, [&](boost::system::error_code ec, std::vector<record> r) {
    CHECK_FALSE(ec);
    p.set_value(std::move(r));
  });
  return p.get_future().get();
}

std::uint64_t ack_wait(sync::outbox& box, std::vector<schemas::seq_range> ranges) {
  std::promise<std::uint64_t> p;
  box.ack(std::move(ranges), [&](boost::system::error_code ec, std::uint64_t n) {
    CHECK_FALSE(ec);
    p.set_value(n);
  });
  return p.get_future().get();
}

}  // namespace

TEST_CASE("enqueue assigns increasing seqs; counters persist across reopen") {
  test::temp_dir dir;
  sync::outbox_options o{dir.path() / "outbox.db", "agent-1"};
  std::string err;
  std::uint64_t epoch = 0;
  {
    auto box = sync::outbox::open(o, err);
    REQUIRE_MESSAGE(box.has_value(), err);
    epoch = (*box)->store_epoch();
    CHECK(epoch != 0);
    auto a = (*box)->enqueue_wait(make(10));
    auto b = (*box)->enqueue_wait(make(5));
    REQUIRE(a.has_value());
    REQUIRE(b.has_value());
    CHECK(a->count() == 10);
    CHECK(b->first == a->last + 1);
    auto c = (*box)->counters();
    CHECK(c.produced == 15);
    CHECK(c.held == 15);
    CHECK(c.oldest_ts_ns == 1'700'000'000'000'000'000);
    CHECK(ack_wait(**box, {{a->first, a->last}}) == 10);
    CHECK(ack_wait(**box, {{a->first, a->last}}) == 0);  // an ack seen twice deletes nothing more
  }
  auto s = sync::outbox::read_status(o.path, err);
  REQUIRE(s.has_value());
  CHECK(s->produced == 15);
  CHECK(s->acked == 10);
  CHECK(s->held == 5);
  CHECK(s->produced == s->acked + s->held + s->dropped);
  auto box = sync::outbox::open(o, err);
  REQUIRE(box.has_value());
  CHECK((*box)->store_epoch() == epoch);
  CHECK((*box)->counters().held == 5);
  // seqs are never reused after deletes and reopen
  auto d = (*box)->enqueue_wait(make(1));
  CHECK(d->first == 16);
}

TEST_CASE("values of every kind survive the outbox exactly") {
  test::temp_dir dir;
  std::string err;
  auto box = *sync::outbox::open({dir.path() / "o.db", "a"}, err);
  auto recs = make(4, record_class::event);
  recs[0].val = 1.0 / 3.0;
  recs[1].val = std::int64_t{-9'007'199'254'740'993};  // not representable as a double
  recs[2].val = std::string("calibration due");
  recs[3].run_id = "run-7";
  recs[3].quality = schemas::quality::compliance;
  REQUIRE(box->enqueue_wait(recs).has_value());
  auto got = read_all(*box, {}, 100);
  REQUIRE(got.size() == 4);
  for (std::size_t i = 0; i < 4; ++i) {
    recs[i].seq = got[i].seq;
    CHECK(got[i] == recs[i]);
  }
}

TEST_CASE("reads serve the highest-priority class first, then in seq order") {
  test::temp_dir dir;
  std::string err;
  auto box = *sync::outbox::open({dir.path() / "o.db", "a"}, err);
  box->enqueue_wait(make(100, record_class::telemetry));
  box->enqueue_wait(make(3, record_class::event));
  auto got = read_all(*box, {}, 10);
  REQUIRE(got.size() == 10);
  int events = 0;
  for (auto& r : got) events += r.cls == record_class::event;
  CHECK(events == 3);  // the 3 newest records made it in ahead of older telemetry
  for (std::size_t i = 1; i < got.size(); ++i) CHECK(got[i - 1].seq < got[i].seq);
  sync::class_cursors cur{};
  cur[0] = 103;
  cur[2] = 7;
  auto rest = read_all(*box, cur, 1000);
  CHECK(rest.size() == 93);
  CHECK(rest.front().seq == 8);
}

TEST_CASE("an outbox of another agent is refused") {
  test::temp_dir dir;
  std::string err;
  { auto b = sync::outbox::open({dir.path() / "o.db", "agent-a"}, err); }
  auto b = sync::outbox::open({dir.path() / "o.db", "agent-b"}, err);
  CHECK_FALSE(b.has_value());
  CHECK(err.find("agent-a") != std::string::npos);
  CHECK_FALSE(sync::outbox::read_status(dir.path() / "missing.db", err).has_value());
}

namespace {
std::size_t count_prefix(const std::filesystem::path& dir, const std::string& prefix) {
  std::size_t n = 0;
  for (auto& e : std::filesystem::directory_iterator(dir))
    n += e.path().filename().string().rfind(prefix, 0) == 0;
  return n;
}
}  // namespace

TEST_CASE("a corrupt outbox is moved aside and replaced, never a crash loop") {
  test::temp_dir dir;
  std::string err;
  auto path = dir.path() / "o.db";
  std::uint64_t old_epoch = 0;
  SUBCASE("not a database at all") {
    std::ofstream(path) << std::string(8192, 'x');
  }
  SUBCASE("pages of a real outbox overwritten") {
    {
      auto box = *sync::outbox::open({path, "agent-a"}, err);
      old_epoch = box->store_epoch();
      for (int i = 0; i < 20; ++i) REQUIRE(box->enqueue_wait(make(200)).has_value());
    }
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096);  // page 2 onwards: tables and their b-trees
    std::string junk(16384, '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  auto box = sync::outbox::open({path, "agent-a"}, err);
  REQUIRE_MESSAGE(box.has_value(), err);
  CHECK_FALSE((*box)->replaced_reason().empty());
  CHECK((*box)->store_epoch() != old_epoch);
  CHECK(count_prefix(dir.path(), "o.db.corrupt-") >= 1);  // kept for forensics
  // The new outbox starts with an event that says what happened.
  // The new outbox starts with an event that says what happened and a drop notice of what the
  // old one held (as far as it can still be read).
  auto got = read_all(**box, {}, 10);
  REQUIRE(got.size() == 2);
  CHECK(got[0].cls == record_class::event);
  CHECK(got[0].channel == "outbox_replaced");
  CHECK(std::get<std::string>(got[0].val).find("corrupt-") != std::string::npos);
  REQUIRE(schemas::is_drop_notice(got[1]));
  auto n = schemas::decode_drop_notice(std::get<std::string>(got[1].val));
  REQUIRE(n.has_value());
  CHECK(n->action == schemas::drop_action::unrecoverable);
  CHECK(n->reason == "corrupt_outbox");
  CHECK(n->store_epoch != (*box)->store_epoch());
  bool alarm = false;
  for (auto& a : (*box)->alarms()) alarm |= a.find("outbox replaced") != std::string::npos;
  CHECK(alarm);
  // And it works.
  CHECK((*box)->enqueue_wait(make(3)).has_value());
  CHECK((*box)->counters().held == 5);
  CHECK((*box)->counters().by_reason.at("notices") == 1);
}

TEST_CASE("group commit: concurrent producers, every completion after its commit") {
  test::temp_dir dir;
  std::string err;
  auto box = *sync::outbox::open({dir.path() / "o.db", "a", sync::durability::normal}, err);
  std::atomic<int> done{0};
  std::vector<std::thread> producers;
  for (int t = 0; t < 4; ++t)
    producers.emplace_back([&] {
      for (int i = 0; i < 50; ++i)
        box->enqueue(make(20), [&](boost::system::error_code ec, schemas::seq_range r) {
          CHECK_FALSE(ec);
          CHECK(r.count() == 20);
          ++done;
        });
    });
  for (auto& p : producers) p.join();
  REQUIRE(test::wait_until([&] { return done == 200; }, std::chrono::seconds(20)));
  CHECK(box->counters().produced == 4000);
  CHECK(read_all(*box, {}, 10000).size() == 4000);
}

TEST_CASE("per-class read limits: a blob backlog gives at most its share of a batch") {
  test::temp_dir dir;
  std::string err;
  auto box = sync::outbox::open(sync::outbox_options{dir.path() / "outbox.db", "agent-1"}, err);
  REQUIRE_MESSAGE(box.has_value(), err);
  REQUIRE((*box)->enqueue_wait(make(100, record_class::blob)).has_value());
  REQUIRE((*box)->enqueue_wait(make(3, record_class::event)).has_value());
  REQUIRE((*box)->enqueue_wait(make(5, record_class::telemetry)).has_value());
  auto read_limited = [&](sync::class_cursors after, std::size_t blobs) {
    auto limits = sync::kNoClassLimits;
    limits[static_cast<std::size_t>(record_class::blob)] = blobs;
    std::promise<std::vector<record>> p;
    (*box)->read(after, 2000, limits,
                 sync::outbox::read_epoch_done([&](boost::system::error_code ec, std::vector<record> r, std::uint64_t) {
                   CHECK_FALSE(ec);
                   p.set_value(std::move(r));
                 }));
    return p.get_future().get();
  };
  auto count = [](const std::vector<record>& v, record_class c) {
    return std::count_if(v.begin(), v.end(), [c](const record& r) { return r.cls == c; });
  };
  auto r = read_limited({}, 8);
  CHECK(count(r, record_class::event) == 3);
  CHECK(count(r, record_class::telemetry) == 5);
  CHECK(count(r, record_class::blob) == 8);
  CHECK(r.front().seq == 1);  // in seq order: the oldest blob chunks first
  r = read_limited({}, 0);
  CHECK(r.size() == 8);
  CHECK(count(r, record_class::blob) == 0);
  sync::class_cursors after{};
  after[static_cast<std::size_t>(record_class::blob)] = 96;
  CHECK(read_limited(after, 8).size() == 3 + 5 + 4);
}
