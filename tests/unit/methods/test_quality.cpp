#include <doctest/doctest.h>

#include <semilab/methods/diode.hpp>
#include <semilab/schemas/record.hpp>

#include "gen.hpp"

using namespace semilab::methods;
using namespace std::chrono;

TEST_CASE("T12 point flags") {
  CHECK(flagged(sample{1.0, 1e-3, semilab::schemas::quality::compliance}));
  CHECK(flagged(sample{1.0, 9.91e37, 0}));
  CHECK((effective_quality(sample{1.0, 9.91e37, 0}) & semilab::schemas::quality::over_range) != 0);
  CHECK(flagged(sample{1.0, -9.9e37, 0}));
  CHECK(flagged(sample{NAN, 1e-3, 0}));
  CHECK(!flagged(sample{1.0, 1e-3, 0}));
  CHECK(!flagged(sample{1.0, 1e-3, semilab::schemas::quality::clock_step}));
}

TEST_CASE("T12 calibration due date in the past marks the result non-traceable") {
  auto d = semilab::methods::test::diode_data(1.8, 1e-12, 5, 1e-9, 1e-2, 71);
  auto r = analyze_diode(d);
  REQUIRE(r.has_value());
  auto ex = r->ex;
  const sys_days today = 2026y / November / 27;
  apply_calibration(ex, sys_days{2027y / January / 1}, today);
  CHECK(ex.quality == 0);
  apply_calibration(ex, std::nullopt, today);
  CHECK(ex.quality == 0);
  const auto warnings = ex.warnings.size();
  apply_calibration(ex, sys_days{2026y / October / 1}, today);
  CHECK((ex.quality & semilab::schemas::quality::non_traceable) != 0);
  REQUIRE(ex.warnings.size() == warnings + 1);
  CHECK(ex.warnings.back().find("2026-10-01") != std::string::npos);
}

TEST_CASE("customary units at the reporting boundary") {
  parameter p;
  p.value = 1e22;
  p.unit = "m^-3";
  p.uncertainty = 1e20;
  auto c = to_customary(p);
  CHECK(c.unit == "cm^-3");
  CHECK(c.value == doctest::Approx(1e16));
  CHECK(*c.uncertainty == doctest::Approx(1e14));
  p.unit = "m";
  p.value = 10e-9;
  CHECK(to_customary(p).unit == "nm");
  CHECK(to_customary(p).value == doctest::Approx(10));
  p.value = 10e-6;
  CHECK(to_customary(p).unit == "um");
  p.unit = "ohm/sq";
  p.value = 100;
  CHECK(to_customary(p).unit == "ohm/sq");
  CHECK(to_customary(p).value == 100);
}
