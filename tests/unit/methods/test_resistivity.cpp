#include <doctest/doctest.h>

#include <cmath>
#include <numbers>
#include <random>
#include <semilab/methods/resistivity.hpp>
#include <semilab/schemas/record.hpp>

using namespace semilab::methods;

namespace {
// +I/-I pairs at three levels with a thermo-EMF offset that current reversal must cancel.
std::vector<sample> fpp_readings(double v_over_i, double offset = 25e-6) {
  std::vector<sample> r;
  for (double i : {1e-4, 5e-4, 1e-3}) {
    r.push_back({i, v_over_i * i + offset, 0});
    r.push_back({-i, -v_over_i * i + offset, 0});
  }
  return r;
}
}  // namespace

TEST_CASE("T5d Smits F2 and thickness factor tables") {
  const std::pair<double, double> f2[] = {{3, 0.5000},  {4, 0.6462},  {5, 0.7419},  {10, 0.9203},
                                          {20, 0.9788}, {40, 0.9946}, {100, 0.9991}};
  for (auto [ds, want] : f2) {
    CAPTURE(ds);
    auto v = smits_f2(ds);
    REQUIRE(v.has_value());
    CHECK(std::fabs(*v - want) <= 1e-4);
  }
  const std::pair<double, double> tf[] = {
      {0.25, 1.000}, {0.4, 0.9995}, {0.5, 0.9974}, {5.0 / 6.0, 0.9600}, {1.0, 0.9215}};
  for (auto [ts, want] : tf) {
    CAPTURE(ts);
    auto v = thickness_factor(ts);
    REQUIRE(v.has_value());
    CHECK(std::fabs(*v - want) <= 1e-4);
  }
  CHECK(!smits_f2(1.5).has_value());
  CHECK(smits_f2(1.5).error().code == errc::bad_input);
  CHECK(!g7(0).has_value());
}

TEST_CASE("T5a four-point probe: 100 ohm/sq film, centre of a 100 mm disc") {
  const double f2 = *smits_f2(100);
  const double vi = 100 / (kPiOverLn2 * f2);
  CHECK(vi == doctest::Approx(22.083).epsilon(1e-4));
  four_point_geometry g;
  g.spacing = 1e-3;
  g.diameter = 0.1;
  auto r = analyze_four_point(fpp_readings(vi), g);
  REQUIRE(r.has_value());
  CHECK(r->value("r_sheet") == doctest::Approx(100).epsilon(0.001));
  CHECK(std::fabs(r->value("f2") - 0.9991) <= 1e-4);
  CHECK(r->find("r_sheet")->unit == "ohm/sq");
  CHECK(r->value("linearity") < 1e-9);
  CHECK(r->warnings.empty());
}

TEST_CASE("T5b four-point probe: 20 mm disc") {
  four_point_geometry g;
  g.spacing = 1e-3;
  g.diameter = 20e-3;
  auto r = analyze_four_point(fpp_readings(22.54), g);
  REQUIRE(r.has_value());
  CHECK(r->value("r_sheet") == doctest::Approx(100).epsilon(0.002));
}

TEST_CASE("T5c four-point probe: bulk wafer with thickness correction") {
  four_point_geometry g;
  g.spacing = 1e-3;
  g.diameter = 0.1;
  g.thickness = 525e-6;
  auto r = analyze_four_point(fpp_readings(42.216), g);
  REQUIRE(r.has_value());
  CHECK(r->value("thickness_factor") == doctest::Approx(0.99636).epsilon(1e-4));
  CHECK(r->value("f2") == doctest::Approx(0.99914).epsilon(1e-4));
  auto rho = to_customary(*r->find("resistivity"));
  CHECK(rho.unit == "ohm*cm");
  CHECK(rho.value == doctest::Approx(10.00).epsilon(0.002));
  // The uncorrected thin-film formula would give 10.045.
  CHECK(kPiOverLn2 * 42.216 * 0.0525 == doctest::Approx(10.045).epsilon(1e-3));
}

TEST_CASE("four-point quality checks") {
  four_point_geometry g;
  g.spacing = 1e-3;
  SUBCASE("non-linear V(I) raises a warning") {
    std::vector<sample> r;
    for (double i : {1e-4, 5e-4, 1e-3}) {
      r.push_back({i, 22 * i * (1 + 50 * i), 0});
      r.push_back({-i, -22 * i * (1 + 50 * i), 0});
    }
    auto x = analyze_four_point(r, g);
    REQUIRE(x.has_value());
    REQUIRE(!x->warnings.empty());
    CHECK(x->warnings[0].find("not linear") != std::string::npos);
  }
  SUBCASE("one level only is refused") {
    std::vector<sample> r{{1e-3, 0.022, 0}, {1e-3, 0.0221, 0}};
    auto x = analyze_four_point(r, g);
    REQUIRE(!x.has_value());
    CHECK(x.error().code == errc::insufficient_data);
  }
  SUBCASE("over-range readings are dropped") {
    auto r = fpp_readings(22.0);
    r.push_back({2e-3, 9.9e37, 0});
    auto x = analyze_four_point(r, g);
    REQUIRE(x.has_value());
    CHECK(x->value("r") == doctest::Approx(22.0));
    CHECK(x->windows[0].points == 6);
  }
  SUBCASE("no spacing") {
    auto x = analyze_four_point(fpp_readings(22), {});
    REQUIRE(!x.has_value());
    CHECK(x.error().code == errc::bad_input);
  }
}

TEST_CASE("four-point dual configuration") {
  const double rs = 100;
  const double ra = rs * std::log(4.0) / (2 * std::numbers::pi);
  const double rb = rs * std::log(3.0) / (2 * std::numbers::pi);
  auto r = analyze_four_point_dual(ra, rb);
  REQUIRE(r.has_value());
  CHECK(r->value("k_ratio") == doctest::Approx(1.262).epsilon(1e-3));
  CHECK(r->value("r_sheet") == doctest::Approx(100).epsilon(0.001));
  CHECK(r->warnings.empty());
  auto bad = analyze_four_point_dual(ra, ra / 2);
  REQUIRE(bad.has_value());
  CHECK(!bad->warnings.empty());
  CHECK(!analyze_four_point_dual(0, 1).has_value());
}

TEST_CASE("T6 van der Pauw") {
  struct tc {
    double ra, rb, rs;
  };
  for (auto c : {tc{22.0636, 22.0636, 100.000}, tc{30, 10, 82.1879}, tc{100, 1, 92.4347},
                 tc{1, 1, 4.53236}}) {
    CAPTURE(c.ra);
    CAPTURE(c.rb);
    auto s = solve_van_der_pauw(c.ra, c.rb);
    REQUIRE(s.has_value());
    // The reference values carry 6 significant digits: compare to their rounding, and check the
    // equation itself to 1e-12.
    CHECK(s->r_sheet == doctest::Approx(c.rs).epsilon(6e-6));
    CHECK(std::fabs(std::exp(-std::numbers::pi * c.ra / s->r_sheet) +
                    std::exp(-std::numbers::pi * c.rb / s->r_sheet) - 1) < 1e-12);
    CHECK(s->iterations <= 20);
    CHECK(!s->bisection_used);
  }
  // Exact symmetric case: Rs = pi R / ln2.
  auto s = solve_van_der_pauw(1, 1);
  REQUIRE(s.has_value());
  CHECK(s->r_sheet == doctest::Approx(kPiOverLn2).epsilon(1e-12));
  CHECK(!solve_van_der_pauw(-1, 1).has_value());
  CHECK(!solve_van_der_pauw(1, NAN).has_value());
  // Extreme ratio still converges inside the bracket.
  auto x = solve_van_der_pauw(1e6, 1e-3);
  REQUIRE(x.has_value());
  CHECK(std::fabs(std::exp(-std::numbers::pi * 1e6 / x->r_sheet) +
                  std::exp(-std::numbers::pi * 1e-3 / x->r_sheet) - 1) < 1e-9);
}

TEST_CASE("T6 van der Pauw from the eight readings: averaging, reciprocity and geometry") {
  vdp_readings r{30, 30, 30, 30, 10, 10, 10, 10};
  auto x = analyze_van_der_pauw(r);
  REQUIRE(x.has_value());
  CHECK(x->value("r_sheet") == doctest::Approx(82.1879).epsilon(6e-6));
  CHECK(x->value("r_a") == 30);
  REQUIRE(x->warnings.size() == 1);  // R_A/R_B = 3 > 2
  CHECK(x->warnings[0].find("geometry") != std::string::npos);

  vdp_readings far{100, 100, 100, 100, 1, 1, 1, 1};
  auto y = analyze_van_der_pauw(far);
  REQUIRE(y.has_value());
  CHECK(y->value("r_sheet") == doctest::Approx(92.4347).epsilon(6e-6));
  CHECK(!y->warnings.empty());

  vdp_readings recip{22.0, 22.1, 23.5, 22.0, 22.06, 22.06, 22.06, 22.06};  // R43,12 off by 6.6%
  vdp_options o;
  o.thickness = 1e-6;
  auto z = analyze_van_der_pauw(recip, o);
  REQUIRE(z.has_value());
  REQUIRE(z->warnings.size() == 1);
  CHECK(z->warnings[0].find("R21,34 and R43,12") != std::string::npos);
  CHECK(z->find("resistivity") != nullptr);

  vdp_readings overrange{30, 30, 9.91e37, 30, 10, 10, 10, 10};
  CHECK(!analyze_van_der_pauw(overrange).has_value());
}

TEST_CASE("T7 Hall: n-type layer with misalignment offsets") {
  const double i = 100e-6, b = 0.5, ns = 1e17;  // m^-2 (1e13 cm^-2)
  const double vh = -i * b / (constants::q * ns);
  CHECK(vh == doctest::Approx(-3.1208e-3).epsilon(1e-4));
  hall_readings h;
  h.current = i;
  h.field = b;
  h.v24p = vh + 0.5e-3;
  h.v24n = -vh + 0.5e-3;
  h.v42p = vh - 0.5e-3;
  h.v42n = -vh - 0.5e-3;
  h.v13p = vh + 0.35e-3;
  h.v13n = -vh + 0.35e-3;
  h.v31p = vh - 0.35e-3;
  h.v31n = -vh - 0.35e-3;
  hall_options o;
  o.r_sheet = 780.19;
  o.thickness = 1e-6;
  auto r = analyze_hall(h, o);
  REQUIRE(r.has_value());
  CHECK(r->find("carrier_type")->text == "n");
  CHECK(r->value("v_sum") == doctest::Approx(-24.966e-3).epsilon(1e-4));
  CHECK(r->value("n_sheet") == doctest::Approx(1e17).epsilon(0.005));
  CHECK(to_customary(*r->find("n_sheet")).value == doctest::Approx(1e13).epsilon(0.005));
  CHECK(to_customary(*r->find("mobility")).value == doctest::Approx(800).epsilon(0.005));
  CHECK(to_customary(*r->find("hall_coefficient")).value == doctest::Approx(-62.4).epsilon(0.002));
  CHECK(to_customary(*r->find("density")).value == doctest::Approx(1e17).epsilon(0.005));
  CHECK(r->warnings.empty());

  SUBCASE("p-type flips the sign") {
    hall_readings p = h;
    for (double* v : {&p.v24p, &p.v24n, &p.v42p, &p.v42n, &p.v13p, &p.v13n, &p.v31p, &p.v31n})
      *v = -*v;
    auto rp = analyze_hall(p, o);
    REQUIRE(rp.has_value());
    CHECK(rp->find("carrier_type")->text == "p");
  }
  SUBCASE("bad input") {
    hall_readings z = h;
    z.field = 0;
    CHECK(!analyze_hall(z, o).has_value());
    z = h;
    z.v13p = 9.91e37;
    CHECK(!analyze_hall(z, o).has_value());
  }
}

TEST_CASE("TLM with known contact resistance") {
  const double rsh = 50, w = 100e-6, rc = 5;  // LT = Rc W / Rsh = 10 um
  std::vector<sample> d;
  for (double gap : {5e-6, 10e-6, 20e-6, 40e-6, 80e-6})
    d.push_back({gap, 2 * rc + rsh * gap / w, 0});
  auto r = analyze_tlm(d, w);
  REQUIRE(r.has_value());
  CHECK(r->value("r_contact") == doctest::Approx(rc).epsilon(1e-9));
  CHECK(r->value("r_sheet") == doctest::Approx(rsh).epsilon(1e-9));
  CHECK(r->value("l_transfer") == doctest::Approx(10e-6).epsilon(1e-9));
  CHECK(r->value("rho_c") == doctest::Approx(rsh * 1e-10).epsilon(1e-9));  // 5e-9 ohm m^2

  SUBCASE("with noise the truth lies within the reported uncertainty") {
    std::mt19937_64 rng(7);
    std::normal_distribution<double> g(0, 0.2);  // ohm
    std::vector<sample> n;
    for (int rep = 0; rep < 3; ++rep)
      for (auto p : d) n.push_back({p.x, p.y + g(rng), 0});
    auto x = analyze_tlm(n, w);
    REQUIRE(x.has_value());
    for (auto name : {"r_contact", "r_sheet", "l_transfer", "rho_c"}) {
      CAPTURE(name);
      REQUIRE(x->find(name)->uncertainty.has_value());
      CHECK(*x->find(name)->uncertainty > 0);
    }
    CHECK(std::fabs(x->value("r_contact") - rc) < 4 * *x->find("r_contact")->uncertainty);
    CHECK(std::fabs(x->value("l_transfer") - 10e-6) < 4 * *x->find("l_transfer")->uncertainty);
  }
  SUBCASE("two gaps are not enough") {
    std::vector<sample> two{d[0], d[1], d[0]};
    auto x = analyze_tlm(two, w);
    REQUIRE(!x.has_value());
    CHECK(x.error().code == errc::insufficient_data);
  }
  SUBCASE("no width") {
    CHECK(!analyze_tlm(d, 0).has_value());
  }
}
