#pragma once
// Keithley 2450 SourceMeter simulator (native SCPI). The device under test is a silicon diode:
// Shockley equation with series resistance, solved exactly (bisection), clamped at the source
// limit (compliance), plus Gaussian noise. Defaults follow *RST on the instrument: source
// voltage 0 V, current limit 105 uA, measure current, output off. The simulator-only
// :SYSTem:DUT DIODE|MOSFET|RESistor changes the device (smu.hpp).
//
// Buffered sweeps: :SOUR:SWE:<VOLT|CURR>:LIN <start>,<stop>,<points>[,<delay>[,<count>[,<range>
// [,<failAbort>[,<dual>[,"<buffer>"]]]]]] and :SOUR:LIST:<f> <v>,... (+ :APP) with
// :SOUR:SWE:<f>:LIST <index>[,<delay>[,<count>...]] configure; :INIT runs it in simulated time
// (smu.hpp) into defbuffer1 (with the output off: -221); :ABOR stops it; :TRAC:ACT? counts,
// :TRAC:DATA? <s>,<e>,"defbuffer1",<elements> reads back (elements READ, SOUR, REL), :TRAC:CLE
// clears. :READ? "defbuffer1",<elements> answers the elements of one new reading. After a sweep
// the source stays at the last level. NPLC (0.01..10) and a fixed measure range (readings beyond
// 105 % of it read 9.9E37) are honoured.
#include <semilab/sim/instrument.hpp>
#include <semilab/sim/smu.hpp>

#include <random>

namespace semilab::sim {

class keithley2450 final : public smu_instrument {
 public:
  static constexpr std::string_view kIdn = "KEITHLEY INSTRUMENTS,MODEL 2450,04412345,1.7.12b";
  static constexpr double kSaturationCurrent = 1e-12;  // A
  static constexpr double kIdeality = 1.8;
  static constexpr double kTemperature = 300.0;        // K
  static constexpr double kSeriesResistance = 10.0;    // ohm
  static constexpr double kNoiseRelative = 1e-4;
  static constexpr double kNoiseFloor = 1e-11;         // A (or V) absolute noise floor
  static constexpr double kDefaultIlim = 1.05e-4;      // A after *RST
  static constexpr double kDefaultVlim = 21.0;         // V after *RST (current source)
  static constexpr double kMaxVolts = 210.0;
  static constexpr double kMaxAmps = 1.05;

  explicit keithley2450(std::uint64_t seed);

  // Noise-free diode current at `volts` (no limit applied).
  [[nodiscard]] static double diode_current(double volts) noexcept;
  // Noise-free diode voltage at `amps` (no limit applied).
  [[nodiscard]] static double diode_voltage(double amps) noexcept;

  [[nodiscard]] bool output_on() const noexcept { return output_; }
  [[nodiscard]] double source_voltage() const noexcept { return volts_; }
  [[nodiscard]] double current_limit() const noexcept { return ilim_; }
  [[nodiscard]] bool source_is_voltage() const noexcept { return source_voltage_mode_; }
  // What the source did (thread-safe): levels, output changes, model commands received.
  [[nodiscard]] const smu_log& log() const noexcept { return log_; }

 protected:
  std::chrono::milliseconds pending_time() override;
  std::string idn() const override { return std::string(kIdn); }
  void reset() override;
  outcome handle(const scpi_command& cmd, std::optional<std::string>& reply) override;

 private:
  struct buffer_entry {
    double source = 0;
    double reading = 0;
    double rel = 0;  // s since the buffer was cleared
  };
  double measure(bool want_current);
  double noisy(double v);
  void advance();  // executes the sweep points that are due by now
  void set_output(bool on);
  void apply_level(double v);  // the source level of the present source function
  void stop_sweep();
  buffer_entry take_reading();
  // Formats entries with buffer elements (READ, SOUR, REL); false and -224 on an unknown one.
  bool format_entries(const std::vector<buffer_entry>& entries, std::size_t first,
                      std::size_t count, const std::vector<std::string>& elements,
                      std::string& out);
  bool configure_sweep(const scpi_command& cmd, bool list);

  std::mt19937_64 rng_;
  bool source_voltage_mode_ = true;
  bool sense_current_ = true;
  bool output_ = false;
  bool tripped_ = false;
  double volts_ = 0;
  double amps_ = 0;
  double ilim_ = kDefaultIlim;
  double vlim_ = kDefaultVlim;
  double nplc_ = 1.0;
  double range_ = 0;  // fixed measure range, 0 = auto
  smu_dut dut_ = smu_dut::diode;
  std::vector<double> list_;          // :SOUR:LIST:<f>
  std::vector<double> sweep_levels_;  // configured sweep
  double sweep_delay_ = 0;
  smu_sweep sweep_;
  std::vector<buffer_entry> buffer_;  // defbuffer1
  std::chrono::steady_clock::time_point buffer_t0_ = std::chrono::steady_clock::now();
  smu_log log_;
};

}  // namespace semilab::sim
