#pragma once
// Statistical process control for the query API (GET /api/v1/spc): Shewhart X̄-R, X̄-S and
// individuals/moving-range (I-MR) charts, Western Electric and Nelson run rules flagged per
// point, and capability (Cp, Cpk, Pp, Ppk) against given specification limits.
//
// Conventions (NIST/SEMATECH e-Handbook §6.3.2, ASTM E2587, Montgomery ch. 6):
// - Limits use the tabulated constants for subgroup sizes 2..25 (A2, D3, D4, d2 to 3 decimals;
//   A3, B3, B4 to 3; c4 to 4), as the published worked examples do, so their printed figures
//   are reproduced. X̄-S beyond 25 computes c4 exactly (gamma function); X̄-R stops at 25.
// - I chart: x̄ ± 3·MR̄/1.128 (NIST §6.3.2.2); MR chart: UCL = 3.267·MR̄, LCL = 0.
// - Sigma within (Cp, Cpk): R̄/d2, S̄/c4 or MR̄/1.128 of the chart; sigma overall (Pp, Ppk): the
//   sample standard deviation (n − 1) of every value.
// - Run rules apply to the X̄ / I chart (zones of width (UCL − CL)/3 around CL); the dispersion
//   chart is checked for points beyond its limits only (its limits are not symmetric).
//   A rule is flagged at the point that completes the pattern.
// Pure functions, no I/O: usable from any thread.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace semilab::central::spc {

// Tabulated constants for subgroup size n (2..25); nullopt outside the table.
struct constants {
  int n = 0;
  double A2 = 0, D3 = 0, D4 = 0, d2 = 0;
  double A3 = 0, B3 = 0, B4 = 0, c4 = 0;
};
std::optional<constants> table_constants(int n) noexcept;
// c4(n) = sqrt(2/(n−1))·Γ(n/2)/Γ((n−1)/2), exact (n >= 2).
double c4_exact(int n) noexcept;

enum class chart_kind { xbar_r, xbar_s, imr };
std::string_view to_string(chart_kind k) noexcept;
std::optional<chart_kind> parse_chart_kind(std::string_view s) noexcept;

// Run rules, as bits. WE = Western Electric Handbook (1956), N = Nelson (1984).
namespace rule {
inline constexpr std::uint32_t n1 = 1u << 0;   // 1 point beyond 3σ (= WE1)
inline constexpr std::uint32_t n2 = 1u << 1;   // 9 in a row on one side of CL
inline constexpr std::uint32_t n3 = 1u << 2;   // 6 in a row steadily increasing or decreasing
inline constexpr std::uint32_t n4 = 1u << 3;   // 14 in a row alternating up and down
inline constexpr std::uint32_t n5 = 1u << 4;   // 2 of 3 beyond 2σ, same side (= WE2)
inline constexpr std::uint32_t n6 = 1u << 5;   // 4 of 5 beyond 1σ, same side (= WE3)
inline constexpr std::uint32_t n7 = 1u << 6;   // 15 in a row within 1σ (either side)
inline constexpr std::uint32_t n8 = 1u << 7;   // 8 in a row beyond 1σ (either side)
inline constexpr std::uint32_t we4 = 1u << 8;  // 8 in a row on one side of CL
inline constexpr std::uint32_t kAll = (1u << 9) - 1;
}  // namespace rule
// Names of the rules set in `bits`, Western Electric first ("WE1", "WE2", ..., "N1", ... "N8").
std::vector<std::string> rule_names(std::uint32_t bits);

struct limits {
  double lcl = 0, cl = 0, ucl = 0;
};

// Flags for each point of a chart with centre `cl` and 3σ limits `ucl`/`lcl` (zones symmetric:
// σ = (ucl − cl)/3). `enabled` masks the rules checked.
std::vector<std::uint32_t> apply_rules(std::span<const double> points, const limits& l,
                                       std::uint32_t enabled = rule::kAll);

struct chart {
  chart_kind kind = chart_kind::imr;
  int subgroup = 1;             // n (1 for I-MR)
  std::size_t values = 0;       // individual values used (whole subgroups only)
  limits center;                // X̄ or I chart
  limits dispersion;            // R, S or MR chart
  std::vector<double> center_points;      // subgroup means or individuals
  std::vector<double> dispersion_points;  // ranges, standard deviations or moving ranges
                                          // (I-MR: MR[i] belongs to point i + 1)
  std::vector<std::uint32_t> center_rules;      // per center point
  std::vector<std::uint32_t> dispersion_rules;  // per dispersion point (rule n1 only)
  double mean = 0;           // mean of all values used
  double sigma_within = 0;   // R̄/d2, S̄/c4 or MR̄/1.128
  double sigma_overall = 0;  // sample standard deviation (n − 1) of all values
};

// Builds a chart from values in time order. X̄ charts use consecutive subgroups of `subgroup`
// values (a trailing partial subgroup is left out; `values` says how many were used).
// nullopt with `error` set when the input cannot make the chart (size out of range, too few
// values, a non-finite value).
std::optional<chart> make_chart(chart_kind kind, std::span<const double> values, int subgroup,
                                std::string& error);

struct capability {
  std::optional<double> cp, cpk, cpu, cpl;  // sigma within
  std::optional<double> pp, ppk, ppu, ppl;  // sigma overall
};
// Indices for the given limits (either may be absent; Cp/Pp need both). Absent when the sigma
// is zero.
capability capability_of(double mean, double sigma_within, double sigma_overall,
                         std::optional<double> lsl, std::optional<double> usl);

}  // namespace semilab::central::spc
