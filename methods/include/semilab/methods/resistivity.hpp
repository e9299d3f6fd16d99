#pragma once
// Sheet resistance and transport: collinear four-point probe (Smits finite circle F2, Valdes /
// Smits image-series thickness correction, Rymaszewski dual configuration), van der Pauw (NIST
// iteration: Newton on z = 1/Rs with guarded bisection), Hall (NIST VC..VF sum), and TLM.
#include <semilab/methods/extraction.hpp>
#include <span>

namespace semilab::methods {

inline constexpr std::string_view kFourPointVersion = "four-point/1.0";
inline constexpr std::string_view kVdpVersion = "vdp/1.0";
inline constexpr std::string_view kHallVersion = "hall/1.0";
inline constexpr std::string_view kTlmVersion = "tlm/1.0";

// pi/ln2: infinite thin sheet, Rs = 4.5324 V/I.
inline constexpr double kPiOverLn2 = 4.53236014182719;

// Smits' correction for a circular sample of diameter d, probe at the centre:
// F2 = ln2 / (ln2 + ln(((d/s)^2 + 3)/((d/s)^2 - 3))). errc::bad_input for d/s <= sqrt(3).
[[nodiscard]] result<double> smits_f2(double d_over_s);
// Valdes/Smits image series G7(t/s) for an insulating back side.
[[nodiscard]] result<double> g7(double t_over_s);
// The thickness factor relative to the thin-film formula: 2 ln2 (s/t) / G7(t/s)
// (1.000 at t/s = 0.25, 0.9215 at 1.0).
[[nodiscard]] result<double> thickness_factor(double t_over_s);

struct four_point_geometry {
  double spacing = 0;             // s, m (required)
  double diameter = 0;            // m; 0 = infinite sheet (F2 = 1)
  double thickness = 0;           // m; 0 = report sheet resistance only
  double linearity_limit = 0.01;  // largest relative residual of V(I) before a warning
};

// readings: x = I (A), y = V (V). At least one +I/-I pair or two current levels; three or more
// levels also check linearity. The slope of V(I) cancels thermo-EMF offsets (current reversal).
// Parameters: r (ohm, V/I), f2, r_sheet (ohm/sq), and with thickness: thickness_factor,
// resistivity (ohm*m).
[[nodiscard]] result<extraction> analyze_four_point(std::span<const sample> readings,
                                                    const four_point_geometry& g);

// Rymaszewski dual configuration: Ra = V23/I14, Rb = V24/I13, K = Ra/Rb,
// Rs = Ra (-14.696 + 25.173 K - 7.872 K^2). Parameters: k_ratio, r_sheet.
[[nodiscard]] result<extraction> analyze_four_point_dual(double ra, double rb);

// Solves exp(-pi R_A/Rs) + exp(-pi R_B/Rs) = 1.
struct vdp_solution {
  double r_sheet = 0;
  int iterations = 0;
  bool bisection_used = false;
};
[[nodiscard]] result<vdp_solution> solve_van_der_pauw(double r_a, double r_b);

// The eight four-terminal resistances R_ij,kl = V_kl / I_ij (ohm).
struct vdp_readings {
  double r21_34 = 0, r12_43 = 0, r43_12 = 0, r34_21 = 0;  // R_A group
  double r32_41 = 0, r23_14 = 0, r14_23 = 0, r41_32 = 0;  // R_B group
};
struct vdp_options {
  double thickness = 0;             // m; 0 = sheet only
  double reciprocity_limit = 0.03;  // relative disagreement of reciprocal pairs before a warning
  double geometry_limit = 2.0;      // R_A/R_B (or its inverse) above this: geometry warning
};
// Parameters: r_a, r_b (ohm), r_sheet (ohm/sq), resistivity (ohm*m, with thickness), iterations.
[[nodiscard]] result<extraction> analyze_van_der_pauw(const vdp_readings& r,
                                                      const vdp_options& opt = {});

// Hall voltages (V) per NIST: V24P/V24N with current 1->3 at +B/-B, V42 with 3->1, V13 with
// 4->2, V31 with 2->4.
struct hall_readings {
  double current = 0;  // A (> 0)
  double field = 0;    // T (> 0, the magnitude of +B)
  double v24p = 0, v24n = 0, v42p = 0, v42n = 0;
  double v13p = 0, v13n = 0, v31p = 0, v31n = 0;
};
struct hall_options {
  double r_sheet = 0;    // ohm/sq from van der Pauw (0: no mobility)
  double r_sheet_u = 0;  // its standard uncertainty (0: unknown)
  double thickness = 0;  // m (0: no bulk density, no RH)
};
// Uncertainties: v_sum's is 4x the standard error of the mean of VC..VF (their spread: offsets
// that field reversal did not cancel, noise), propagated to n_sheet, mobility, density and RH.
// Parameters: carrier_type (text "n" | "p"), v_sum (V), n_sheet (m^-2), mobility (m^2/(V*s)),
// density (m^-3), hall_coefficient (m^3/C).
[[nodiscard]] result<extraction> analyze_hall(const hall_readings& h, const hall_options& opt = {});

// TLM: points x = gap length d (m), y = total resistance R (ohm); R = 2 Rc + (Rsh/W) d.
// Parameters: r_contact (ohm), r_sheet (ohm/sq), l_transfer (m), rho_c (ohm*m^2), each with its
// standard error from the fit (at least 3 distinct gaps).
[[nodiscard]] result<extraction> analyze_tlm(std::span<const sample> points, double width);

}  // namespace semilab::methods

namespace semilab::methods {

inline constexpr std::string_view kCheckStandardVersion = "check-standard/1.0";

struct check_standard_options {
  double nominal = 0;    // ohm, the certified value of the reference resistor (required, > 0)
  double tolerance = 0;  // relative (e.g. 1e-3); 0 = no tolerance check
};

// A reference resistor measured on a schedule and tracked on a control chart.
// readings: x = I (A), y = V (V). Two or more distinct currents (e.g. +I/-I): r is the slope of
// V(I) (thermo-EMF offsets cancel) with its standard error; one current level, repeated: r is
// the mean of V/I with the standard error of the mean. Parameters: r (ohm), deviation (r -
// nominal, ohm), deviation_rel ((r - nominal)/nominal, 1), nominal (ohm), each with its
// uncertainty; a warning when |deviation_rel| exceeds the tolerance by more than its
// uncertainty. The value charted is r (centre line: nominal).
[[nodiscard]] result<extraction> analyze_check_standard(std::span<const sample> readings,
                                                        const check_standard_options& opt);

}  // namespace semilab::methods
