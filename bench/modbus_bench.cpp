// Modbus: polls/s through semilab's session (worker thread + strand hand-off + coalescing
// planner + decoding) over a raw libmodbus loop sending the same requests, against the same
// simulated device (semilab-sim --model mfc, a libmodbus server) in the same run:
// modbus_poll_ratio (target >= 0.9). And the requests saved by coalescing on the shipped
// profiles, against one request per point: modbus_requests_saved_pct.
//   semilab-bench-modbus [--bin-dir build/bin] [--results build/bench/results.json] [--reps 5]
#include <semilab/drivers/modbus_link.hpp>
#include <semilab/drivers/modbus_plan.hpp>

#include "results.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <modbus/modbus.h>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace mb = semilab::drivers::modbus;
namespace asio = boost::asio;
using clk = std::chrono::steady_clock;

namespace {

constexpr auto kRun = std::chrono::milliseconds(1500);

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

// Back-to-back polls through a session: each starts from the previous one's handler (on the
// strand), as an instrument runner would when a poll is due.
double session_polls_per_s(const std::string& uri, std::shared_ptr<const mb::device_map> map) {
  asio::io_context io;
  auto res = mb::parse_link_resource(uri);
  if (!res) return 0;
  mb::session s(asio::make_strand(io), *res, map, {.name = "bench"});
  long polls = 0;
  bool failed = false;
  auto start = clk::now();
  std::function<void(mb::poll_result)> next = [&](mb::poll_result r) {
    for (const auto& v : r.values)
      if (!v.v) failed = true;
    ++polls;
    if (!failed && clk::now() - start < kRun) s.async_poll({}, next);
  };
  {
    auto guard = asio::make_work_guard(io);
    s.async_poll({}, next);
    while (!failed && clk::now() - start < kRun + std::chrono::seconds(2) &&
           (polls == 0 || clk::now() - start < kRun))
      io.run_one_for(std::chrono::milliseconds(50));
  }
  io.restart();
  io.run_for(std::chrono::seconds(2));  // let the last poll land
  if (failed) return 0;
  double secs = std::chrono::duration<double>(clk::now() - start).count();
  return static_cast<double>(polls) / secs;
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

  std::vector<double> raw, ours;
  for (int i = 0; i < a.reps; ++i) {  // interleaved, so load drift hits both alike
    raw.push_back(raw_polls_per_s(host, port, plan));
    ours.push_back(session_polls_per_s(uri, shared));
  }
  double raw_m = semilab::bench::median(raw), ours_m = semilab::bench::median(ours);
  if (raw_m <= 0 || ours_m <= 0) {
    std::fprintf(stderr, "a poll failed (raw %.1f/s, session %.1f/s)\n", raw_m, ours_m);
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
      {{"modbus_poll_ratio", ours_m / raw_m, "x raw", 1.0,
        "raw libmodbus loop = 1: session " + std::to_string(static_cast<long>(ours_m)) +
            " polls/s, raw " + std::to_string(static_cast<long>(raw_m)) + " polls/s (mfc, " +
            std::to_string(plan.size()) + " requests/poll, same simulator; target >= 0.9)"},
       {"modbus_requests_saved_pct", saved, "%", 0.0,
        "one request per point saves 0 %: " + std::to_string(naive) + " requests -> " +
            std::to_string(planned) + " over the shipped profiles"}});
  return 0;
}
