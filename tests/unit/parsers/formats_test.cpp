// Export-file parsers on hand-written samples (tests/unit/parsers/data, each citing the public
// description it follows) and on malformed inputs, which must fail with a located reason.
#include <semilab/parsers/formats.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <string>

using namespace semilab::parsers;

namespace {
std::string load(const char* name) {
  std::ifstream f(std::string(SEMILAB_SOURCE_DIR) + "/tests/unit/parsers/data/" + name, std::ios::binary);
  REQUIRE(f.good());
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
template <class R>
std::string why(const R& r) {
  return r.has_value() ? std::string() : r.error().to_string();
}
std::string meta(const spectrum& s, std::string_view k) {
  auto v = s.find(k);
  return v ? std::string(*v) : std::string("<missing>");
}
}  // namespace

TEST_CASE("csv: semicolon, decimal comma, header units, preamble metadata") {
  auto r = parse_csv(load("uvvis_decimal_comma.csv"));
  REQUIRE_MESSAGE(r.has_value(), why(r));
  CHECK(meta(*r, "delimiter") == ";");
  CHECK(meta(*r, "decimal") == "comma");
  CHECK(meta(*r, "Instrument") == "UV-2600");
  CHECK(meta(*r, "Sample") == "ZnO film 120 nm");
  CHECK(r->x_label == "Wavelength");
  CHECK(r->x_unit == "nm");
  REQUIRE(r->y.size() == 2);
  CHECK(r->y_labels[0] == "Absorbance");
  CHECK(r->y_units[0] == "AU");
  CHECK(r->y_labels[1] == "Transmittance");
  CHECK(r->y_units[1] == "%");
  REQUIRE(r->x.size() == 5);
  CHECK(r->x[1] == doctest::Approx(300.5));
  CHECK(r->y[0][4] == doctest::Approx(1.236));
  CHECK(r->y[1][0] == doctest::Approx(5.62));
}

TEST_CASE("csv: tab-separated with CRLF, and whitespace .xy without header") {
  auto t = parse_csv(load("raman.tsv"));
  REQUIRE_MESSAGE(t.has_value(), why(t));
  CHECK(meta(*t, "delimiter") == "tab");
  CHECK(t->x_unit == "cm-1");
  CHECK(t->y_units[0] == "counts");
  REQUIRE(t->x.size() == 4);
  CHECK(t->y[0][3] == 140);
  auto x = parse_csv(load("xrd.xy"));
  REQUIRE_MESSAGE(x.has_value(), why(x));
  CHECK(meta(*x, "delimiter") == "blank");
  CHECK(x->x_label == "x");
  REQUIRE(x->x.size() == 3);
  CHECK(x->x[2] == doctest::Approx(10.04));
  CHECK(x->y[0][1] == 99);
}

TEST_CASE("csv: comma-separated with decimal point; quoted header") {
  auto r = parse_csv("\"2Theta (deg)\",\"Counts\"\n10.5,100\n11.5,200\n");
  REQUIRE_MESSAGE(r.has_value(), why(r));
  CHECK(r->x_label == "2Theta");
  CHECK(r->x_unit == "deg");
  CHECK(r->y_labels[0] == "Counts");
  CHECK(r->x[1] == 11.5);
}

TEST_CASE("csv: malformed inputs name the line") {
  auto bad = parse_csv("x;y\n1,0;2,0\n2,0;abc\n3,0;4,0\n4,0;5,0\n");
  REQUIRE(!bad.has_value());
  INFO(why(bad));
  CHECK(bad.error().line == 3);
  CHECK(bad.error().reason.find("not a number") != std::string::npos);
  auto cols = parse_csv("1;2\n3;4;5\n6;7\n8;9\n");
  REQUIRE(!cols.has_value());
  INFO(why(cols));
  CHECK(cols.error().line == 2);
  CHECK(!parse_csv("").has_value());
  CHECK(!parse_csv("just words\nno numbers here\n").has_value());
  CHECK(!parse_csv("1\n2\n3\n").has_value());  // one column is no spectrum
}

TEST_CASE("jcamp: ASDF with SQZ, DIF, DUP and the Y check value") {
  auto r = parse_jcamp(load("ir_asdf.jdx"));
  REQUIRE_MESSAGE(r.has_value(), why(r));
  const double expect[] = {100, 105, 110, 110, 110, 108, 122, 136, 150, 138};
  REQUIRE(r->y[0].size() == 10);
  for (std::size_t i = 0; i < 10; ++i) {
    CHECK(r->y[0][i] == doctest::Approx(expect[i] * 0.5));
    CHECK(r->x[i] == doctest::Approx(1000.0 + static_cast<double>(i)));
  }
  CHECK(r->x_unit == "1/CM");
  CHECK(r->y_units[0] == "ABSORBANCE");
  CHECK(meta(*r, "DATATYPE") == "INFRARED SPECTRUM");
}

TEST_CASE("jcamp: AFFN with XFACTOR/YFACTOR, commas and '+'") {
  auto r = parse_jcamp(load("affn.jdx"));
  REQUIRE_MESSAGE(r.has_value(), why(r));
  REQUIRE(r->x.size() == 6);
  CHECK(r->x[5] == doctest::Approx(4005));
  CHECK(r->y[0][0] == doctest::Approx(0.5));
  CHECK(r->y[0][5] == doctest::Approx(0.55));
}

TEST_CASE("jcamp: SQZ 'E'/'e' right after the X value is an ordinate, not an exponent") {
  auto r = parse_jcamp("##TITLE=t\n##FIRSTX=1000\n##LASTX=1002\n##NPOINTS=3\n##XYDATA=(X++(Y..Y))\n1000E5e3A1\n##END=\n");
  REQUIRE_MESSAGE(r.has_value(), why(r));
  CHECK(r->y[0][0] == 55);
  CHECK(r->y[0][1] == -53);
  CHECK(r->y[0][2] == 11);
  auto e = parse_jcamp("##TITLE=t\n##FIRSTX=1000\n##LASTX=1001\n##NPOINTS=2\n##XYDATA=(X++(Y..Y))\n1.0E+03 1.5E+01 2e-1\n##END=\n");
  REQUIRE_MESSAGE(e.has_value(), why(e));
  CHECK(e->y[0][0] == 15);
  CHECK(e->y[0][1] == doctest::Approx(0.2));
}

TEST_CASE("jcamp: (XY..XY) points") {
  auto r = parse_jcamp("##TITLE=t\n##NPOINTS=3\n##XYPOINTS=(XY..XY)\n1,10; 2,20\n3,30\n##END=\n");
  REQUIRE_MESSAGE(r.has_value(), why(r));
  CHECK(r->x[2] == 3);
  CHECK(r->y[0][1] == 20);
}

TEST_CASE("jcamp: malformed inputs") {
  const std::string head = "##TITLE=t\n##FIRSTX=0\n##LASTX=3\n##NPOINTS=4\n##XYDATA=(X++(Y..Y))\n";
  // Y check value wrong (101 expected, 109 given).
  auto chk = parse_jcamp(head + "0A00J\n1A09J\n##END=\n");
  REQUIRE(!chk.has_value());
  INFO(why(chk));
  CHECK(chk.error().line == 7);
  CHECK(chk.error().reason.find("check") != std::string::npos);
  // Point count differs from NPOINTS.
  auto cnt = parse_jcamp(head + "0 1 2 3\n##END=\n");
  REQUIRE(!cnt.has_value());
  INFO(why(cnt));
  CHECK(cnt.error().reason.find("NPOINTS") != std::string::npos);
  // Too many points.
  CHECK(!parse_jcamp(head + "0 1 2 3 4 5\n##END=\n").has_value());
  // X on the line contradicts the running point count.
  auto xl = parse_jcamp(head + "0 1 2\n0 3\n##END=\n");
  REQUIRE(!xl.has_value());
  INFO(why(xl));
  CHECK(xl.error().line == 7);
  // Garbage character, DIF at line start, DUP without value, bad header number.
  CHECK(!parse_jcamp(head + "0 1 2 ! 3\n##END=\n").has_value());
  CHECK(!parse_jcamp(head + "0J1\n##END=\n").has_value());
  CHECK(!parse_jcamp(head + "0 S\n##END=\n").has_value());
  auto hn = parse_jcamp("##TITLE=t\n##FIRSTX=zero\n");
  REQUIRE(!hn.has_value());
  INFO(why(hn));
  CHECK(hn.error().line == 2);
  CHECK(!parse_jcamp("no labels at all").has_value());
  CHECK(!parse_jcamp("##TITLE=t\n##NTUPLES=NMR\n").has_value());
  CHECK(!parse_jcamp("##TITLE=t\n##XYDATA=(X++(Y..Y))\n0 1\n").has_value());  // no FIRSTX etc.
}

TEST_CASE("xrdml: start/end positions, counts, wavelength, entities") {
  auto r = parse_xrdml(load("si_111.xrdml"));
  REQUIRE_MESSAGE(r.has_value(), why(r));
  CHECK(r->x_label == "2Theta");
  CHECK(r->x_unit == "deg");
  REQUIRE(r->x.size() == 11);
  CHECK(r->x[0] == doctest::Approx(28.0));
  CHECK(r->x[10] == doctest::Approx(29.0));
  CHECK(r->x[5] == doctest::Approx(28.5));
  CHECK(r->y[0][5] == 1500);
  CHECK(r->y_units[0] == "counts");
  CHECK(meta(*r, "wavelength.kAlpha1") == "1.5405980");
  CHECK(meta(*r, "sample.id") == "Si wafer & powder");
  CHECK(meta(*r, "position.Omega") == "<missing>");  // Omega moves (start/end), no commonPosition
}

TEST_CASE("xrdml: listPositions, counts element, and malformed XML") {
  const char* ok =
      "<xrdMeasurements><xrdMeasurement><scan><dataPoints>"
      "<positions axis=\"2Theta\" unit=\"deg\"><listPositions>10 10.5 11.25</listPositions></positions>"
      "<positions axis=\"Omega\" unit=\"deg\"><commonPosition>5</commonPosition></positions>"
      "<counts unit=\"counts\">1 2 3</counts></dataPoints></scan></xrdMeasurement></xrdMeasurements>";
  auto r = parse_xrdml(ok);
  REQUIRE_MESSAGE(r.has_value(), why(r));
  CHECK(r->x[2] == 11.25);
  CHECK(r->y[0][2] == 3);
  CHECK(meta(*r, "position.Omega") == "5");

  auto mism = parse_xrdml(
      "<xrdMeasurements><xrdMeasurement><scan><dataPoints>"
      "<positions axis=\"2Theta\"><listPositions>1 2</listPositions></positions>"
      "<intensities>1 2 3</intensities></dataPoints></scan></xrdMeasurement></xrdMeasurements>");
  REQUIRE(!mism.has_value());
  INFO(why(mism));
  CHECK(mism.error().reason.find("2 positions for 3") != std::string::npos);
  auto unclosed = parse_xrdml("<xrdMeasurements><xrdMeasurement>");
  REQUIRE(!unclosed.has_value());
  INFO(why(unclosed));
  CHECK(unclosed.error().reason.find("not closed") != std::string::npos);
  auto wrong_end = parse_xrdml("<a><b></a></b>");
  REQUIRE(!wrong_end.has_value());
  INFO(why(wrong_end));
  CHECK(wrong_end.error().offset == 6);
  CHECK(!parse_xrdml("<a x=1/>").has_value());
  CHECK(!parse_xrdml("<a>&bogus;</a>").has_value());
  CHECK(!parse_xrdml("<!DOCTYPE a [<!ENTITY x \"y\">]><a/>").has_value());
  CHECK(!parse_xrdml("<xrdMeasurements/>").has_value());
  auto nan = parse_xrdml(
      "<xrdMeasurements><xrdMeasurement><scan><dataPoints>"
      "<positions axis=\"2Theta\"><startPosition>1</startPosition><endPosition>2</endPosition></positions>"
      "<intensities>1 x 3</intensities></dataPoints></scan></xrdMeasurement></xrdMeasurements>");
  REQUIRE(!nan.has_value());
  INFO(why(nan));
  CHECK(nan.error().reason.find("non-number") != std::string::npos);
  std::string deep;
  for (int i = 0; i < 300; ++i) deep += "<a>";
  CHECK(!parse_xrdml(deep).has_value());
}

TEST_CASE("vamas: regular XPS block with all block parameters included") {
  auto r = parse_vamas(load("au4f.vms"));
  REQUIRE_MESSAGE(r.has_value(), why(r));
  CHECK(r->x_label == "kinetic energy");
  CHECK(r->x_unit == "eV");
  REQUIRE(r->x.size() == 5);
  CHECK(r->x[0] == doctest::Approx(1398.0));
  CHECK(r->x[4] == doctest::Approx(1398.4));
  CHECK(r->y[0][2] == 50);
  CHECK(r->y_labels[0] == "counts");
  CHECK(r->y_units[0] == "d");
  CHECK(meta(*r, "technique") == "XPS");
  CHECK(meta(*r, "analysis source characteristic energy") == "1486.6");
  CHECK(meta(*r, "species label") == "Au");
  CHECK(meta(*r, "analyser pass energy") == "20");
  CHECK(meta(*r, "block") == "1/1");
}

TEST_CASE("vamas: malformed and unsupported inputs") {
  const std::string f = load("au4f.vms");
  auto trunc = parse_vamas(f.substr(0, f.size() - 40));
  REQUIRE(!trunc.has_value());
  INFO(why(trunc));
  CHECK(trunc.error().reason.find("ordinate") != std::string::npos);
  std::string irr = f;
  irr.replace(irr.find("REGULAR"), 7, "IRREGULAR");
  auto ir = parse_vamas(irr);
  REQUIRE(!ir.has_value());
  INFO(why(ir));
  CHECK(ir.error().line == 9);
  CHECK(ir.error().reason.find("REGULAR only") != std::string::npos);
  std::string badnum = f;
  badnum.replace(badnum.find("\n0.1\n1\ncounts"), 5, "\nabc\n");
  auto bn = parse_vamas(badnum);
  REQUIRE(!bn.has_value());
  INFO(why(bn));
  CHECK(bn.error().reason.find("abscissa increment") != std::string::npos);
  CHECK(!parse_vamas("not vamas\n").has_value());
  std::string noend = f.substr(0, f.rfind("end of experiment"));
  CHECK(!parse_vamas(noend).has_value());
}

TEST_CASE("spc: integer Y with exponent and float Y, evenly spaced X") {
  auto r = parse_spc(load("raman.spc"));
  REQUIRE_MESSAGE(r.has_value(), why(r));
  REQUIRE(r->x.size() == 5);
  CHECK(r->x[0] == 500);
  CHECK(r->x[4] == 504);
  CHECK(r->x_label == "Raman shift");
  CHECK(r->x_unit == "cm-1");
  CHECK(r->y_labels[0] == "counts");
  CHECK(r->y[0][2] == doctest::Approx(100.25));
  CHECK(r->y[0][1] == doctest::Approx(20.5));
  CHECK(meta(*r, "comment") == "Si reference, 785 nm");
  auto f = parse_spc(load("raman_float.spc"));
  REQUIRE_MESSAGE(f.has_value(), why(f));
  REQUIRE(f->y[0].size() == 3);
  CHECK(f->y[0][2] == 3.5);
}

TEST_CASE("spc: malformed inputs") {
  std::string s = load("raman.spc");
  auto trunc = parse_spc(s.substr(0, s.size() - 1));
  REQUIRE(!trunc.has_value());
  INFO(why(trunc));
  CHECK(trunc.error().offset == 544);
  CHECK(trunc.error().reason.find("Y data") != std::string::npos);
  std::string old = s;
  old[1] = 0x4D;
  CHECK(!parse_spc(old).has_value());
  std::string huge = s;
  huge[7] = 0x7F;  // 2^30-ish points
  auto h = parse_spc(huge);
  REQUIRE(!h.has_value());
  INFO(why(h));
  CHECK(h.error().offset == 4);
  std::string multi = s;
  multi[0] = 0x04;
  multi[24] = 3;
  CHECK(!parse_spc(multi).has_value());
  CHECK(!parse_spc("short").has_value());
}

TEST_CASE("sem tiff: FEI INI block in tag 34682") {
  auto r = parse_sem_tiff(load("fei.tif"));
  REQUIRE_MESSAGE(r.has_value(), why(r));
  CHECK(r->vendor == "fei");
  CHECK(r->width == 2);
  CHECK(r->height == 2);
  REQUIRE(r->pixel_size_m.has_value());
  CHECK(*r->pixel_size_m == doctest::Approx(2.5e-9));
  REQUIRE(r->high_voltage_v.has_value());
  CHECK(*r->high_voltage_v == 5000);
  REQUIRE(r->working_distance_m.has_value());
  CHECK(*r->working_distance_m == doctest::Approx(0.00405));
  CHECK(r->detector == "TLD SE");
}

TEST_CASE("sem tiff: Zeiss tag 34118, big-endian, Latin-1 micro sign") {
  auto r = parse_sem_tiff(load("zeiss.tif"));
  REQUIRE_MESSAGE(r.has_value(), why(r));
  CHECK(r->vendor == "zeiss");
  CHECK(r->width == 2);
  REQUIRE(r->pixel_size_m.has_value());
  CHECK(*r->pixel_size_m == doctest::Approx(1.116e-9));
  REQUIRE(r->magnification.has_value());
  CHECK(*r->magnification == doctest::Approx(1e5));
  REQUIRE(r->working_distance_m.has_value());
  CHECK(*r->working_distance_m == doctest::Approx(5.1e-3));
  REQUIRE(r->high_voltage_v.has_value());
  CHECK(*r->high_voltage_v == doctest::Approx(3000));
  CHECK(r->detector == "InLens");
  bool found = false;
  for (auto& [k, v] : r->meta)
    if (k == "AP_BEAM_CURRENT") found = v == "Beam current = 1.0 \xB5" "A";
  CHECK(found);
}

TEST_CASE("sem tiff: malformed inputs") {
  std::string t = load("fei.tif");
  std::string loop = t;
  // Point IFD0's next-IFD link back at itself.
  const std::size_t next = 8 + 2 + 12 * 10;
  loop[next] = 8;
  auto l = parse_sem_tiff(loop);
  REQUIRE(!l.has_value());
  INFO(why(l));
  CHECK(l.error().reason.find("loops") != std::string::npos);
  std::string oob = t;
  oob[8 + 2 + 12 * 9 + 8] = static_cast<char>(0xF0);  // tag 34682 offset low byte -> past the end
  oob[8 + 2 + 12 * 9 + 9] = static_cast<char>(0xFF);
  auto o = parse_sem_tiff(oob);
  REQUIRE(!o.has_value());
  INFO(why(o));
  CHECK(o.error().reason.find("34682") != std::string::npos);
  CHECK(!parse_sem_tiff(std::string("II*\0\xff\xff\0\0", 8)).has_value());
}

TEST_CASE("vamas: inclusion list with only abscissa and variables, two interleaved channels") {
  auto r = parse_vamas(load("inclusion_list.vms"));
  REQUIRE_MESSAGE(r.has_value(), why(r));
  CHECK(meta(*r, "block identifier") == "C 1s");
  CHECK(meta(*r, "technique") == "<missing>");
  REQUIRE(r->y.size() == 2);
  CHECK(r->y_labels[1] == "transmission");
  REQUIRE(r->x.size() == 3);
  CHECK(r->x[2] == doctest::Approx(1201.0));
  CHECK(r->y[0][0] == 1);
  CHECK(r->y[1][0] == 10);
  CHECK(r->y[0][2] == 3);
  CHECK(r->y[1][2] == 30);
}

TEST_CASE("spc: 16-bit Y (TSPREC) and an explicit X array (TXVALS)") {
  const std::string base = load("raman.spc");
  auto put_f32 = [](std::string& s, float v) {
    char b[4];
    std::memcpy(b, &v, 4);
    s.append(b, 4);
  };
  // TSPREC: y = int16 · 2^(fexp − 16); fexp = 16 -> the integers themselves.
  std::string p = base.substr(0, 512 + 32);
  p[0] = 0x01;
  for (std::int16_t v : std::initializer_list<std::int16_t>{-3, 7, 300, 0, 1}) {
    char b[2];
    std::memcpy(b, &v, 2);
    p.append(b, 2);
  }
  auto r = parse_spc(p);
  REQUIRE_MESSAGE(r.has_value(), why(r));
  CHECK(r->y[0][0] == -3);
  CHECK(r->y[0][2] == 300);
  // TXVALS: 5 float X values between the header and the subfile.
  std::string x = base.substr(0, 512);
  x[0] = static_cast<char>(0x80);
  for (float v : {1.0f, 2.0f, 4.0f, 8.0f, 16.0f}) put_f32(x, v);
  x += base.substr(512);
  auto rx = parse_spc(x);
  REQUIRE_MESSAGE(rx.has_value(), why(rx));
  CHECK(rx->x[3] == 8);
  CHECK(rx->y[0][2] == doctest::Approx(100.25));
  auto cut = parse_spc(x.substr(0, 520));
  REQUIRE(!cut.has_value());
  CHECK(cut.error().reason.find("X array") != std::string::npos);
}

TEST_CASE("parse_error text names line and offset") {
  CHECK(parse_error{12, 3, "bad"}.to_string() == "line 3 (offset 12): bad");
  CHECK(parse_error{7, 0, "bad"}.to_string() == "offset 7: bad");
}
