#pragma once
// Keithley 2400 SourceMeter simulator (SCPI, the 2400's own command set). Same device under test
// as the 2450 simulator (the diode of keithley2450::diode_current). What differs is the
// instrument's interface:
//  - the compliance limit lives under SENSe (:SENS:CURR:PROT for a voltage source);
//  - :READ? returns the :FORM:ELEM elements, always in the canonical order
//    VOLT,CURR,RES,TIME,STAT whatever order they were given in, each as "%+.6E";
//  - a quantity that is not measured reads 9.91E37 (NaN), e.g. RES while measuring current;
//  - STAT is the status word as a number; bit 3 (value 8) is "in real compliance".
// Sweeps: :SOUR:<f>:MODE FIX|SWE|LIST with :SOUR:<f>:STAR/STOP, :SOUR:SWE:POIN, :SOUR:SWE:SPAC
// LIN|LOG, :SOUR:LIST:<f> (at most 100 levels), :TRIG:COUN (must equal the point count), :SOUR:DEL;
// :INIT runs the sweep in simulated time (smu.hpp) into the sample buffer (output off: error
// 803 "Output disabled"), :FETC? returns every reading (held until the sweep ends), :READ? is
// :INIT + :FETC?, :ABOR stops it. After a sweep the source stays at its last level. The
// simulator-only :SYSTem:DUT DIODE|MOSFET|RESistor changes the device (smu.hpp).
#include <random>
#include <semilab/sim/instrument.hpp>
#include <semilab/sim/smu.hpp>

namespace semilab::sim {

class keithley2400 final : public smu_instrument {
 public:
  static constexpr std::string_view kIdn =
      "KEITHLEY INSTRUMENTS INC.,MODEL 2400,1234567,C32   Oct  4 2010 14:20:11/A02  /S/K";
  static constexpr double kDefaultCompliance = 1.05e-4;  // A after *RST
  static constexpr double kMaxVolts = 210.0;
  static constexpr double kMaxAmps = 1.05;
  static constexpr double kNotANumber = 9.91e37;
  // Status word bits (2400 manual, "Status word").
  static constexpr unsigned kStatOverflow = 1u << 0;
  static constexpr unsigned kStatCompliance = 1u << 3;
  static constexpr unsigned kStatVoltMeas = 1u << 11;
  static constexpr unsigned kStatCurrMeas = 1u << 12;
  static constexpr unsigned kStatVoltSource = 1u << 14;
  static constexpr unsigned kStatCurrSource = 1u << 15;
  // :FORM:ELEM bits in canonical order.
  enum element : unsigned { volt = 1, curr = 2, res = 4, time = 8, stat = 16 };

  explicit keithley2400(std::uint64_t seed);

  [[nodiscard]] bool output_on() const noexcept { return output_; }
  [[nodiscard]] unsigned elements() const noexcept { return elements_; }
  [[nodiscard]] const smu_log& log() const noexcept { return log_; }

 protected:
  std::chrono::milliseconds pending_time() override;
  std::string idn() const override { return std::string(kIdn); }
  void reset() override;
  outcome handle(const scpi_command& cmd, std::optional<std::string>& reply) override;

 private:
  enum class source_mode { fixed, sweep, list };
  std::string read();
  double noisy(double v);
  void advance();
  void set_output(bool on);
  bool start_sweep();  // :INIT; false (error queued) when it cannot run
  std::string fetch();

  std::mt19937_64 rng_;
  bool source_voltage_mode_ = true;
  bool output_ = false;
  double volts_ = 0;
  double amps_ = 0;
  double icomp_ = kDefaultCompliance;
  double vcomp_ = 21.0;
  unsigned elements_ = volt | curr | res | time | stat;
  double clock_s_ = 0;  // TIME element: seconds since power-on, advanced per reading
  smu_dut dut_ = smu_dut::diode;
  double nplc_ = 1.0;
  double range_ = 0;  // fixed measure range, 0 = auto
  source_mode mode_ = source_mode::fixed;
  double start_ = 0, stop_ = 0;
  unsigned points_ = 2500;
  bool log_spacing_ = false;
  std::vector<double> list_;
  unsigned trigger_count_ = 1;
  double source_delay_ = 0;
  smu_sweep sweep_;
  std::vector<std::string> samples_;  // readings of the last :INIT, formatted
  bool have_samples_ = false;
  smu_log log_;
};

}  // namespace semilab::sim
