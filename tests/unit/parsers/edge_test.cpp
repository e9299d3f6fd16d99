// Edge parameters against the synthetic reference cases T8–T11 of
// shared/reference/measurement-methods.md §9 (data generated from the model, deterministic
// seeds; each noisy case is run over several seeds so a pass is not one lucky draw).
#include <semilab/parsers/edge.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <numbers>
#include <random>
#include <vector>

using namespace semilab::parsers;

namespace {
constexpr double kLn2 = std::numbers::ln2;
double gauss(double x, double c, double w) { return std::exp(-4 * kLn2 * (x - c) * (x - c) / (w * w)); }
double lorentz(double x, double c, double w) { return 1 / (1 + 4 * (x - c) * (x - c) / (w * w)); }
}  // namespace

TEST_CASE("T8 XRD: Si 111 Gaussian with Poisson noise -> 2θ, d, Scherrer size") {
  for (unsigned seed = 1; seed <= 10; ++seed) {
    std::mt19937_64 rng(seed);
    std::vector<double> x, y;
    for (int i = 0; i <= 300; ++i) {
      const double tt = 27.0 + 0.01 * i;  // 27.00 .. 30.00°, 0.01° steps
      const double mean = 1e4 * gauss(tt, 28.441, 0.30) + 50 + 10 * (tt - 27.0);
      std::poisson_distribution<long> p(mean);
      x.push_back(tt);
      y.push_back(static_cast<double>(p(rng)));
    }
    auto f = fit_peak(x, y, {.shape = peak_shape::gaussian});
    REQUIRE(f.has_value());
    CHECK(std::fabs(f->center - 28.441) <= 0.005);
    auto d = bragg_d_spacing(f->center);
    REQUIRE(d.has_value());
    CHECK(std::fabs(*d - 3.1357) <= 0.0005);
    auto size = scherrer_size(f->center, f->fwhm, 0.10);
    REQUIRE(size.has_value());
    CHECK(std::fabs(*size / 10.0 - 29.0) <= 1.5);  // Å -> nm
  }
}

TEST_CASE("XRD helpers: exact values and refusals") {
  // Si a = 5.431144 Å: d(111) = a/√3.
  CHECK(*bragg_d_spacing(28.441) == doctest::Approx(5.431144 / std::sqrt(3.0)).epsilon(2e-5));
  // Noise-free Scherrer: β = √(0.30² − 0.10²)° → 28.97 nm.
  CHECK(*scherrer_size(28.441, 0.30, 0.10) / 10 == doctest::Approx(28.97).epsilon(1e-3));
  CHECK(!scherrer_size(28.441, 0.10, 0.10).has_value());
  CHECK(!bragg_d_spacing(0).has_value());
  CHECK(!bragg_d_spacing(180).has_value());
}

TEST_CASE("T9 Raman: Lorentzian at 520.70 cm-1 on a linear baseline, SNR 100") {
  for (unsigned seed = 1; seed <= 10; ++seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> noise(0.0, 10.0);  // peak height 1000 -> SNR 100
    std::vector<double> x, y;
    for (int i = 0; i <= 120; ++i) {
      const double k = 490.0 + 0.5 * i;
      x.push_back(k);
      y.push_back(1000 * lorentz(k, 520.70, 3.0) + 200 + 1.5 * (k - 490) + noise(rng));
    }
    auto f = fit_peak(x, y, {.shape = peak_shape::lorentzian});
    REQUIRE(f.has_value());
    CHECK(std::fabs(f->center - 520.70) <= 0.05);
    CHECK(std::fabs(f->fwhm / 3.0 - 1) <= 0.05);
    CHECK(f->baseline_slope == doctest::Approx(1.5).epsilon(0.1));
    auto si = raman_si_check(f->center);
    CHECK(si.pass);
    CHECK(std::fabs(si.deviation) <= 0.05);
  }
  CHECK(photon_energy_ev(375.7) == doctest::Approx(3.300).epsilon(3e-4));
  CHECK(!raman_si_check(522.0).pass);
  CHECK(raman_si_check(520.45, 0.3).pass);
}

TEST_CASE("peak fit: noise-free Gaussian, Lorentzian, pseudo-Voigt recover every parameter") {
  std::vector<double> x;
  for (int i = 0; i <= 400; ++i) x.push_back(100 + 0.05 * i);
  auto make = [&](double eta) {
    std::vector<double> y;
    for (double v : x) y.push_back(500 * (eta * lorentz(v, 109.3, 1.7) + (1 - eta) * gauss(v, 109.3, 1.7)) + 20 - 0.5 * (v - 100));
    return y;
  };
  struct c { peak_shape s; double eta; } cases[] = {{peak_shape::gaussian, 0}, {peak_shape::lorentzian, 1}, {peak_shape::pseudo_voigt, 0.35}};
  for (auto [shape, eta] : cases) {
    auto y = make(eta);
    auto f = fit_peak(x, y, {.shape = shape});
    REQUIRE(f.has_value());
    CHECK(f->center == doctest::Approx(109.3).epsilon(1e-7));
    CHECK(f->fwhm == doctest::Approx(1.7).epsilon(1e-6));
    CHECK(f->amplitude == doctest::Approx(500).epsilon(1e-6));
    CHECK(f->eta == doctest::Approx(eta).epsilon(1e-6));
    CHECK(f->baseline_slope == doctest::Approx(-0.5).epsilon(1e-6));
    // Analytic areas: G = A·w·√(π/4ln2), L = A·w·π/2.
    const double area = 500 * 1.7 * (eta * std::numbers::pi / 2 + (1 - eta) * std::sqrt(std::numbers::pi / (4 * kLn2)));
    CHECK(f->area == doctest::Approx(area).epsilon(1e-6));
  }
}

TEST_CASE("peak fit: window selection, descending x and refusals") {
  std::vector<double> x, y;
  for (int i = 0; i <= 200; ++i) {
    const double e = 90.0 - 0.05 * i;  // XPS-style descending binding energy
    x.push_back(e);
    y.push_back(1000 * gauss(e, 84.05, 0.8) + 800 * gauss(e, 87.72, 0.8) + 100);
  }
  auto f = fit_peak(x, y, {.shape = peak_shape::gaussian, .x_min = 82, .x_max = 86});
  REQUIRE(f.has_value());
  CHECK(f->center == doctest::Approx(84.05).epsilon(1e-4));
  auto chk = xps_scale_check("Au 4f7/2", f->center);
  REQUIRE(chk.has_value());
  CHECK(chk->shift == doctest::Approx(-0.09).epsilon(1e-2));
  CHECK(chk->pass);
  CHECK(!fit_peak(x, y, {.x_min = 0, .x_max = 80.2}).has_value());  // too few points
  std::vector<double> flat(x.size(), 5.0);
  auto nf = fit_peak(x, flat);
  REQUIRE(!nf.has_value());
  CHECK(nf.error().reason.find("no peak") != std::string::npos);
  std::vector<double> shortx(3, 1.0);
  CHECK(!fit_peak(shortx, y).has_value());
  auto withnan = y;
  withnan[7] = std::nan("");
  CHECK(!fit_peak(x, withnan).has_value());
}

namespace {
// T10 data: (αE)² = C·(E − Eg) above the gap, an Urbach tail y_t·exp((E − Eg)/E_U) below it that
// merges into the edge just above Eg (y = max of the two there), continuous everywhere.
std::vector<double> tauc_alpha(const std::vector<double>& e, double eg, double eu, double c) {
  std::vector<double> a;
  for (double v : e) {
    const double direct = v > eg ? c * (v - eg) : 0.0;
    const double tail = v < eg + eu ? 0.2 * c * eu * std::exp((v - eg) / eu) : 0.0;
    a.push_back(std::sqrt(std::max(direct, tail)) / v);
  }
  return a;
}
}  // namespace

TEST_CASE("T10 Tauc: direct gap 3.30 eV with an Urbach tail (E_U = 50 meV)") {
  std::vector<double> e;
  for (int i = 0; i <= 240; ++i) e.push_back(2.8 + 0.005 * i);
  const auto alpha = tauc_alpha(e, 3.30, 0.050, 2e11);
  auto r = tauc_band_gap(e, alpha);
  REQUIRE(r.has_value());
  CHECK(std::fabs(r->band_gap_ev - 3.30) <= 0.02);
  CHECK(r->window_lo_ev > 3.30);  // the window excludes the tail
  CHECK(r->window_points >= 20);

  // 0.5 % multiplicative noise on α, several seeds.
  for (unsigned seed = 1; seed <= 5; ++seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> n(0, 0.005);
    auto noisy = alpha;
    for (auto& v : noisy) v *= 1 + n(rng);
    auto rn = tauc_band_gap(e, noisy, {.min_window = 15, .min_r2 = 0.99});
    REQUIRE(rn.has_value());
    CHECK(std::fabs(rn->band_gap_ev - 3.30) <= 0.02);
    CHECK(rn->window_lo_ev > 3.30 - 0.005);
  }
}

TEST_CASE("Tauc: indirect gap and refusals") {
  std::vector<double> e, a;
  for (int i = 0; i <= 200; ++i) {
    const double v = 0.9 + 0.005 * i;
    e.push_back(v);
    const double s = v > 1.12 ? 30.0 * (v - 1.12) : 0.0;  // (αE)^(1/2) = B·(E − Eg)
    a.push_back(s * s / v);
  }
  auto r = tauc_band_gap(e, a, {.transition = tauc_transition::indirect_allowed});
  REQUIRE(r.has_value());
  CHECK(r->band_gap_ev == doctest::Approx(1.12).epsilon(1e-3));
  std::vector<double> zero(e.size(), 0.0);
  CHECK(!tauc_band_gap(e, zero).has_value());
  CHECK(!tauc_band_gap(std::vector<double>{1, 2}, std::vector<double>{1, 2}).has_value());
}

TEST_CASE("T11 fringe thickness: SiO2 n = 1.46, maxima 584.0 and 486.7 nm -> 1000 nm") {
  const double m[] = {584.0, 486.7};
  auto d = fringe_thickness(m, 1.46);
  REQUIRE(d.has_value());
  CHECK(std::fabs(*d - 1000) <= 1);

  // From a spectrum: R(λ) ∝ 1 + cos(4π·n·d/λ), maxima located by find_maxima.
  std::vector<double> lam, refl;
  for (int i = 0; i <= 4000; ++i) {
    const double l = 400 + 0.1 * i;
    lam.push_back(l);
    refl.push_back(0.1 + 0.05 * std::cos(4 * std::numbers::pi * 1.46 * 1000 / l));
  }
  auto peaks = find_maxima(lam, refl, 0.02);
  REQUIRE(peaks.size() >= 3);
  auto d2 = fringe_thickness(peaks, 1.46);
  REQUIRE(d2.has_value());
  CHECK(std::fabs(*d2 - 1000) <= 1);

  const double one[] = {584.0};
  CHECK(!fringe_thickness(one, 1.46).has_value());
  const double same[] = {500.0, 500.0};
  CHECK(!fringe_thickness(same, 1.46).has_value());
  CHECK(!fringe_thickness(m, 0).has_value());
}

TEST_CASE("XPS binding-energy scale check") {
  auto c = xps_scale_check("C 1s", 285.1);
  REQUIRE(c.has_value());
  CHECK(c->shift == doctest::Approx(-0.3));
  CHECK(!c->pass);
  CHECK(xps_scale_check("C 1s", 285.1, 0.5)->pass);
  CHECK(xps_scale_check("Au 4f7/2", 84.0)->pass);
  CHECK(xps_scale_check("Cu 2p3/2", 932.62)->shift == doctest::Approx(0).epsilon(1e-12));
  CHECK(!xps_scale_check("Zz 9x", 1).has_value());
}
