#pragma once
// MOSFET transfer curve ID(VGS) in the linear region: threshold by extrapolation in the linear
// region at maximum gm (ELR, JEDEC VT(ext)) with an explicit VDS/2 option, constant-current
// threshold (log interpolation), subthreshold swing (minimum over a sliding window), gm,max,
// on/off ratio and the low-field mobility gm,max*L/(W*Cox*VDS).
//
// p-channel devices are analysed mirrored (VGS -> -VGS, ID -> -ID, VDS -> -VDS) and the
// voltages mirrored back, so every threshold keeps its sign. The intercept of the ELR tangent is
// Vth + VDS/2 (signed VDS); subtracting VDS/2 gives Vth. EasyEXPERT writes this as
// Von - Vd*Polarity/2 with Vd entered as a magnitude.
#include <semilab/methods/extraction.hpp>
#include <span>

namespace semilab::methods {

inline constexpr std::string_view kMosfetVersion = "mosfet-idvg/1.0";

enum class channel { n, p };

struct mosfet_options {
  double vds = 0;  // V, signed (required, non-zero)
  channel polarity = channel::n;
  bool vds_half = true;       // subtract VDS/2 from the ELR intercept
  double width = 0;           // m (0 = unknown: no constant-current scaling, no mobility)
  double length = 0;          // m
  double cox = 0;             // F/m^2 (0 = unknown: no mobility)
  double id0 = 1e-7;          // A: constant-current criterion is ID = id0 * W/L (JESD28: 0.1 uA)
  double vgs_on = NAN;        // V: Ion at this VGS (NaN = the last point of the sweep)
  double vgs_off = 0;         // V: Ioff at this VGS (NaN = the minimum |ID|)
  double noise_floor = 0;     // A: SS window stays above 10 x this; 0 = the minimum |ID| measured
  double range_floor = 0;     // A: an Ioff at or below this makes on/off a lower bound
  std::size_t ss_window = 3;  // points per SS window (>= 3)
  double temperature = constants::t_ref;
};

// points: x = VGS, y = ID, in sweep order; VGS must be strictly monotonic (one direction of a
// dual sweep). Result parameters: gm_max (S), vgs_gm_max (V), vth_gm (V), vth_cc (V), ss (V/dec),
// ion (A), ioff (A), on_off (1), mobility (m^2/(V*s), when W, L and Cox are given).
[[nodiscard]] result<extraction> analyze_mosfet_transfer(std::span<const sample> points,
                                                         const mosfet_options& opt);

}  // namespace semilab::methods

namespace semilab::methods {

inline constexpr std::string_view kMosfetOutputVersion = "mosfet-idvd/1.0";

// One point of the output characteristics: ID(VDS) at a fixed VGS (one curve per VGS value).
struct idvd_point {
  double vgs = 0;
  double vds = 0;
  double id = 0;
  std::uint32_t quality = 0;
};

struct mosfet_output_options {
  channel polarity = channel::n;
  double vgs = NAN;      // V: the curve analysed (NaN = the curve of the largest |VGS|)
  double vds_lin = 0.1;  // V: linear window |VDS| <= this (at least 4 points)
  double vds_sat = NAN;  // V: saturation window |VDS| >= this (NaN = 0.7 x the largest |VDS|)
};

// Output characteristics, one curve (mirrored for p-channel like the transfer analysis):
//   linear region: ID = c0 + c1 VDS + c2 VDS^2 over |VDS| <= vds_lin; r_on = 1/c1 (ohm, the
//   slope at VDS -> 0, free of the VDS^2/2 bias a straight line would have);
//   saturation: ID = a + g_ds VDS over |VDS| >= vds_sat; id_sat (A) = the fit at the largest
//   |VDS|, g_ds (S), r_out = 1/g_ds (ohm), v_early = a/g_ds (V, the magnitude of the VDS
//   intercept; only when g_ds > 0). Also vgs (V, the curve), curves (1, in the data). Every
//   fitted value carries its standard error. A flagged point inside a window fails the
//   extraction; a saturation slope above half the linear one is reported as "no saturation".
[[nodiscard]] result<extraction> analyze_mosfet_output(std::span<const idvd_point> points,
                                                       const mosfet_output_options& opt = {});

}  // namespace semilab::methods
