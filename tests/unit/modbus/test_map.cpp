// Register maps, codecs (golden vectors), coalescing planner. No sockets.
#include <semilab/drivers/modbus_error.hpp>
#include <semilab/drivers/modbus_map.hpp>
#include <semilab/drivers/modbus_plan.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

using namespace semilab::drivers::modbus;
using words = std::vector<std::uint16_t>;

namespace {

point make(value_type t, word_order o = word_order::abcd) {
  point p;
  p.name = "x";
  p.tab = table::holding;
  p.type = t;
  p.order = o;
  if (t == value_type::string) p.length = 4;
  return p;
}

device_map parse_ok(const std::string& text) {
  auto m = parse_map(text, "test.toml");
  if (!m) FAIL("parse failed: " << m.error().message);
  return *m;
}

std::string parse_err(const std::string& text) {
  auto m = parse_map(text, "bad.toml");
  REQUIRE_FALSE(m.has_value());
  CHECK(m.error().code == make_error_code(errc::bad_map));
  return m.error().message;
}

}  // namespace

TEST_CASE("f32 123456.0 in all four word orders (golden vectors)") {
  const std::pair<word_order, words> cases[] = {
      {word_order::abcd, {0x47F1, 0x2000}},
      {word_order::cdab, {0x2000, 0x47F1}},
      {word_order::badc, {0xF147, 0x0020}},
      {word_order::dcba, {0x0020, 0xF147}},
  };
  for (const auto& [order, regs] : cases) {
    CAPTURE(name_of(order));
    auto p = make(value_type::f32, order);
    auto v = decode(p, regs);
    REQUIRE(v.has_value());
    CHECK(std::get<double>(*v) == 123456.0);
    auto e = encode(p, value{123456.0});
    REQUIRE(e.has_value());
    CHECK(*e == regs);
  }
}

TEST_CASE("64-bit orders: big-endian, words reversed, bytes swapped, little-endian") {
  const std::uint64_t raw = 0x0102030405060708ULL;
  CHECK(to_words(raw, 4, word_order::abcd) == words{0x0102, 0x0304, 0x0506, 0x0708});
  CHECK(to_words(raw, 4, word_order::cdab) == words{0x0708, 0x0506, 0x0304, 0x0102});
  CHECK(to_words(raw, 4, word_order::badc) == words{0x0201, 0x0403, 0x0605, 0x0807});
  CHECK(to_words(raw, 4, word_order::dcba) == words{0x0807, 0x0605, 0x0403, 0x0201});
  for (auto o : {word_order::abcd, word_order::cdab, word_order::badc, word_order::dcba})
    CHECK(from_words(to_words(raw, 4, o), o) == raw);
  // f64 123456.0 = 0x40FE240000000000, fully little-endian
  auto p = make(value_type::f64, word_order::dcba);
  auto v = decode(p, words{0x0000, 0x0000, 0x0024, 0xFE40});
  REQUIRE(v.has_value());
  CHECK(std::get<double>(*v) == 123456.0);
}

TEST_CASE("negative i32, u64 above 2^53 and i64 stay exact") {
  auto p = make(value_type::i32);
  auto v = decode(p, words{0xFFFE, 0x1DC0});
  REQUIRE(v.has_value());
  CHECK(std::get<std::int64_t>(*v) == -123456);
  CHECK(*encode(p, value{std::int64_t{-123456}}) == words{0xFFFE, 0x1DC0});

  auto q = make(value_type::u64);
  const std::uint64_t big = (1ULL << 53) + 1;  // not representable as a double
  auto w = encode(q, value{big});
  REQUIRE(w.has_value());
  CHECK(*w == words{0x0020, 0x0000, 0x0000, 0x0001});
  auto back = decode(q, *w);
  REQUIRE(back.has_value());
  CHECK(std::get<std::uint64_t>(*back) == big);
  CHECK(to_text(*back) == "9007199254740993");
  CHECK(*decode(q, words{0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF}) == value{~0ULL});

  auto r = make(value_type::i64, word_order::cdab);
  auto rw = encode(r, value{std::int64_t{-9007199254740993LL}});
  REQUIRE(rw.has_value());
  CHECK(std::get<std::int64_t>(*decode(r, *rw)) == -9007199254740993LL);
}

TEST_CASE("scale and offset: value = raw * scale + offset, inverse on writes with rounding") {
  auto p = make(value_type::u16);
  p.scale = 0.1;
  p.offset = -10;
  auto v = decode(p, words{2315});
  REQUIRE(v.has_value());
  CHECK(std::get<double>(*v) == doctest::Approx(221.5));
  CHECK(*encode(p, value{221.5}) == words{2315});
  CHECK(*encode(p, value{221.46}) == words{2315});  // rounds to the nearest raw step
  auto low = encode(p, value{-10.1});                // raw -1 does not fit u16
  REQUIRE_FALSE(low.has_value());
  CHECK(low.error().code == make_error_code(errc::out_of_range));

  auto t = make(value_type::i16);
  t.scale = 0.1;
  CHECK(to_text(*decode(t, words{282})) == "28.2");  // not 28.200000000000003
  t.offset = 273.15;
  CHECK(to_text(*decode(t, words{0xFFFF})) == "273.05");

  auto s = make(value_type::i16);
  s.scale = 0.5;
  CHECK(std::get<double>(*decode(s, words{0xFFFB})) == -2.5);
}

TEST_CASE("bool bit inside a register, strings, min/max on writes") {
  auto b = make(value_type::boolean);
  b.bit = 5;
  CHECK(*decode(b, words{0x0024}) == value{true});
  b.bit = 3;
  CHECK(*decode(b, words{0x0024}) == value{false});

  auto s = make(value_type::string);
  CHECK(*decode(s, words{0x4142, 0x3132, 0x4344, 0x0000}) == value{std::string("AB12CD")});
  CHECK(*encode(s, value{std::string("AB12CD")}) == words{0x4142, 0x3132, 0x4344, 0x0000});
  s.order = word_order::badc;
  CHECK(*decode(s, words{0x4241, 0x3231, 0x4443, 0x0000}) == value{std::string("AB12CD")});
  CHECK_FALSE(encode(s, value{std::string("123456789")}).has_value());

  auto sp = make(value_type::i16);
  sp.writable = true;
  sp.min = 0;
  sp.max = 100;
  CHECK(encode(sp, value{std::int64_t{100}}).has_value());
  auto hi = encode(sp, value{std::int64_t{101}});
  REQUIRE_FALSE(hi.has_value());
  CHECK(hi.error().message.find("above max 100") != std::string::npos);
  auto narrow = make(value_type::i16);
  CHECK_FALSE(encode(narrow, value{std::int64_t{40000}}).has_value());
}

TEST_CASE("parse_value keeps 64-bit integers exact") {
  auto q = make(value_type::u64);
  auto v = parse_value(q, "18446744073709551615");
  REQUIRE(v.has_value());
  CHECK(std::get<std::uint64_t>(*v) == ~0ULL);
  CHECK_FALSE(parse_value(q, "-1").has_value());
  CHECK_FALSE(parse_value(make(value_type::i16), "1.5").has_value());
  auto scaled = make(value_type::i16);
  scaled.scale = 0.1;
  CHECK(std::get<double>(*parse_value(scaled, "12.5")) == 12.5);
}

TEST_CASE("map file: every key, register notation, device limits") {
  auto m = parse_ok(R"(
[device]
name = "t"
max_registers = 60
max_gap = 2
interval = 0.25
timeout = 0.3

[[point]]
name = "pv"
register = 40002
type = "f32"
order = "CDAB"
scale = 2.0
offset = 1.0
unit = "degC"
interval = 2
deadband = 0.5

[[point]]
name = "sp"
table = "holding"
address = 10
type = "i16"
writable = true
min = -50
max = 150
readback = "pv"

[[point]]
name = "alarm"
register = 30005
type = "bool"
bit = 3

[[point]]
name = "run"
register = 1
type = "bool"

[[point]]
name = "tag"
table = "input"
address = 100
type = "string"
length = 8
)");
  CHECK(m.name == "t");
  CHECK(m.max_registers == 60);
  CHECK(m.max_gap == 2);
  CHECK(m.interval_s == 0.25);
  CHECK(m.timeout_s == 0.3);
  REQUIRE(m.points.size() == 5);
  const auto& pv = m.points[0];
  CHECK(pv.tab == table::holding);
  CHECK(pv.address == 1);
  CHECK(pv.order == word_order::cdab);
  CHECK(pv.scale == 2.0);
  CHECK(pv.offset == 1.0);
  CHECK(pv.unit == "degC");
  CHECK(m.interval_of(pv) == 2.0);
  CHECK(pv.deadband == 0.5);
  CHECK(pv.line == 9);
  CHECK(m.points[1].writable);
  CHECK(*m.points[1].min == -50);
  CHECK(m.points[1].readback == "pv");
  CHECK(m.interval_of(m.points[1]) == 0.25);
  CHECK(m.points[2].tab == table::input);
  CHECK(m.points[2].address == 4);
  CHECK(*m.points[2].bit == 3);
  CHECK(m.points[3].tab == table::coil);
  CHECK(m.points[3].address == 0);
  CHECK(m.points[4].count() == 8);
  CHECK(m.find("tag") == &m.points[4]);
}

TEST_CASE("map errors name file:line:col, the key and the reason") {
  auto has = [](const std::string& msg, const std::string& part) {
    CAPTURE(msg);
    CHECK(msg.find(part) != std::string::npos);
  };
  std::string e = parse_err("[[point]]\nname = \"a\"\naddress = 0\ntype = \"u16\"\ncolour = 3\n");
  has(e, "bad.toml:5:");
  has(e, "point[0].colour: unknown key");

  e = parse_err("[[point]]\nname = \"a\"\ntable = \"holding\"\naddress = 0\ntype = \"u17\"\n");
  has(e, "bad.toml:5:");
  has(e, "point[0].type: unknown type 'u17'");

  e = parse_err("[[point]]\nname = \"a\"\nregister = 40001\ntable = \"input\"\ntype = \"u16\"\n");
  has(e, "bad.toml:3:");
  has(e, "point[0].register: 40001 is a holding register but table = \"input\"");

  e = parse_err("[[point]]\nname = \"a\"\nregister = 20001\ntype = \"u16\"\n");
  has(e, "point[0].register: 20001 is not in");

  e = parse_err("[[point]]\nname = \"a\"\nregister = 40001\ntype = \"bool\"\n");
  has(e, "point[0].bit: required for a bool inside a holding register");

  e = parse_err("[[point]]\nname = \"a\"\nregister = 30001\ntype = \"u16\"\nwritable = true\n");
  has(e, "bad.toml:5:");
  has(e, "point[0].writable: input points are read-only");

  e = parse_err("[[point]]\nname = \"a\"\nregister = 40001\ntype = \"u16\"\nwritable = true\n"
                "readback = \"nope\"\n");
  has(e, "bad.toml:6:");
  has(e, "point[0].readback: unknown point 'nope'");

  e = parse_err("[[point]]\nname = \"a\"\nregister = 40001\ntype = \"u16\"\n"
                "[[point]]\nname = \"a\"\nregister = 40002\ntype = \"u16\"\n");
  has(e, "bad.toml:6:");
  has(e, "point[1].name: duplicate point name 'a'");

  e = parse_err("[device]\nmax_registers = 200\n[[point]]\nname = \"a\"\naddress = 0\ntable = \"holding\"\ntype = \"u16\"\n");
  has(e, "bad.toml:2:");
  has(e, "device.max_registers: must be between 1 and 125");

  e = parse_err("[[point]]\nname = \"a\"\nregister = 40001\ntype = \"f32\"\norder = \"ABDC\"\n");
  has(e, "point[0].order: unknown word order 'ABDC'");

  e = parse_err("[[point]]\nname = \"a\"\nregister = 40001\ntype = \"string\"\n");
  has(e, "point[0].length: required for a string");

  e = parse_err("[[point]]\nname = \"a\"\ntype = \"u16\"\n");
  has(e, "point[0].address: required (or register)");

  e = parse_err("[[point]]\nname = \"a\"\nregister = 40001\ntype = \"u16\"\nmin = 3\n");
  has(e, "point[0].min: only for writable points");

  e = parse_err("[devise]\nname = 1\n");
  has(e, "bad.toml:1:");
  has(e, "devise: unknown key");

  e = parse_err("[[point]\nname = 1\n");
  has(e, "bad.toml:1:");

  auto missing = load_map("/nonexistent/map.toml");
  REQUIRE_FALSE(missing.has_value());
  has(missing.error().message, "/nonexistent/map.toml: cannot open");
}

namespace {
device_map contiguous_u16(unsigned n, unsigned max_registers = 125, unsigned max_gap = 0,
                          unsigned step = 1) {
  device_map m;
  m.max_registers = max_registers;
  m.max_gap = max_gap;
  for (unsigned i = 0; i < n; ++i) {
    point p;
    p.name = "p" + std::to_string(i);
    p.address = static_cast<std::uint16_t>(i * step);
    p.type = value_type::u16;
    m.points.push_back(p);
  }
  return m;
}
}  // namespace

TEST_CASE("planner: a 300-register span becomes 3 requests of at most 125") {
  auto m = contiguous_u16(300);
  auto plan = plan_reads(m);
  REQUIRE(plan.size() == 3);
  CHECK(plan[0].start == 0);
  CHECK(plan[0].count == 125);
  CHECK(plan[1].start == 125);
  CHECK(plan[1].count == 125);
  CHECK(plan[2].start == 250);
  CHECK(plan[2].count == 50);
  CHECK(plan[0].points.size() + plan[1].points.size() + plan[2].points.size() == 300);
  CHECK(naive_request_count(m) == 300);
}

TEST_CASE("planner: device max_registers, max_gap, tables and multi-register points") {
  CHECK(plan_reads(contiguous_u16(300, 60)).size() == 5);
  // Every other register: merged only when max_gap allows the hole.
  CHECK(plan_reads(contiguous_u16(10, 125, 0, 2)).size() == 10);
  CHECK(plan_reads(contiguous_u16(10, 125, 1, 2)).size() == 1);

  device_map m = contiguous_u16(2);
  point f;
  f.name = "f";
  f.address = 123;  // f32 at 123..124 fits with 0..1 under max_gap
  f.type = value_type::f32;
  m.points.push_back(f);
  m.max_gap = 200;
  auto plan = plan_reads(m);
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].count == 125);
  m.points[2].address = 124;  // would need 126 registers: split
  CHECK(plan_reads(m).size() == 2);
  m.points[2].address = 123;

  point c;
  c.name = "c";
  c.tab = table::coil;
  c.type = value_type::boolean;
  c.address = 1999;
  m.points.push_back(c);
  c.name = "c0";
  c.address = 0;
  m.points.push_back(c);
  m.max_gap = 1999;
  auto p2 = plan_reads(m);
  REQUIRE(p2.size() == 2);  // coils are their own table; holding 0..1 + 123..124 under max_gap
  CHECK(p2[0].tab == table::coil);
  CHECK(p2[0].count == 2000);

  // Only the selected points are planned.
  std::vector<std::size_t> only{1};
  auto p3 = plan_reads(m, only);
  REQUIRE(p3.size() == 1);
  CHECK(p3[0].start == 1);
  CHECK(p3[0].count == 1);
}

TEST_CASE("deadband reports the first value and changes beyond the band") {
  device_map m = contiguous_u16(2);
  m.points[0].deadband = 0.5;
  deadband_filter f(m);
  CHECK(f.should_report(0, value{10.0}));
  CHECK_FALSE(f.should_report(0, value{10.4}));
  CHECK(f.should_report(0, value{10.6}));
  CHECK(f.should_report(1, value{std::int64_t{1}}));
  CHECK(f.should_report(1, value{std::int64_t{1}}));  // no deadband: every value
}

TEST_CASE("shipped profiles parse") {
  for (const char* name : {"eurotherm3200", "vacuum-gauge", "mfc"}) {
    CAPTURE(name);
    auto m = load_profile(name);
    if (!m) FAIL(m.error().message);
    CHECK(m->name == name);
    CHECK_FALSE(m->points.empty());
  }
  auto none = load_profile("no-such-device");
  REQUIRE_FALSE(none.has_value());
  CHECK(none.error().code == make_error_code(errc::unknown_profile));
  CHECK_FALSE(load_profile("../etc/passwd").has_value());
}

TEST_CASE("exception codes carry their names") {
  auto ec = exception_code(2);
  CHECK(exception_of(ec) == 2);
  CHECK(ec.message() == "Modbus exception: illegal data address (02)");
  CHECK(exception_of(make_error_code(errc::timeout)) == 0);
}
