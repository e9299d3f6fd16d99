#include <doctest/doctest.h>

#include <numbers>
#include <semilab/methods/cv.hpp>
#include <semilab/schemas/record.hpp>

#include "gen.hpp"

using namespace semilab::methods;
using semilab::methods::test::kVt;

namespace {
constexpr double kEs = 11.7 * constants::eps0;
constexpr double kEox = 3.9 * constants::eps0;
constexpr double kArea = 1e-8;  // 1e-4 cm^2
constexpr double kNa = 1e22;    // 1e16 cm^-3
constexpr double kVfb = -0.90;
const double kCoxA = kEox / 10e-9;  // F/m^2

// T3a: exact classical HF model, majority carriers only (p-type), psi_s from -0.3 to +0.7 V.
std::vector<cv_point> t3a_data() {
  const double ld = std::sqrt(kEs * kVt / (constants::q * kNa));
  std::vector<cv_point> d;
  for (int k = 0; k <= 4000; ++k) {
    const double psi = -0.3 + 1.0 * k / 4000 + 1e-7;  // never exactly 0
    const double b = psi / kVt;
    const double f = std::sqrt(std::exp(-b) + b - 1);
    const double qs = -(psi > 0 ? 1 : -1) * std::sqrt(2.0) * kEs * kVt / ld * f;
    const double cs = kEs * std::fabs(1 - std::exp(-b)) / (std::sqrt(2.0) * ld * f);
    const double vg = kVfb + psi - qs / kCoxA;
    const double c = kArea * kCoxA * cs / (kCoxA + cs);
    d.push_back({vg, c});
  }
  return d;
}

// T3b: depletion approximation, C = Cox below VFB.
std::vector<cv_point> t3b_data() {
  std::vector<cv_point> d;
  const double cox = kCoxA * kArea;
  for (int k = 0; k <= 500; ++k) {
    const double vg = -3 + 0.01 * k;
    double c = cox;
    if (vg > kVfb)
      c = 1 /
          std::sqrt(1 / (cox * cox) + 2 * (vg - kVfb) / (constants::q * kEs * kNa * kArea * kArea));
    d.push_back({vg, c});
  }
  return d;
}
}  // namespace

TEST_CASE("T3a MOS C-V, exact classical HF data") {
  auto d = t3a_data();
  // The generator reproduces the reference: accumulation end near -10 V, 34.33 pF.
  CHECK(d.front().v == doctest::Approx(-10.0).epsilon(0.02));
  CHECK(d.front().c == doctest::Approx(34.33e-12).epsilon(0.001));
  cv_mos_options o;
  o.area = kArea;
  o.fit_v_lo = -0.8;
  o.fit_v_hi = -0.2;
  auto r = analyze_cv_mos(d, o);
  REQUIRE(r.has_value());
  const auto& ex = r->ex;
  CHECK(ex.value("cox") == doctest::Approx(34.33e-12).epsilon(0.001));
  CHECK(ex.value("tox") == doctest::Approx(10.06e-9).epsilon(0.01));
  CHECK(ex.value("n_sub") == doctest::Approx(1.008e22).epsilon(0.02));
  CHECK(std::fabs(ex.value("vfb") - (-0.900)) <= 0.005);
  CHECK(ex.value("l_debye") == doctest::Approx(40.9e-9).epsilon(0.01));
  CHECK(ex.windows[0].quantity == "VG");
  CHECK(ex.windows[0].lo >= -0.8);
  CHECK(ex.windows[0].hi <= -0.2);
  CHECK(!r->profile.empty());
  CHECK(to_customary(*ex.find("tox")).unit == "nm");
  CHECK(to_customary(*ex.find("n_sub")).value == doctest::Approx(1.008e16).epsilon(0.02));

  SUBCASE("automatic window W in [3 L_D, 0.95 W_max]") {
    cv_mos_options a;
    a.area = kArea;
    auto r2 = analyze_cv_mos(d, a);
    REQUIRE(r2.has_value());
    CHECK(r2->ex.value("n_sub") == doctest::Approx(1.0e22).epsilon(0.02));
    CHECK(std::fabs(r2->ex.value("vfb") - (-0.900)) <= 0.005);
    CHECK(r2->ex.windows[0].points > 100);
  }
  SUBCASE("doping given by the user for C_FB") {
    o.doping = 1e22;
    auto r2 = analyze_cv_mos(d, o);
    REQUIRE(r2.has_value());
    CHECK(r2->ex.value("c_fb") == doctest::Approx(14.61e-12 * 34.33 / 34.53).epsilon(0.01));
    CHECK(std::fabs(r2->ex.value("vfb") - (-0.900)) <= 0.005);
  }
}

TEST_CASE("T3b MOS C-V, depletion approximation: N from the valid window") {
  auto d = t3b_data();
  cv_mos_options o;
  o.area = kArea;
  auto r = analyze_cv_mos(d, o);
  REQUIRE(r.has_value());
  CHECK(r->ex.value("n_sub") == doctest::Approx(1.000e22).epsilon(0.005));
  CHECK(r->ex.value("cox") == doctest::Approx(34.53e-12).epsilon(0.001));
  CHECK(r->ex.value("tox") == doctest::Approx(10e-9).epsilon(0.001));
  // The window respects W >= 3 L_D.
  REQUIRE(!r->profile.empty());
  CHECK(r->profile.front().w >= 3 * 40.9e-9 * 0.99);
  for (auto& p : r->profile) CHECK(p.n == doctest::Approx(1e22).epsilon(0.005));
}

TEST_CASE("n-type MOS is analysed mirrored") {
  auto d = t3b_data();
  for (auto& p : d) p.v = -p.v;
  std::reverse(d.begin(), d.end());
  cv_mos_options o;
  o.area = kArea;
  o.type = substrate::n;
  auto r = analyze_cv_mos(d, o);
  REQUIRE(r.has_value());
  CHECK(r->ex.value("n_sub") == doctest::Approx(1.000e22).epsilon(0.005));
  CHECK(r->ex.value("vfb") > 0.8);
}

TEST_CASE("series-resistance correction recovers the intrinsic capacitance") {
  // Intrinsic Cp || Gp in series with Rs = 1000 ohm, measured as parallel Cm, Gm at 1 MHz.
  const double f = 1e6, w = 2 * std::numbers::pi * f, rs = 1000;
  auto d = t3b_data();
  std::vector<cv_point> meas;
  for (auto& p : d) {
    const double gp = 1e-12;  // lossless in accumulation, as the method assumes
    // Y = 1 / (Rs + 1/(Gp + jwC))
    const double yr = gp, yi = w * p.c;
    const double den = yr * yr + yi * yi;
    const double zr = rs + yr / den, zi = -yi / den;
    const double zz = zr * zr + zi * zi;
    meas.push_back({p.v, -zi / zz / w, zr / zz});
  }
  CHECK(meas.front().c < 0.97 * d.front().c);  // the distortion is real
  cv_mos_options o;
  o.area = kArea;
  o.frequency = f;
  auto r = analyze_cv_mos(meas, o);
  REQUIRE(r.has_value());
  CHECK(r->ex.value("rs_series") == doctest::Approx(rs).epsilon(0.001));
  CHECK(r->ex.value("cox") == doctest::Approx(34.53e-12).epsilon(0.001));
  CHECK(r->ex.value("n_sub") == doctest::Approx(1.0e22).epsilon(0.01));
}

TEST_CASE("T4 Schottky C-V") {
  const double a = 1e-7, n = 1e22, vbi = 0.600;
  std::vector<cv_point> d;
  for (int k = 0; k <= 50; ++k) {
    const double v = -0.1 * k;
    d.push_back({v, 1 / std::sqrt(2 * (vbi - v - kVt) / (constants::q * kEs * n * a * a))});
  }
  CHECK(d.front().c == doctest::Approx(38.02e-12).epsilon(0.001));
  CHECK(d.back().c == doctest::Approx(12.20e-12).epsilon(0.001));
  cv_schottky_options o;
  o.area = a;
  auto r = analyze_cv_schottky(d, o);
  REQUIRE(r.has_value());
  CHECK(r->value("n_d") == doctest::Approx(1e22).epsilon(0.01));
  CHECK(std::fabs(r->value("v_intercept") - 0.574) <= 0.001);
  CHECK(std::fabs(r->value("vbi") - 0.600) <= 0.005);
  CHECK(r->find("n_d")->unit == "m^-3");
  CHECK(r->find("vbi")->uncertainty.has_value());
  CHECK(r->value("phi_b") > r->value("vbi"));
  CHECK(r->warnings.empty());
}

TEST_CASE("C-V bad input") {
  SUBCASE("no area") {
    auto r = analyze_cv_mos(t3b_data(), {});
    REQUIRE(!r.has_value());
    CHECK(r.error().code == errc::bad_input);
  }
  SUBCASE("flagged point inside the 1/C^2 window") {
    auto d = t3a_data();
    cv_mos_options o;
    o.area = kArea;
    o.fit_v_lo = -0.8;
    o.fit_v_hi = -0.2;
    for (auto& p : d)
      if (p.v > -0.5 && p.v < -0.49) p.quality = semilab::schemas::quality::over_range;
    auto r = analyze_cv_mos(d, o);
    REQUIRE(!r.has_value());
    CHECK(r.error().code == errc::flagged_in_window);
  }
  SUBCASE("Schottky with forward-going slope") {
    std::vector<cv_point> d;
    for (int k = 0; k < 10; ++k) d.push_back({-0.1 * k, 1e-12 * (1 + 0.1 * k)});
    cv_schottky_options o;
    o.area = 1e-7;
    auto r = analyze_cv_schottky(d, o);
    REQUIRE(!r.has_value());
    CHECK(r.error().code == errc::bad_input);
  }
  SUBCASE("Schottky too few points in the window") {
    std::vector<cv_point> d{{0, 38e-12}, {-1, 25e-12}};
    cv_schottky_options o;
    o.area = 1e-7;
    auto r = analyze_cv_schottky(d, o);
    REQUIRE(!r.has_value());
    CHECK(r.error().code == errc::insufficient_data);
  }
}
