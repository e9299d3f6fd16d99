// e2e_records_per_s: a synthetic producer enqueues through the agent's acquisition API
// (agent::recorder -> outbox, durability=full) as fast as it can; the sync engine uploads through
// a real mosquitto to a real semilab-central process, which stores durably and acks; the clock
// stops when central has acked every record (outbox empty). Baseline in the same run: the same
// producer into the same outbox with no upload (the local durable-write ceiling).
#include <semilab/agent/recorder.hpp>
#include <semilab/sync/engine.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "proc_cpu.hpp"
#include "results.hpp"
#include "support/processes.hpp"

using namespace semilab;
namespace asio = boost::asio;
using clk = std::chrono::steady_clock;

namespace {

constexpr std::size_t kRecords = 200'000;
constexpr std::size_t kChunk = 50;  // readings per submit, like a multi-channel poll
constexpr int kOutstanding = 64;

// Enqueues kRecords through the recorder, at most kOutstanding submits in flight.
void produce(agent::recorder& rec) {
  std::mutex mu;
  std::condition_variable cv;
  int outstanding = 0;
  std::vector<drivers::reading> rd(kChunk);
  for (std::size_t i = 0; i < kChunk; ++i)
    rd[i] = {"ch" + std::to_string(i), "A", schemas::decimal{3978508 + static_cast<std::int64_t>(i), -13}, 0};
  for (std::size_t n = 0; n < kRecords; n += kChunk) {
    {
      std::unique_lock lk(mu);
      cv.wait(lk, [&] { return outstanding < kOutstanding; });
      ++outstanding;
    }
    rec.submit("smu1", rec.stamp(), rd, [&](boost::system::error_code ec, schemas::seq_range) {
      if (ec) std::fprintf(stderr, "enqueue failed: %s\n", ec.message().c_str());
      std::lock_guard lk(mu);
      --outstanding;
      cv.notify_one();
    });
  }
  std::unique_lock lk(mu);
  cv.wait(lk, [&] { return outstanding == 0; });
}

double run_enqueue_only(const std::filesystem::path& dir) {
  std::string err;
  auto box = sync::outbox::open({dir / "baseline.db", "bench-agent", sync::durability::full}, err);
  if (!box) throw std::runtime_error(err);
  agent::recorder rec(**box);
  const double cpu0 = bench::self_cpu_s();
  auto t = clk::now();
  produce(rec);
  std::printf("enqueue only: cpu s per 1M records %.2f\n",
              (bench::self_cpu_s() - cpu0) * 1e6 / static_cast<double>(kRecords));
  return kRecords / std::chrono::duration<double>(clk::now() - t).count();
}

double run_e2e(const std::filesystem::path& dir, const std::string& bin_dir, int rep) {
  test::mosquitto broker(dir);
  auto cdir = dir / ("central-" + std::to_string(rep));
  std::filesystem::create_directories(cdir);
  auto conf = cdir / "central.toml";
  std::ofstream(conf) << "[central]\ninstance = \"bench-central\"\ndata_dir = \"" << cdir.string()
                      << "\"\n\n[mqtt]\nbroker = \"" << broker.url() << "\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n";
  test::child central({bin_dir + "/semilab-central", "run", "--config", conf.string()}, cdir / "central.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));

  std::string err;
  auto box = sync::outbox::open({dir / ("e2e-" + std::to_string(rep) + ".db"), "bench-agent",
                                 sync::durability::full}, err);
  if (!box) throw std::runtime_error(err);
  asio::io_context io(1);
  sync::engine_options eo{.agent_id = "bench-agent", .site = "bench", .batch_max_records = 2000,
                          .max_inflight_batches = 8, .ack_timeout = std::chrono::seconds(30),
                          .linger = std::chrono::milliseconds(5)};
  sync::engine eng(asio::make_strand(io), **box, eo, sync::mqtt_options{.broker_url = broker.url()});
  if (eng.start()) throw std::runtime_error("engine start");
  std::thread th([&] {
    auto g = asio::make_work_guard(io);
    io.run();
  });
  test::wait_until([&] { return eng.stats().broker_connected; }, std::chrono::seconds(10));
  agent::recorder rec(**box);
  const double agent0 = bench::self_cpu_s(), broker0 = bench::proc_cpu_s(broker.pid()),
               central0 = bench::proc_cpu_s(central.pid());
  auto t = clk::now();
  produce(rec);
  bool ok = test::wait_until([&] { return (*box)->counters().acked == kRecords; }, std::chrono::seconds(300));
  double s = std::chrono::duration<double>(clk::now() - t).count();
  const double per_m = 1e6 / static_cast<double>(kRecords);
  std::printf("rep %d: %.0f records/s; cpu s per 1M records: agent %.2f (producer included), "
              "broker %.2f, central %.2f\n", rep, kRecords / s, (bench::self_cpu_s() - agent0) * per_m,
              (bench::proc_cpu_s(broker.pid()) - broker0) * per_m,
              (bench::proc_cpu_s(central.pid()) - central0) * per_m);
  eng.stop();
  io.stop();
  th.join();
  if (!ok) throw std::runtime_error("not every record was acked; see " + (cdir / "central.log").string());
  return kRecords / s;
}

}  // namespace

int main(int argc, char** argv) {
  bench::args a(argc, argv);
  test::temp_dir dir;
  std::vector<double> e2e, base;
  int reps = std::min(a.reps, 3);  // each repetition moves 200k records through two processes
  try {
    for (int i = 0; i < reps; ++i) {
      base.push_back(run_enqueue_only(dir.path()));
      std::filesystem::remove(dir.path() / "baseline.db");
      e2e.push_back(run_e2e(dir.path(), a.bin_dir, i));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "e2e bench failed: %s\n", e.what());
    return 1;
  }
  bench::publish(a.results, {{"e2e_records_per_s", bench::median(e2e), "records/s", bench::median(base),
                              "same producer into the outbox alone (durability=full), no upload"}});
  return 0;
}
