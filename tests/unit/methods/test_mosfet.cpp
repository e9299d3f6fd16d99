#include <doctest/doctest.h>

#include <semilab/methods/mosfet.hpp>
#include <semilab/schemas/record.hpp>

#include "gen.hpp"

using namespace semilab::methods;
using semilab::methods::test::mosfet_data;

namespace {
mosfet_options t2_options() {
  mosfet_options o;
  o.vds = 0.05;
  o.width = 10e-6;
  o.length = 1e-6;
  o.cox = 3.4531e-3;  // F/m^2 (tox 10 nm)
  o.vgs_on = 3.3;
  o.vgs_off = 0;
  return o;
}
}  // namespace

TEST_CASE("T2a MOSFET transfer, theta = 0") {
  auto d = mosfet_data(0.0);
  auto r = analyze_mosfet_transfer(d, t2_options());
  REQUIRE(r.has_value());
  CHECK(r->value("v_intercept") == doctest::Approx(0.525).epsilon(0.005 / 0.525));
  CHECK(std::fabs(r->value("vth_gm") - 0.500) <= 0.005);
  CHECK(r->value("gm_max") == doctest::Approx(6.906e-5).epsilon(0.002));
  CHECK(r->value("mobility") == doctest::Approx(400e-4).epsilon(0.02));  // 400 cm^2/V.s
  CHECK(std::fabs(r->value("ss") - 71.4e-3) <= 1e-3);
  CHECK(std::fabs(r->value("vth_cc") - 0.509) <= 0.003);
  CHECK(r->value("ion") == doctest::Approx(1.916e-4).epsilon(0.002));
  CHECK(r->value("ioff") == doctest::Approx(9.58e-14).epsilon(0.01));
  CHECK(r->value("on_off") == doctest::Approx(2.0e9).epsilon(0.05));
  CHECK(!r->find("on_off")->lower_bound);
  CHECK(r->find("ss")->unit == "V/dec");
  CHECK(r->find("ss")->uncertainty.has_value());
  CHECK(r->value("vds_half") == 1.0);
  CHECK(r->version == kMosfetVersion);
  CHECK(r->windows.size() == 2);  // gm,max neighbourhood and SS window

  SUBCASE("VDS/2 option off reports the intercept") {
    auto o = t2_options();
    o.vds_half = false;
    auto r2 = analyze_mosfet_transfer(d, o);
    REQUIRE(r2.has_value());
    CHECK(r2->value("vth_gm") == doctest::Approx(r->value("v_intercept")));
    CHECK(r2->value("vds_half") == 0.0);
  }
  SUBCASE("Ioff at the range floor is a lower bound") {
    auto o = t2_options();
    o.range_floor = 1e-12;
    auto r2 = analyze_mosfet_transfer(d, o);
    REQUIRE(r2.has_value());
    CHECK(r2->find("on_off")->lower_bound);
  }
  SUBCASE("customary units at the boundary") {
    auto ss = to_customary(*r->find("ss"));
    CHECK(ss.unit == "mV/dec");
    CHECK(ss.value == doctest::Approx(71.4).epsilon(0.015));
    auto mu = to_customary(*r->find("mobility"));
    CHECK(mu.unit == "cm^2/(V*s)");
    CHECK(mu.value == doctest::Approx(400).epsilon(0.02));
  }
}

TEST_CASE("T2b MOSFET transfer, theta = 0.2 / V (mobility degradation)") {
  auto d = mosfet_data(0.2);
  auto r = analyze_mosfet_transfer(d, t2_options());
  REQUIRE(r.has_value());
  CHECK(r->value("gm_max") == doctest::Approx(6.46e-5).epsilon(0.005));
  CHECK(std::fabs(r->value("vgs_gm_max") - 0.66) <= 0.015);
  CHECK(std::fabs(r->value("vth_gm") - 0.494) <= 0.005);
  CHECK(std::fabs(r->value("vth_cc") - 0.509) <= 0.003);
  CHECK(r->value("ion") == doctest::Approx(1.232e-4).epsilon(0.002));
}

TEST_CASE("p-channel: mirrored data gives mirrored thresholds") {
  auto d = mosfet_data(0.0);
  for (auto& p : d) {
    p.x = -p.x;
    p.y = -p.y;
  }
  auto o = t2_options();
  o.polarity = channel::p;
  o.vds = -0.05;
  o.vgs_on = -3.3;
  auto r = analyze_mosfet_transfer(d, o);
  REQUIRE(r.has_value());
  CHECK(std::fabs(r->value("vth_gm") + 0.500) <= 0.005);
  CHECK(std::fabs(r->value("vth_cc") + 0.509) <= 0.003);
  CHECK(std::fabs(r->value("ss") - 71.4e-3) <= 1e-3);
  CHECK(r->value("on_off") == doctest::Approx(2.0e9).epsilon(0.05));
}

TEST_CASE("reverse sweep direction gives the same result") {
  auto d = mosfet_data(0.0);
  std::reverse(d.begin(), d.end());
  auto r = analyze_mosfet_transfer(d, t2_options());
  REQUIRE(r.has_value());
  CHECK(std::fabs(r->value("vth_gm") - 0.500) <= 0.005);
}

TEST_CASE("MOSFET bad input") {
  auto d = mosfet_data(0.0);
  SUBCASE("dual sweep not split") {
    auto dual = d;
    dual.insert(dual.end(), d.rbegin(), d.rend());
    auto r = analyze_mosfet_transfer(dual, t2_options());
    REQUIRE(!r.has_value());
    CHECK(r.error().code == errc::non_monotonic);
  }
  SUBCASE("no VDS") {
    auto o = t2_options();
    o.vds = 0;
    auto r = analyze_mosfet_transfer(d, o);
    REQUIRE(!r.has_value());
    CHECK(r.error().code == errc::bad_input);
  }
  SUBCASE("VDS sign against polarity") {
    auto o = t2_options();
    o.polarity = channel::p;
    auto r = analyze_mosfet_transfer(d, o);
    REQUIRE(!r.has_value());
    CHECK(r.error().code == errc::bad_input);
  }
  SUBCASE("compliance point in the middle") {
    d[200].quality = semilab::schemas::quality::compliance;
    auto r = analyze_mosfet_transfer(d, t2_options());
    REQUIRE(!r.has_value());
    CHECK(r.error().code == errc::flagged_in_window);
  }
  SUBCASE("compliance at the top end is excluded") {
    d.back().quality = semilab::schemas::quality::compliance;
    auto o = t2_options();
    o.vgs_on = 3.2;
    auto r = analyze_mosfet_transfer(d, o);
    REQUIRE(r.has_value());
    CHECK(std::fabs(r->value("vth_gm") - 0.500) <= 0.005);
  }
  SUBCASE("too few points") {
    d.resize(4);
    auto r = analyze_mosfet_transfer(d, t2_options());
    REQUIRE(!r.has_value());
    CHECK(r.error().code == errc::insufficient_data);
  }
  SUBCASE("vgs_on outside the sweep") {
    auto o = t2_options();
    o.vgs_on = 5;
    auto r = analyze_mosfet_transfer(d, o);
    REQUIRE(!r.has_value());
    CHECK(r.error().code == errc::bad_input);
  }
}
