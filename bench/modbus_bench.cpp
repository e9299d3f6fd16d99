// Modbus: polls/s through semilab's session as the agent's runner drives it (the worker runs the
// schedule, coalesced plan, decoding, every result handed to the strand) over a raw libmodbus
// loop sending the same requests, against the same simulated device (semilab-sim --model mfc, a
// libmodbus server) in the same run: modbus_poll_ratio (target >= 0.9). The requests on the
// wire are the same and strictly one at a time in both; what the session overlaps is its own
// hand-off to the strand with the next request. modbus_chained_poll_ratio: polls started one by
// one from the strand (async_poll), the hand-offs on the critical path. And the requests saved by coalescing on the shipped
// profiles, against one request per point: modbus_requests_saved_pct.
//   semilab-bench-modbus [--bin-dir build/bin] [--results build/bench/results.json] [--reps 5]
#include <semilab/drivers/modbus_link.hpp>
#include <semilab/drivers/modbus_plan.hpp>

#include "results.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <modbus/modbus.h>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace mb = semilab::drivers::modbus;
namespace asio = boost::asio;
using clk = std::chrono::steady_clock;

namespace {

// CPU time of this process (all its threads; the simulator is another process), for the
// per-poll CPU cost printed next to each repetition: unlike polls/s it hardly depends on how
// the scheduler places the threads on a shared machine.
double process_cpu_s() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

constexpr auto kRun = std::chrono::milliseconds(1500);

std::string cpu_text(double us) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", us);
  return b;
}

struct sim_process {
  pid_t pid = -1;
  std::string where;
  explicit sim_process(const std::string& bin) {
    int fds[2];
    if (::pipe(fds) != 0) return;
    pid = ::fork();
    if (pid == 0) {
      ::dup2(fds[1], 1);
      ::close(fds[0]);
      ::execl(bin.c_str(), bin.c_str(), "--model", "mfc", "--listen", "127.0.0.1:0", nullptr);
      std::_Exit(127);
    }
    ::close(fds[1]);
    std::string line;
    pollfd p{fds[0], POLLIN, 0};
    while (line.find('\n') == std::string::npos && ::poll(&p, 1, 10000) > 0) {
      char c[128];
      auto n = ::read(fds[0], c, sizeof c);
      if (n <= 0) break;
      line.append(c, static_cast<std::size_t>(n));
    }
    ::close(fds[0]);
    if (line.rfind("listening ", 0) == 0) where = line.substr(10, line.find('\n') - 10);
  }
  ~sim_process() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

// The same requests the planner makes, sent in a plain libmodbus loop.
double raw_polls_per_s(const std::string& host, int port, const std::vector<mb::read_request>& plan) {
  modbus_t* ctx = modbus_new_tcp(host.c_str(), port);
  modbus_set_slave(ctx, 1);
  if (modbus_connect(ctx) != 0) {
    modbus_free(ctx);
    return 0;
  }
  std::vector<std::uint16_t> regs(125);
  std::vector<std::uint8_t> bits(2000);
  long polls = 0;
  auto start = clk::now();
  while (clk::now() - start < kRun) {
    for (const auto& r : plan) {
      int n = 0;
      switch (r.tab) {
        case mb::table::coil: n = modbus_read_bits(ctx, r.start, r.count, bits.data()); break;
        case mb::table::discrete: n = modbus_read_input_bits(ctx, r.start, r.count, bits.data()); break;
        case mb::table::input: n = modbus_read_input_registers(ctx, r.start, r.count, regs.data()); break;
        case mb::table::holding: n = modbus_read_registers(ctx, r.start, r.count, regs.data()); break;
      }
      if (n != r.count) {
        modbus_close(ctx);
        modbus_free(ctx);
        return 0;
      }
    }
    ++polls;
  }
  double s = std::chrono::duration<double>(clk::now() - start).count();
  modbus_close(ctx);
  modbus_free(ctx);
  return static_cast<double>(polls) / s;
}

// Back-to-back polls through a session, the way the agent's Modbus runner polls: the session's
// worker runs the schedule (interval 0: always due, so every poll starts as soon as the previous
// one is read) and posts every result to the strand, where it is counted after checking every
// point. A poll counts only once its result reached the strand.
double session_polls_per_s(const std::string& uri, std::shared_ptr<const mb::device_map> map) {
  asio::io_context io;
  auto res = mb::parse_link_resource(uri);
  if (!res) return 0;
  mb::session s(asio::make_strand(io), *res, map, {.name = "bench"});
  long polls = 0;
  bool failed = false;
  clk::time_point start{}, end{};
  s.start_polling(0.0, [&](mb::poll_result r) {
    for (const auto& v : r.values)
      if (!v.v) failed = true;
    if (start == clk::time_point{}) {  // the first poll connects: start the clock after it
      start = clk::now();
      return;
    }
    if (end == clk::time_point{}) ++polls;
    if (failed || (end == clk::time_point{} && clk::now() - start >= kRun)) {
      end = clk::now();
      s.stop_polling();
      io.stop();
    }
  });
  // io.run() with a timer armed, as in the daemon: the io thread sleeps in the reactor and the
  // worker's posts wake it there.
  asio::steady_timer limit(io, kRun + std::chrono::seconds(3));
  limit.async_wait([&](boost::system::error_code ec) {
    if (!ec) io.stop();
  });
  auto guard = asio::make_work_guard(io);
  io.run();
  s.stop_polling();
  if (failed || end == clk::time_point{}) return 0;
  return static_cast<double>(polls) / std::chrono::duration<double>(end - start).count();
}

// The same, each poll started from the previous one's handler on the strand (async_poll): one
// worker hand-off and one strand hand-off per poll on the critical path. Reported for
// comparison (modbus_chained_poll_ratio); the runner does not poll this way.
double chained_polls_per_s(const std::string& uri, std::shared_ptr<const mb::device_map> map) {
  asio::io_context io;
  auto res = mb::parse_link_resource(uri);
  if (!res) return 0;
  mb::session s(asio::make_strand(io), *res, map, {.name = "bench"});
  long polls = 0;
  bool failed = false, done = false;
  clk::time_point start{}, end{};
  std::function<void(mb::poll_result)> next = [&](mb::poll_result r) {
    for (const auto& v : r.values)
      if (!v.v) failed = true;
    if (start == clk::time_point{}) start = clk::now();
    else ++polls;
    if (failed || clk::now() - start >= kRun) {
      end = clk::now();
      done = true;
      return;
    }
    s.async_poll({}, next);
  };
  auto guard = asio::make_work_guard(io);
  s.async_poll({}, next);
  auto limit = clk::now() + kRun + std::chrono::seconds(3);
  while (!done && clk::now() < limit) io.run_one_for(std::chrono::milliseconds(50));
  if (failed || !done) return 0;
  return static_cast<double>(polls) / std::chrono::duration<double>(end - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  semilab::bench::args a(argc, argv);
  ::signal(SIGPIPE, SIG_IGN);
  auto map = mb::load_profile("mfc");
  if (!map) {
    std::fprintf(stderr, "%s\n", map.error().message.c_str());
    return 1;
  }
  auto shared = std::make_shared<const mb::device_map>(std::move(*map));
  auto plan = mb::plan_reads(*shared);
  sim_process sim(a.bin_dir + "/semilab-sim");
  if (sim.where.empty()) {
    std::fprintf(stderr, "semilab-sim did not start from %s\n", a.bin_dir.c_str());
    return 1;
  }
  auto colon = sim.where.rfind(':');
  std::string host = sim.where.substr(0, colon);
  int port = std::stoi(sim.where.substr(colon + 1));
  std::string uri = "modbus-tcp://" + sim.where + "?unit=1";

  // SEMILAB_BENCH_ONLY=raw|session|chained runs one path only (for perf record); no figures.
  const char* only = std::getenv("SEMILAB_BENCH_ONLY");
  if (only) {
    for (int i = 0; i < a.reps; ++i) {
      std::string o = only;
      double r = o == "raw" ? raw_polls_per_s(host, port, plan)
                 : o == "session" ? session_polls_per_s(uri, shared)
                                  : chained_polls_per_s(uri, shared);
      std::fprintf(stderr, "%s: %.0f polls/s\n", only, r);
    }
    return 0;
  }
  std::vector<double> raw, ours, chained;
  std::vector<double> raw_cpu, ours_cpu;  // CPU us per poll of this process (the sim excluded)
  for (int i = 0; i < a.reps; ++i) {  // interleaved, so load drift hits all alike
    // CPU us per poll: approximate (the run's length is about kRun in every case).
    auto timed = [](auto&& f, double& cpu_us) {
      double c0 = process_cpu_s();
      double rate = f();
      cpu_us = rate > 0 ? (process_cpu_s() - c0) * 1e6 / (rate * std::chrono::duration<double>(kRun).count()) : 0;
      return rate;
    };
    double c_raw = 0, c_ours = 0, c_chained = 0;
    raw.push_back(timed([&] { return raw_polls_per_s(host, port, plan); }, c_raw));
    ours.push_back(timed([&] { return session_polls_per_s(uri, shared); }, c_ours));
    chained.push_back(timed([&] { return chained_polls_per_s(uri, shared); }, c_chained));
    std::fprintf(stderr,
                 "rep %d: raw %.0f, session %.0f (%.3f), chained %.0f (%.3f) polls/s; "
                 "CPU/poll raw %.1f, session %.1f, chained %.1f us\n",
                 i, raw.back(), ours.back(), raw.back() > 0 ? ours.back() / raw.back() : 0.0,
                 chained.back(), raw.back() > 0 ? chained.back() / raw.back() : 0.0, c_raw, c_ours,
                 c_chained);
    raw_cpu.push_back(c_raw);
    ours_cpu.push_back(c_ours);
  }
  double raw_m = semilab::bench::median(raw), ours_m = semilab::bench::median(ours);
  double chained_m = semilab::bench::median(chained);
  // The figure is the median of the per-repetition ratios: each repetition runs raw, session and
  // chained back to back, so the ratio of one repetition compares runs under the same load (the
  // machine is shared; a ratio of medians would pair a calm raw run with a loaded session run).
  std::vector<double> ratio, chained_ratio;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    ratio.push_back(raw[i] > 0 ? ours[i] / raw[i] : 0);
    chained_ratio.push_back(raw[i] > 0 ? chained[i] / raw[i] : 0);
  }
  const double ratio_m = semilab::bench::median(ratio);
  const double chained_ratio_m = semilab::bench::median(chained_ratio);
  if (raw_m <= 0 || ours_m <= 0 || chained_m <= 0) {
    std::fprintf(stderr, "a poll failed (raw %.1f/s, session %.1f/s, chained %.1f/s)\n", raw_m,
                 ours_m, chained_m);
    return 1;
  }

  std::size_t planned = 0, naive = 0;
  for (const char* name : {"eurotherm3200", "vacuum-gauge", "mfc"}) {
    auto m = mb::load_profile(name);
    if (!m) {
      std::fprintf(stderr, "%s\n", m.error().message.c_str());
      return 1;
    }
    planned += mb::plan_reads(*m).size();
    naive += mb::naive_request_count(*m);
  }
  double saved = 100.0 * (1.0 - static_cast<double>(planned) / static_cast<double>(naive));

  semilab::bench::publish(
      a.results,
      {{"modbus_poll_ratio", ratio_m, "x raw", 1.0,
        "raw libmodbus loop = 1, median of " + std::to_string(raw.size()) +
            " paired repetitions: session " + std::to_string(static_cast<long>(ours_m)) +
            " polls/s, raw " + std::to_string(static_cast<long>(raw_m)) + " polls/s (medians; mfc, " +
            std::to_string(plan.size()) + " requests/poll, same simulator; target >= 0.9); CPU per "
            "poll of the client process (medians) raw " + cpu_text(semilab::bench::median(raw_cpu)) +
            " us, session " + cpu_text(semilab::bench::median(ours_cpu)) + " us"},
       {"modbus_chained_poll_ratio", chained_ratio_m, "x raw", 1.0,
        "raw libmodbus loop = 1: each poll started from the previous result's handler (two "
        "thread hand-offs per poll on the critical path), " +
            std::to_string(static_cast<long>(chained_m)) + " polls/s"},
       {"modbus_requests_saved_pct", saved, "%", 0.0,
        "one request per point saves 0 %: " + std::to_string(naive) + " requests -> " +
            std::to_string(planned) + " over the shipped profiles"}});
  return 0;
}
