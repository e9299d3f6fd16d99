// scpi_query_ratio: queries/s issued as a recipe issues them (an asynchronous chain on the
// instrument's strand, through scpi_session, on a one-thread io_context as in the agent) over a
// raw blocking-socket loop (write, read to LF) against the same simulator in the same run. Every
// query is a nonce echo (:SYST:NONC? <i>) and every reply is checked, so the figure also proves
// no reply was crossed (10 000 per --reps and placement). Rounds are short and alternate between
// the two loops (5 rounds per --reps); the ratio is the median of the per-round ratios, so load
// from other processes on a shared machine hits both alike.
// Placement: the headline pins client and simulator to one CPU: on a small shared VM,
// cross-core wake-ups otherwise dominate and swing either loop by 2x from run to run
// (traps.md, physical-limits.md); on one core both loops pay the same hand-off. The same rounds
// with the simulator on the other CPU are reported as scpi_query_ratio_cross_core.
// scpi_block_ratio: bytes/s of 1 MB definite blocks (:SYST:BLOC?) through the session's
// block-aware framing over the same raw loop (which reads the header, then exactly the data).
// The simulator runs in-process on its own thread, as a separate instrument would.
//   semilab-bench-scpi [--results FILE] [--reps N]
//   SEMILAB_BENCH_ONLY=raw|session: one query loop only, same CPU (for perf); no figures.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <semilab/drivers/scpi_reply.hpp>
#include <semilab/drivers/scpi_session.hpp>
#include <semilab/sim/server.hpp>
#include <string>
#include <thread>
#include <vector>

#include "results.hpp"

namespace asio = boost::asio;
using namespace semilab;
using boost::system::error_code;

namespace {

constexpr int kQueries = 2'000;  // per round; rounds alternate raw / session
constexpr std::size_t kBlockBytes = 1 << 20;
constexpr int kBlocks = 8;  // per round

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// CPU time of this process (client and in-process simulator), for the CPU cost per query printed
// next to each round: on one CPU the ping-pong is CPU-bound, and unlike queries/s the CPU per
// query hardly depends on what else the shared machine runs.
double process_cpu_s() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}
double g_cpu_s = 0;  // CPU seconds of the last timed loop

// Raw loop: one blocking socket, TCP_NODELAY, whole-message writes.
class raw_client {
 public:
  explicit raw_client(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      std::fprintf(stderr, "raw loop: cannot connect to 127.0.0.1:%u\n", unsigned{port});
      std::exit(1);
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~raw_client() { ::close(fd_); }
  void send(const std::string& s) {
    std::size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) fail("send");
      off += static_cast<std::size_t>(n);
    }
  }
  // Reads up to and including LF; returns the line without it.
  std::string line() {
    for (;;) {
      auto nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string out = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return out;
      }
      fill();
    }
  }
  // Reads "#<n><len>", then exactly len bytes and the LF; returns len.
  std::size_t block() {
    while (buf_.size() < 2) fill();
    auto n = static_cast<std::size_t>(buf_[1] - '0');
    while (buf_.size() < 2 + n) fill();
    std::size_t len = std::stoul(buf_.substr(2, n));
    std::size_t need = 2 + n + len + 1;
    while (buf_.size() < need) fill();
    buf_.erase(0, need);
    return len;
  }

 private:
  void fill() {
    char tmp[65536];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) fail("recv");
    buf_.append(tmp, static_cast<std::size_t>(n));
  }
  [[noreturn]] static void fail(const char* what) {
    std::fprintf(stderr, "raw loop: %s failed\n", what);
    std::exit(1);
  }
  int fd_ = -1;
  std::string buf_;
};

double raw_queries(std::uint16_t port) {
  raw_client c(port);
  auto t0 = clock_type::now();
  double c0 = process_cpu_s();
  for (int i = 0; i < kQueries; ++i) {
    std::string token = std::to_string(i);
    c.send(":SYST:NONC? " + token + "\n");
    if (c.line() != token) {
      std::fprintf(stderr, "raw loop: crossed reply at %d\n", i);
      std::exit(1);
    }
  }
  double rate = kQueries / seconds_since(t0);
  g_cpu_s = process_cpu_s() - c0;
  return rate;
}

double raw_blocks(std::uint16_t port) {
  raw_client c(port);
  std::string cmd = ":SYST:BLOC? " + std::to_string(kBlockBytes) + "\n";
  std::size_t bytes = 0;
  auto t0 = clock_type::now();
  for (int i = 0; i < kBlocks; ++i) {
    c.send(cmd);
    bytes += c.block();
  }
  return static_cast<double>(bytes) / seconds_since(t0);
}

// The recipe way: each query issued from the previous one's completion handler, on the strand.
double session_run(std::uint16_t port, bool blocks) {
  asio::io_context io(1);  // as the agent's daemon runs its instruments: one thread
  auto strand = asio::make_strand(io);
  drivers::scpi_session::options opt;
  opt.max_reply_bytes = 2 * kBlockBytes;
  drivers::scpi_session s(strand, drivers::tcp_socket_resource{0, "127.0.0.1", port}, opt);
  int done = 0;
  std::size_t bytes = 0;
  bool failed = false;
  // Connect outside the timed part, as the raw loop does.
  s.async_query("*OPC?", [&](error_code ec, std::string) { failed = failed || ec; });
  io.run();
  io.restart();
  const int total = blocks ? kBlocks : kQueries;
  const std::string block_cmd = ":SYST:BLOC? " + std::to_string(kBlockBytes);
  std::function<void()> next = [&] {
    std::string token = std::to_string(done);
    s.async_query(blocks ? block_cmd : ":SYST:NONC? " + token,
                  [&, token](error_code ec, std::string reply) {
                    if (ec) {
                      failed = true;
                      return;
                    }
                    if (blocks) {
                      auto data = drivers::parse_block(reply);
                      if (!data)
                        failed = true;
                      else
                        bytes += data->size();
                    } else if (reply != token) {
                      std::fprintf(stderr, "session: crossed reply at %d\n", done);
                      failed = true;
                      return;
                    }
                    if (++done < total) next();
                  });
  };
  auto t0 = clock_type::now();
  double c0 = process_cpu_s();
  asio::post(strand, next);
  io.run();
  double dt = seconds_since(t0);
  g_cpu_s = process_cpu_s() - c0;
  if (failed || done != total) {
    std::fprintf(stderr, "session run failed after %d operations\n", done);
    std::exit(1);
  }
  return blocks ? static_cast<double>(bytes) / dt : total / dt;
}

std::string fixed2(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", v);
  return b;
}

// Pins thread t to one CPU (threads it creates later inherit the pinning).
bool pin(pthread_t t, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(t, sizeof set, &set) == 0;
}

struct query_figures {
  std::vector<double> raw, session, ratio;  // per round; ratio pairs the two runs of a round
  std::vector<double> raw_cpu_us, session_cpu_us;  // CPU per query (client + simulator)
};

// Alternating rounds (raw, session, raw, session, ...): drift in the machine's load hits both
// loops alike, and each round's ratio compares two runs made back to back.
query_figures query_rounds(std::uint16_t port, int rounds) {
  query_figures f;
  for (int round = 0; round < rounds; ++round) {
    f.raw.push_back(raw_queries(port));
    f.raw_cpu_us.push_back(g_cpu_s * 1e6 / kQueries);
    f.session.push_back(session_run(port, false));
    f.session_cpu_us.push_back(g_cpu_s * 1e6 / kQueries);
    f.ratio.push_back(f.session.back() / f.raw.back());
  }
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  bench::args a(argc, argv);
  const int home = sched_getcpu() < 0 ? 0 : sched_getcpu();
  const int ncpu = static_cast<int>(std::thread::hardware_concurrency());
  const int other = ncpu > 1 ? (home + 1) % ncpu : -1;
  if (!pin(pthread_self(), home)) std::fprintf(stderr, "cannot pin to one CPU\n");
  asio::io_context sim_io(1);
  sim::sim_server server(sim_io, sim::make_sim_instrument("keithley2450", 1),
                         asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  server.start();
  std::thread sim_thread([&] { sim_io.run(); });  // inherits the pinning: same CPU as the client
  auto port = server.local_endpoint().port();

  // SEMILAB_BENCH_ONLY=raw|session runs one query loop only (for perf record); no figures.
  if (const char* only = std::getenv("SEMILAB_BENCH_ONLY")) {
    for (int i = 0; i < 5 * a.reps; ++i) {
      double r = std::string(only) == "raw" ? raw_queries(port) : session_run(port, false);
      std::fprintf(stderr, "%s: %.0f queries/s, CPU/query %.2f us\n", only, r,
                   g_cpu_s * 1e6 / kQueries);
    }
    server.stop();
    sim_thread.join();
    return 0;
  }

  // Same CPU (the headline): no cross-core wake-up, so the figure shows what each loop costs
  // rather than how the scheduler placed two threads (physical-limits.md: the cross-vCPU
  // ping-pong adds ~50 us per round trip on this VM and swings either loop by 2x).
  auto same = query_rounds(port, 5 * a.reps);
  std::vector<double> b_session, b_raw;
  for (int round = 0; round < 5 * a.reps; ++round) {
    b_raw.push_back(raw_blocks(port));
    b_session.push_back(session_run(port, true));
  }
  // Client and simulator on two CPUs: each query pays two cross-core wake-ups, which both
  // loops pay alike, so the ratio is closer to 1 and noisier.
  query_figures cross;
  if (other >= 0 && pin(sim_thread.native_handle(), other)) cross = query_rounds(port, 5 * a.reps);
  server.stop();
  sim_thread.join();

  for (std::size_t i = 0; i < same.ratio.size(); ++i)
    std::fprintf(stderr,
                 "round %zu same CPU: raw %.0f, session %.0f queries/s (%.3f), CPU/query raw "
                 "%.2f, session %.2f us%s\n",
                 i, same.raw[i], same.session[i], same.ratio[i], same.raw_cpu_us[i],
                 same.session_cpu_us[i],
                 i < cross.ratio.size()
                     ? (", two CPUs: raw " + std::to_string(static_cast<long>(cross.raw[i])) +
                        ", session " + std::to_string(static_cast<long>(cross.session[i])) + " (" +
                        std::to_string(cross.ratio[i]).substr(0, 5) + ")")
                           .c_str()
                     : "");
  std::vector<bench::figure> figs{
      {"scpi_query_ratio", bench::median(same.ratio), "x raw", 1.0,
       "raw blocking-socket loop = 1, client and simulator on one CPU; median of " +
           std::to_string(same.ratio.size()) +
           " paired alternating rounds of 2000 nonce queries, 0 crossed: session " +
           std::to_string(static_cast<long>(bench::median(same.session))) + " queries/s, raw " +
           std::to_string(static_cast<long>(bench::median(same.raw))) +
           " queries/s; CPU per query (client + simulator, medians) raw " +
           fixed2(bench::median(same.raw_cpu_us)) + " us, session " +
           fixed2(bench::median(same.session_cpu_us)) + " us (target >= 0.9)"},
      {"scpi_block_ratio", bench::median(b_session) / 1e6, "MB/s", bench::median(b_raw) / 1e6,
       "raw blocking-socket loop reading 1 MiB definite blocks, same simulator"}};
  if (!cross.ratio.empty())
    figs.push_back({"scpi_query_ratio_cross_core", bench::median(cross.ratio), "x raw", 1.0,
                    "as scpi_query_ratio with client and simulator on two CPUs: session " +
                        std::to_string(static_cast<long>(bench::median(cross.session))) +
                        " queries/s, raw " +
                        std::to_string(static_cast<long>(bench::median(cross.raw))) +
                        " queries/s; cross-core wake-ups dominate both loops"});
  bench::publish(a.results, figs);
  return 0;
}
