#pragma once
// TCP server for one simulated instrument: LF-terminated SCPI lines, a reply line per program
// message that holds a query. Instrument state is shared by all connections and persists across
// them (like a real instrument). Concurrent connections are served, each in order.
//
// Threading: run the io_context on exactly one thread. set_faults() and stop() may be called from
// any thread; everything else from that thread (or before it starts). Destroy the server only
// after io_context::run() has returned (handlers refer to it).
#include <semilab/sim/instrument.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace semilab::sim {

struct fault_config {
  std::chrono::milliseconds delay{0};  // delay=MS: hold every reply this long
  unsigned drop_after = 0;             // drop-after=N: close a connection after its Nth reply
  unsigned garbage_every = 0;          // garbage-every=N: every Nth reply (server-wide) is garbage
  bool hang = false;                   // hang: read commands, never execute or answer them
  std::chrono::milliseconds late{0};   // late=MS/N: every Nth reply is held MS ms (after a
  unsigned late_every = 0;             //   client's timeout), on top of delay
  unsigned power_cycle_after = 0;      // power-cycle-after=N: power cycle after the Nth reply
  std::vector<int> errors;             // error=CODE[*N]: queue N entries (one by default)
  friend bool operator==(const fault_config&, const fault_config&) = default;
};

// The --fault grammar, for --help and docs.
inline constexpr std::string_view kFaultGrammar =
    "delay=MS            hold every reply MS ms\n"
    "late=MS/N           hold every Nth reply MS ms (a reply after the client's timeout)\n"
    "drop-after=N        close each connection after its Nth reply\n"
    "garbage-every=N     every Nth reply is garbage bytes\n"
    "hang                read commands but never execute or answer them\n"
    "power-cycle-after=N after the Nth reply: reset instrument state, set PON in *ESR?, drop\n"
    "                    every connection (once)\n"
    "error=CODE[*N]      queue N (default 1) entries of SCPI error CODE at start; more than the\n"
    "                    queue holds ends in -350 \"Queue overflow\"\n"
    "Every simulated model also answers :SYSTem:NONCe? <token> with <token> (letters, digits, -\n"
    "and _, up to 64), so crossed replies are detectable, and :SYSTem:BLOCk? <n> with a definite\n"
    "block of n bytes (byte i = i mod 256: LF, CR and NUL inside the data).";

// Applies one "--fault" spec (see kFaultGrammar) to `faults`. Returns an error message naming
// the spec when it is not understood.
[[nodiscard]] std::string apply_fault_spec(std::string_view spec, fault_config& faults);

// The garbage line sent in place of a reply: printable and non-printable bytes, no terminator.
inline constexpr std::string_view kGarbageReply = "#\x15GaRbAgE?\x7f,,E+";

class sim_server {
 public:
  // Binds and listens immediately (so local_endpoint() is known); throws boost::system::system_error
  // when the address cannot be bound (start-up only, not from a handler).
  sim_server(boost::asio::io_context& io, std::unique_ptr<sim_instrument> instrument,
             const boost::asio::ip::tcp::endpoint& listen, fault_config faults = {});
  ~sim_server();
  sim_server(const sim_server&) = delete;
  sim_server& operator=(const sim_server&) = delete;

  void start();
  // Closes the listener and every connection; io_context::run() then returns once idle.
  void stop();

  // Takes effect for the next reply; restarts the reply count of garbage-every, late and
  // power-cycle-after; queues faults.errors into the instrument.
  void set_faults(const fault_config& faults);
  // Power cycle now (from any thread): instrument state to power-on defaults with PON set, every
  // connection closed. New connections are accepted right away.
  void power_cycle();
  [[nodiscard]] std::uint64_t power_cycles() const noexcept { return power_cycles_.load(); }
  [[nodiscard]] fault_config faults() const;
  [[nodiscard]] boost::asio::ip::tcp::endpoint local_endpoint() const;
  [[nodiscard]] std::uint64_t connections_accepted() const noexcept { return accepted_.load(); }
  [[nodiscard]] std::uint64_t replies_sent() const noexcept { return replies_.load(); }

 private:
  class connection;
  friend class connection;
  void do_accept();
  // Decides the fault treatment of the next reply (server-wide counters).
  struct reply_plan {
    std::chrono::milliseconds delay{0};
    bool garbage = false;
    unsigned drop_after = 0;
    bool power_cycle = false;
  };
  reply_plan plan_reply();
  [[nodiscard]] bool hanging() const;
  void power_cycle_now();  // io thread
  void queue_errors(std::vector<int> codes);

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::unique_ptr<sim_instrument> instrument_;
  mutable std::mutex faults_mutex_;
  fault_config faults_;
  std::uint64_t reply_counter_ = 0;  // guarded by faults_mutex_
  std::vector<std::weak_ptr<connection>> connections_;
  std::atomic<std::uint64_t> accepted_{0};
  std::atomic<std::uint64_t> replies_{0};
  std::atomic<std::uint64_t> power_cycles_{0};
  bool stopped_ = false;
};

// Parses "host:port" or "[v6]:port" (port 0 = any free port).
[[nodiscard]] bool parse_listen(std::string_view text, boost::asio::ip::tcp::endpoint& out);

}  // namespace semilab::sim
