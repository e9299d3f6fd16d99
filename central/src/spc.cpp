#include <semilab/central/spc.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

namespace semilab::central::spc {

namespace {

// ASTM E2587 / NIST e-Handbook §6.3.2.1 / Montgomery Appendix VI, n = 2..25, as printed.
// (tests/unit/central/spc_test.cpp recomputes every entry from d2, d3 and c4.)
struct row {
  double A2, D3, D4, d2, A3, B3, B4, c4;
};
constexpr std::array<row, 24> kTable{{
    {1.880, 0.000, 3.267, 1.128, 2.659, 0.000, 3.267, 0.7979},  // n = 2
    {1.023, 0.000, 2.574, 1.693, 1.954, 0.000, 2.568, 0.8862},
    {0.729, 0.000, 2.282, 2.059, 1.628, 0.000, 2.266, 0.9213},
    {0.577, 0.000, 2.114, 2.326, 1.427, 0.000, 2.089, 0.9400},  // n = 5
    {0.483, 0.000, 2.004, 2.534, 1.287, 0.030, 1.970, 0.9515},
    {0.419, 0.076, 1.924, 2.704, 1.182, 0.118, 1.882, 0.9594},
    {0.373, 0.136, 1.864, 2.847, 1.099, 0.185, 1.815, 0.9650},
    {0.337, 0.184, 1.816, 2.970, 1.032, 0.239, 1.761, 0.9693},
    {0.308, 0.223, 1.777, 3.078, 0.975, 0.284, 1.716, 0.9727},  // n = 10
    {0.285, 0.256, 1.744, 3.173, 0.927, 0.321, 1.679, 0.9754},
    {0.266, 0.283, 1.717, 3.258, 0.886, 0.354, 1.646, 0.9776},
    {0.249, 0.307, 1.693, 3.336, 0.850, 0.382, 1.618, 0.9794},
    {0.235, 0.328, 1.672, 3.407, 0.817, 0.406, 1.594, 0.9810},
    {0.223, 0.347, 1.653, 3.472, 0.789, 0.428, 1.572, 0.9823},  // n = 15
    {0.212, 0.363, 1.637, 3.532, 0.763, 0.448, 1.552, 0.9835},
    {0.203, 0.378, 1.622, 3.588, 0.739, 0.466, 1.534, 0.9845},
    {0.194, 0.391, 1.608, 3.640, 0.718, 0.482, 1.518, 0.9854},
    {0.187, 0.403, 1.597, 3.689, 0.698, 0.497, 1.503, 0.9862},
    {0.180, 0.415, 1.585, 3.735, 0.680, 0.510, 1.490, 0.9869},  // n = 20
    {0.173, 0.425, 1.575, 3.778, 0.663, 0.523, 1.477, 0.9876},
    {0.167, 0.434, 1.566, 3.819, 0.647, 0.534, 1.466, 0.9882},
    {0.162, 0.443, 1.557, 3.858, 0.633, 0.545, 1.455, 0.9887},
    {0.157, 0.451, 1.548, 3.895, 0.619, 0.555, 1.445, 0.9892},
    {0.153, 0.459, 1.541, 3.931, 0.606, 0.565, 1.435, 0.9896},  // n = 25
}};

constexpr int kMaxSubgroupS = 100;
constexpr double kD2n2 = 1.128;  // d2 for the moving range of two (NIST §6.3.2.2)
constexpr double kD4n2 = 3.267;

double mean_of(std::span<const double> v) {
  return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

double sample_sd(std::span<const double> v, double mean) {
  if (v.size() < 2) return 0;
  double ss = 0;
  for (double x : v) ss += (x - mean) * (x - mean);
  return std::sqrt(ss / static_cast<double>(v.size() - 1));
}

int side_of(double x, double cl) { return x > cl ? 1 : (x < cl ? -1 : 0); }

}  // namespace

std::optional<constants> table_constants(int n) noexcept {
  if (n < 2 || n > 25) return std::nullopt;
  const auto& r = kTable[static_cast<std::size_t>(n - 2)];
  return constants{n, r.A2, r.D3, r.D4, r.d2, r.A3, r.B3, r.B4, r.c4};
}

double c4_exact(int n) noexcept {
  const double k = static_cast<double>(n);
  return std::sqrt(2.0 / (k - 1)) * std::exp(std::lgamma(k / 2) - std::lgamma((k - 1) / 2));
}

std::string_view to_string(chart_kind k) noexcept {
  switch (k) {
    case chart_kind::xbar_r: return "xbar_r";
    case chart_kind::xbar_s: return "xbar_s";
    case chart_kind::imr: return "imr";
  }
  return "?";
}

std::optional<chart_kind> parse_chart_kind(std::string_view s) noexcept {
  if (s == "xbar_r") return chart_kind::xbar_r;
  if (s == "xbar_s") return chart_kind::xbar_s;
  if (s == "imr") return chart_kind::imr;
  return std::nullopt;
}

std::vector<std::string> rule_names(std::uint32_t bits) {
  struct named {
    std::uint32_t bit;
    const char* name;
  };
  // Western Electric rules 1-3 are Nelson 1, 5 and 6; both names are listed.
  static constexpr named kNames[] = {
      {rule::n1, "WE1"}, {rule::n5, "WE2"}, {rule::n6, "WE3"}, {rule::we4, "WE4"},
      {rule::n1, "N1"},  {rule::n2, "N2"},  {rule::n3, "N3"},  {rule::n4, "N4"},
      {rule::n5, "N5"},  {rule::n6, "N6"},  {rule::n7, "N7"},  {rule::n8, "N8"},
  };
  std::vector<std::string> out;
  for (const auto& n : kNames)
    if (bits & n.bit) out.emplace_back(n.name);
  return out;
}

std::vector<std::uint32_t> apply_rules(std::span<const double> p, const limits& l,
                                       std::uint32_t enabled) {
  const std::size_t n = p.size();
  std::vector<std::uint32_t> out(n, 0);
  const double sigma = (l.ucl - l.cl) / 3;
  // zone(i): signed distance in sigmas from CL (0 when sigma is 0: every rule but N1-N4 off)
  auto z = [&](std::size_t i) { return sigma > 0 ? (p[i] - l.cl) / sigma : 0.0; };
  std::size_t same_side = 0, up_down = 0, trend = 0, within1 = 0, beyond1 = 0;
  int last_side = 0, last_dir = 0, last_trend = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t f = 0;
    if (p[i] > l.ucl || p[i] < l.lcl) f |= rule::n1;

    const int s = side_of(p[i], l.cl);
    same_side = (s != 0 && s == last_side) ? same_side + 1 : (s != 0 ? 1 : 0);
    last_side = s;
    if (same_side >= 9) f |= rule::n2;
    if (same_side >= 8) f |= rule::we4;

    // Steady trend: consecutive differences of one sign (a tie breaks it).
    if (i > 0) {
      const int d = p[i] > p[i - 1] ? 1 : (p[i] < p[i - 1] ? -1 : 0);
      trend = (d != 0 && d == last_trend) ? trend + 1 : (d != 0 ? 1 : 0);
      last_trend = d;
      if (trend >= 5) f |= rule::n3;  // 6 points, 5 steps
      up_down = (d != 0 && d == -last_dir) ? up_down + 1 : (d != 0 ? 1 : 0);
      last_dir = d;
      if (up_down >= 13) f |= rule::n4;  // 14 points, 13 alternating steps
    }

    if (sigma > 0) {
      const double zi = z(i);
      // 2 of 3 beyond 2σ and 4 of 5 beyond 1σ, on the side of the current point.
      auto count_beyond = [&](std::size_t window, double k, int side) {
        std::size_t c = 0;
        for (std::size_t j = i + 1 - std::min(window, i + 1); j <= i; ++j)
          if (side * z(j) > k) ++c;
        return c;
      };
      const int zs = zi > 0 ? 1 : -1;
      if (std::abs(zi) > 2 && count_beyond(3, 2, zs) >= 2) f |= rule::n5;
      if (std::abs(zi) > 1 && count_beyond(5, 1, zs) >= 4) f |= rule::n6;
      within1 = std::abs(zi) < 1 ? within1 + 1 : 0;
      if (within1 >= 15) f |= rule::n7;
      beyond1 = std::abs(zi) > 1 ? beyond1 + 1 : 0;
      if (beyond1 >= 8) f |= rule::n8;
    }
    out[i] = f & enabled;
  }
  return out;
}

std::optional<chart> make_chart(chart_kind kind, std::span<const double> values, int subgroup,
                                std::string& error) {
  for (double v : values) {
    if (!std::isfinite(v)) {
      error = "a value is not finite";
      return std::nullopt;
    }
  }
  chart c;
  c.kind = kind;
  if (kind == chart_kind::imr) {
    if (values.size() < 2) {
      error = "an individuals chart needs at least 2 values";
      return std::nullopt;
    }
    c.subgroup = 1;
    c.values = values.size();
    c.center_points.assign(values.begin(), values.end());
    for (std::size_t i = 1; i < values.size(); ++i)
      c.dispersion_points.push_back(std::abs(values[i] - values[i - 1]));
    const double mr_bar = mean_of(c.dispersion_points);
    c.mean = mean_of(values);
    c.sigma_within = mr_bar / kD2n2;
    c.center = {c.mean - 3 * c.sigma_within, c.mean, c.mean + 3 * c.sigma_within};
    c.dispersion = {0, mr_bar, kD4n2 * mr_bar};
  } else {
    const int max_n = kind == chart_kind::xbar_r ? 25 : kMaxSubgroupS;
    if (subgroup < 2 || subgroup > max_n) {
      error = "subgroup size must be 2.." + std::to_string(max_n) +
              (kind == chart_kind::xbar_r ? " for X̄-R (use xbar_s for larger subgroups)" : "");
      return std::nullopt;
    }
    const auto n = static_cast<std::size_t>(subgroup);
    const std::size_t groups = values.size() / n;
    if (groups < 2) {
      error = "an X̄ chart needs at least 2 whole subgroups of " + std::to_string(subgroup) +
              " values (got " + std::to_string(values.size()) + " values)";
      return std::nullopt;
    }
    c.subgroup = subgroup;
    c.values = groups * n;
    for (std::size_t g = 0; g < groups; ++g) {
      auto sg = values.subspan(g * n, n);
      const double m = mean_of(sg);
      c.center_points.push_back(m);
      if (kind == chart_kind::xbar_r) {
        auto [lo, hi] = std::minmax_element(sg.begin(), sg.end());
        c.dispersion_points.push_back(*hi - *lo);
      } else {
        c.dispersion_points.push_back(sample_sd(sg, m));
      }
    }
    const double grand = mean_of(c.center_points);
    const double bar = mean_of(c.dispersion_points);
    c.mean = mean_of(values.first(c.values));
    if (kind == chart_kind::xbar_r) {
      const auto k = *table_constants(subgroup);
      c.center = {grand - k.A2 * bar, grand, grand + k.A2 * bar};
      c.dispersion = {k.D3 * bar, bar, k.D4 * bar};
      c.sigma_within = bar / k.d2;
    } else {
      double A3, B3, B4, c4;
      if (auto k = table_constants(subgroup)) {
        A3 = k->A3, B3 = k->B3, B4 = k->B4, c4 = k->c4;
      } else {
        c4 = c4_exact(subgroup);
        const double w = 3 * std::sqrt(1 - c4 * c4) / c4;
        A3 = 3 / (c4 * std::sqrt(static_cast<double>(subgroup)));
        B3 = std::max(0.0, 1 - w);
        B4 = 1 + w;
      }
      c.center = {grand - A3 * bar, grand, grand + A3 * bar};
      c.dispersion = {B3 * bar, bar, B4 * bar};
      c.sigma_within = bar / c4;
    }
  }
  c.sigma_overall = sample_sd(values.first(c.values), c.mean);
  c.center_rules = apply_rules(c.center_points, c.center);
  c.dispersion_rules = apply_rules(c.dispersion_points, c.dispersion, rule::n1);
  return c;
}

capability capability_of(double mean, double sigma_within, double sigma_overall,
                         std::optional<double> lsl, std::optional<double> usl) {
  capability out;
  auto fill = [&](double sigma, std::optional<double>& p, std::optional<double>& pk,
                  std::optional<double>& pu, std::optional<double>& pl) {
    if (!(sigma > 0)) return;
    if (usl) pu = (*usl - mean) / (3 * sigma);
    if (lsl) pl = (mean - *lsl) / (3 * sigma);
    if (usl && lsl) p = (*usl - *lsl) / (6 * sigma);
    if (pu && pl)
      pk = std::min(*pu, *pl);
    else if (pu)
      pk = pu;
    else if (pl)
      pk = pl;
  };
  fill(sigma_within, out.cp, out.cpk, out.cpu, out.cpl);
  fill(sigma_overall, out.pp, out.ppk, out.ppu, out.ppl);
  return out;
}

}  // namespace semilab::central::spc
