// Durability of the outbox: a power cut simulated by a VFS shim that drops every write not yet
// synced (synchronous=FULL keeps every record the caller was told is stored; NORMAL may lose the
// writes since the last WAL sync), the background integrity check that replaces a corrupt outbox
// at run time, and the cheap header check at start.
#include <semilab/schemas/drop_notice.hpp>
#include <semilab/sync/outbox.hpp>

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <future>
#include <set>

#include "powercut_vfs.hpp"
#include "support/processes.hpp"

using namespace semilab;
using schemas::record;
using schemas::record_class;

namespace {

std::vector<record> make(std::size_t n) {
  std::vector<record> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    v[i].ts_ns = 1'700'000'000'000'000'000 + static_cast<std::int64_t>(i);
    v[i].instrument = "smu1";
    v[i].channel = "curr";
    v[i].unit = "A";
    v[i].val = schemas::decimal{static_cast<std::int64_t>(i), -6};
  }
  return v;
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

std::string integrity(const std::filesystem::path& db) {
  sqlite3* h = nullptr;
  sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* st = nullptr;
  std::string out;
  if (sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &st, nullptr) == SQLITE_OK)
    while (sqlite3_step(st) == SQLITE_ROW) out += reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  else
    out = sqlite3_errmsg(h);
  sqlite3_finalize(st);
  sqlite3_close(h);
  return out;
}

void exec(const std::filesystem::path& db, const char* sql) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
  sqlite3_busy_timeout(h, 5000);
  CHECK(sqlite3_exec(h, sql, nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(h);
}

struct cut_outcome {
  std::uint64_t told = 0;  // records the caller was told are stored
  std::uint64_t lost = 0;  // of those, missing after the reboot
  bool same_epoch = false;
};

// Writes batches until the power goes (at the `cut_sync`-th sync, or after `batches` batches
// when cut_sync is 0), reboots, and counts what survived of what the caller was told.
cut_outcome power_cut_round(sync::durability mode, int cut_sync, int batches) {
  test::temp_dir dir;
  auto& vfs = test::powercut_vfs::install();
  auto path = dir.path() / "o.db";
  std::string err;
  std::set<std::uint64_t> told;
  std::uint64_t epoch = 0;
  {
    sync::outbox_options o{path, "a", mode};
    o.integrity_interval = std::chrono::seconds(0);
    auto box = sync::outbox::open(o, err);
    REQUIRE_MESSAGE(box.has_value(), err);
    epoch = (*box)->store_epoch();
    if (cut_sync > 0) vfs.cut_before_sync(cut_sync);
    for (int i = 0; i < 400; ++i) {
      if (cut_sync == 0 && i == batches) vfs.cut();
      auto e = enqueue(**box, make(25));
      if (e.ec) break;  // the power went during this commit: not told "stored"
      for (auto s = e.r.first; s <= e.r.last; ++s) told.insert(s);
    }
    CHECK(vfs.dead());
  }  // the outbox closes against a dead disk
  vfs.restore();
  cut_outcome out;
  out.told = told.size();
  {
    sync::outbox_options o{path, "a", mode};
    auto box = sync::outbox::open(o, err);
    REQUIRE_MESSAGE(box.has_value(), err);  // never a crash loop after a power cut
    out.same_epoch = (*box)->store_epoch() == epoch;
    std::set<std::uint64_t> held;
    for (auto& r : read_all(**box)) held.insert(r.seq);
    for (auto s : told) out.lost += !held.count(s);
    auto c = (*box)->counters();
    CHECK(c.produced == c.acked + c.held + c.dropped);
    CHECK((*box)->replaced_reason().empty());  // consistent after the cut, not replaced
  }
  CHECK(integrity(path) == "ok");
  vfs.uninstall();
  return out;
}

}  // namespace

TEST_CASE("power cut with synchronous=FULL: every record the caller was told is stored survives") {
  std::uint64_t told_total = 0;
  for (int cut : {1, 2, 3, 5, 8, 13, 21, 34}) {
    auto r = power_cut_round(sync::durability::full, cut, 0);
    CAPTURE(cut);
    CHECK(r.lost == 0);
    if (r.told) CHECK(r.same_epoch);
    told_total += r.told;
  }
  // Cut between syncs too (not at a sync): still nothing lost.
  for (int batches : {1, 7, 30}) {
    auto r = power_cut_round(sync::durability::full, 0, batches);
    CHECK(r.told == static_cast<std::uint64_t>(batches) * 25);
    CHECK(r.lost == 0);
    CHECK(r.same_epoch);
  }
  CHECK(told_total > 1000);
}

TEST_CASE("power cut with synchronous=NORMAL: consistent, but commits since the last sync are lost") {
  // The control that makes the FULL test mean something: the shim really drops unsynced
  // writes. NORMAL syncs the WAL only at checkpoints (wal_autocheckpoint: 1000 pages), so the
  // commits since then are in the page cache only.
  auto r = power_cut_round(sync::durability::normal, 0, 40);
  MESSAGE("synchronous=NORMAL: ", r.lost, " of ", r.told, " records told stored were lost");
  CHECK(r.told == 1000);
  CHECK(r.lost > 0);
}

TEST_CASE("background integrity check: a corrupt outbox is replaced at run time, losses announced") {
  test::temp_dir dir;
  auto path = dir.path() / "o.db";
  std::string err;
  sync::outbox_options o{path, "a", sync::durability::normal};
  o.integrity_interval = std::chrono::seconds(0);  // on request only
  auto box = *sync::outbox::open(o, err);
  auto old_epoch = box->store_epoch();
  for (int i = 0; i < 20; ++i) REQUIRE(box->enqueue_wait(make(200)).has_value());
  // A healthy outbox passes the check and stays.
  box->request_integrity_check();
  REQUIRE(test::wait_until([&] { return box->counters().integrity_checks == 1; },
                           std::chrono::seconds(10)));
  CHECK(box->store_epoch() == old_epoch);
  // Damage the file behind the writer's back (pages in the b-trees of the outbox).
  exec(path, "PRAGMA wal_checkpoint(TRUNCATE)");
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096 * 8);
    std::string junk(4096 * 6, '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  box->request_integrity_check();
  auto replaced = [&] {
    for (auto& a : box->alarms())
      if (a.find("outbox replaced") != std::string::npos) return true;
    return false;
  };
  REQUIRE(test::wait_until(replaced, std::chrono::seconds(10)));
  CHECK(box->store_epoch() != old_epoch);
  auto got = read_all(*box);
  REQUIRE(got.size() == 2);
  CHECK(got[0].channel == "outbox_replaced");
  REQUIRE(schemas::is_drop_notice(got[1]));
  auto n = *schemas::decode_drop_notice(std::get<std::string>(got[1].val));
  CHECK(n.action == schemas::drop_action::unrecoverable);
  CHECK(n.store_epoch == old_epoch);
  CHECK(n.records == 4000);
  auto c = box->counters();
  CHECK(c.by_reason["unrecoverable.corrupt_outbox.all"] == 4000);
  CHECK(c.produced == c.acked + c.held + c.dropped);
  CHECK(c.held == 2);
  // Kept for forensics, and the new outbox works.
  bool kept = false;
  for (auto& e : std::filesystem::directory_iterator(dir.path()))
    kept |= e.path().filename().string().rfind("o.db.corrupt-", 0) == 0;
  CHECK(kept);
  CHECK(box->enqueue_wait(make(3)).has_value());
  CHECK(box->counters().held == 5);
}

TEST_CASE("the periodic integrity check runs on its own and leaves a healthy outbox alone") {
  test::temp_dir dir;
  std::string err;
  sync::outbox_options o{dir.path() / "o.db", "a", sync::durability::normal};
  o.integrity_interval = std::chrono::seconds(1);
  auto box = *sync::outbox::open(o, err);
  REQUIRE(box->enqueue_wait(make(100)).has_value());
  REQUIRE(test::wait_until([&] { return box->counters().integrity_checks >= 2; },
                           std::chrono::seconds(10)));
  CHECK(box->alarms().empty());
  CHECK(box->counters().held == 100);
}

TEST_CASE("start check: a truncated outbox file is found by its header and replaced") {
  test::temp_dir dir;
  auto path = dir.path() / "o.db";
  std::string err;
  std::uint64_t old_epoch = 0;
  {
    auto box = *sync::outbox::open({path, "a"}, err);
    old_epoch = box->store_epoch();
    for (int i = 0; i < 10; ++i) REQUIRE(box->enqueue_wait(make(200)).has_value());
  }
  exec(path, "PRAGMA wal_checkpoint(TRUNCATE)");
  auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size / 2);
  auto box = sync::outbox::open({path, "a"}, err);
  REQUIRE_MESSAGE(box.has_value(), err);
  CHECK((*box)->replaced_reason().find("truncated") != std::string::npos);
  CHECK((*box)->store_epoch() != old_epoch);
}
