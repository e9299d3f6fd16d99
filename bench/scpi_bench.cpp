// scpi_query_ratio: queries/s issued as a recipe issues them (an asynchronous chain on the
// instrument's strand, through scpi_session) over a raw blocking-socket loop (write, read to LF)
// against the same simulator in the same run. Every query is a nonce echo (:SYST:NONC? <i>) and
// every reply is checked, so the figure also proves no reply was crossed (10 000 per --reps).
// Rounds are short and alternate between the two loops (5 rounds per --reps), and the figures
// are medians, so load from other processes on a shared machine hits both alike.
// scpi_block_ratio: bytes/s of 1 MB definite blocks (:SYST:BLOC?) through the session's
// block-aware framing over the same raw loop (which reads the header, then exactly the data).
// The simulator runs in-process on its own thread, as a separate instrument would. Both threads
// are pinned to one CPU: on a small shared VM, cross-core wake-ups otherwise dominate and swing
// either loop by 2x from run to run (traps.md); on one core both loops pay the same hand-off.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstdio>
#include <functional>
#include <semilab/drivers/scpi_reply.hpp>
#include <semilab/drivers/scpi_session.hpp>
#include <semilab/sim/server.hpp>
#include <string>
#include <thread>

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
  for (int i = 0; i < kQueries; ++i) {
    std::string token = std::to_string(i);
    c.send(":SYST:NONC? " + token + "\n");
    if (c.line() != token) {
      std::fprintf(stderr, "raw loop: crossed reply at %d\n", i);
      std::exit(1);
    }
  }
  return kQueries / seconds_since(t0);
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
  asio::io_context io;
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
  asio::post(strand, next);
  io.run();
  double dt = seconds_since(t0);
  if (failed || done != total) {
    std::fprintf(stderr, "session run failed after %d operations\n", done);
    std::exit(1);
  }
  return blocks ? static_cast<double>(bytes) / dt : total / dt;
}

}  // namespace

int main(int argc, char** argv) {
  bench::args a(argc, argv);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu() < 0 ? 0 : sched_getcpu(), &one);
  if (sched_setaffinity(0, sizeof one, &one) != 0) std::fprintf(stderr, "cannot pin to one CPU\n");
  asio::io_context sim_io;
  sim::sim_server server(sim_io, sim::make_sim_instrument("keithley2450", 1),
                         asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  server.start();
  std::thread sim_thread([&] { sim_io.run(); });
  auto port = server.local_endpoint().port();

  std::vector<double> q_session, q_raw, b_session, b_raw;
  for (int round = 0; round < 5 * a.reps; ++round) {  // interleaved: drift hits both alike
    q_raw.push_back(raw_queries(port));
    q_session.push_back(session_run(port, false));
    b_raw.push_back(raw_blocks(port));
    b_session.push_back(session_run(port, true));
  }
  server.stop();
  sim_thread.join();

  bench::publish(
      a.results,
      {{"scpi_query_ratio", bench::median(q_session), "queries/s", bench::median(q_raw),
        "raw blocking-socket loop, same simulator, same run, alternating rounds of 2000 "
        "nonce queries; 0 crossed"},
       {"scpi_block_ratio", bench::median(b_session) / 1e6, "MB/s", bench::median(b_raw) / 1e6,
        "raw blocking-socket loop reading 1 MiB definite blocks, same simulator"}});
  return 0;
}
