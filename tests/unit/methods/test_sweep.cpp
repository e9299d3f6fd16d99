#include <doctest/doctest.h>

#include <cmath>
#include <semilab/methods/sweep.hpp>

using namespace semilab::methods;

TEST_CASE("linear sweep") {
  auto p = sweep_points({sweep_mode::linear, -0.5, 3.3, 381, {}, false});
  REQUIRE(p.has_value());
  REQUIRE(p->size() == 381);
  CHECK(p->front() == -0.5);
  CHECK(p->back() == 3.3);
  CHECK((*p)[100] == doctest::Approx(0.5));
}

TEST_CASE("log sweep, positive and negative") {
  auto p = sweep_points({sweep_mode::log, 1e-9, 1e-2, 71, {}, false});
  REQUIRE(p.has_value());
  REQUIRE(p->size() == 71);
  CHECK((*p)[10] == doctest::Approx(1e-8));
  CHECK((*p)[60] == doctest::Approx(1e-3));
  CHECK(p->back() == 1e-2);
  auto n = sweep_points({sweep_mode::log, -1e-6, -1e-3, 4, {}, false});
  REQUIRE(n.has_value());
  CHECK((*n)[1] == doctest::Approx(-1e-5));
  CHECK((*n)[2] == doctest::Approx(-1e-4));
}

TEST_CASE("dual sweep goes back without repeating the turning point") {
  auto p = sweep_points({sweep_mode::linear, 0, 1, 3, {}, true});
  REQUIRE(p.has_value());
  CHECK(*p == std::vector<double>{0, 0.5, 1, 0.5, 0});
  auto l = sweep_points({sweep_mode::list, 0, 0, 0, {1, 5, 2}, true});
  REQUIRE(l.has_value());
  CHECK(*l == std::vector<double>{1, 5, 2, 5, 1});
}

TEST_CASE("sweep errors") {
  CHECK(sweep_points({sweep_mode::linear, 0, 1, 1, {}, false}).error().code == errc::bad_input);
  CHECK(sweep_points({sweep_mode::log, 0, 1, 10, {}, false}).error().code == errc::bad_input);
  CHECK(sweep_points({sweep_mode::log, -1, 1, 10, {}, false}).error().code == errc::bad_input);
  CHECK(sweep_points({sweep_mode::list, 0, 0, 0, {}, false}).error().code == errc::bad_input);
  CHECK(sweep_points({sweep_mode::list, 0, 0, 0, {1, NAN}, false}).error().code == errc::bad_input);
  CHECK(sweep_points({sweep_mode::linear, 0, 1, kMaxSweepPoints + 1, {}, false}).error().code ==
        errc::bad_input);
  CHECK(sweep_points({sweep_mode::linear, 0, INFINITY, 3, {}, false}).error().code ==
        errc::bad_input);
}
