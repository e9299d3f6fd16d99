#pragma once
// Simulated instruments. A model is a class implementing sim_instrument (usually through
// scpi_instrument, which supplies the IEEE 488.2 common commands and the error queue) plus one
// row in the table returned by sim_models(). Simulators are single-threaded objects: the server
// calls them only from its io_context thread.
#include <semilab/sim/scpi_parser.hpp>

#include <chrono>
#include <cstdint>
#include <algorithm>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace semilab::sim {

class sim_instrument {
 public:
  virtual ~sim_instrument() = default;
  // Executes one command. Returns the reply for a successful query, nullopt otherwise (a failed
  // command or query queues an SCPI error instead of replying).
  virtual std::optional<std::string> execute(const scpi_command& cmd) = 0;
  // Power cycle: instrument state back to its power-on defaults, PON set in the event status
  // register (what a real instrument shows after its mains switch was cycled).
  virtual void power_on() = 0;
  // Queues an error as if the instrument had detected it (fault injection).
  virtual void inject_error(int code) = 0;
  // How long the reply to the last program message must be held because the instrument is busy
  // (a *OPC? during a sweep is answered when the sweep ends); resets to zero. The TCP server
  // adds it to the reply's delay.
  virtual std::chrono::milliseconds take_reply_hold() { return std::chrono::milliseconds{0}; }
};

// Runs every command of one program message; query replies are joined with ';' as IEEE 488.2
// does for one response message. nullopt when the line held no (successful) query.
[[nodiscard]] std::optional<std::string> execute_line(sim_instrument& inst, std::string_view line);

// Common part of SCPI instruments: *IDN?, *OPT?, *RST, *CLS, *OPC?, *OPC, *WAI, *ESR?, *LANG?,
// :SYSTem:ERRor[:NEXT]?, :SYSTem:ERRor:COUNt?, :SYSTem:ERRor:CLEar, a FIFO error queue, and the
// simulator-only nonce echo :SYSTem:NONCe? <token> (replies <token>; lets tests prove that
// every reply reached the query that asked for it), the simulator-only :SYSTem:BLOCk? <n>
// (replies a definite block of n bytes, byte i = i mod 256, so LF, CR and NUL occur in the data;
// n <= kMaxBlockBytes). A new instrument starts powered on (PON set).
class scpi_instrument : public sim_instrument {
 public:
  static constexpr std::size_t kErrorQueueCapacity = 10;
  static constexpr unsigned kEsrPowerOn = 1u << 7;  // IEEE 488.2 ESR bit 7, PON
  static constexpr std::size_t kMaxNonceBytes = 64;
  static constexpr std::size_t kMaxBlockBytes = 16 << 20;

  std::optional<std::string> execute(const scpi_command& cmd) final;
  void power_on() final;
  void inject_error(int code) final;
  std::chrono::milliseconds take_reply_hold() final;

  // SCPI-99: when the queue is full the newest entry is replaced by -350 "Queue overflow".
  void push_error(int code, std::string_view text);
  [[nodiscard]] std::size_t error_count() const noexcept { return errors_.size(); }

 protected:
  enum class outcome { unknown, done };
  virtual std::string idn() const = 0;
  virtual std::string options() const { return "0"; }  // *OPT? reply
  virtual void reset() = 0;  // *RST state (also applied at power-on)
  // Error queue entry as the model formats it. Keithley writes `0,"No error"`; Keysight writes
  // `+0,"No error"` (and `-113,"Undefined header"`).
  virtual std::string format_error(int code, std::string_view text) const;
  // Handles a model command; returns outcome::unknown for headers it does not know (the base
  // then queues -113). Sets `reply` for successful queries; pushes errors itself otherwise.
  virtual outcome handle(const scpi_command& cmd, std::optional<std::string>& reply) = 0;

  // Time until every pending operation (a running sweep) has finished; *OPC? and *WAI hold
  // their reply (and what follows) that long.
  virtual std::chrono::milliseconds pending_time() { return std::chrono::milliseconds{0}; }
  // Models that hold a reply themselves (a 2400 :READ? running a whole sweep).
  void hold_reply(std::chrono::milliseconds d) { hold_ = std::max(hold_, d); }

  // Helpers for models: common argument errors.
  bool expect_args(const scpi_command& cmd, std::size_t n);  // queues -108/-109 when wrong
  std::optional<double> number_arg(const scpi_command& cmd, double lo, double hi, double def);
  std::optional<bool> bool_arg(const scpi_command& cmd);

 private:
  std::deque<std::pair<int, std::string>> errors_;
  unsigned esr_ = kEsrPowerOn;  // standard event status register bits
  std::chrono::milliseconds hold_{0};

 public:
  // Standard text of the errors the simulators and the fault injector produce.
  [[nodiscard]] static std::string_view standard_error_text(int code) noexcept;
};

struct sim_model_entry {
  std::string_view name;  // same name as the driver's model profile
  std::unique_ptr<sim_instrument> (*make)(std::uint64_t seed);
  std::string_view description;
};

[[nodiscard]] std::span<const sim_model_entry> sim_models() noexcept;
// nullptr when no simulator has that name.
[[nodiscard]] std::unique_ptr<sim_instrument> make_sim_instrument(std::string_view name,
                                                                  std::uint64_t seed);

// "%.6E" as the Keithley front end formats readings, e.g. "1.234567E-03".
[[nodiscard]] std::string format_nr3(double v);
// printf-style formatting of one number with `fmt` (e.g. "%+.6E"); for model reply formats.
[[nodiscard]] std::string format_number(const char* fmt, double v);
// "1" or "0" as SCPI booleans are answered. (Built from a char: assigning a string literal to an
// optional<string> trips GCC 12's -Wrestrict false positive at -O2.)
[[nodiscard]] inline std::string bool_reply(bool b) { return std::string(1, b ? '1' : '0'); }

}  // namespace semilab::sim
