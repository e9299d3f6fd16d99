// Run metadata records (schemas/run_metadata.hpp): round trip, die coordinates, refusals.
#include <doctest/doctest.h>

#include <semilab/schemas/run_metadata.hpp>

namespace sc = semilab::schemas;

TEST_CASE("run metadata: round trip, die coordinates from the label or explicit") {
  sc::run_metadata m{"S-17", "W07", "L2411-3", "3, -2", "ana", "hfo2", {}, {}};
  const auto j = sc::encode_run_metadata(m);
  auto d = sc::decode_run_metadata(j);
  REQUIRE(d.has_value());
  CHECK(d->sample == "S-17");
  CHECK(d->wafer == "W07");
  CHECK(d->lot == "L2411-3");
  CHECK(d->die == "3, -2");
  CHECK(d->operator_name == "ana");
  CHECK(d->project == "hfo2");
  REQUIRE(d->die_x.has_value());
  CHECK(*d->die_x == 3);
  CHECK(*d->die_y == -2);
  // Encoding the decoded value again gives the same message (coordinates now explicit).
  auto again = sc::decode_run_metadata(sc::encode_run_metadata(*d));
  REQUIRE(again.has_value());
  CHECK(*again == *d);

  auto label = sc::decode_run_metadata(R"({"v":1,"die":"R3C5","die_x":3,"die_y":5})");
  REQUIRE(label.has_value());
  CHECK(label->die == "R3C5");
  CHECK(*label->die_x == 3);
  CHECK(*label->die_y == 5);
  auto empty = sc::decode_run_metadata(R"({"v":1,"future_field":{"x":1}})");
  REQUIRE(empty.has_value());  // a newer agent's extra fields are ignored
  CHECK(empty->sample.empty());
  CHECK_FALSE(empty->die_x.has_value());

  CHECK(sc::parse_die_coordinates("+4,7") == std::pair<std::int64_t, std::int64_t>{4, 7});
  CHECK_FALSE(sc::parse_die_coordinates("4;7").has_value());
  CHECK_FALSE(sc::parse_die_coordinates("4,").has_value());
  CHECK_FALSE(sc::parse_die_coordinates("x,1").has_value());
}

TEST_CASE("run metadata: what is refused") {
  CHECK_FALSE(sc::decode_run_metadata("not json").has_value());
  CHECK_FALSE(sc::decode_run_metadata(R"({"sample":"S"})").has_value());      // no version
  CHECK_FALSE(sc::decode_run_metadata(R"({"v":2,"sample":"S"})").has_value());  // newer major
  CHECK_FALSE(sc::decode_run_metadata(R"({"v":1,"sample":17})").has_value());
  CHECK_FALSE(sc::decode_run_metadata(R"({"v":1,"die_x":"3"})").has_value());
  CHECK_FALSE(sc::decode_run_metadata(R"([1,2])").has_value());
  const std::string long_id(sc::kRunMetadataMaxField + 1, 'x');
  CHECK_FALSE(sc::decode_run_metadata(R"({"v":1,"lot":")" + long_id + "\"}").has_value());
}
