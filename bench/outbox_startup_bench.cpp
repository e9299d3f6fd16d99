// outbox_startup_s: time from outbox::open() on an existing outbox of --gb GiB (file size; 1 by
// default) to the first batch read back, i.e. what a restarting agent waits before it can upload.
// The outbox is filled once per run through plain SQLite in large transactions (the schema and
// rows the outbox writes), then opened --reps times; the page cache is warm (dropping it would
// disturb everything else on the machine), so this is the CPU/IO of the start checks, counters
// and the first read. Baseline: a plain sqlite3_open + `SELECT COUNT(*)` of the same file.
#include <semilab/sync/outbox.hpp>

#include <sqlite3.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <string>

#include "results.hpp"

using namespace semilab;
using clk = std::chrono::steady_clock;

namespace {

void fill(const std::filesystem::path& p, double gib) {
  std::string err;
  {
    auto box = sync::outbox::open({p, "bench-agent", sync::durability::normal}, err);
    if (!box) throw std::runtime_error(err);
  }
  sqlite3* db = nullptr;
  sqlite3_open(p.c_str(), &db);
  sqlite3_exec(db, "PRAGMA synchronous=OFF", nullptr, nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db,
                     "INSERT INTO outbox(class, ts_ns, instrument, channel, unit, quality, vkind,"
                     " vnum, vexp, bytes) VALUES(2,?,'smu1','curr','A',0,2,?,-13,49)",
                     -1, &st, nullptr);
  const auto target = static_cast<std::uintmax_t>(gib * 1024 * 1024 * 1024);
  std::int64_t n = 0;
  for (;;) {
    sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
    for (int i = 0; i < 200'000; ++i, ++n) {
      sqlite3_bind_int64(st, 1, 1'764'250'001'000'000'000 + n * 100'000'000);
      sqlite3_bind_int64(st, 2, 3978508 + n % 97);
      sqlite3_step(st);
      sqlite3_reset(st);
    }
    std::string c = "UPDATE counters SET value = value + 200000 WHERE name = 'produced';"
                    " UPDATE counters SET value = value + 200000 * 49 WHERE name = 'held_bytes'";
    sqlite3_exec(db, c.c_str(), nullptr, nullptr, nullptr);
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
    if (std::filesystem::file_size(p) >= target) break;
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  std::printf("outbox of %.2f GiB, %lld records\n",
              static_cast<double>(std::filesystem::file_size(p)) / (1 << 30),
              static_cast<long long>(n));
}

double open_and_read(const std::filesystem::path& p) {
  std::string err;
  auto t = clk::now();
  sync::outbox_options o{p, "bench-agent", sync::durability::full};
  o.quota.max_bytes = 4ull << 30;
  auto box = sync::outbox::open(o, err);
  if (!box) throw std::runtime_error(err);
  std::promise<std::size_t> got;
  (*box)->read(sync::class_cursors{}, 2000,
               [&](boost::system::error_code, std::vector<schemas::record> r) { got.set_value(r.size()); });
  if (got.get_future().get() != 2000) throw std::runtime_error("first read came back short");
  return std::chrono::duration<double>(clk::now() - t).count();
}

double plain_count(const std::filesystem::path& p) {
  auto t = clk::now();
  sqlite3* db = nullptr;
  sqlite3_open_v2(p.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_exec(db, "SELECT COUNT(*) FROM outbox", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  return std::chrono::duration<double>(clk::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  bench::args a(argc, argv);
  double gib = 1.0;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--gb") == 0) gib = std::stod(argv[i + 1]);
  auto p = std::filesystem::temp_directory_path() / "semilab-bench-startup.db";
  for (auto ext : {"", "-wal", "-shm"}) std::filesystem::remove(p.string() + ext);
  fill(p, gib);
  std::vector<double> ob, plain;
  for (int i = 0; i < a.reps; ++i) {
    plain.push_back(plain_count(p));
    ob.push_back(open_and_read(p));
  }
  for (auto ext : {"", "-wal", "-shm"}) std::filesystem::remove(p.string() + ext);
  bench::publish(a.results, {{"outbox_startup_s", bench::median(ob), "s", bench::median(plain),
                              "sqlite3_open + SELECT COUNT(*) of the same file, warm cache"}});
  return 0;
}
