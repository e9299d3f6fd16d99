// Disk quota of the outbox: a policy per priority class, every pause and drop counted per reason,
// persisted and announced by a drop notice stored in the same transaction; at every step
// produced = acked + held + dropped, and every seq a caller was told is stored is either still
// held, acked, or listed by a drop notice.
#include <semilab/schemas/drop_notice.hpp>
#include <semilab/sync/outbox.hpp>

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <future>
#include <random>
#include <set>

#include "support/processes.hpp"

using namespace semilab;
using schemas::record;
using schemas::record_class;

namespace {

std::vector<record> make(std::size_t n, record_class c = record_class::telemetry,
                         std::int64_t t0 = 1'700'000'000'000'000'000) {
  std::vector<record> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    v[i].cls = c;
    v[i].ts_ns = t0 + static_cast<std::int64_t>(i);
    v[i].instrument = "smu1";
    v[i].channel = "curr";
    v[i].unit = "A";
    v[i].val = schemas::decimal{static_cast<std::int64_t>(i), -6};
  }
  return v;
}
// record_bytes() of the records above: 40 + "smu1" + "curr" + "A".
constexpr std::uint64_t kRec = 49;

struct enq_result {
  boost::system::error_code ec;
  schemas::seq_range r;
};
enq_result enqueue(sync::outbox& box, std::vector<record> recs) {
  std::promise<enq_result> p;
  box.enqueue(std::move(recs), [&](boost::system::error_code ec, schemas::seq_range r) {
    p.set_value({ec, r});
  });
  return p.get_future().get();
}

std::vector<record> read_all(sync::outbox& box) {
  std::promise<std::vector<record>> p;
  box.read(sync::class_cursors{}, 1'000'000,
           [&](boost::system::error_code ec, std::vector<record> r) {
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

std::vector<schemas::drop_notice> notices(const std::vector<record>& recs) {
  std::vector<schemas::drop_notice> out;
  for (auto& r : recs)
    if (schemas::is_drop_notice(r)) {
      auto n = schemas::decode_drop_notice(std::get<std::string>(r.val));
      REQUIRE(n.has_value());
      out.push_back(*n);
    }
  return out;
}

void check_invariant(const sync::outbox_counters& c) {
  CHECK(c.produced == c.acked + c.held + c.dropped);
}

std::uint64_t reason(const sync::outbox_counters& c, const std::string& k) {
  auto it = c.by_reason.find(k);
  return it == c.by_reason.end() ? 0 : it->second;
}

}  // namespace

TEST_CASE("drop notice JSON round trip; malformed notices are refused") {
  schemas::drop_notice n;
  n.action = schemas::drop_action::dropped;
  n.reason = "quota";
  n.cls = record_class::blob;
  n.store_epoch = 18'446'744'073'709'551'615ull;
  n.ranges = {{1, 10}, {12, 12}};
  n.records = 11;
  n.first_ts_ns = -5;
  n.last_ts_ns = 1'700'000'000'000'000'001;
  n.detail = "x";
  auto j = schemas::encode_drop_notice(n);
  CHECK(j.find("\"18446744073709551615\"") != std::string::npos);
  auto back = schemas::decode_drop_notice(j);
  REQUIRE(back.has_value());
  CHECK(back->action == n.action);
  CHECK(back->cls == n.cls);
  CHECK(back->store_epoch == n.store_epoch);
  CHECK(back->ranges == n.ranges);
  CHECK(back->records == 11);
  CHECK(back->first_ts_ns == -5);
  CHECK(back->last_ts_ns == n.last_ts_ns);
  auto rec = schemas::make_drop_notice_record(n, 5);
  CHECK(schemas::is_drop_notice(rec));
  CHECK(rec.cls == record_class::event);
  // The largest notice the outbox writes fits a text value.
  n.ranges.clear();
  for (std::uint64_t i = 0; i < schemas::kDropNoticeMaxRanges; ++i)
    n.ranges.push_back({UINT64_MAX / 2 + 2 * i, UINT64_MAX / 2 + 2 * i});
  n.detail = std::string(600, 'd');
  CHECK(schemas::encode_drop_notice(n).size() <= schemas::kMaxTextBytes);
  for (auto bad : {"", "{}", "[1]", R"({"v":2})",
                   R"({"v":1,"action":"nope","reason":"q","class":"event","epoch":"1","records":"1","ranges":[],"first_ts_ns":"0","last_ts_ns":"0"})",
                   R"({"v":1,"action":"dropped","reason":"q","class":"event","epoch":"1","records":"1","ranges":[["5","4"]],"first_ts_ns":"0","last_ts_ns":"0"})",
                   R"({"v":1,"action":"dropped","reason":"q","class":"event","epoch":"1","records":"1","ranges":[["1","4"],["3","9"]],"first_ts_ns":"0","last_ts_ns":"0"})",
                   R"({"v":1,"action":"dropped","reason":"q","class":"event","epoch":1,"records":"1","ranges":[],"first_ts_ns":"0","last_ts_ns":"0"})",
                   R"({"v":1,"action":"dropped","reason":"q","class":"event","epoch":"1","records":"1","ranges":[],"first_ts_ns":"0x","last_ts_ns":"0"})"})
    CHECK_MESSAGE(!schemas::decode_drop_notice(bad), bad);
}

TEST_CASE("quota, telemetry policy pause: intake refused and counted, nothing stored is lost") {
  test::temp_dir dir;
  std::string err;
  sync::outbox_options o{dir.path() / "o.db", "a", sync::durability::normal};
  o.quota.max_bytes = 100 * kRec;
  o.quota.reserve_bytes = 4000;
  auto box = *sync::outbox::open(o, err);
  auto a = enqueue(*box, make(100));
  REQUIRE_FALSE(a.ec);
  CHECK(a.r.count() == 100);
  // Full: the next telemetry is refused, with an error the caller sees.
  auto refused = enqueue(*box, make(3, record_class::telemetry, 1'800'000'000'000'000'000));
  CHECK(refused.ec);
  CHECK(refused.r.count() == 1);  // seq_range{} is 0..0: nothing stored
  CHECK(refused.r.first == 0);
  auto c = box->counters();
  CHECK(c.dropped == 0);
  CHECK(c.refused == 3);
  CHECK(reason(c, "refused.quota.telemetry") == 3);
  CHECK(reason(c, "notices") == 1);
  CHECK(c.paused_classes == (1u << 2));
  CHECK(c.produced == 101);  // 100 telemetry + the notice; refused records never got a seq
  check_invariant(c);
  bool alarm = false;
  for (auto& s : box->alarms()) alarm |= s.find("telemetry paused") != std::string::npos;
  CHECK(alarm);
  auto ns = notices(read_all(*box));
  REQUIRE(ns.size() == 1);
  CHECK(ns[0].action == schemas::drop_action::paused);
  CHECK(ns[0].cls == record_class::telemetry);
  CHECK(ns[0].records == 3);
  CHECK(ns[0].store_epoch == box->store_epoch());
  CHECK(ns[0].first_ts_ns == 1'800'000'000'000'000'000);
  // Events still go in (reserve), telemetry still does not.
  CHECK_FALSE(enqueue(*box, make(5, record_class::event)).ec);
  CHECK(enqueue(*box, make(1)).ec);
  // Central acks half: telemetry resumes, with a notice saying how many were refused.
  CHECK(ack_wait(*box, {{a.r.first, a.r.first + 49}}) == 50);
  auto resumed = enqueue(*box, make(10));
  CHECK_FALSE(resumed.ec);
  c = box->counters();
  CHECK(c.paused_classes == 0);
  check_invariant(c);
  ns = notices(read_all(*box));
  REQUIRE(ns.size() == 2);
  CHECK(ns[1].action == schemas::drop_action::resumed);
  CHECK(ns[1].records == 4);
  // Persisted: a reader without the writer sees the same counters per reason, and the held
  // bytes counter kept in every transaction equals the sum over the rows.
  auto live_bytes = c.held_bytes;
  box.reset();
  auto s = sync::outbox::read_status(o.path, err);
  REQUIRE(s.has_value());
  CHECK(s->held_bytes == live_bytes);
  {
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(o.path.c_str(), &h) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(h, "SELECT (SELECT SUM(bytes) FROM outbox), (SELECT value FROM"
                                  " counters WHERE name = 'held_bytes')", -1, &st, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    CHECK(sqlite3_column_int64(st, 0) == sqlite3_column_int64(st, 1));
    CHECK(static_cast<std::uint64_t>(sqlite3_column_int64(st, 0)) == live_bytes);
    sqlite3_finalize(st);
    sqlite3_close(h);
  }
  CHECK(s->refused == 4);
  CHECK(reason(*s, "refused.quota.telemetry") == 4);
  CHECK(reason(*s, "notices") == 2);
  check_invariant(*s);
}

TEST_CASE("quota, drop_oldest: oldest records evicted, every evicted seq named by a notice") {
  test::temp_dir dir;
  std::string err;
  sync::outbox_options o{dir.path() / "o.db", "a", sync::durability::normal};
  o.quota.max_bytes = 100 * kRec;
  o.quota.reserve_bytes = 8000;
  o.quota.telemetry = sync::full_policy::drop_oldest;
  auto box = *sync::outbox::open(o, err);
  std::set<std::uint64_t> stored;
  for (int i = 0; i < 30; ++i) {
    auto e = enqueue(*box, make(10));
    REQUIRE_FALSE(e.ec);  // never refused: room is made
    for (auto s = e.r.first; s <= e.r.last; ++s) stored.insert(s);
  }
  auto c = box->counters();
  CHECK(c.dropped > 0);
  CHECK(c.refused == 0);
  CHECK(c.dropped == reason(c, "dropped.quota.telemetry"));
  check_invariant(c);
  auto all = read_all(*box);
  std::uint64_t telemetry_bytes = 0;
  std::set<std::uint64_t> held;
  for (auto& r : all)
    if (r.cls == record_class::telemetry) {
      held.insert(r.seq);
      telemetry_bytes += kRec;
    }
  CHECK(telemetry_bytes <= o.quota.max_bytes);
  std::set<std::uint64_t> announced;
  std::uint64_t announced_n = 0;
  for (auto& n : notices(all)) {
    CHECK(n.action == schemas::drop_action::dropped);
    CHECK(n.reason == "quota");
    announced_n += n.records;
    for (auto& r : n.ranges)
      for (auto s = r.first; s <= r.last; ++s) CHECK(announced.insert(s).second);
  }
  CHECK(announced_n == c.dropped);
  // Every stored seq is held or announced as dropped, never both, never neither.
  for (auto s : stored) CHECK_MESSAGE((held.count(s) + announced.count(s)) == 1, s);
  // The oldest went first.
  CHECK(*announced.begin() == *stored.begin());
  CHECK(*held.rbegin() == *stored.rbegin());
}

TEST_CASE("quota: events are never dropped; they evict blobs, use the reserve, then pause") {
  test::temp_dir dir;
  std::string err;
  sync::outbox_options o{dir.path() / "o.db", "a", sync::durability::normal};
  o.quota.max_bytes = 20 * kRec;
  o.quota.reserve_bytes = 10 * kRec;
  auto box = *sync::outbox::open(o, err);  // telemetry: pause, blob: drop_oldest
  REQUIRE_FALSE(enqueue(*box, make(20, record_class::blob)).ec);
  // Events beyond the quota: blobs make room first.
  REQUIRE_FALSE(enqueue(*box, make(10, record_class::event)).ec);
  auto c = box->counters();
  CHECK(reason(c, "dropped.quota.blob") >= 10);
  CHECK(reason(c, "dropped.quota.event") == 0);
  check_invariant(c);
  // Until blobs are gone and the reserve is used up: then events are refused, never dropped.
  int refused_at = -1;
  for (int i = 0; i < 100 && refused_at < 0; ++i)
    if (enqueue(*box, make(1, record_class::event)).ec) refused_at = i;
  CHECK(refused_at >= 0);
  c = box->counters();
  CHECK(reason(c, "refused.quota.event") == 1);
  CHECK(reason(c, "dropped.quota.blob") == 20);
  CHECK(reason(c, "dropped.quota.event") == 0);
  CHECK(c.held_bytes <= o.quota.max_bytes + o.quota.reserve_bytes + 2000);  // + notices
  check_invariant(c);
}

TEST_CASE("quota under a random mix of classes and acks: the invariant at every step") {
  test::temp_dir dir;
  std::string err;
  sync::outbox_options o{dir.path() / "o.db", "a", sync::durability::normal};
  o.quota.max_bytes = 300 * kRec;
  o.quota.reserve_bytes = 100 * kRec;
  o.quota.telemetry = sync::full_policy::drop_oldest;
  auto box = *sync::outbox::open(o, err);
  std::mt19937 rng(42);
  std::set<std::uint64_t> stored, acked;
  std::vector<schemas::seq_range> ranges;
  std::uint64_t refused = 0;
  for (int step = 0; step < 300; ++step) {
    auto cls = static_cast<record_class>(rng() % 4);
    auto e = enqueue(*box, make(1 + rng() % 20, cls));
    if (e.ec) ++refused;
    if (e.r.first != 0)
      for (auto s = e.r.first; s <= e.r.last; ++s) stored.insert(s);
    if (e.r.first != 0) ranges.push_back(e.r);
    if (rng() % 4 == 0 && !ranges.empty()) {
      // Central acks what an earlier call stored (some of it may have been dropped meanwhile).
      auto r = ranges[rng() % ranges.size()];
      ack_wait(*box, {r});
      for (auto s = r.first; s <= r.last; ++s) acked.insert(s);
    }
    check_invariant(box->counters());
  }
  auto c = box->counters();
  CHECK(refused > 0);
  CHECK(c.refused > 0);  // the mix really hit the hard limit for some class
  CHECK(c.dropped > 0);
  auto all = read_all(*box);
  std::set<std::uint64_t> held, announced;
  for (auto& r : all) held.insert(r.seq);
  for (auto& n : notices(all))
    if (n.action == schemas::drop_action::dropped)
      for (auto& r : n.ranges)
        for (auto s = r.first; s <= r.last; ++s) announced.insert(s);
  // Every seq a caller was told is stored: still held, or deleted by an ack, or announced.
  for (auto s : stored) {
    bool ok = held.count(s) || announced.count(s) || acked.count(s);
    CHECK_MESSAGE(ok, "seq ", s, " vanished without a notice");
  }
  std::uint64_t dropped_announced = 0;
  for (auto& n : notices(all))
    if (n.action == schemas::drop_action::dropped) dropped_announced += n.records;
  CHECK(dropped_announced == c.dropped);
}

TEST_CASE("quota pressure evicts acked records of the retention window before any held record") {
  for (auto policy : {sync::full_policy::pause, sync::full_policy::drop_oldest}) {
    CAPTURE(static_cast<int>(policy));
    test::temp_dir dir;
    std::string err;
    sync::outbox_options o{dir.path() / "o.db", "a", sync::durability::normal};
    o.quota.max_bytes = 100 * kRec;
    o.quota.telemetry = policy;
    o.retention.max_age = std::chrono::hours(1);
    o.retention.max_bytes = 1u << 20;  // far above the quota: only the quota bounds it here
    auto box = *sync::outbox::open(o, err);
    auto a = enqueue(*box, make(100));
    REQUIRE_FALSE(a.ec);
    // Central acks 60: they move into the retention window and still count against the quota.
    CHECK(ack_wait(*box, {{a.r.first, a.r.first + 59}}) == 60);
    auto c = box->counters();
    CHECK(c.retained == 60);
    CHECK(c.held == 40);
    // 30 new records: room is made from the retention window, oldest first; nothing held is
    // paused, refused or dropped.
    auto b = enqueue(*box, make(30, record_class::telemetry, 1'800'000'000'000'000'000));
    CHECK_FALSE(b.ec);
    CHECK(b.r.count() == 30);
    c = box->counters();
    CHECK(c.dropped == 0);
    CHECK(c.refused == 0);
    CHECK(c.paused_classes == 0);
    CHECK(c.held == 70);
    CHECK(c.retained >= 20);  // evicted what was needed (in small chunks), not the whole window
    CHECK(c.retained <= 30);
    CHECK(reason(c, "evicted.quota.retained") == 60 - c.retained);
    CHECK(c.held_bytes + c.retained_bytes <= o.quota.max_bytes);
    check_invariant(c);
    // The oldest retained went first: the newest acked seq is still there for a replay.
    {
      std::promise<std::vector<record>> p;
      box->read_retained(a.r.first, a.r.first + 59, 100,
                         sync::outbox::read_epoch_done(
                             [&](boost::system::error_code, std::vector<record> r, std::uint64_t) {
                               p.set_value(std::move(r));
                             }));
      auto kept = p.get_future().get();
      REQUIRE(kept.size() == c.retained);
      CHECK(kept.back().seq == a.r.first + 59);
      CHECK(kept.front().seq == a.r.first + 60 - c.retained);
    }
    // More than the window can give: the window empties first, only then the class policy acts.
    auto more = enqueue(*box, make(60, record_class::telemetry, 1'900'000'000'000'000'000));
    c = box->counters();
    CHECK(c.retained == 0);
    CHECK(c.retained_bytes == 0);
    CHECK(reason(c, "evicted.quota.retained") == 60);
    if (policy == sync::full_policy::pause) {
      CHECK(more.ec);
      CHECK(c.refused > 0);
      CHECK(c.dropped == 0);
    } else {
      CHECK_FALSE(more.ec);
      CHECK(c.dropped > 0);
      CHECK(c.refused == 0);
    }
    check_invariant(c);
    // Persisted like every counter.
    box.reset();
    auto s = sync::outbox::read_status(o.path, err);
    REQUIRE(s.has_value());
    CHECK(s->retained == 0);
    CHECK(reason(*s, "evicted.quota.retained") == 60);
    check_invariant(*s);
  }
}
