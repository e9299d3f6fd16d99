#pragma once
// Analysis of tabulated raw data: the one entry point shared by live runs (agent/src/runs.cpp
// builds the table from the measured curve and the parameters from the recipe) and by
// `semilab-agent analyze METHOD FILE.csv --param key=value` (re-analysis without an
// instrument). Columns are named SI quantities; parameters are SI values as text.
//
//   diode-iv        v, i                         temperature, i_min, i_max, noise_floor, cheung
//   mosfet-idvg     vg (vgs), id                 vds (required), polarity, vds_half, width, ...
//   mosfet-idvd     vg (vgs), vd (vds), id       polarity, vgs, vds_lin, vds_sat
//   cv-mos          v (vg), c (cp) [, g (gp)]    area (required), polarity, frequency, ...
//   cv-schottky     v (vg), c (cp)               area (required), temperature, nc, v_lo, v_hi
//   four-point      i, v                         probe_spacing (required), diameter, thickness
//   vdp             i_from, i_to, v_plus, v_minus, i, v          thickness
//   hall            i_from, i_to, v_plus, v_minus, b, i, v       r_sheet, thickness
//   tlm             d, r  |  d, i, v             contact_width (required)
//   check-standard  i, v                         nominal (required), tolerance
// An optional `quality` column carries the schemas::quality bits of each row (compliance,
// over-range); analysis_methods() is the authoritative list (analyze --list prints it).
#include <map>
#include <semilab/methods/extraction.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace semilab::methods {

struct data_table {
  std::vector<std::string> columns;       // names, lower case
  std::vector<std::vector<double>> rows;  // rows[r][c]
  std::vector<std::uint32_t> quality;     // per row; empty = none flagged
};

using param_map = std::map<std::string, std::string, std::less<>>;

struct param_info {
  std::string_view key;
  std::string_view unit;  // SI
  std::string_view dflt;  // "" = none (required when `required`)
  bool required = false;
  std::string_view doc;
};

struct analysis_info {
  std::string_view method;
  std::string_view description;
  std::string_view columns;  // what the CSV header names (aliases in parentheses)
  std::vector<param_info> params;
};

[[nodiscard]] std::span<const analysis_info> analysis_methods();
[[nodiscard]] const analysis_info* find_analysis(std::string_view method) noexcept;

// errc::bad_input naming the column or parameter for missing columns, unknown or malformed
// parameters; otherwise the method's own result.
[[nodiscard]] result<extraction> analyze_table(std::string_view method, const data_table& t,
                                               const param_map& params);

// Contact configuration of a four-terminal reading (van der Pauw / Hall tables): current into
// `i_from`, out of `i_to`, voltage V(v_plus) - V(v_minus); contacts 1..4 counter-clockwise.
struct contact_config {
  int i_from = 0, i_to = 0, v_plus = 0, v_minus = 0;
  friend bool operator==(const contact_config&, const contact_config&) = default;
};
// The 8 van der Pauw configurations in NIST order (R21,34 R12,43 R43,12 R34,21 | R32,41 R23,14
// R14,23 R41,32) and the 4 Hall ones (current 1->3 V24, 3->1 V42, 4->2 V13, 2->4 V31).
[[nodiscard]] std::span<const contact_config> vdp_configs() noexcept;
[[nodiscard]] std::span<const contact_config> hall_configs() noexcept;

}  // namespace semilab::methods
