// mosfet-idvd and check-standard on synthetic data, and analyze_table (the path shared by live
// runs and `semilab-agent analyze`): van der Pauw / Hall from four-terminal rows of a disc model
// (T6/T7 values), TLM from I-V rows, parameter and column errors.
#include <doctest/doctest.h>

#include <cmath>
#include <complex>
#include <numbers>
#include <semilab/methods/analyze.hpp>
#include <semilab/methods/mosfet.hpp>
#include <semilab/methods/resistivity.hpp>
#include <semilab/schemas/record.hpp>

using namespace semilab::methods;

namespace {

// Long-channel square law with channel-length modulation.
double square_law(double vgs, double vds, double beta, double vth, double lambda) {
  const double vov = vgs - vth;
  if (vov <= 0) return 0;
  const double v = std::min(vds, vov);
  return beta * (vov * v - v * v / 2) * (1 + lambda * vds);
}

std::vector<idvd_point> output_family(double sign = 1) {
  std::vector<idvd_point> pts;
  for (double vg : {1.0, 2.0, 3.0})
    for (int k = 0; k <= 100; ++k) {
      const double vd = 0.03 * k;
      pts.push_back({sign * vg, sign * vd, sign * square_law(vg, vd, 1e-3, 0.5, 0.05), 0});
    }
  return pts;
}

// Disc of radius 1 with point contacts at the given angles (counter-clockwise): the boundary
// Green's function -(Rs/pi) ln|z_a - z_b| gives every four-terminal resistance; diagonal
// (interleaved) configurations add the Hall term s*B/(q ns) (s = +1 p, -1 n).
struct disc {
  double rs = 100;
  double angles[4] = {0, std::numbers::pi / 2, std::numbers::pi, 3 * std::numbers::pi / 2};
  double hall = 0;  // V/A at +1 T: s/(q ns)
  double g(int a, int b) const {
    const auto za = std::polar(1.0, angles[a - 1]), zb = std::polar(1.0, angles[b - 1]);
    return -rs / std::numbers::pi * std::log(std::abs(za - zb));
  }
  // Position of contact c on the counter-clockwise arc from a (0 = a).
  static int arc(int a, int c) { return (c - a + 4) % 4; }
  double r(const contact_config& k, double b) const {
    auto gg = [&](int x, int y) { return x == y ? 0.0 : g(x, y); };
    double v = gg(k.v_plus, k.i_from) - gg(k.v_plus, k.i_to) - gg(k.v_minus, k.i_from) +
               gg(k.v_minus, k.i_to);
    const int c = arc(k.i_from, k.i_to), p = arc(k.i_from, k.v_plus), m = arc(k.i_from, k.v_minus);
    const bool p_in = p > 0 && p < c, m_in = m > 0 && m < c;
    if (p_in != m_in) v += (p_in ? 1 : -1) * hall * b;
    return v;
  }
};

data_table four_terminal_table(const disc& d, std::initializer_list<double> fields, double i,
                               double offset, bool with_vdp) {
  data_table t;
  t.columns = {"i_from", "i_to", "v_plus", "v_minus", "b", "i", "v"};
  auto add = [&](const contact_config& k, double b) {
    for (double s : {1.0, -1.0})  // current reversal; a thermo-EMF offset that it cancels
      t.rows.push_back({double(k.i_from), double(k.i_to), double(k.v_plus), double(k.v_minus), b,
                        s * i, s * i * d.r(k, b) + offset});
  };
  if (with_vdp)
    for (const auto& k : vdp_configs()) add(k, 0);
  for (double b : fields)
    for (const auto& k : hall_configs()) add(k, b);
  return t;
}

}  // namespace

TEST_CASE("mosfet-idvd: Ron, saturation current, output conductance, Early voltage") {
  auto pts = output_family();
  auto r = analyze_mosfet_output(pts, {});
  REQUIRE(r.has_value());
  CHECK(r->value("vgs") == doctest::Approx(3.0));
  CHECK(r->value("curves") == 3);
  // dID/dVDS at 0: beta*(VGS - Vth) = 2.5e-3 S.
  CHECK(r->value("r_on") == doctest::Approx(400).epsilon(0.002));
  CHECK(r->find("r_on")->unit == "ohm");
  REQUIRE(r->find("r_on")->uncertainty);
  // Saturation (VDS >= 2.1 V > VDsat 2.5? no: window from 0.7*3 = 2.1 V; VDsat = 2.5 V):
  // choose an explicit window above VDsat.
  mosfet_output_options o;
  o.vds_sat = 2.55;
  r = analyze_mosfet_output(pts, o);
  REQUIRE(r.has_value());
  const double idsat = 1e-3 / 2 * 2.5 * 2.5 * (1 + 0.05 * 3.0);
  CHECK(r->value("id_sat") == doctest::Approx(idsat).epsilon(1e-9));
  CHECK(r->value("g_ds") == doctest::Approx(1e-3 / 2 * 6.25 * 0.05).epsilon(1e-9));
  CHECK(r->value("v_early") == doctest::Approx(20).epsilon(1e-6));
  CHECK(r->value("r_out") == doctest::Approx(1 / (1e-3 / 2 * 6.25 * 0.05)).epsilon(1e-9));
  CHECK(r->find("id_sat")->uncertainty.value() < 1e-12);
  CHECK(r->warnings.empty());

  SUBCASE("another curve, and p-channel mirrored") {
    o.vgs = 2.0;
    o.vds_sat = 1.6;
    auto r2 = analyze_mosfet_output(pts, o);
    REQUIRE(r2.has_value());
    CHECK(r2->value("r_on") == doctest::Approx(1 / 1.5e-3).epsilon(0.002));
    CHECK(r2->value("id_sat") == doctest::Approx(1e-3 / 2 * 2.25 * 1.15).epsilon(1e-9));
    auto pp = output_family(-1);
    mosfet_output_options op;
    op.polarity = channel::p;
    op.vds_sat = -2.55;
    auto r3 = analyze_mosfet_output(pp, op);
    REQUIRE(r3.has_value());
    CHECK(r3->value("vgs") == doctest::Approx(-3.0));
    CHECK(r3->value("r_on") == doctest::Approx(400).epsilon(0.002));
    CHECK(r3->value("id_sat") == doctest::Approx(-idsat).epsilon(1e-9));
  }
  SUBCASE("no saturation is reported; a flagged point in the window fails") {
    std::vector<idvd_point> low;  // VGS = 3 V up to VDS = 1.2 V: never saturated
    for (const auto& p : pts)
      if (p.vgs == 3.0 && p.vds <= 1.2 + 1e-9) low.push_back(p);
    auto r4 = analyze_mosfet_output(low, {});
    REQUIRE(r4.has_value());
    bool warned = false;
    for (auto& w : r4->warnings) warned |= w.find("no saturation") != std::string::npos;
    CHECK(warned);
    auto bad = pts;
    bad[202 + 2].quality = semilab::schemas::quality::compliance;  // VGS 3 V, VDS 0.06 V
    auto r5 = analyze_mosfet_output(bad, {});
    REQUIRE(!r5.has_value());
    CHECK(r5.error().code == errc::flagged_in_window);
    mosfet_output_options none;
    none.vgs = 1.5;
    CHECK(analyze_mosfet_output(pts, none).error().code == errc::bad_input);
  }
}

TEST_CASE("check standard: reference resistor against its nominal value") {
  std::vector<sample> rd;
  for (double i : {1e-3, -1e-3, 2e-3, -2e-3}) rd.push_back({i, 100.02 * i + 3e-6, 0});
  auto r = analyze_check_standard(rd, {100.0, 1e-3});
  REQUIRE(r.has_value());
  CHECK(r->value("r") == doctest::Approx(100.02).epsilon(1e-12));
  CHECK(r->value("deviation") == doctest::Approx(0.02).epsilon(1e-9));
  CHECK(r->value("deviation_rel") == doctest::Approx(2e-4).epsilon(1e-9));
  for (const char* n : {"r", "deviation", "deviation_rel"}) {
    CAPTURE(n);
    REQUIRE(r->find(n)->uncertainty);
  }
  CHECK(r->warnings.empty());
  auto out = analyze_check_standard(rd, {100.0, 1e-4});
  REQUIRE(out.has_value());
  REQUIRE(out->warnings.size() == 1);
  CHECK(out->warnings[0].find("out of tolerance") != std::string::npos);
  // Repeats at one current: the mean of V/I and the standard error of the mean.
  std::vector<sample> rep = {{1e-3, 0.09999, 0}, {1e-3, 0.10001, 0}, {1e-3, 0.1, 0}};
  auto m = analyze_check_standard(rep, {100.0, 0});
  REQUIRE(m.has_value());
  CHECK(m->value("r") == doctest::Approx(100.0).epsilon(1e-12));
  CHECK(*m->find("r")->uncertainty == doctest::Approx(0.01 / std::sqrt(3.0)).epsilon(1e-6));
  CHECK(!analyze_check_standard(rep, {0, 0}).has_value());
}

TEST_CASE("analyze_table: T6/T7 from four-terminal rows of a disc") {
  disc d;
  d.rs = 780.19;
  d.hall = -1 / (semilab::methods::constants::q * 1e17);  // n-type, ns = 1e13 cm^-2
  auto t = four_terminal_table(d, {0.5, -0.5}, 100e-6, 20e-6, true);
  auto v = analyze_table("vdp", t, {{"thickness", "1e-6"}});
  REQUIRE(v.has_value());
  CHECK(v->value("r_sheet") == doctest::Approx(780.19).epsilon(1e-9));
  CHECK(v->value("r_a") == doctest::Approx(780.19 * std::numbers::ln2 / std::numbers::pi).epsilon(1e-9));
  CHECK(to_customary(*v->find("resistivity")).value == doctest::Approx(0.078019).epsilon(1e-6));
  REQUIRE(v->find("r_sheet")->uncertainty);
  auto h = analyze_table("hall", t, {{"thickness", "1e-6"}});
  REQUIRE(h.has_value());
  CHECK(h->find("carrier_type")->text == "n");
  CHECK(h->value("v_sum") == doctest::Approx(-24.966e-3).epsilon(1e-4));
  CHECK(to_customary(*h->find("n_sheet")).value == doctest::Approx(1e13).epsilon(1e-6));
  CHECK(to_customary(*h->find("mobility")).value == doctest::Approx(800).epsilon(1e-4));
  CHECK(h->value("r_sheet") == doctest::Approx(780.19).epsilon(1e-9));

  SUBCASE("asymmetric contacts: R_A != R_B, still the sheet resistance; p-type") {
    disc a;
    a.rs = 100;
    a.angles[1] = 1.2;
    a.angles[3] = 4.0;
    a.hall = 1 / (semilab::methods::constants::q * 5e16);
    auto ta = four_terminal_table(a, {1.0, -1.0}, 1e-3, -5e-6, true);
    auto va = analyze_table("vdp", ta, {});
    REQUIRE(va.has_value());
    CHECK(va->value("r_a") != doctest::Approx(va->value("r_b")).epsilon(0.05));
    CHECK(va->value("r_sheet") == doctest::Approx(100).epsilon(1e-9));
    auto ha = analyze_table("hall", ta, {});
    REQUIRE(ha.has_value());
    CHECK(ha->find("carrier_type")->text == "p");
    CHECK(ha->value("n_sheet") == doctest::Approx(5e16).epsilon(1e-6));
    CHECK(ha->value("mobility") ==
          doctest::Approx(1 / (semilab::methods::constants::q * 5e16 * 100)).epsilon(1e-6));
  }
  SUBCASE("missing configuration, missing field reversal, r_sheet given") {
    auto t2 = four_terminal_table(d, {0.5}, 100e-6, 0, false);
    auto e = analyze_table("hall", t2, {});
    REQUIRE(!e.has_value());
    CHECK(e.error().message.find("-B") != std::string::npos);
    auto t3 = four_terminal_table(d, {0.5, -0.5}, 100e-6, 0, false);
    auto h3 = analyze_table("hall", t3, {{"r_sheet", "780.19"}});
    REQUIRE(h3.has_value());
    CHECK(to_customary(*h3->find("mobility")).value == doctest::Approx(800).epsilon(1e-4));
    auto v3 = analyze_table("vdp", t3, {});
    REQUIRE(!v3.has_value());
    CHECK(v3.error().message.find("R21,34") != std::string::npos);
    // A compliance-flagged row is kept out and reported.
    auto t4 = t;
    t4.quality.assign(t4.rows.size(), 0);
    t4.quality[0] = semilab::schemas::quality::compliance;
    t4.rows[0][6] = 1e3;  // a clamped reading that must not enter
    auto v4 = analyze_table("vdp", t4, {});
    REQUIRE(v4.has_value());
    // (R21,34 is then left with its -I reading only: its offset no longer cancels.)
    CHECK(v4->value("r_sheet") == doctest::Approx(780.19).epsilon(1e-3));
    REQUIRE(!v4->warnings.empty());
    CHECK(v4->warnings.back() == "1 compliance or over-range row(s) excluded");
  }
}

TEST_CASE("analyze_table: TLM from I-V rows, check standard, errors") {
  // R = 2 Rc + Rsh d / W with Rc = 5 ohm, Rsh = 50 ohm/sq, W = 100 um: LT = Rc W / Rsh = 10 um.
  data_table t;
  t.columns = {"d", "i", "v"};
  for (double d : {5e-6, 10e-6, 20e-6, 40e-6, 80e-6})
    for (double i : {1e-3, -1e-3}) t.rows.push_back({d, i, i * (10 + 50 * d / 100e-6) + 1e-5});
  auto r = analyze_table("tlm", t, {{"contact_width", "100e-6"}});
  REQUIRE(r.has_value());
  CHECK(r->value("r_contact") == doctest::Approx(5).epsilon(1e-9));
  CHECK(r->value("r_sheet") == doctest::Approx(50).epsilon(1e-9));
  CHECK(r->value("l_transfer") == doctest::Approx(10e-6).epsilon(1e-9));

  data_table cs;
  cs.columns = {"i", "v"};
  cs.rows = {{1e-3, 0.1}, {-1e-3, -0.1}};
  auto c = analyze_table("check-standard", cs, {{"nominal", "100"}});
  REQUIRE(c.has_value());
  CHECK(c->value("deviation") == doctest::Approx(0).scale(1));

  auto e1 = analyze_table("tlm", t, {});
  REQUIRE(!e1.has_value());
  CHECK(e1.error().message == "tlm: parameter contact_width is required");
  auto e2 = analyze_table("tlm", t, {{"contact_width", "abc"}});
  CHECK(e2.error().message == "tlm: parameter contact_width: 'abc' is not a number");
  auto e3 = analyze_table("tlm", t, {{"contact_width", "1e-4"}, {"widht", "1"}});
  CHECK(e3.error().message == "tlm: unknown parameter 'widht' (known: contact_width)");
  data_table xy;
  xy.columns = {"x", "y"};
  xy.rows = {{1, 2}};
  auto e4 = analyze_table("diode-iv", xy, {});
  CHECK(e4.error().message == "diode-iv: the data have no column 'v'" );
  auto e5 = analyze_table("nonsense", cs, {});
  CHECK(e5.error().code == errc::bad_input);
  CHECK(find_analysis("mosfet-idvd") != nullptr);
  CHECK(analysis_methods().size() == 10);
}
