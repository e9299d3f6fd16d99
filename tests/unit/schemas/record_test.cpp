#include <semilab/schemas/record.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <vector>

using namespace semilab::schemas;

TEST_CASE("parse_decimal keeps the reported digits") {
  auto d = parse_decimal("+1.234500E-03");
  REQUIRE(d.has_value());
  CHECK(d->mantissa == 1234500);
  CHECK(d->exponent == -9);
  CHECK(d->to_string() == "1.234500E-03");
  CHECK(d->to_double() == doctest::Approx(1.2345e-3).epsilon(1e-15));
  CHECK(d->to_double() == 1.2345e-3);  // correctly rounded
  CHECK(parse_decimal("-12")->mantissa == -12);
  CHECK(parse_decimal(" 4.5\r\n")->to_string() == "4.5E+00");
  CHECK(parse_decimal("9.9E37")->to_double() == 9.9e37);
  CHECK(parse_decimal("0.0012")->to_string() == "1.2E-03");
  CHECK(parse_decimal("1.000E+00")->to_string() == "1.000E+00");
  CHECK(parse_decimal(".5")->to_double() == 0.5);
}

TEST_CASE("parse_decimal rejects what it cannot keep exactly") {
  for (auto s : {"", "abc", "1.2.3", "1e", "1e+", "--1", "1,5", "1234567890123456789", "1e999",
                 "nan", "+"})
    CHECK_MESSAGE(!parse_decimal(s), s);
}

TEST_CASE("value_as_double") {
  CHECK(value_as_double(value{2.5}) == 2.5);
  CHECK(value_as_double(value{std::int64_t{3}}) == 3.0);
  CHECK(value_as_double(value{decimal{15, -1}}) == 1.5);
  CHECK(std::isnan(value_as_double(value{std::string("x")})));
}

TEST_CASE("decimal::to_double gives strtod's correctly rounded bits on and off the fast path") {
  std::uint64_t x = 0x9E3779B97F4A7C15ull;  // xorshift: a fixed spread of mantissas
  auto next = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  const std::int64_t edges[] = {0, 1, -1, 9, (std::int64_t{1} << 53) - 1, std::int64_t{1} << 53,
                                (std::int64_t{1} << 53) + 1, -(std::int64_t{1} << 53),
                                INT64_MAX, INT64_MIN + 1, 3978508, 12345678901234567};
  int checked = 0;
  for (int e = -40; e <= 40; ++e) {
    std::vector<std::int64_t> ms(std::begin(edges), std::end(edges));
    for (int i = 0; i < 200; ++i) {
      auto digits = static_cast<int>(next() % 19);  // 0..18 digits
      std::int64_t m = static_cast<std::int64_t>(next() % 1'000'000'000'000'000'000ull);
      for (int k = digits; k < 18; ++k) m /= 10;
      ms.push_back(next() & 1 ? -m : m);
    }
    for (auto m : ms) {
      decimal d{m, static_cast<std::int8_t>(e)};
      char buf[48];
      std::snprintf(buf, sizeof buf, "%lldE%d", static_cast<long long>(m), e);
      const double want = std::strtod(buf, nullptr), got = d.to_double();
      INFO(buf);
      CHECK(std::memcmp(&want, &got, sizeof want) == 0);
      ++checked;
    }
  }
  CHECK(checked > 10'000);
}

TEST_CASE("decimal::to_string writes the exponent with a sign and at least two digits") {
  CHECK(decimal{5, -120}.to_string() == "5E-120");
  CHECK(decimal{-12, 127}.to_string() == "-1.2E+128");
  CHECK(decimal{0, 0}.to_string() == "0E+00");
  CHECK(decimal{7, -1}.to_string() == "7E-01");
  CHECK(decimal{123, 7}.to_string() == "1.23E+09");
}
