#include <semilab/schemas/record.hpp>

#include <doctest/doctest.h>

#include <cmath>

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
