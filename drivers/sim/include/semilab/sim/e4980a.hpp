#pragma once
// Keysight E4980A precision LCR meter simulator. The device under test is a MOS capacitor on a
// p-type substrate measured at high frequency: C(Vbias) goes from Cox in accumulation (negative
// gate bias) to Cmin in inversion through a smooth depletion transition around the flat-band
// voltage, in series with a substrate resistance and in parallel with a leakage conductance.
// The meter reports the pair of the selected function (:FUNC:IMP CPD, CSRS, ZTD, ...).
//
// Reply format of :FETCh? (ASCII): "<A>,<B>,<status>" with A and B as "%+.5E" and the status as
// "+0" (normal), "+1" (overload: A and B read +9.90000E+37). The simulated meter overloads when
// |Z| of the DUT exceeds kMaxImpedance. :FETC? needs a measurement: with :INIT:CONT OFF and no
// :TRIG issued since it queues -230 "Data corrupt or stale" and does not reply.
//
// DC-bias list sweep: :DISP:PAGE LIST, :LIST:MODE SEQ|STEP, :LIST:BIAS:VOLT v1,...(at most 201)
// then one trigger (:TRIG[:IMM], *TRG, :INIT) measures every point, the bias applied only with
// :BIAS:STAT ON (0 V otherwise). It takes points x aperture time (:APER SHOR|MED|LONG[,avg]:
// 5, 20, 100 ms per average) in simulated real time; *OPC? is answered when it is done, and
// :FETC? then returns "<A>,<B>,<status>,<compare>" for every point (compare +0: comparator off).
#include <complex>
#include <chrono>
#include <random>
#include <vector>
#include <semilab/sim/instrument.hpp>

namespace semilab::sim {

// What the E4980A command dialect shares between e4980a and the station LCR meter
// (station_instruments.cpp).
class e4980a_dialect : public scpi_instrument {
 protected:
  // Set forms of [:SOURce]:FREQuency[:CW] (20 Hz..2 MHz), [:SOURce]:VOLTage[:LEVel] (0..20 V),
  // [:SOURce]:BIAS:VOLTage[:LEVel] (+-40 V) and [:SOURce]:BIAS:STATe; true when consumed.
  bool handle_source_set(const scpi_command& cmd, double& freq, double& level, double& bias,
                         bool& bias_on);
  // :LIST:BIAS:VOLTage takes 1 to 201 values; queues -109/-108 and returns false otherwise.
  bool list_arg_count_ok(const scpi_command& cmd);
  // The :FETC? reply of a list sweep: point(bias) + ",+0" (comparator off) for every list bias,
  // the bias applied only with the bias on.
  template <class Point>
  static std::string list_reply(const std::vector<double>& biases, bool bias_on, Point&& point) {
    std::string out;
    for (double b : biases) {
      if (!out.empty()) out.push_back(',');
      out += point(bias_on ? b : 0.0) + ",+0";
    }
    return out;
  }
};

class e4980a final : public e4980a_dialect {
 public:
  static constexpr std::string_view kIdn = "Keysight Technologies,E4980A,MY46101234,A.06.10";
  static constexpr double kCox = 100e-12;            // F, accumulation
  static constexpr double kCmin = 20e-12;            // F, high-frequency inversion
  static constexpr double kFlatBand = -0.8;          // V
  static constexpr double kTransitionWidth = 0.25;   // V, depletion width of the C(V) step
  static constexpr double kSeriesResistance = 50.0;  // ohm, substrate + contacts
  static constexpr double kLeakage = 1e-9;           // S, gate leakage
  static constexpr double kMaxImpedance = 1e8;       // ohm, beyond it the meter overloads
  static constexpr double kNoiseRelative = 5e-5;
  static constexpr double kOverload = 9.9e37;

  explicit e4980a(std::uint64_t seed);

  // Noise-free DUT capacitance (F) at a DC gate bias (V), and its impedance at f (Hz).
  [[nodiscard]] static double capacitance(double bias_volts) noexcept;
  [[nodiscard]] static std::complex<double> impedance(double freq_hz, double bias_volts) noexcept;
  // The two values of `function` (e.g. "CPD") for impedance z at f; false for an unknown function.
  [[nodiscard]] static bool function_values(std::string_view function, std::complex<double> z,
                                            double freq_hz, double& a, double& b) noexcept;

 protected:
  std::string idn() const override { return std::string(kIdn); }
  std::string options() const override { return "001"; }  // DC bias up to +-40 V
  std::string format_error(int code, std::string_view text) const override;
  void reset() override;
  std::chrono::milliseconds pending_time() override;
  outcome handle(const scpi_command& cmd, std::optional<std::string>& reply) override;

 private:
  std::string fetch();
  std::string fetch_at(double bias);

  std::mt19937_64 rng_;
  std::string function_ = "CPD";
  double freq_ = 1000.0;
  double level_ = 1.0;  // V rms
  double bias_ = 0.0;
  bool bias_on_ = false;
  bool init_cont_ = true;
  bool triggered_ = false;
  bool list_page_ = false;
  std::vector<double> list_bias_;
  std::chrono::milliseconds aperture_{20};
  unsigned averages_ = 1;
  std::string list_result_;  // of the last list sweep
  bool list_ready_ = false;
  std::chrono::steady_clock::time_point list_done_at_{};
};

}  // namespace semilab::sim
