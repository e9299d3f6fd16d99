#pragma once
// Keysight 34461A digital multimeter simulator. The device under test is a resistor network: a
// 5 V reference drives a divider of R1 = 10 kOhm (top) and an NTC thermistor R2 (10 kOhm at
// 25 degC, B = 3950 K) at a temperature that drifts slowly around 25 degC; DC volts read the
// midpoint loaded by the meter's input resistance (10 MOhm, INP:IMP:AUTO OFF), 2-wire
// resistance reads R1 || R2 (the reference is an ideal source, a short for ohms).
//
// Replies are "%+.8E" ("+2.49987620E+00"); a reading beyond 120 % of a fixed range reads
// "+9.90000000E+37". Ranges: DCV 0.1, 1, 10, 100, 1000 V; ohms 100 .. 100 MOhm by decades.
#include <random>
#include <semilab/sim/instrument.hpp>

namespace semilab::sim {

class keysight34461a final : public scpi_instrument {
 public:
  static constexpr std::string_view kIdn =
      "Keysight Technologies,34461A,MY53220001,A.02.14-02.40-02.14-00.49-02-01";
  static constexpr double kReference = 5.0;  // V
  static constexpr double kR1 = 10e3;        // ohm
  static constexpr double kR25 = 10e3;       // ohm, thermistor at 25 degC
  static constexpr double kBeta = 3950.0;    // K
  static constexpr double kInputResistance = 10e6;
  static constexpr double kOverRange = 9.9e37;

  explicit keysight34461a(std::uint64_t seed);

  // Noise-free network values at a thermistor temperature (degC).
  [[nodiscard]] static double thermistor(double celsius) noexcept;
  [[nodiscard]] static double midpoint_volts(double celsius) noexcept;
  [[nodiscard]] static double two_wire_ohms(double celsius) noexcept;

 protected:
  std::string idn() const override { return std::string(kIdn); }
  std::string format_error(int code, std::string_view text) const override;
  void reset() override;
  outcome handle(const scpi_command& cmd, std::optional<std::string>& reply) override;

 private:
  enum class function { dcv, res };
  std::string measure();
  // Applies a CONF/MEAS range argument (none, AUTO, DEF, MIN, MAX or a value): false and an
  // error queued when it is not valid.
  bool apply_range(const scpi_command& cmd, function f);

  std::mt19937_64 rng_;
  function function_ = function::dcv;
  double range_ = 0;  // 0 = autorange
  double nplc_ = 10;
  double celsius_ = 25.0;
  unsigned readings_ = 0;
  bool initiated_ = false;
};

}  // namespace semilab::sim
