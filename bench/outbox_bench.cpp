// outbox_insert_ratio: records/s through the agent's durable enqueue path (outbox::enqueue,
// writer thread, group commit, counters) over plain SQLite inserts of the same rows, same batch
// size, same synchronous setting, same WAL mode. Median of --reps repetitions.
#include <semilab/sync/outbox.hpp>

#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "results.hpp"

using namespace semilab;
using clk = std::chrono::steady_clock;

namespace {

constexpr std::size_t kBatch = 100;
constexpr std::size_t kBatches = 2000;  // 200k records per repetition

std::vector<schemas::record> rows(std::size_t n, std::int64_t t0) {
  std::vector<schemas::record> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    v[i].ts_ns = t0 + static_cast<std::int64_t>(i) * 100'000'000;
    v[i].instrument = "smu1";
    v[i].channel = "curr";
    v[i].unit = "A";
    v[i].val = schemas::decimal{3978508 + static_cast<std::int64_t>(i % 97), -13};
  }
  return v;
}

std::filesystem::path fresh(const char* name) {
  auto p = std::filesystem::temp_directory_path() / name;
  for (auto ext : {"", "-wal", "-shm"}) std::filesystem::remove(p.string() + ext);
  return p;
}

double run_outbox() {
  auto p = fresh("semilab-bench-outbox.db");
  std::string err;
  auto box = sync::outbox::open({p, "bench-agent", sync::durability::full}, err);
  if (!box) throw std::runtime_error(err);
  auto t = clk::now();
  for (std::size_t b = 0; b < kBatches; ++b) {
    auto r = (*box)->enqueue_wait(rows(kBatch, static_cast<std::int64_t>(b)));
    if (!r) throw std::runtime_error("enqueue failed");
  }
  double s = std::chrono::duration<double>(clk::now() - t).count();
  return static_cast<double>(kBatch * kBatches) / s;
}

double run_plain() {
  auto p = fresh("semilab-bench-plain.db");
  sqlite3* db = nullptr;
  sqlite3_open(p.c_str(), &db);
  sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", nullptr, nullptr, nullptr);
  sqlite3_exec(db,
               "CREATE TABLE outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT, class INTEGER NOT NULL,"
               " ts_ns INTEGER NOT NULL, instrument TEXT NOT NULL, channel TEXT NOT NULL, unit TEXT"
               " NOT NULL, quality INTEGER NOT NULL DEFAULT 0, vkind INTEGER NOT NULL, vnum, vexp"
               " INTEGER, vtext TEXT, run_id TEXT, bytes INTEGER NOT NULL);"
               "CREATE INDEX outbox_class_seq ON outbox(class, seq);",
               nullptr, nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db,
                     "INSERT INTO outbox(class, ts_ns, instrument, channel, unit, quality, vkind,"
                     " vnum, vexp, vtext, run_id, bytes) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                     -1, &st, nullptr);
  auto t = clk::now();
  for (std::size_t b = 0; b < kBatches; ++b) {
    auto v = rows(kBatch, static_cast<std::int64_t>(b));  // same row construction cost
    sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    for (auto& r : v) {
      auto& d = std::get<schemas::decimal>(r.val);
      sqlite3_bind_int64(st, 1, 2);
      sqlite3_bind_int64(st, 2, r.ts_ns);
      sqlite3_bind_text(st, 3, r.instrument.c_str(), -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 4, r.channel.c_str(), -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 5, r.unit.c_str(), -1, SQLITE_STATIC);
      sqlite3_bind_int64(st, 6, 0);
      sqlite3_bind_int64(st, 7, 2);
      sqlite3_bind_int64(st, 8, d.mantissa);
      sqlite3_bind_int64(st, 9, d.exponent);
      sqlite3_bind_int64(st, 12, 49);
      sqlite3_step(st);
      sqlite3_reset(st);
    }
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  }
  double s = std::chrono::duration<double>(clk::now() - t).count();
  sqlite3_finalize(st);
  sqlite3_close(db);
  return static_cast<double>(kBatch * kBatches) / s;
}

}  // namespace

int main(int argc, char** argv) {
  bench::args a(argc, argv);
  std::vector<double> ob, plain;
  for (int i = 0; i < a.reps; ++i) {  // interleaved so both see the same machine noise
    plain.push_back(run_plain());
    ob.push_back(run_outbox());
  }
  bench::publish(a.results,
                 {{"outbox_insert_ratio", bench::median(ob), "records/s", bench::median(plain),
                   "plain SQLite inserts, 100 rows/txn, WAL, synchronous=FULL"}});
  return 0;
}
