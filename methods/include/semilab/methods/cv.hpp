#pragma once
// C-V of MOS capacitors and Schottky (one-sided) junctions, after Schroder ch. 2/6 and the
// Keithley 4200A formulator (COX, TOXNM, CFB, VFB, NDOPING, RS, BEST_LO/BEST_HI).
#include <semilab/methods/extraction.hpp>
#include <span>

namespace semilab::methods {

inline constexpr std::string_view kCvMosVersion = "cv-mos/1.0";
inline constexpr std::string_view kCvSchottkyVersion = "cv-schottky/1.0";

enum class substrate { p, n };

// One C-V point in the parallel model: Cp (F) and, optionally, Gp (S) for the series-resistance
// correction.
struct cv_point {
  double v = 0;
  double c = 0;
  double g = NAN;
  std::uint32_t quality = 0;
};

// Series-resistance correction (Nicollian & Brews): Rs from the accumulation reading
// Rs = Gma/(Gma^2 + w^2 Cma^2); every point corrected as
// a = Gm - (Gm^2 + w^2 Cm^2) Rs, Cc = (Gm^2 + w^2 Cm^2) Cm / (a^2 + w^2 Cm^2).
struct series_correction {
  double rs = 0;  // ohm
  std::vector<cv_point> corrected;
};
[[nodiscard]] result<series_correction> correct_series_resistance(std::span<const cv_point> pts,
                                                                  double frequency,
                                                                  std::size_t accumulation_index);

struct cv_mos_options {
  double area = 0;  // m^2 (required)
  substrate type = substrate::p;
  double eps_ox = constants::eps_r_sio2;  // relative
  double eps_s = constants::eps_r_si;     // relative
  double temperature = constants::t_ref;
  double frequency = 0;  // Hz; with G given, enables the series-resistance correction
  double doping = 0;     // m^-3 given by the user for C_FB (0 = from the profile)
  // 1/C^2 fit window on VG (V). Both NaN: the valid profile window, W in [3 L_D, 0.95 W_max].
  double fit_v_lo = NAN;
  double fit_v_hi = NAN;
};

struct profile_point {
  double w = 0;  // depletion width, m
  double n = 0;  // doping, m^-3
};

struct cv_mos_result {
  extraction ex;  // cox (F), c_ox_area (F/m^2), tox (m, CET), vfb (V), c_fb (F), n_sub (m^-3),
                  // l_debye (m), rs_series (ohm, when corrected)
  std::vector<profile_point> profile;  // N(W) in the valid window
};

// points in sweep order; VG monotonic.
[[nodiscard]] result<cv_mos_result> analyze_cv_mos(std::span<const cv_point> points,
                                                   const cv_mos_options& opt);

struct cv_schottky_options {
  double area = 0;  // m^2 (required)
  double eps_s = constants::eps_r_si;
  double temperature = constants::t_ref;
  double nc = 2.8e25;  // m^-3, effective density of states for phi_B (Si, 300 K)
  double v_lo = NAN;   // fit window on V (V); NaN = all valid points
  double v_hi = NAN;
};

// 1/C^2 = 2 (Vbi - V - kT/q) / (q eps_s N A^2): n_d (m^-3), v_intercept (V), vbi (V), phi_b (V).
[[nodiscard]] result<extraction> analyze_cv_schottky(std::span<const cv_point> points,
                                                     const cv_schottky_options& opt);

}  // namespace semilab::methods
