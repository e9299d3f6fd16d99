#pragma once
// Diode I-V (pn or Schottky): linear least squares on V(I) = a*ln I + b + Rs*I over the forward
// points (n = a/Vt, I0 = exp(-b/a)), the local ideality n(V) as a diagnostic, and the Cheung &
// Cheung cross-check (dV/dlnI = n*Vt + I*Rs; H(I) = V - n*Vt*ln I = -n*Vt*ln I0 + I*Rs).
#include <semilab/methods/extraction.hpp>
#include <span>

namespace semilab::methods {

inline constexpr std::string_view kDiodeVersion = "diode-iv/1.0";

struct diode_options {
  double temperature = constants::t_ref;  // K
  // Fit window on the current axis (A, forward currents). 0 = no bound. Points below
  // 10 x noise_floor are excluded as well.
  double i_min = 0;
  double i_max = 0;
  double noise_floor = 0;      // A; 0 = unknown
  bool cheung = true;          // run the Cheung cross-check
  double cheung_i_min = 1e-4;  // A: Cheung uses only the points above (numerical derivative)
};

struct ideality_point {
  double v = 0;
  double n = 0;
};

struct diode_result {
  extraction ex;  // n (1), i0 (A), rs (ohm); n_cheung, rs_cheung, i0_cheung when run
  std::vector<ideality_point> local_ideality;  // n(V) = (1/Vt) dV/dlnI over the fit window
};

// points: x = V (applied), y = I (measured), in sweep order (voltage or current sourced).
// A flagged point whose sweep position lies between the first and last point of the fit window
// fails the extraction (errc::flagged_in_window); flagged points outside are excluded with a
// warning.
[[nodiscard]] result<diode_result> analyze_diode(std::span<const sample> points,
                                                 const diode_options& opt = {});

}  // namespace semilab::methods
