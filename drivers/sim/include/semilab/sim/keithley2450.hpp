#pragma once
// Keithley 2450 SourceMeter simulator (native SCPI). The device under test is a silicon diode:
// Shockley equation with series resistance, solved exactly (bisection), clamped at the source
// limit (compliance), plus Gaussian noise. Defaults follow *RST on the instrument: source
// voltage 0 V, current limit 105 uA, measure current, output off.
#include <semilab/sim/instrument.hpp>

#include <random>

namespace semilab::sim {

class keithley2450 final : public scpi_instrument {
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

 protected:
  std::string idn() const override { return std::string(kIdn); }
  void reset() override;
  outcome handle(const scpi_command& cmd, std::optional<std::string>& reply) override;

 private:
  double measure(bool want_current);
  double noisy(double v);

  std::mt19937_64 rng_;
  bool source_voltage_mode_ = true;
  bool sense_current_ = true;
  bool output_ = false;
  bool tripped_ = false;
  double volts_ = 0;
  double amps_ = 0;
  double ilim_ = kDefaultIlim;
  double vlim_ = kDefaultVlim;
};

}  // namespace semilab::sim
