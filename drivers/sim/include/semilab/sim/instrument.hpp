#pragma once
// Simulated instruments. A model is a class implementing sim_instrument (usually through
// scpi_instrument, which supplies the IEEE 488.2 common commands and the error queue) plus one
// row in the table returned by sim_models(). Simulators are single-threaded objects: the server
// calls them only from its io_context thread.
#include <semilab/sim/scpi_parser.hpp>

#include <cstdint>
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
};

// Runs every command of one program message; query replies are joined with ';' as IEEE 488.2
// does for one response message. nullopt when the line held no (successful) query.
[[nodiscard]] std::optional<std::string> execute_line(sim_instrument& inst, std::string_view line);

// Common part of SCPI instruments: *IDN?, *RST, *CLS, *OPC?, *OPC, *WAI, *ESR?, *LANG?,
// :SYSTem:ERRor[:NEXT]?, :SYSTem:ERRor:COUNt?, :SYSTem:ERRor:CLEar and a FIFO error queue.
class scpi_instrument : public sim_instrument {
 public:
  static constexpr std::size_t kErrorQueueCapacity = 10;

  std::optional<std::string> execute(const scpi_command& cmd) final;

  // SCPI-99: when the queue is full the newest entry is replaced by -350 "Queue overflow".
  void push_error(int code, std::string_view text);
  [[nodiscard]] std::size_t error_count() const noexcept { return errors_.size(); }

 protected:
  enum class outcome { unknown, done };
  virtual std::string idn() const = 0;
  virtual void reset() = 0;  // *RST state
  // Handles a model command; returns outcome::unknown for headers it does not know (the base
  // then queues -113). Sets `reply` for successful queries; pushes errors itself otherwise.
  virtual outcome handle(const scpi_command& cmd, std::optional<std::string>& reply) = 0;

  // Helpers for models: common argument errors.
  bool expect_args(const scpi_command& cmd, std::size_t n);  // queues -108/-109 when wrong
  std::optional<double> number_arg(const scpi_command& cmd, double lo, double hi, double def);
  std::optional<bool> bool_arg(const scpi_command& cmd);

 private:
  std::deque<std::pair<int, std::string>> errors_;
  unsigned esr_ = 0;  // standard event status register bits
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

}  // namespace semilab::sim
