// `semilab-agent analyze` as a process: the reference cases T8–T11 of
// shared/reference/measurement-methods.md §9 written as export files (generated here from the
// model), the parser sample files of tests/unit/parsers/data, JSON output, errors and exit codes.
#include <boost/json.hpp>
#include <doctest/doctest.h>


#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <numbers>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "support/processes.hpp"

namespace fs = std::filesystem;

namespace {

const std::string kBin = SEMILAB_BIN_DIR;
const fs::path kData = fs::path(SEMILAB_SOURCE_DIR) / "tests/unit/parsers/data";

struct run_result {
  int rc = -1;
  std::string out;
  std::string err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

run_result agent(const semilab::test::temp_dir& dir, const std::string& args) {
  const auto errf = dir.path() / "stderr.txt";
  auto sh = semilab::test::run_shell(kBin + "/semilab-agent analyze " + args + " 2>" + errf.string());
  return {sh.exit, std::move(sh.out), slurp(errf)};
}

// name -> {value, uncertainty (NaN when empty), pass/fail or ""} from the tab-separated lines.
struct param {
  double value = 0;
  double sigma = std::nan("");
  std::string unit;
  std::string check;
};
std::map<std::string, param> params(const std::string& out) {
  std::map<std::string, param> m;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("==", 0) == 0) continue;
    std::vector<std::string> f;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= line.size(); ++i)
      if (i == line.size() || line[i] == '\t') {
        f.push_back(line.substr(start, i - start));
        start = i + 1;
      }
    REQUIRE(f.size() >= 4);
    param p;
    p.value = std::stod(f[1]);
    p.unit = f[2];
    if (!f[3].empty()) p.sigma = std::stod(f[3]);
    if (f.size() > 4) p.check = f[4];
    m[f[0]] = p;
  }
  return m;
}

std::string quoted(const fs::path& p) { return "'" + p.string() + "'"; }

void write(const fs::path& p, const std::string& text) {
  std::ofstream o(p, std::ios::binary);
  o << text;
}

constexpr double kLn2 = std::numbers::ln2;
double gauss(double x, double c, double w) { return std::exp(-4 * kLn2 * (x - c) * (x - c) / (w * w)); }
double lorentz(double x, double c, double w) { return 1 / (1 + 4 * (x - c) * (x - c) / (w * w)); }

}  // namespace

TEST_CASE("analyze --list names every kind with its inputs") {
  semilab::test::temp_dir dir;
  auto r = agent(dir, "--list");
  CHECK(r.rc == 0);
  for (const char* k : {"xrd-peak:", "raman-peak:", "tauc:", "fringe-thickness:", "xps-check:"})
    CHECK(r.out.find(k) != std::string::npos);
  CHECK(r.out.find("--wavelength") != std::string::npos);
  CHECK(r.out.find("--instrument-fwhm") != std::string::npos);
  CHECK(r.out.find("direct|indirect") != std::string::npos);
  CHECK(r.out.find("--refractive-index") != std::string::npos);
  CHECK(r.out.find("--line") != std::string::npos);
}

TEST_CASE("T8 XRD: Si 111 as an .xy export and as XRDML -> 2θ, d, Scherrer") {
  semilab::test::temp_dir dir;
  std::mt19937_64 rng(7);
  std::string xy = "# XRD .xy export\n", ints;
  for (int i = 0; i <= 300; ++i) {
    const double tt = 27.0 + 0.01 * i;
    std::poisson_distribution<long> p(1e4 * gauss(tt, 28.441, 0.30) + 50 + 10 * (tt - 27.0));
    const long c = p(rng);
    char line[64];
    std::snprintf(line, sizeof line, "%.2f %ld\n", tt, c);
    xy += line;
    ints += (i ? " " : "") + std::to_string(c);
  }
  write(dir.path() / "si.xy", xy);
  write(dir.path() / "si.xrdml",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<xrdMeasurements xmlns=\"http://www.xrdml.com/XRDMeasurement/1.5\" status=\"Completed\">\n"
        "<xrdMeasurement measurementType=\"Scan\" status=\"Completed\">\n"
        "<usedWavelength intended=\"K-Alpha 1\"><kAlpha1 unit=\"Angstrom\">1.5405929</kAlpha1></usedWavelength>\n"
        "<scan appendNumber=\"0\" mode=\"Continuous\" scanAxis=\"Gonio\" status=\"Completed\"><dataPoints>\n"
        "<positions axis=\"2Theta\" unit=\"deg\"><startPosition>27.00</startPosition><endPosition>30.00</endPosition></positions>\n"
        "<intensities unit=\"counts\">" + ints + "</intensities>\n"
        "</dataPoints></scan></xrdMeasurement></xrdMeasurements>\n");
  for (const char* f : {"si.xy", "si.xrdml"}) {
    CAPTURE(f);
    auto r = agent(dir, "xrd-peak " + quoted(dir.path() / f) + " --instrument-fwhm 0.10");
    CAPTURE(r.err);
    REQUIRE(r.rc == 0);
    auto m = params(r.out);
    CHECK(std::fabs(m["center"].value - 28.441) <= 0.005);
    CHECK(m["center"].unit == "deg");
    CHECK(m["center"].sigma > 0);
    CHECK(m["center"].sigma < 0.005);
    CHECK(std::fabs(m["d_spacing"].value - 3.1357) <= 0.0005);
    CHECK(m["d_spacing"].unit == "Å");
    CHECK(m["d_spacing"].sigma > 0);
    CHECK(std::fabs(m["scherrer_size"].value - 29.0) <= 1.5);
    CHECK(m["scherrer_size"].unit == "nm");
    CHECK(m["scherrer_size"].sigma > 0);
    CHECK(m["wavelength"].value == doctest::Approx(1.5405929));
  }
  // Without the instrument broadening the size is smaller (β larger); a wavelength override is used.
  auto r = agent(dir, "xrd-peak " + quoted(dir.path() / "si.xy"));
  REQUIRE(r.rc == 0);
  CHECK(params(r.out)["scherrer_size"].value < 28.0);
  r = agent(dir, "xrd-peak " + quoted(dir.path() / "si.xy") + " --wavelength 1.5444260");
  REQUIRE(r.rc == 0);
  CHECK(params(r.out)["d_spacing"].value == doctest::Approx(1.5444260 / (2 * std::sin(28.441 / 2 * std::numbers::pi / 180))).epsilon(2e-4));
}

TEST_CASE("T9 Raman: Lorentzian at 520.70 cm-1 (TSV), Si check; PL 375.7 nm -> 3.300 eV") {
  semilab::test::temp_dir dir;
  std::mt19937_64 rng(3);
  std::normal_distribution<double> noise(0.0, 10.0);
  std::string tsv = "Raman Shift [cm-1]\tIntensity [counts]\n", shifted = tsv;
  for (int i = 0; i <= 120; ++i) {
    const double k = 490.0 + 0.5 * i;
    const double nz = noise(rng);
    tsv += std::to_string(k) + "\t" + std::to_string(1000 * lorentz(k, 520.70, 3.0) + 200 + 1.5 * (k - 490) + nz) + "\n";
    shifted += std::to_string(k) + "\t" + std::to_string(1000 * lorentz(k, 522.50, 3.0) + 200 + nz) + "\n";
  }
  write(dir.path() / "si.tsv", tsv);
  write(dir.path() / "si_shifted.tsv", shifted);
  auto r = agent(dir, "raman-peak " + quoted(dir.path() / "si.tsv"));
  CAPTURE(r.err);
  REQUIRE(r.rc == 0);
  auto m = params(r.out);
  CHECK(std::fabs(m["center"].value - 520.70) <= 0.05);
  CHECK(std::fabs(m["fwhm"].value / 3.0 - 1) <= 0.05);
  CHECK(m["center"].unit == "cm-1");
  CHECK(m["si_line_deviation"].check == "pass");
  r = agent(dir, "raman-peak " + quoted(dir.path() / "si_shifted.tsv"));
  REQUIRE(r.rc == 0);
  m = params(r.out);
  CHECK(m["si_line_deviation"].value == doctest::Approx(1.8).epsilon(0.03));
  CHECK(m["si_line_deviation"].check == "fail");
  r = agent(dir, "raman-peak " + quoted(dir.path() / "si_shifted.tsv") + " --si-tolerance 2");
  CHECK(params(r.out)["si_line_deviation"].check == "pass");

  std::string pl = "Wavelength (nm),PL (counts)\n";
  for (int i = 0; i <= 200; ++i) {
    const double l = 355.0 + 0.2 * i;
    pl += std::to_string(l) + "," + std::to_string(5000 * gauss(l, 375.7, 6.0) + 100) + "\n";
  }
  write(dir.path() / "pl.csv", pl);
  r = agent(dir, "raman-peak --shape gaussian " + quoted(dir.path() / "pl.csv"));
  REQUIRE(r.rc == 0);
  m = params(r.out);
  CHECK(m["photon_energy"].value == doctest::Approx(3.300).epsilon(3e-4));
  CHECK(m["photon_energy"].unit == "eV");
  CHECK(m.count("si_line_deviation") == 0);
}

namespace {
// T10: (αE)² = C·(E − Eg) above the gap with an Urbach tail below it (as in the parsers' test).
double tauc_alpha(double v, double eg, double eu, double c) {
  const double direct = v > eg ? c * (v - eg) : 0.0;
  const double tail = v < eg + eu ? 0.2 * c * eu * std::exp((v - eg) / eu) : 0.0;
  return std::sqrt(std::max(direct, tail)) / v;
}
}  // namespace

TEST_CASE("T10 Tauc: direct gap 3.30 eV with an Urbach tail, from eV and from nm files") {
  semilab::test::temp_dir dir;
  std::string ev = "Energy (eV);alpha (1/cm)\n", nm = "Wavelength (nm)\tAbsorbance\n", comma = "Wavelength (nm);Absorbance\n";
  for (int i = 0; i <= 240; ++i) {
    const double e = 2.8 + 0.005 * i;
    const double a = tauc_alpha(e, 3.30, 0.050, 2e11);
    char line[96];
    std::snprintf(line, sizeof line, "%.6f;%.8g\n", e, a);
    ev += line;
    // Absorbance of a 200 nm film: A = α·t/2.303 (the scale does not move the intercept).
    std::snprintf(line, sizeof line, "%.6f\t%.8g\n", 1239.841984 / e, a * 200e-7 / 2.303);
    nm += line;
    std::string c = line;
    for (auto& ch : c) ch = ch == '.' ? ',' : ch == '\t' ? ';' : ch;
    comma += c;
  }
  write(dir.path() / "tauc_ev.csv", ev);
  write(dir.path() / "tauc_nm.tsv", nm);
  write(dir.path() / "tauc_comma.csv", comma);
  for (const char* f : {"tauc_ev.csv", "tauc_nm.tsv", "tauc_comma.csv"}) {
    CAPTURE(f);
    auto r = agent(dir, "tauc " + quoted(dir.path() / f));
    CAPTURE(r.err);
    REQUIRE(r.rc == 0);
    auto m = params(r.out);
    CHECK(std::fabs(m["band_gap"].value - 3.30) <= 0.02);
    CHECK(m["band_gap"].unit == "eV");
    CHECK(m["window_lo"].value > 3.30);  // the tail is excluded
    CHECK(m["window_points"].value >= 20);
  }
  // Indirect on direct data: no window is linear enough, refused rather than a wrong number.
  auto r = agent(dir, "tauc --transition indirect " + quoted(dir.path() / "tauc_ev.csv"));
  CHECK(r.rc == 1);
  CHECK(r.err.find("tauc_ev.csv: csv: ") != std::string::npos);
  // Indirect data ((αE)^(1/2) = B·(E − Eg), Eg = 1.12 eV) with --transition indirect.
  std::string ind = "Energy (eV)\talpha\n";
  for (int i = 0; i <= 200; ++i) {
    const double v = 0.9 + 0.005 * i;
    const double sq = v > 1.12 ? 30.0 * (v - 1.12) : 0.0;
    char line[64];
    std::snprintf(line, sizeof line, "%.6f\t%.10g\n", v, sq * sq / v);
    ind += line;
  }
  write(dir.path() / "indirect.tsv", ind);
  r = agent(dir, "tauc --transition indirect " + quoted(dir.path() / "indirect.tsv"));
  CAPTURE(r.err);
  REQUIRE(r.rc == 0);
  CHECK(params(r.out)["band_gap"].value == doctest::Approx(1.12).epsilon(1e-3));
  // No unit and no label to go by: ask for --x-unit.
  write(dir.path() / "bare.csv", "1.0 2.0\n2.0 3.0\n3.0 5.0\n");
  r = agent(dir, "tauc " + quoted(dir.path() / "bare.csv"));
  CHECK(r.rc == 1);
  CHECK(r.err.find("--x-unit") != std::string::npos);
}

TEST_CASE("T11 fringes: SiO2 n = 1.46, d = 1000 nm from a reflectance export") {
  semilab::test::temp_dir dir;
  std::string csv = "Wavelength (nm),Reflectance (%)\n";
  for (int i = 0; i <= 4000; ++i) {
    const double l = 400 + 0.1 * i;
    csv += std::to_string(l) + "," + std::to_string(10 + 5 * std::cos(4 * std::numbers::pi * 1.46 * 1000 / l)) + "\n";
  }
  write(dir.path() / "film.csv", csv);
  auto r = agent(dir, "fringe-thickness --refractive-index 1.46 " + quoted(dir.path() / "film.csv"));
  CAPTURE(r.err);
  REQUIRE(r.rc == 0);
  auto m = params(r.out);
  CHECK(std::fabs(m["thickness"].value - 1000) <= 1);
  CHECK(m["thickness"].unit == "nm");
  CHECK(m["extrema"].value >= 3);
  r = agent(dir, "fringe-thickness --minima --refractive-index 1.46 " + quoted(dir.path() / "film.csv"));
  REQUIRE(r.rc == 0);
  CHECK(std::fabs(params(r.out)["thickness"].value - 1000) <= 1);
  // The index scales the thickness: n = 2.0 -> 730 nm.
  r = agent(dir, "fringe-thickness --refractive-index 2.0 " + quoted(dir.path() / "film.csv"));
  REQUIRE(r.rc == 0);
  CHECK(params(r.out)["thickness"].value == doctest::Approx(730).epsilon(2e-3));
  r = agent(dir, "fringe-thickness " + quoted(dir.path() / "film.csv"));
  CHECK(r.rc == 2);
  CHECK(r.err.find("--refractive-index") != std::string::npos);
}

TEST_CASE("xps-check: Au 4f7/2 from a binding-energy CSV and from a kinetic-energy VAMAS file") {
  semilab::test::temp_dir dir;
  std::string csv = "Binding Energy (eV),Intensity (counts)\n";
  for (int i = 0; i <= 200; ++i) {
    const double e = 90.0 - 0.05 * i;
    csv += std::to_string(e) + "," + std::to_string(1000 * gauss(e, 84.05, 0.8) + 800 * gauss(e, 87.72, 0.8) + 100) + "\n";
  }
  write(dir.path() / "au.csv", csv);
  auto r = agent(dir, "xps-check --line 'Au 4f7/2' " + quoted(dir.path() / "au.csv"));
  CAPTURE(r.err);
  REQUIRE(r.rc == 0);
  auto m = params(r.out);
  CHECK(m["center"].value == doctest::Approx(84.05).epsilon(1e-4));
  CHECK(m["reference"].value == doctest::Approx(83.96));
  CHECK(m["shift"].value == doctest::Approx(-0.09).epsilon(1e-2));
  CHECK(m["shift"].check == "pass");
  r = agent(dir, "xps-check --line 'Au 4f7/2' --tolerance 0.05 " + quoted(dir.path() / "au.csv"));
  REQUIRE(r.rc == 0);
  CHECK(params(r.out)["shift"].check == "fail");
  r = agent(dir, "xps-check " + quoted(dir.path() / "au.csv"));  // CSV: no species label to go by
  CHECK(r.rc == 1);
  CHECK(r.err.find("--line") != std::string::npos);
  r = agent(dir, "xps-check --line 'Zz 9x' " + quoted(dir.path() / "au.csv"));
  CHECK(r.rc == 1);

  // VAMAS in kinetic energy: BE = hν − KE − φ with the block's source energy and work function;
  // the line comes from the species/transition labels ("Au" "4f" -> Au 4f7/2).
  std::string vms = slurp(kData / "au4f.vms");
  const auto head = vms.find("kinetic energy\neV\n1398.0\n0.1\n");
  REQUIRE(head != std::string::npos);
  // Replace the abscissa start and the ordinates: KE 1392.6 .. 1402.6 (BE 89.5 .. 79.5).
  vms.replace(head, std::string("kinetic energy\neV\n1398.0\n").size(), "kinetic energy\neV\n1392.6\n");
  const auto nv = vms.find("\n5\n10\n50\n10\n20\n50\n30\n15\nend of experiment");
  REQUIRE(nv != std::string::npos);
  std::string tail = "\n101\n";
  double lo = 1e9, hi = 0;
  std::vector<double> ys;
  for (int i = 0; i <= 100; ++i) {
    const double be = 1486.6 - (1392.6 + 0.1 * i) - 4.5;
    ys.push_back(1000 * gauss(be, 84.02, 0.8) + 800 * gauss(be, 87.69, 0.8) + 100);
    lo = std::min(lo, ys.back());
    hi = std::max(hi, ys.back());
  }
  tail += std::to_string(lo) + "\n" + std::to_string(hi) + "\n";
  for (double y : ys) tail += std::to_string(y) + "\n";
  tail += "end of experiment\n";
  vms = vms.substr(0, nv) + tail;
  write(dir.path() / "au_ke.vms", vms);
  r = agent(dir, quoted(dir.path() / "au_ke.vms").insert(0, "xps-check "));
  CAPTURE(r.err);
  REQUIRE(r.rc == 0);
  m = params(r.out);
  CHECK(m["photon_energy"].value == doctest::Approx(1486.6));
  CHECK(m["work_function"].value == doctest::Approx(4.5));
  CHECK(m["center"].value == doctest::Approx(84.02).epsilon(1e-4));
  CHECK(m["shift"].value == doctest::Approx(-0.06).epsilon(1e-2));
  CHECK(m["shift"].check == "pass");
}

TEST_CASE("analyze on the parser sample files: formats detected, numbers or a named error") {
  semilab::test::temp_dir dir;
  auto r = agent(dir, "xrd-peak " + quoted(kData / "si_111.xrdml"));
  CAPTURE(r.err);
  REQUIRE(r.rc == 0);
  auto m = params(r.out);
  CHECK(m["wavelength"].value == doctest::Approx(1.5405980));  // from the file
  CHECK(m["center"].value > 28.45);
  CHECK(m["center"].value < 28.55);  // the 1500-count point at 28.50°
  // 4 points in raman.tsv: too few for a peak fit; the message names the file and the format.
  r = agent(dir, "raman-peak " + quoted(kData / "raman.tsv"));
  CHECK(r.rc == 1);
  CHECK(r.err.find("raman.tsv: csv:") != std::string::npos);
  // SEM TIFF: parsed, but it holds no spectrum.
  r = agent(dir, "raman-peak " + quoted(kData / "fei.tif"));
  CHECK(r.rc == 1);
  CHECK(r.err.find("fei.tif: sem-tiff") != std::string::npos);
  CHECK(r.err.find("no spectrum") != std::string::npos);
}

TEST_CASE("analyze: JSON output, several files, errors name the file, exit codes") {
  semilab::test::temp_dir dir;
  std::string tsv = "Raman Shift [cm-1]\tIntensity [counts]\n";
  for (int i = 0; i <= 120; ++i) {
    const double k = 490.0 + 0.5 * i;
    tsv += std::to_string(k) + "\t" + std::to_string(1000 * lorentz(k, 520.70, 3.0) + 200) + "\n";
  }
  write(dir.path() / "a.tsv", tsv);
  write(dir.path() / "broken.csv", "x,y\n1,2\n2,oops\n3,4\n");
  auto r = agent(dir, "raman-peak --json " + quoted(dir.path() / "a.tsv") + " " + quoted(dir.path() / "broken.csv") +
                          " " + quoted(dir.path() / "missing.csv"));
  CHECK(r.rc == 1);
  auto v = boost::json::parse(r.out);
  CHECK(v.at("kind").as_string() == "raman-peak");
  auto& res = v.at("results").as_array();
  REQUIRE(res.size() == 3);
  CHECK(res[0].at("format").as_string() == "csv");
  bool found = false;
  for (auto& p : res[0].at("parameters").as_array()) {
    if (p.at("name").as_string() != "center") continue;
    found = true;
    CHECK(p.at("value").as_double() == doctest::Approx(520.70).epsilon(1e-6));
    CHECK(p.at("unit").as_string() == "cm-1");
    CHECK(p.at("uncertainty").is_double());
  }
  CHECK(found);
  CHECK(res[1].at("error").as_string().find("line 3") != std::string::npos);
  CHECK(res[2].at("error").as_string() == "cannot open");
  CHECK(r.err.find("broken.csv: csv line 3") != std::string::npos);
  CHECK(r.err.find("missing.csv: cannot open") != std::string::npos);

  // Text output with several files: one header line per file.
  r = agent(dir, "raman-peak " + quoted(dir.path() / "a.tsv") + " " + quoted(dir.path() / "a.tsv"));
  CHECK(r.rc == 0);
  CHECK(r.out.find("== " + (dir.path() / "a.tsv").string() + " (csv)\n") != std::string::npos);

  CHECK(agent(dir, "no-such-kind " + quoted(dir.path() / "a.tsv")).rc == 2);
  CHECK(agent(dir, "raman-peak").rc == 2);
  CHECK(agent(dir, "tauc --transition sideways " + quoted(dir.path() / "a.tsv")).rc == 2);
  CHECK(agent(dir, "raman-peak --x-min 530 --x-max 500 " + quoted(dir.path() / "a.tsv")).rc == 2);
  // --format overrides detection: the TSV is not JCAMP-DX.
  r = agent(dir, "raman-peak --format jcamp-dx " + quoted(dir.path() / "a.tsv"));
  CHECK(r.rc == 1);
  CHECK(r.err.find("a.tsv: jcamp-dx") != std::string::npos);
}
