// SPC golden tests: published worked examples reproduced to their printed precision, the
// constants table recomputed from first principles, and each run rule on a pattern made for it.
#include <semilab/central/spc.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

using namespace semilab::central::spc;

namespace {

// Rounds to `digits` decimals, as a printed figure.
double printed(double v, int digits) {
  const double k = std::pow(10.0, digits);
  return std::round(v * k) / k;
}

bool has(std::uint32_t flags, std::uint32_t bit) { return (flags & bit) != 0; }

double phi(double x) { return 0.5 * (1 + std::erf(x / std::sqrt(2.0))); }

// d2(n) = E[range of n standard normals] = ∫ 1 − Φ(x)^n − (1 − Φ(x))^n dx.
double d2_numeric(int n) {
  const double h = 0.001;
  double s = 0;
  for (double x = -9; x <= 9; x += h) s += 1 - std::pow(phi(x), n) - std::pow(1 - phi(x), n);
  return s * h;
}

// d3(n) = sd of that range: E[R²] = 2 ∬_{x<y} 1 − Φ(y)^n − (1 − Φ(x))^n + (Φ(y) − Φ(x))^n,
// trapezoidal on the diagonal.
double d3_numeric(int n, double d2) {
  const double h = 0.02;
  std::vector<double> F;
  for (double x = -8; x <= 8; x += h) F.push_back(phi(x));
  double s = 0;
  for (std::size_t i = 0; i < F.size(); ++i) {
    s += 0.5 * (1 - std::pow(F[i], n) - std::pow(1 - F[i], n));
    for (std::size_t j = i + 1; j < F.size(); ++j)
      s += 1 - std::pow(F[j], n) - std::pow(1 - F[i], n) + std::pow(F[j] - F[i], n);
  }
  return std::sqrt(2 * s * h * h - d2 * d2);
}

}  // namespace

TEST_CASE("spc: the constants table is the published one, recomputed from d2, d3 and c4") {
  // Spot values as printed in NIST/SEMATECH e-Handbook §6.3.2.1 and ASTM E2587 tables.
  auto k5 = table_constants(5);
  REQUIRE(k5.has_value());
  CHECK(k5->A2 == 0.577);
  CHECK(k5->D4 == 2.114);
  CHECK(k5->d2 == 2.326);
  CHECK(k5->A3 == 1.427);
  CHECK(k5->B4 == 2.089);
  CHECK(k5->c4 == 0.9400);
  CHECK(table_constants(7)->D3 == 0.076);
  CHECK(table_constants(6)->B3 == 0.030);
  CHECK(table_constants(25)->c4 == 0.9896);
  CHECK_FALSE(table_constants(1).has_value());
  CHECK_FALSE(table_constants(26).has_value());

  for (int n = 2; n <= 25; ++n) {
    CAPTURE(n);
    const auto k = *table_constants(n);
    const double d2 = d2_numeric(n), c4 = c4_exact(n), d3 = d3_numeric(n, d2);
    const double rn = std::sqrt(static_cast<double>(n));
    // Every printed figure is the exact value rounded (D3/D4: the tables round through a
    // 3-decimal d3, hence the wider tolerance).
    CHECK(std::abs(k.d2 - d2) < 0.0006);
    CHECK(std::abs(k.c4 - c4) < 0.00006);
    CHECK(std::abs(k.A2 - 3 / (d2 * rn)) < 0.0006);
    CHECK(std::abs(k.A3 - 3 / (c4 * rn)) < 0.0006);
    CHECK(std::abs(k.B3 - std::max(0.0, 1 - 3 * std::sqrt(1 - c4 * c4) / c4)) < 0.0006);
    CHECK(std::abs(k.B4 - (1 + 3 * std::sqrt(1 - c4 * c4) / c4)) < 0.0006);
    CHECK(std::abs(k.D3 - std::max(0.0, 1 - 3 * d3 / d2)) < 0.0015);
    CHECK(std::abs(k.D4 - (1 + 3 * d3 / d2)) < 0.0015);
  }
  CHECK(c4_exact(2) == doctest::Approx(std::sqrt(2 / M_PI)).epsilon(1e-12));
}

// NIST/SEMATECH e-Handbook of Statistical Methods, §6.3.2.2 "Individuals Control Charts"
// (https://www.itl.nist.gov/div898/handbook/pmc/section3/pmc322.htm), "Example of moving
// range": flow rate of the first 10 batches of a new process. Printed: Xbar = 50.81,
// MRbar = 1.8778, UCL = 55.8041, LCL = 45.8159; the process is in control.
TEST_CASE("spc golden: NIST e-Handbook 6.3.2.2 individuals chart (flow rate)") {
  const std::vector<double> flow{49.6, 47.6, 49.9, 51.3, 47.8, 51.2, 52.6, 52.4, 53.6, 52.1};
  std::string err;
  auto c = make_chart(chart_kind::imr, flow, 1, err);
  REQUIRE_MESSAGE(c.has_value(), err);
  CHECK(c->values == 10);
  // The moving ranges as printed in the table.
  const std::vector<double> mr{2.0, 2.3, 1.4, 3.5, 3.4, 1.4, 0.2, 1.2, 1.5};
  REQUIRE(c->dispersion_points.size() == mr.size());
  for (std::size_t i = 0; i < mr.size(); ++i)
    CHECK(printed(c->dispersion_points[i], 1) == doctest::Approx(mr[i]));
  CHECK(printed(c->center.cl, 2) == doctest::Approx(50.81));
  CHECK(printed(c->dispersion.cl, 4) == doctest::Approx(1.8778));
  CHECK(printed(c->center.ucl, 4) == doctest::Approx(55.8041));
  CHECK(printed(c->center.lcl, 4) == doctest::Approx(45.8159));
  CHECK(c->dispersion.lcl == 0);
  CHECK(printed(c->dispersion.ucl, 4) == doctest::Approx(printed(3.267 * 16.9 / 9, 4)));
  // "On both charts the process is in control": no point beyond the limits.
  for (auto f : c->center_rules) CHECK_FALSE(has(f, rule::n1));
  for (auto f : c->dispersion_rules) CHECK(f == 0);
}

// Montgomery, Introduction to Statistical Quality Control (6th ed.), Example 6.1 and Table 6.1:
// flow width (microns) of a hard-bake process, 25 samples of 5 wafers. Printed: Σx̄ = 37.6400,
// ΣR = 8.1302, x̿ = 1.5056, R̄ = 0.32521; x̄ chart UCL = 1.6932, LCL = 1.3180; R chart
// UCL = 0.68749, LCL = 0; "both charts exhibit control". §6.2.1 (process capability), with
// specifications 1.50 ± 0.50: σ̂ = R̄/d2 = 0.1398, Cp = 1.192.
const std::vector<double> kHardBake{
    1.3235, 1.4128, 1.6744, 1.4573, 1.6914, 1.4314, 1.3592, 1.6075, 1.4666, 1.6109,
    1.4284, 1.4871, 1.4932, 1.4324, 1.5674, 1.5028, 1.6352, 1.3841, 1.2831, 1.5507,
    1.5604, 1.2735, 1.5265, 1.4363, 1.6441, 1.5955, 1.5451, 1.3574, 1.3281, 1.4198,
    1.6274, 1.5064, 1.8366, 1.4177, 1.5144, 1.4190, 1.4303, 1.6637, 1.6067, 1.5519,
    1.3884, 1.7277, 1.5355, 1.5176, 1.3688, 1.4039, 1.6697, 1.5089, 1.4627, 1.5220,
    1.4158, 1.7667, 1.4278, 1.5928, 1.4181, 1.5821, 1.3355, 1.5777, 1.3908, 1.7559,
    1.2856, 1.4106, 1.4447, 1.6398, 1.1928, 1.4951, 1.4036, 1.5893, 1.6458, 1.4969,
    1.3589, 1.2863, 1.5996, 1.2497, 1.5471, 1.5747, 1.5301, 1.5171, 1.1839, 1.8662,
    1.3680, 1.7269, 1.3957, 1.5014, 1.4449, 1.4163, 1.3864, 1.3057, 1.6210, 1.5573,
    1.5796, 1.4185, 1.6541, 1.5116, 1.7247, 1.7106, 1.4412, 1.2361, 1.3820, 1.7601,
    1.4371, 1.5051, 1.3485, 1.5670, 1.4880, 1.4738, 1.5936, 1.6583, 1.4973, 1.4720,
    1.5917, 1.4333, 1.5551, 1.5295, 1.6866, 1.6399, 1.5243, 1.5705, 1.5563, 1.5530,
    1.5797, 1.3663, 1.6240, 1.3732, 1.6887};

TEST_CASE("spc golden: Montgomery Example 6.1 X̄-R chart (hard-bake flow width)") {
  std::string err;
  auto c = make_chart(chart_kind::xbar_r, kHardBake, 5, err);
  REQUIRE_MESSAGE(c.has_value(), err);
  REQUIRE(c->center_points.size() == 25);
  double sx = 0, sr = 0;
  for (std::size_t i = 0; i < 25; ++i) {
    sx += printed(c->center_points[i], 4);  // the table prints x̄ and R to 4 decimals
    sr += printed(c->dispersion_points[i], 4);
  }
  CHECK(printed(sx, 4) == doctest::Approx(37.6400));
  CHECK(printed(sr, 4) == doctest::Approx(8.1302));
  // Sample 16, the widest: x̄ 1.5344, R 0.6823 as printed.
  CHECK(printed(c->center_points[15], 4) == doctest::Approx(1.5344));
  CHECK(printed(c->dispersion_points[15], 4) == doctest::Approx(0.6823));
  CHECK(printed(c->center.cl, 4) == doctest::Approx(1.5056));
  CHECK(printed(c->dispersion.cl, 5) == doctest::Approx(0.32521));
  // The book adds A2·R̄ to x̿ already rounded to 1.5056 (1.5056 + 0.577·0.32521 = 1.69325 ->
  // 1.6932); unrounded, x̿ = 1.505610 and UCL = 1.693255. Both: the book's arithmetic from our
  // rounded centre line, and our limit within one unit of the printed last digit.
  CHECK(printed(printed(c->center.cl, 4) + 0.577 * printed(c->dispersion.cl, 5), 4) ==
        doctest::Approx(1.6932));
  CHECK(std::abs(c->center.ucl - 1.6932) <= 0.0001);
  CHECK(printed(c->center.lcl, 4) == doctest::Approx(1.3180));
  CHECK(printed(c->dispersion.ucl, 5) == doctest::Approx(0.68749));
  CHECK(c->dispersion.lcl == 0);
  for (auto f : c->center_rules) CHECK_FALSE(has(f, rule::n1));
  for (auto f : c->dispersion_rules) CHECK(f == 0);

  CHECK(printed(c->sigma_within, 4) == doctest::Approx(0.1398));
  auto cap = capability_of(c->mean, c->sigma_within, c->sigma_overall, 1.00, 2.00);
  REQUIRE(cap.cp.has_value());
  CHECK(printed(*cap.cp, 3) == doctest::Approx(1.192));
  // Cpk against the nearer limit (the upper one: x̿ ≈ 1.5056 is above the centre 1.50).
  REQUIRE(cap.cpk.has_value());
  CHECK(*cap.cpk == doctest::Approx(*cap.cpu));
  CHECK(*cap.cpk < *cap.cp);
  CHECK(*cap.cpk == doctest::Approx((2.00 - c->mean) / (3 * c->sigma_within)));
  // Pp from the overall sample standard deviation of the 125 values.
  double m = 0;
  for (double v : kHardBake) m += v;
  m /= 125;
  double ss = 0;
  for (double v : kHardBake) ss += (v - m) * (v - m);
  const double s_overall = std::sqrt(ss / 124);
  REQUIRE(cap.pp.has_value());
  CHECK(*cap.pp == doctest::Approx(1.0 / (6 * s_overall)).epsilon(1e-12));
  CHECK(*cap.ppk == doctest::Approx(std::min(2.0 - m, m - 1.0) / (3 * s_overall)).epsilon(1e-12));
}

TEST_CASE("spc: X̄-S chart uses S̄ with A3, B3, B4 and c4; exact c4 beyond the table") {
  std::string err;
  auto c = make_chart(chart_kind::xbar_s, kHardBake, 5, err);
  REQUIRE_MESSAGE(c.has_value(), err);
  double sbar = 0;
  for (std::size_t g = 0; g < 25; ++g) {
    double m = 0;
    for (std::size_t i = 0; i < 5; ++i) m += kHardBake[g * 5 + i];
    m /= 5;
    double ss = 0;
    for (std::size_t i = 0; i < 5; ++i) ss += std::pow(kHardBake[g * 5 + i] - m, 2);
    sbar += std::sqrt(ss / 4);
  }
  sbar /= 25;
  CHECK(c->dispersion.cl == doctest::Approx(sbar).epsilon(1e-12));
  CHECK(c->dispersion.ucl == doctest::Approx(2.089 * sbar).epsilon(1e-12));
  CHECK(c->dispersion.lcl == 0);
  CHECK(c->center.ucl - c->center.cl == doctest::Approx(1.427 * sbar).epsilon(1e-12));
  CHECK(c->sigma_within == doctest::Approx(sbar / 0.9400).epsilon(1e-12));

  // n = 30: beyond the table, c4 from the gamma function; 4(n−1)/(4n−3) = 0.9914 agrees to
  // the 4 decimals tables print.
  std::vector<double> v;
  for (int i = 0; i < 90; ++i) v.push_back(std::sin(i * 0.7) + 0.01 * i);
  auto big = make_chart(chart_kind::xbar_s, v, 30, err);
  REQUIRE_MESSAGE(big.has_value(), err);
  CHECK(printed(c4_exact(30), 4) == doctest::Approx(0.9914));
  CHECK(big->sigma_within == doctest::Approx(big->dispersion.cl / c4_exact(30)));
}

TEST_CASE("spc: bad inputs are refused with a reason") {
  std::string err;
  CHECK_FALSE(make_chart(chart_kind::xbar_r, kHardBake, 26, err).has_value());
  CHECK(err.find("xbar_s") != std::string::npos);
  CHECK_FALSE(make_chart(chart_kind::xbar_r, kHardBake, 1, err).has_value());
  CHECK_FALSE(make_chart(chart_kind::xbar_s, std::vector<double>{1, 2, 3}, 2, err).has_value());
  CHECK(err.find("2 whole subgroups") != std::string::npos);
  CHECK_FALSE(make_chart(chart_kind::imr, std::vector<double>{1}, 1, err).has_value());
  CHECK_FALSE(make_chart(chart_kind::imr, std::vector<double>{1, NAN}, 1, err).has_value());
  // A trailing partial subgroup is left out and said so.
  std::vector<double> v(kHardBake.begin(), kHardBake.begin() + 13);
  auto c = make_chart(chart_kind::xbar_r, v, 5, err);
  REQUIRE(c.has_value());
  CHECK(c->values == 10);
  CHECK(c->center_points.size() == 2);
  CHECK(parse_chart_kind("xbar_r") == chart_kind::xbar_r);
  CHECK_FALSE(parse_chart_kind("p").has_value());
}

namespace {
// Limits CL 0, σ 1: UCL 3, LCL −3.
const limits kUnit{-3, 0, 3};
std::uint32_t flags_at(const std::vector<double>& p, std::size_t i) {
  return apply_rules(p, kUnit).at(i);
}
}  // namespace

TEST_CASE("spc: each Western Electric / Nelson rule fires on its pattern, and not before") {
  // N1/WE1: one point beyond 3σ.
  CHECK(has(flags_at({0.5, 3.2, 0.1}, 1), rule::n1));
  CHECK_FALSE(has(flags_at({0.5, 2.9, 0.1}, 1), rule::n1));
  CHECK(has(flags_at({0.5, -3.01}, 1), rule::n1));

  // N2: 9 in a row on one side; WE4: 8 in a row.
  std::vector<double> side(9, 0.5);
  side.insert(side.begin(), -0.5);
  auto f = apply_rules(side, kUnit);
  CHECK_FALSE(has(f[7], rule::we4));  // 7 above so far
  CHECK(has(f[8], rule::we4));        // 8th
  CHECK_FALSE(has(f[8], rule::n2));
  CHECK(has(f[9], rule::n2));  // 9th

  // N3: 6 points steadily increasing (5 steps); a tie breaks the run.
  CHECK(has(flags_at({0.1, 0.2, 0.3, 0.4, 0.5, 0.6}, 5), rule::n3));
  CHECK_FALSE(has(flags_at({0.1, 0.2, 0.3, 0.4, 0.5, 0.6}, 4), rule::n3));
  CHECK_FALSE(has(flags_at({0.1, 0.2, 0.3, 0.3, 0.5, 0.6}, 5), rule::n3));
  CHECK(has(flags_at({0.6, 0.5, 0.4, 0.3, 0.2, 0.1}, 5), rule::n3));

  // N4: 14 points alternating up and down.
  std::vector<double> alt;
  for (int i = 0; i < 14; ++i) alt.push_back(i % 2 ? 0.5 : -0.5);
  f = apply_rules(alt, kUnit);
  CHECK_FALSE(has(f[12], rule::n4));
  CHECK(has(f[13], rule::n4));

  // N5/WE2: 2 of 3 beyond 2σ on the same side; not when on opposite sides.
  CHECK(has(flags_at({2.5, 0.1, 2.2}, 2), rule::n5));
  CHECK_FALSE(has(flags_at({2.5, 0.1, -2.2}, 2), rule::n5));
  CHECK_FALSE(has(flags_at({2.5, 0.1, 0.2, 2.2}, 3), rule::n5));  // 4 apart

  // N6/WE3: 4 of 5 beyond 1σ on the same side.
  CHECK(has(flags_at({1.5, 1.2, 0.0, 1.1, 1.9}, 4), rule::n6));
  CHECK_FALSE(has(flags_at({1.5, 1.2, 0.0, 0.9, 1.9}, 4), rule::n6));

  // N7: 15 in a row within 1σ (stratification).
  std::vector<double> hug;
  for (int i = 0; i < 15; ++i) hug.push_back(i % 2 ? 0.3 : -0.4);
  f = apply_rules(hug, kUnit);
  CHECK_FALSE(has(f[13], rule::n7));
  CHECK(has(f[14], rule::n7));

  // N8: 8 in a row beyond 1σ on either side (mixture), none within.
  std::vector<double> mix{1.5, -1.5, 1.2, -1.8, 1.4, -1.3, 1.6, -1.1};
  f = apply_rules(mix, kUnit);
  CHECK_FALSE(has(f[6], rule::n8));
  CHECK(has(f[7], rule::n8));
  CHECK_FALSE(has(f[7], rule::n6));  // alternating sides: not 4 of 5 on one side

  // A calm in-control series flags nothing.
  std::vector<double> calm{0.3, -1.2, 0.8, 1.4, -0.6, -1.7, 0.9, 0.1, -0.2, 1.1};
  for (auto x : apply_rules(calm, kUnit)) CHECK(x == 0);

  // Names: WE aliases listed with the Nelson ones.
  auto names = rule_names(rule::n1 | rule::n5 | rule::we4);
  CHECK(names == std::vector<std::string>{"WE1", "WE2", "WE4", "N1", "N5"});
}

TEST_CASE("spc: capability with one-sided and absent limits") {
  auto c = capability_of(10, 1, 2, std::nullopt, 16);
  CHECK_FALSE(c.cp.has_value());
  CHECK(*c.cpu == doctest::Approx(2.0));
  CHECK(*c.cpk == doctest::Approx(2.0));
  CHECK(*c.ppk == doctest::Approx(1.0));
  c = capability_of(10, 1, 1, 7, std::nullopt);
  CHECK(*c.cpk == doctest::Approx(1.0));
  c = capability_of(10, 0, 0, 7, 13);
  CHECK_FALSE(c.cp.has_value());
  CHECK_FALSE(c.ppk.has_value());
}
