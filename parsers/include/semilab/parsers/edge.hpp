#pragma once
// Edge parameters computed from parsed spectra (measurement-methods.md §7, reference cases
// T8–T11 in §9). Pure functions: no I/O, no state, no exceptions; errors are values.
#include <semilab/parsers/spectrum.hpp>

#include <span>
#include <string>
#include <vector>

namespace semilab::parsers {

// Errors of the analysis functions: a reason a person can act on ("fewer than 5 points in the
// window"), never a partial number.
struct analysis_error {
  std::string reason;
};
[[noreturn]] void throw_exception_from_error(const analysis_error& e, const boost::source_location& loc);
template <class T>
using analysis_result = boost::system::result<T, analysis_error>;

// ---- Peak fit --------------------------------------------------------------------------------
enum class peak_shape { gaussian, lorentzian, pseudo_voigt };

struct peak_fit_options {
  peak_shape shape = peak_shape::gaussian;
  double x_min = -1e300;  // fit window (inclusive); default: all points
  double x_max = 1e300;
  int max_iterations = 200;
};

// y = b0 + b1·(x − center) + A·profile((x − center)/fwhm); pseudo-Voigt: η·L + (1−η)·G, same fwhm.
struct peak_fit {
  double center = 0;
  double fwhm = 0;
  double amplitude = 0;  // height above the baseline at the centre
  double area = 0;       // integral of the peak above the baseline
  double eta = 0;        // pseudo-Voigt Lorentzian fraction (1 for Lorentzian, 0 for Gaussian)
  double baseline_offset = 0;  // b0: baseline value at the centre
  double baseline_slope = 0;   // b1
  double rms_residual = 0;
  double center_sigma = 0;  // 1-σ from the covariance, scaled by the residual variance
  double fwhm_sigma = 0;
  int iterations = 0;
  std::size_t points = 0;
};

// Levenberg–Marquardt on a single peak with a linear baseline. Initial values from the data:
// baseline through the window's end points, the highest point above it, half-maximum crossings.
[[nodiscard]] analysis_result<peak_fit> fit_peak(std::span<const double> x, std::span<const double> y,
                                                 const peak_fit_options& opt = {});

// ---- Raman / PL ------------------------------------------------------------------------------
inline constexpr double kSiRamanLine = 520.7;  // cm⁻¹ (NMIJ CRM 5606-a: 520.45 ± 0.28)
struct line_check {
  double measured = 0;
  double reference = 0;
  double deviation = 0;  // measured − reference
  bool pass = false;     // |deviation| <= tolerance
};
[[nodiscard]] line_check raman_si_check(double measured_center_cm1, double tolerance_cm1 = 1.0,
                                        double reference_cm1 = kSiRamanLine);
// E[eV] = hc/λ with hc = 1239.841984 eV·nm (CODATA 2018).
[[nodiscard]] double photon_energy_ev(double wavelength_nm);

// ---- XRD -------------------------------------------------------------------------------------
inline constexpr double kCuKAlpha1Angstrom = 1.5405929;
// Bragg: d = λ/(2 sin θ), two_theta in degrees, result in the unit of λ.
[[nodiscard]] analysis_result<double> bragg_d_spacing(double two_theta_deg, double wavelength = kCuKAlpha1Angstrom);
// Scherrer: D = K·λ/(β·cos θ), β = sqrt(β_obs² − β_inst²) in radians (Gaussian broadening
// subtraction). FWHMs in degrees 2θ; result in the unit of λ.
[[nodiscard]] analysis_result<double> scherrer_size(double two_theta_deg, double fwhm_obs_deg, double fwhm_inst_deg = 0.0,
                                                    double k = 0.9, double wavelength = kCuKAlpha1Angstrom);

// ---- Tauc ------------------------------------------------------------------------------------
enum class tauc_transition { direct_allowed, indirect_allowed };  // r = 1/2, r = 2
struct tauc_options {
  tauc_transition transition = tauc_transition::direct_allowed;
  std::size_t min_window = 8;     // points in the smallest candidate window
  double min_r2 = 0.999;          // a window must be at least this linear
  double min_fraction = 0.02;     // ignore points whose Tauc value is below this fraction of the max
};
struct tauc_result {
  double band_gap_ev = 0;  // x-intercept of the selected line
  double slope = 0;
  double r2 = 0;
  double window_lo_ev = 0;  // the selected linear window, inclusive
  double window_hi_ev = 0;
  std::size_t window_points = 0;
};
// energy_ev ascending or descending; alpha in any consistent unit (α = 2.303·A/t for absorbance).
// Automatic window: among windows with R² ≥ min_r2 take the steepest (the absorption edge, not
// the Urbach tail nor the saturated top), then grow it while R² stays ≥ min_r2.
[[nodiscard]] analysis_result<tauc_result> tauc_band_gap(std::span<const double> energy_ev, std::span<const double> alpha,
                                                        const tauc_options& opt = {});

// ---- Thin-film fringes -----------------------------------------------------------------------
// Thickness from the wavelengths of consecutive interference maxima (or minima) at normal
// incidence: 2·n·d = m·λ_m, so 1/λ is linear in the order with slope 1/(2nd). For two adjacent
// extrema this is d = λ1·λ2/(2n·(λ1 − λ2)). Result in the unit of the wavelengths.
[[nodiscard]] analysis_result<double> fringe_thickness(std::span<const double> extrema_wavelengths, double refractive_index);
// Local maxima of y (x ascending) that rise above both neighbours' minima by min_prominence.
[[nodiscard]] std::vector<double> find_maxima(std::span<const double> x, std::span<const double> y, double min_prominence);

// ---- XPS -------------------------------------------------------------------------------------
struct xps_reference {
  const char* line;
  double binding_energy_ev;
};
// ISO 15472 (monochromatic Al Kα) and adventitious carbon.
inline constexpr xps_reference kXpsReferences[] = {
    {"C 1s", 284.8}, {"Au 4f7/2", 83.96}, {"Ag 3d5/2", 368.21}, {"Cu 2p3/2", 932.62}};
struct xps_check {
  std::string line;
  double measured = 0;
  double reference = 0;
  double shift = 0;  // reference − measured: add to the measured scale to correct it
  bool pass = false;
};
// line names as in kXpsReferences; an unknown line is an error.
[[nodiscard]] analysis_result<xps_check> xps_scale_check(std::string_view line, double measured_ev, double tolerance_ev = 0.1);

}  // namespace semilab::parsers
