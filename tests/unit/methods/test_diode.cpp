#include <doctest/doctest.h>

#include <random>
#include <semilab/methods/diode.hpp>
#include <semilab/schemas/record.hpp>

#include "gen.hpp"

using namespace semilab::methods;
using semilab::methods::test::diode_data;

TEST_CASE("T1 diode: n, I0, Rs by least squares on V(I), noise-free") {
  auto d = diode_data(1.8, 1e-12, 5, 1e-9, 1e-2, 71);
  // The generator reproduces the reference voltages.
  CHECK(d[60].x == doctest::Approx(0.9693).epsilon(1e-4));  // I = 1 mA
  CHECK(d[70].x == doctest::Approx(1.1215).epsilon(1e-4));  // I = 10 mA
  auto r = analyze_diode(d);
  REQUIRE(r.has_value());
  const auto& ex = r->ex;
  CHECK(ex.value("n") == doctest::Approx(1.8).epsilon(0.005));
  CHECK(ex.value("i0") == doctest::Approx(1e-12).epsilon(0.05));
  CHECK(ex.value("rs") == doctest::Approx(5.0).epsilon(0.01));
  CHECK(ex.find("n")->unit == "1");
  CHECK(ex.find("i0")->unit == "A");
  CHECK(ex.find("rs")->unit == "ohm");
  REQUIRE(ex.find("rs")->uncertainty.has_value());
  CHECK(ex.version == kDiodeVersion);
  REQUIRE(!ex.windows.empty());
  CHECK(ex.windows[0].quantity == "I");
  CHECK(ex.windows[0].points == 71);
  CHECK(ex.windows[0].lo == doctest::Approx(1e-9));
  CHECK(ex.windows[0].hi == doctest::Approx(1e-2));
  // Cheung on I > 0.1 mA: Rs 5.0 +-0.2 ohm, n 1.80 +-0.02.
  CHECK(std::fabs(ex.value("rs_cheung") - 5.0) <= 0.2);
  CHECK(std::fabs(ex.value("n_cheung") - 1.8) <= 0.02);
  CHECK(ex.windows.size() == 2);
  CHECK(ex.windows[1].lo >= 1e-4);
  // Local ideality: plateau at 1.8 where Rs does not matter.
  REQUIRE(r->local_ideality.size() > 10);
  CHECK(r->local_ideality[5].n == doctest::Approx(1.8).epsilon(0.002));
}

TEST_CASE("T1 diode with 0.1% current noise and 100 uV voltage noise") {
  for (unsigned seed : {1u, 2u, 3u, 4u, 5u}) {
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> g(0.0, 1.0);
    auto d = diode_data(1.8, 1e-12, 5, 1e-9, 1e-2, 71);
    for (auto& p : d) {
      p.y *= 1 + 1e-3 * g(rng);
      p.x += 100e-6 * g(rng);
    }
    auto r = analyze_diode(d);
    REQUIRE(r.has_value());
    CHECK(r->ex.value("n") == doctest::Approx(1.8).epsilon(0.01));
    CHECK(r->ex.value("i0") == doctest::Approx(1e-12).epsilon(0.15));
    CHECK(r->ex.value("rs") == doctest::Approx(5.0).epsilon(0.03));
    // The reported standard errors are real (non-zero) with noise.
    CHECK(*r->ex.find("n")->uncertainty > 0);
    CHECK(std::fabs(r->ex.value("n") - 1.8) < 5 * *r->ex.find("n")->uncertainty);
  }
}

TEST_CASE("T1b ideal diode: n = 1, no spurious negative Rs") {
  auto d = diode_data(1.0, 1e-14, 0, 1e-9, 1e-3, 61);
  auto r = analyze_diode(d);
  REQUIRE(r.has_value());
  CHECK(std::fabs(r->ex.value("n") - 1.0) <= 0.005);
  CHECK(std::fabs(r->ex.value("rs")) < 0.05);
  CHECK(r->ex.value("i0") == doctest::Approx(1e-14).epsilon(0.01));
}

TEST_CASE("T12 diode: compliance point inside the fit window fails, at the end it is excluded") {
  auto d = diode_data(1.8, 1e-12, 5, 1e-9, 1e-2, 71);
  SUBCASE("inside") {
    d[30].quality = semilab::schemas::quality::compliance;  // 2400 status bit 3 mapped by driver
    auto r = analyze_diode(d);
    REQUIRE(!r.has_value());
    CHECK(r.error().code == errc::flagged_in_window);
    CHECK(r.error().message.find("point 30") != std::string::npos);
    CHECK(r.error().message.find("compliance") != std::string::npos);
  }
  SUBCASE("at the end of the sweep") {
    d.push_back({1.3, 1e-2, semilab::schemas::quality::compliance});
    auto r = analyze_diode(d);
    REQUIRE(r.has_value());
    CHECK(r->ex.windows[0].points == 71);
    CHECK(r->ex.value("n") == doctest::Approx(1.8).epsilon(0.005));
    REQUIRE(!r->ex.warnings.empty());
    CHECK(r->ex.warnings[0].find("excluded") != std::string::npos);
  }
  SUBCASE("over-range sentinel 9.91e37 inside the window") {
    d[40].y = 9.91e37;
    auto r = analyze_diode(d);
    REQUIRE(!r.has_value());
    CHECK(r.error().code == errc::flagged_in_window);
    CHECK(r.error().message.find("over-range") != std::string::npos);
  }
  SUBCASE("user window leaves the flagged point outside") {
    d[10].quality = semilab::schemas::quality::compliance;  // I = 1e-8 A
    diode_options o;
    o.i_min = 1e-7;
    auto r = analyze_diode(d, o);
    REQUIRE(r.has_value());
    CHECK(r->ex.windows[0].lo >= 1e-7);
    CHECK(r->ex.value("n") == doctest::Approx(1.8).epsilon(0.005));
  }
}

TEST_CASE("diode bad input") {
  SUBCASE("too few points") {
    auto d = diode_data(1.8, 1e-12, 5, 1e-6, 1e-2, 4);
    auto r = analyze_diode(d);
    REQUIRE(!r.has_value());
    CHECK(r.error().code == errc::insufficient_data);
  }
  SUBCASE("no forward current") {
    std::vector<sample> d;
    for (int k = 0; k < 20; ++k) d.push_back({-0.1 * k, -1e-12, 0});
    auto r = analyze_diode(d);
    REQUIRE(!r.has_value());
    CHECK(r.error().code == errc::insufficient_data);
  }
  SUBCASE("less than a decade") {
    auto d = diode_data(1.8, 1e-12, 5, 1e-3, 5e-3, 20);
    auto r = analyze_diode(d);
    REQUIRE(!r.has_value());
    CHECK(r.error().code == errc::insufficient_data);
  }
  SUBCASE("noise floor excludes the low points") {
    auto d = diode_data(1.8, 1e-12, 5, 1e-9, 1e-2, 71);
    diode_options o;
    o.noise_floor = 1e-8;
    auto r = analyze_diode(d, o);
    REQUIRE(r.has_value());
    CHECK(r->ex.windows[0].lo >= 1e-7 * 0.999);
  }
}
