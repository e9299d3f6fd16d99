#pragma once
// What the simulated source-measure units (keithley2450, keithley2400, the station SMU) share:
// the device under test (diode, MOSFET, resistor), a thread-safe log of what the source did (so
// tests can see ramps and output-off actions from another thread), the timing of
// instrument-side sweeps, and the command handling of their common dialect (smu_instrument).
//
// Sweeps run in simulated real time: :INIT starts one at t0; point k (source level applied,
// then measured) completes at t0 + (k+1) * per_point with per_point = source delay + NPLC/50 s.
// The state is advanced lazily whenever a command arrives, so an :ABORt or :OUTP OFF arriving
// mid-sweep stops it after the points already completed. *OPC? (and *WAI) are answered once the
// sweep would have finished (scpi_instrument::pending_time, the server holds the reply).
#include <semilab/sim/instrument.hpp>

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace semilab::sim {

// Devices a simulated SMU can drive (simulator-only command :SYSTem:DUT DIODE|MOSFET|RESistor).
//  diode:    Shockley with series resistance (keithley2450::diode_current)
//  mosfet:   n-channel, the SMU forces the gate (VGS) and measures the drain current at a drain
//            bias held at 50 mV by a second, implicit supply; the reference-test T2a device:
//            beta = 1.3813e-3 A/V^2, Vth = 0.5 V, n_ss = 1.2, theta = 0,
//            ID = beta * VDS * s, s = n_ss*Vt*softplus((VGS - Vth - VDS/2)/(n_ss*Vt))
//  resistor: 1 kOhm
enum class smu_dut { diode, mosfet, resistor };

inline constexpr double kMosfetBeta = 1.3813e-3;
inline constexpr double kMosfetVth = 0.5;
inline constexpr double kMosfetVds = 0.05;
inline constexpr double kMosfetNss = 1.2;
inline constexpr double kResistorOhms = 1000.0;

[[nodiscard]] double dut_current(smu_dut dut, double volts) noexcept;
[[nodiscard]] double dut_voltage(smu_dut dut, double amps) noexcept;
[[nodiscard]] bool parse_dut(std::string_view name, smu_dut& out) noexcept;

struct smu_event {
  std::chrono::steady_clock::time_point time;
  enum class kind { level, output, command } what = kind::level;
  double level = 0;   // kind::level: the source level applied
  bool output = false;  // kind::output: the new output state (and the state at every event)
  std::string command;  // kind::command: the command text as received
};

// Everything the source did, in order. Written on the simulator's thread, read from any.
class smu_log {
 public:
  void level(double v, bool output);
  void output(bool on, double level);
  void command(std::string_view text, bool output);
  [[nodiscard]] std::vector<smu_event> events() const;
  // Levels applied while the output was on (a ramp shows as its steps).
  [[nodiscard]] std::vector<double> levels_while_on() const;
  void clear();

 private:
  static constexpr std::size_t kMaxEvents = 100000;
  mutable std::mutex mutex_;
  std::vector<smu_event> events_;
};

// An instrument-side sweep in progress (or finished).
struct smu_sweep {
  std::vector<double> levels;
  std::chrono::steady_clock::time_point t0;
  std::chrono::nanoseconds per_point{0};
  std::size_t done = 0;  // points completed
  bool running = false;

  void start(std::vector<double> l, std::chrono::nanoseconds per) {
    levels = std::move(l);
    per_point = per;
    t0 = std::chrono::steady_clock::now();
    done = 0;
    running = !levels.empty();
  }
  // Points that should have completed by `now` and have not been executed yet.
  [[nodiscard]] std::size_t due(std::chrono::steady_clock::time_point now) const {
    if (!running || per_point.count() <= 0) return running ? levels.size() - done : 0;
    auto k = static_cast<std::size_t>((now - t0) / per_point);
    return std::min(k, levels.size()) > done ? std::min(k, levels.size()) - done : 0;
  }
  [[nodiscard]] std::chrono::milliseconds remaining(std::chrono::steady_clock::time_point now) const {
    if (!running) return std::chrono::milliseconds{0};
    auto end = t0 + per_point * static_cast<std::int64_t>(levels.size());
    return end > now ? std::chrono::ceil<std::chrono::milliseconds>(end - now)
                     : std::chrono::milliseconds{0};
  }
};

// A plain decimal argument (optional '+', no suffix, no MIN/MAX keywords), finite; nullopt
// otherwise. Used where an argument list is parsed element by element (sweeps, lists, ranges).
[[nodiscard]] std::optional<double> plain_number(std::string_view s);

// Command handling the simulated SMUs share: the 2450 dialect of keithley2450 and the station
// SMU (station_instruments.cpp); keithley2400 shares the sense settings, :SOURce:FUNCtion and
// the source levels. Each handle_* consumes only its own headers and leaves the rest to the
// model; side effects (logging, driving a station device) stay with the model.
class smu_instrument : public scpi_instrument {
 protected:
  // [:SENSe]:CURRent|VOLTage[:DC]:NPLCycles, :RANGe[:UPPer] and :RANGe:AUTO (set forms).
  bool handle_sense_settings(const scpi_command& cmd, double& nplc, double& range, double max_range);

  // :SOURce:FUNCtion[:MODE] (SOURce is required: a bare :FUNC belongs to SENSe). `set`: the
  // set form with one argument (applied, or -224 queued for an unknown function); `handled`:
  // the query, or a set form with a wrong argument count.
  enum class source_function_cmd { none, handled, set };
  source_function_cmd handle_source_function(const scpi_command& cmd,
                                             std::optional<std::string>& reply,
                                             bool& source_voltage);

  // [:SOURce]:VOLTage|CURRent[:LEVel][:IMMediate][:AMPLitude] and their queries (replies
  // formatted by `fmt`).
  struct level_cmd {
    bool handled = false;
    bool set = false;      // a set form (accepted or rejected)
    bool voltage = false;  // the voltage level (else the current level)
    bool applied = false;  // the set form's value was accepted and stored
  };
  level_cmd handle_source_level(const scpi_command& cmd, std::optional<std::string>& reply,
                                double& volts, double& amps, double max_volts, double max_amps,
                                std::string (*fmt)(double));

  // 2450 dialect: [:SENSe]:FUNCtion[:ON] "CURR[:DC]"|"CURRENT"|"VOLT[:DC]"|"VOLTAGE" (with
  // `long_dc` also "CURRENT:DC"|"VOLTAGE:DC") and its query ("CURR:DC" or "VOLT:DC").
  bool handle_sense_function(const scpi_command& cmd, std::optional<std::string>& reply,
                             bool& sense_current, bool long_dc);

  // 2450 dialect: [:SOURce]:VOLTage:ILIMit[:LEVel] and [:SOURce]:CURRent:VLIMit[:LEVel].
  bool handle_source_limits(const scpi_command& cmd, std::optional<std::string>& reply,
                            double& ilim, double& vlim, double max_amps, double max_volts,
                            double default_ilim, double default_vlim);

  // 2450 dialect: [:SOURce]:LIST:VOLTage|CURRent[:APPend] <v>{,<v>} (at most 100 values).
  bool handle_source_list(const scpi_command& cmd, std::vector<double>& list, double max_abs);

  // 2450 dialect: a buffer range <first>,<last> (1-based, inclusive) of :TRACe:DATA?; queues
  // -109/-222 and returns nullopt when wrong; else the 0-based first index and the count.
  struct buffer_range {
    std::size_t first = 0, count = 0;
  };
  std::optional<buffer_range> trace_range(const scpi_command& cmd, std::size_t buffer_size);

  // 2450 dialect sweeps (:SOURce:SWEep:VOLTage|CURRent:LINear|LIST). linear_levels: n >= 2
  // points from start to stop (the last exactly stop). list_levels: the source list from its
  // 1-based `index` on; -222 queued when the index is missing or out of range.
  // store_sweep: the optional delay argument at `delay_arg` (0..1e4 s, -222 when bad), then
  // levels and delay stored for the next :INIT.
  static std::vector<double> linear_levels(double start, double stop, std::size_t n);
  bool list_levels(std::optional<double> index, const std::vector<double>& list,
                   std::vector<double>& levels);
  bool store_sweep(const scpi_command& cmd, std::size_t delay_arg, std::vector<double>& levels,
                   std::vector<double>& sweep_levels, double& sweep_delay);
};

}  // namespace semilab::sim
