// `semilab-agent analyze METHOD FILE.csv --param ... [--json]` as a process, for the electrical
// methods: CSV files generated here from the reference models of
// shared/reference/measurement-methods.md §9 (T1, T2a, T7, T12) and a TLM structure with known
// contact resistance; JSON shape, SI values, customary units in the text output, errors and
// exit codes. The analysis is methods::analyze_table, the code live runs use.
#include <boost/json.hpp>
#include <doctest/doctest.h>


#include <cmath>
#include <complex>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <sstream>
#include <string>

#include "support/processes.hpp"

namespace fs = std::filesystem;

namespace {

const std::string kBin = SEMILAB_BIN_DIR;
constexpr double kQ = 1.602176634e-19;
const double kVt = 1.380649e-23 * 300.0 / kQ;

struct run_result {
  int rc = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

run_result analyze(const semilab::test::temp_dir& dir, const std::string& args) {
  const auto errf = dir.path() / "stderr.txt";
  auto sh = semilab::test::run_shell(kBin + "/semilab-agent analyze " + args + " 2>" + errf.string());
  return {sh.exit, std::move(sh.out), slurp(errf)};
}

std::string write(const semilab::test::temp_dir& dir, const std::string& name, const std::string& text) {
  auto p = dir.path() / name;
  std::ofstream(p, std::ios::binary) << text;
  return p.string();
}

std::string num(double v) {
  char b[40];
  std::snprintf(b, sizeof b, "%.17g", v);
  return b;
}

boost::json::object json_of(const run_result& r) {
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  auto v = boost::json::parse(r.out);
  REQUIRE(v.is_object());
  return v.as_object();
}

double value(const boost::json::object& o, const char* name) {
  const auto& p = o.at("parameters").as_object().at(name).as_object();
  return p.at("value").to_number<double>();
}

// T1 diode: V = n Vt ln(I/I0 + 1) + I Rs, 71 log-spaced currents 1 nA..10 mA.
std::string diode_csv(std::size_t flag_at = 1000) {
  std::string s = "# T1 diode\nv,i,quality\n";
  for (int k = 0; k < 71; ++k) {
    const double i = 1e-9 * std::pow(1e7, k / 70.0);
    s += num(1.8 * kVt * std::log(i / 1e-12 + 1) + i * 5) + "," + num(i) + "," +
         (static_cast<std::size_t>(k) == flag_at ? "1" : "0") + "\n";
  }
  return s;
}

double softplus(double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }

// T2a MOSFET transfer, VDS = 50 mV.
std::string mosfet_csv() {
  const double beta = 400e-4 * 3.4531e-3 * 10, vds = 0.05, vth = 0.5, nss = 1.2;
  std::string s = "vg (V),id (A)\n";
  for (int k = 0; k <= 380; ++k) {
    const double vg = -0.5 + 0.01 * k;
    const double sv = nss * kVt * softplus((vg - vth - vds / 2) / (nss * kVt));
    s += num(vg) + "," + num(beta * vds * sv) + "\n";
  }
  return s;
}

// Van der Pauw / Hall rows of a disc (contacts at 0, 90, 180, 270 degrees) with T7's layer:
// Rs 780.19 ohm/sq, n-type, ns 1e17 m^-2; I = 100 uA, B = +-0.5 T; a thermo-EMF offset.
std::string hall_csv() {
  const double rs = 780.19, ns = 1e17, cur = 100e-6;
  auto z = [](int c) { return std::polar(1.0, (c - 1) * std::numbers::pi / 2); };
  auto g = [&](int a, int b) { return a == b ? 0.0 : -rs / std::numbers::pi * std::log(std::abs(z(a) - z(b))); };
  auto r = [&](int a, int b, int p, int m, double field) {
    double v = g(p, a) - g(p, b) - g(m, a) + g(m, b);
    auto arc = [&](int c) { return (c - a + 4) % 4; };
    const bool pin = arc(p) > 0 && arc(p) < arc(b), min = arc(m) > 0 && arc(m) < arc(b);
    if (pin != min) v += (pin ? 1 : -1) * (-1 / (kQ * ns)) * field;
    return v;
  };
  std::string s = "i_from,i_to,v_plus,v_minus,b,i,v\n";
  auto row = [&](int a, int b, int p, int m, double field) {
    for (double sgn : {1.0, -1.0})
      s += std::to_string(a) + "," + std::to_string(b) + "," + std::to_string(p) + "," + std::to_string(m) +
           "," + num(field) + "," + num(sgn * cur) + "," + num(sgn * cur * r(a, b, p, m, field) + 15e-6) + "\n";
  };
  const int vdp[8][4] = {{2, 1, 3, 4}, {1, 2, 4, 3}, {4, 3, 1, 2}, {3, 4, 2, 1},
                         {3, 2, 4, 1}, {2, 3, 1, 4}, {1, 4, 2, 3}, {4, 1, 3, 2}};
  for (const auto& c : vdp) row(c[0], c[1], c[2], c[3], 0);
  const int hall[4][4] = {{1, 3, 2, 4}, {3, 1, 4, 2}, {4, 2, 1, 3}, {2, 4, 3, 1}};
  for (double field : {0.5, -0.5})
    for (const auto& c : hall) row(c[0], c[1], c[2], c[3], field);
  return s;
}

}  // namespace

TEST_CASE("analyze --list names every electrical method with its columns and parameters") {
  semilab::test::temp_dir dir;
  auto r = analyze(dir, "--list");
  REQUIRE(r.rc == 0);
  for (const char* m : {"diode-iv:", "mosfet-idvg:", "mosfet-idvd:", "cv-mos:", "cv-schottky:", "four-point:",
                        "vdp:", "hall:", "tlm:", "check-standard:", "xrd-peak:", "tauc:"})
    CHECK(r.out.find(m) != std::string::npos);
  CHECK(r.out.find("vds [V] (required)") != std::string::npos);
  CHECK(r.out.find("area [m^2] (required)") != std::string::npos);
  CHECK(r.out.find("contact_width [m] (required)") != std::string::npos);
  CHECK(r.out.find("i_from, i_to, v_plus, v_minus") != std::string::npos);
}

TEST_CASE("diode-iv (T1): n, i0, rs in SI with uncertainties; T12 flag in the window fails") {
  semilab::test::temp_dir dir;
  auto f = write(dir, "t1.csv", diode_csv());
  auto o = json_of(analyze(dir, "diode-iv " + f + " --json"));
  CHECK(o.at("method").as_string() == "diode-iv");
  CHECK(o.at("warnings").is_array());
  CHECK(value(o, "n") == doctest::Approx(1.8).epsilon(0.005));
  CHECK(value(o, "i0") == doctest::Approx(1e-12).epsilon(0.05));
  CHECK(value(o, "rs") == doctest::Approx(5).epsilon(0.01));
  const auto& ps = o.at("parameters").as_object();
  CHECK(ps.at("i0").as_object().at("unit").as_string() == "A");
  CHECK(ps.at("rs").as_object().at("unit").as_string() == "ohm");
  for (const char* n : {"n", "i0", "rs"}) {
    CAPTURE(n);
    CHECK(ps.at(n).as_object().contains("uncertainty"));
  }
  CHECK(ps.at("n").as_object().at("uncertainty").is_number());

  // Human output: one tab-separated line per parameter.
  auto t = analyze(dir, "diode-iv " + f);
  REQUIRE(t.rc == 0);
  CHECK(t.out.find("\nn\t1.79") != std::string::npos);

  // T12: a compliance-flagged point (quality bit 1, as drivers map status bit 3) inside the fit
  // window fails the extraction.
  auto bad = write(dir, "t12.csv", diode_csv(35));
  auto e = analyze(dir, "diode-iv " + bad + " --json");
  CHECK(e.rc == 1);
  CHECK(e.err.find("compliance-flagged inside the fit window") != std::string::npos);
}

TEST_CASE("mosfet-idvg (T2a): vth_gm with and without VDS/2, vth_cc, ss, gm_max, on_off") {
  semilab::test::temp_dir dir;
  auto f = write(dir, "t2a.csv", mosfet_csv());
  auto o = json_of(analyze(dir, "mosfet-idvg " + f + " --param vds=0.05 --param width=10e-6 --param length=1e-6 --json"));
  CHECK(o.at("method").as_string() == "mosfet-idvg");
  CHECK(value(o, "vth_gm") == doctest::Approx(0.5).epsilon(0.01));
  CHECK(std::fabs(value(o, "vth_gm") - 0.5) <= 0.005);
  CHECK(std::fabs(value(o, "vth_cc") - 0.509) <= 0.003);
  CHECK(value(o, "ss") == doctest::Approx(0.0714).epsilon(0.014));
  CHECK(o.at("parameters").as_object().at("ss").as_object().at("unit").as_string() == "V/dec");
  CHECK(value(o, "gm_max") == doctest::Approx(6.906e-5).epsilon(0.01));
  CHECK(value(o, "on_off") == doctest::Approx(2.0e9).epsilon(0.05));
  auto raw = json_of(analyze(dir, "mosfet-idvg " + f + " --param vds=0.05 --param vds_half=false --json"));
  CHECK(std::fabs(value(raw, "vth_gm") - 0.525) <= 0.005);
  // Customary units in the human output: SS in mV/dec.
  auto t = analyze(dir, "mosfet-idvg " + f + " --param vds=0.05");
  REQUIRE(t.rc == 0);
  CHECK(t.out.find("mV/dec") != std::string::npos);
  // Usage errors exit 2 with the parameter named.
  auto missing = analyze(dir, "mosfet-idvg " + f + " --json");
  CHECK(missing.rc == 2);
  CHECK(missing.err.find("parameter vds is required") != std::string::npos);
  auto unknown = analyze(dir, "mosfet-idvg " + f + " --param vds=0.05 --param vdd=3");
  CHECK(unknown.rc == 2);
  CHECK(unknown.err.find("unknown parameter 'vdd'") != std::string::npos);
  auto malformed = analyze(dir, "mosfet-idvg " + f + " --param vds");
  CHECK(malformed.rc == 2);
}

TEST_CASE("tlm: contact resistance and transfer length of a known structure") {
  // R = 2 Rc + Rsh d / W: Rc = 4 ohm, Rsh = 40 ohm/sq, W = 50 um -> LT = Rc W / Rsh = 5 um.
  semilab::test::temp_dir dir;
  std::string s = "d,i,v\n";
  for (double d : {5e-6, 10e-6, 20e-6, 40e-6})
    for (double i : {1e-3, -1e-3}) s += num(d) + "," + num(i) + "," + num(i * (8 + 40 * d / 50e-6) + 2e-5) + "\n";
  auto f = write(dir, "tlm.csv", s);
  auto o = json_of(analyze(dir, "tlm " + f + " --param contact_width=50e-6 --json"));
  CHECK(value(o, "r_contact") == doctest::Approx(4).epsilon(1e-6));
  CHECK(value(o, "l_transfer") == doctest::Approx(5e-6).epsilon(1e-6));
  CHECK(value(o, "r_sheet") == doctest::Approx(40).epsilon(1e-6));
  const auto& lt = o.at("parameters").as_object().at("l_transfer").as_object();
  CHECK(lt.at("unit").as_string() == "m");
  CHECK(lt.at("uncertainty").is_number());
  auto t = analyze(dir, "tlm " + f + " --param contact_width=50e-6");
  CHECK(t.out.find("um") != std::string::npos);
  auto bad = write(dir, "bad.csv", "d,i,v\n1e-6,1e-3,abc\n");
  auto e = analyze(dir, "tlm " + bad + " --param contact_width=50e-6");
  CHECK(e.rc == 1);
  CHECK(e.err.find("line 2: column 'v': 'abc' is not a number") != std::string::npos);
}

TEST_CASE("hall (T7 layer on a disc): carrier_type as text, n_sheet, mobility; vdp r_sheet") {
  semilab::test::temp_dir dir;
  auto f = write(dir, "hall.csv", hall_csv());
  auto o = json_of(analyze(dir, "hall " + f + " --param thickness=1e-6 --json"));
  CHECK(o.at("method").as_string() == "hall");
  const auto& ps = o.at("parameters").as_object();
  const auto& type = ps.at("carrier_type").as_object();
  CHECK(type.at("value").as_string() == "n");
  CHECK(!type.contains("uncertainty"));
  CHECK(value(o, "n_sheet") == doctest::Approx(1e17).epsilon(0.005));
  CHECK(ps.at("n_sheet").as_object().at("unit").as_string() == "m^-2");
  CHECK(value(o, "mobility") == doctest::Approx(0.08).epsilon(0.005));  // 800 cm^2/V.s
  CHECK(ps.at("mobility").as_object().at("unit").as_string() == "m^2/(V*s)");
  CHECK(value(o, "r_sheet") == doctest::Approx(780.19).epsilon(1e-6));
  auto t = analyze(dir, "hall " + f + " --param thickness=1e-6");
  REQUIRE(t.rc == 0);
  CHECK(t.out.find("carrier_type\tn") != std::string::npos);
  CHECK(t.out.find("cm^2/(V*s)") != std::string::npos);
  CHECK(t.out.find("cm^-2") != std::string::npos);
  auto v = json_of(analyze(dir, "vdp " + f + " --json"));
  CHECK(value(v, "r_sheet") == doctest::Approx(780.19).epsilon(1e-6));
}
