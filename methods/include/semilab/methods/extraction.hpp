#pragma once
// What every extraction returns: named parameters with SI value, SI unit, uncertainty (fit
// standard error where the method gives one), the fit windows used, warnings, and the method and
// algorithm version. Customary units (cm^-3, cm^2/V.s, mV/dec, ohm/sq, ...) exist only at the
// reporting boundary: to_customary().
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <semilab/methods/error.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace semilab::methods {

// CODATA 2018 exact values and the permittivities of the reference (SI).
namespace constants {
inline constexpr double q = 1.602176634e-19;      // C
inline constexpr double k = 1.380649e-23;         // J/K
inline constexpr double eps0 = 8.8541878128e-12;  // F/m
inline constexpr double eps_r_sio2 = 3.9;
inline constexpr double eps_r_si = 11.7;
inline constexpr double t_ref = 300.0;  // K
}  // namespace constants

// kT/q in V.
constexpr double thermal_voltage(double temperature_k) noexcept {
  return constants::k * temperature_k / constants::q;
}

// One measured point: x is the swept (sourced) quantity, y the measured one, quality the
// schemas::quality bits the driver attached (compliance, over_range).
struct sample {
  double x = 0;
  double y = 0;
  std::uint32_t quality = 0;
};

// True when the point must never enter a fit: compliance or over-range flag, a non-finite value,
// or the instruments' overflow sentinel (|value| >= 9.9e37, Keithley "NAN").
[[nodiscard]] bool flagged(const sample& s) noexcept;
// The quality bits a point should carry: its own plus over_range for a sentinel or non-finite
// reading (9.91e37 arrives as a number, not as a flag).
[[nodiscard]] std::uint32_t effective_quality(const sample& s) noexcept;

struct parameter {
  std::string name;  // stable key: "n", "i0", "rs", "vth_gm", ...
  double value = 0;  // SI
  std::string unit;  // SI symbol: "A", "ohm", "V", "V/dec", "m^-3", "m^2/(V*s)", "ohm/sq", ...
  std::optional<double> uncertainty;  // one standard error (SI) where the method gives one
  std::string text;                   // text-valued results (carrier_type): value unused
  bool lower_bound = false;  // value is a bound, not a measurement (e.g. on/off at the range floor)
};

struct fit_window {
  std::string quantity;  // the axis the window is on: "I", "VGS", "VG", "V", "d"
  double lo = 0;         // SI, inclusive
  double hi = 0;
  std::size_t points = 0;  // points used in the fit
};

struct extraction {
  std::string method;   // "diode-iv", "mosfet-idvg", ...
  std::string version;  // algorithm version, recorded with each result
  std::vector<parameter> parameters;
  std::vector<fit_window> windows;
  std::vector<std::string> warnings;
  std::uint32_t quality = 0;  // schemas::quality::non_traceable when calibration is past due

  [[nodiscard]] const parameter* find(std::string_view name) const noexcept;
  // The value of a parameter that must exist (asserts in debug builds; NaN when absent).
  [[nodiscard]] double value(std::string_view name) const noexcept;
};

// A value in the customary unit of the field: m^-3 -> cm^-3, m^-2 -> cm^-2,
// m^2/(V*s) -> cm^2/(V*s), V/dec -> mV/dec, ohm*m -> ohm*cm, m -> nm (thicknesses) or um
// (lengths), m^3/C -> cm^3/C, ohm*m^2 -> ohm*cm^2, F -> pF. Other units pass through.
struct customary_value {
  double value = 0;
  std::optional<double> uncertainty;
  std::string unit;
};
[[nodiscard]] customary_value to_customary(const parameter& p);

// Calibration state of the instrument that produced the data: a past due date marks the result
// non-traceable (ISO/IEC 17025 6.5) with a warning; no date known leaves it as it is.
void apply_calibration(extraction& e, std::optional<std::chrono::sys_days> due,
                       std::chrono::sys_days today);

}  // namespace semilab::methods
