// backlog_drain_s: a backlog of --records (1 M by default) telemetry records waits in the outbox
// (durability=full) when the sync engine starts; no bandwidth cap; a real mosquitto and a real
// semilab-central store durably and ack. The clock runs from engine start to the last central
// ack (outbox empty, every record acked). Baseline in the same run: the same backlog read and
// acked (deleted) locally through the outbox in batches of batch_max_records, no upload — the
// outbox's own drain ceiling.
#include <semilab/sync/engine.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <sqlite3.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <future>
#include <thread>

#include "proc_cpu.hpp"
#include "results.hpp"
#include "support/processes.hpp"

using namespace semilab;
namespace asio = boost::asio;
using clk = std::chrono::steady_clock;

namespace {

constexpr std::size_t kBatch = 2000;

// A backlog as the outbox writes it, filled through plain SQLite in large transactions.
void fill(const std::filesystem::path& p, std::int64_t records) {
  std::string err;
  {
    auto box = sync::outbox::open({p, "bench-agent", sync::durability::full}, err);
    if (!box) throw std::runtime_error(err);
  }
  sqlite3* db = nullptr;
  sqlite3_open(p.c_str(), &db);
  sqlite3_exec(db, "PRAGMA synchronous=OFF; BEGIN", nullptr, nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db,
                     "INSERT INTO outbox(class, ts_ns, instrument, channel, unit, quality, vkind,"
                     " vnum, vexp, bytes) VALUES(2,?,'smu1',?,'A',0,2,?,-13,52)",
                     -1, &st, nullptr);
  const char* ch[] = {"curr", "volt", "res", "temp"};
  for (std::int64_t n = 0; n < records; ++n) {
    sqlite3_bind_int64(st, 1, 1'764'250'001'000'000'000 + n * 2'500'000);
    sqlite3_bind_text(st, 2, ch[n % 4], -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, 3978508 + n % 997);
    sqlite3_step(st);
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  std::string c = "UPDATE counters SET value = value + " + std::to_string(records) +
                  " WHERE name = 'produced'; UPDATE counters SET value = value + " +
                  std::to_string(records * 52) + " WHERE name = 'held_bytes'; COMMIT;"
                  " PRAGMA wal_checkpoint(TRUNCATE)";
  sqlite3_exec(db, c.c_str(), nullptr, nullptr, nullptr);
  sqlite3_close(db);
}

double run_local(const std::filesystem::path& p, std::int64_t records) {
  fill(p, records);
  std::string err;
  auto box = sync::outbox::open({p, "bench-agent", sync::durability::full}, err);
  if (!box) throw std::runtime_error(err);
  const double cpu0 = bench::self_cpu_s();
  auto t = clk::now();
  sync::class_cursors cur{};
  for (;;) {
    std::promise<std::vector<schemas::record>> got;
    (*box)->read(cur, kBatch, [&](boost::system::error_code, std::vector<schemas::record> r) {
      got.set_value(std::move(r));
    });
    auto recs = got.get_future().get();
    if (recs.empty()) break;
    cur[2] = recs.back().seq;
    std::promise<void> acked;
    (*box)->ack({{recs.front().seq, recs.back().seq}},
                [&](boost::system::error_code, std::uint64_t) { acked.set_value(); });
    acked.get_future().wait();
  }
  double s = std::chrono::duration<double>(clk::now() - t).count();
  std::printf("local drain cpu s per 1M records: %.2f\n",
              (bench::self_cpu_s() - cpu0) * 1e6 / static_cast<double>(records));
  if ((*box)->counters().held != 0) throw std::runtime_error("local drain left records");
  return s;
}

double run_drain(const std::filesystem::path& dir, const std::filesystem::path& p,
                 const std::string& bin_dir, std::int64_t records, int rep) {
  fill(p, records);
  test::mosquitto broker(dir);
  auto cdir = dir / ("central-" + std::to_string(rep));
  std::filesystem::create_directories(cdir);
  auto conf = cdir / "central.toml";
  std::ofstream(conf) << "[central]\ninstance = \"bench-central\"\ndata_dir = \"" << cdir.string()
                      << "\"\n\n[mqtt]\nbroker = \"" << broker.url()
                      << "\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n";
  test::child central({bin_dir + "/semilab-central", "run", "--config", conf.string()},
                      cdir / "central.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  std::string err;
  auto box = sync::outbox::open({p, "bench-agent", sync::durability::full}, err);
  if (!box) throw std::runtime_error(err);
  asio::io_context io(1);
  sync::engine_options eo{.agent_id = "bench-agent", .site = "bench", .batch_max_records = kBatch,
                          .max_inflight_batches = 8, .ack_timeout = std::chrono::seconds(30),
                          .linger = std::chrono::milliseconds(5)};
  sync::engine eng(asio::make_strand(io), **box, eo, sync::mqtt_options{.broker_url = broker.url()});
  const double agent0 = bench::self_cpu_s(), broker0 = bench::proc_cpu_s(broker.pid()),
               central0 = bench::proc_cpu_s(central.pid());
  auto t = clk::now();
  if (eng.start()) throw std::runtime_error("engine start");
  std::thread th([&] {
    auto g = asio::make_work_guard(io);
    io.run();
  });
  bool ok = test::wait_until([&] { return (*box)->counters().held == 0; }, std::chrono::seconds(600));
  double s = std::chrono::duration<double>(clk::now() - t).count();
  // CPU seconds per million records of each process (robust on a loaded machine).
  const double per_m = 1e6 / static_cast<double>(records);
  std::printf("rep %d cpu s per 1M records: agent %.2f, broker %.2f, central %.2f\n", rep,
              (bench::self_cpu_s() - agent0) * per_m,
              (bench::proc_cpu_s(broker.pid()) - broker0) * per_m,
              (bench::proc_cpu_s(central.pid()) - central0) * per_m);
  auto acked = (*box)->counters().acked;
  eng.stop();
  io.stop();
  th.join();
  if (!ok || acked != static_cast<std::uint64_t>(records))
    throw std::runtime_error("backlog not drained; see " + (cdir / "central.log").string());
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  bench::args a(argc, argv);
  std::int64_t records = 1'000'000;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--records") == 0) records = std::stoll(argv[i + 1]);
  test::temp_dir dir;
  std::vector<double> drain, local;
  int reps = std::min(a.reps, 3);
  try {
    for (int i = 0; i < reps; ++i) {
      auto p = dir.path() / ("backlog-" + std::to_string(i) + ".db");
      local.push_back(run_local(dir.path() / ("local-" + std::to_string(i) + ".db"), records));
      drain.push_back(run_drain(dir.path(), p, a.bin_dir, records, i));
      std::printf("rep %d: drain %.2f s, local %.2f s\n", i, drain.back(), local.back());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "backlog drain bench failed: %s\n", e.what());
    return 1;
  }
  bench::publish(a.results,
                 {{"backlog_drain_s", bench::median(drain), "s", bench::median(local),
                   "same backlog read + acked locally through the outbox, no upload"}});
  return 0;
}
