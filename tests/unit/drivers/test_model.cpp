#include <semilab/drivers/model.hpp>

#include <doctest/doctest.h>

#include <string>

using namespace semilab::drivers;
namespace quality = semilab::schemas::quality;

namespace {
model_settings k2450(std::map<std::string, std::string> configured = {}) {
  const auto* m = find_model("keithley2450");
  REQUIRE(m);
  auto s = resolve_settings(*m, configured);
  REQUIRE_MESSAGE(s.has_value(), (s ? "" : s.error().message));
  return *s;
}
}  // namespace

TEST_CASE("model registry: the shipped table is valid and findable") {
  auto ok = check_registry(models());
  CHECK_MESSAGE(ok.has_value(), (ok ? "" : ok.error().message));
  REQUIRE(find_model("keithley2450") != nullptr);
  CHECK(find_model("keithley2450")->poll_query == ":READ?");
  CHECK(find_model("nope") == nullptr);
}

TEST_CASE("model registry: a duplicate name is a start-up error") {
  std::vector<model_profile> table(models().begin(), models().end());
  table.push_back(table.front());
  auto r = check_registry(table);
  REQUIRE(!r.has_value());
  CHECK(r.error().code == errc::duplicate_model);
  CHECK(r.error().message.find("'keithley2450' registered twice") != std::string::npos);
}

TEST_CASE("model registry: init placeholders must name declared settings") {
  static constexpr std::string_view kBadInit[] = {":SOUR:VOLT {volts}"};
  std::vector<model_profile> table(models().begin(), models().end());
  table.front().init = kBadInit;
  auto r = check_registry(table);
  REQUIRE(!r.has_value());
  CHECK(r.error().code == errc::bad_setting);
  CHECK(r.error().message.find("{volts}") != std::string::npos);
}

TEST_CASE("keithley2450 settings: defaults, overrides and validation") {
  auto s = k2450();
  CHECK(s.number("bias") == doctest::Approx(0.6));
  CHECK(s.number("ilim") == doctest::Approx(0.1));
  const auto* m = find_model("keithley2450");
  auto init = render_init(*m, k2450({{"bias", "1.5"}, {"ilim", "1e-3"}}));
  std::vector<std::string> expected{":SOUR:FUNC VOLT", ":SOUR:VOLT 1.5", ":SOUR:VOLT:ILIM 1e-3",
                                    ":SENS:FUNC \"CURR\"", ":OUTP ON"};
  CHECK(init == expected);

  struct bad_case {
    std::map<std::string, std::string> cfg;
    std::string expect;
  };
  for (const auto& c : std::vector<bad_case>{
           {{{"ilim", "abc"}}, "setting 'ilim' = 'abc' is not a number"},
           {{{"ilim", "2"}}, "setting 'ilim' = 2 is outside"},
           {{{"bias", "-300"}}, "setting 'bias' = -300 is outside"},
           {{{"bias", "nan"}}, "'bias' = 'nan' is not a number"},
           {{{"bias", ""}}, "'bias' = '' is not a number"},
           {{{"voltage", "1"}}, "setting 'voltage' is unknown (known: bias, ilim)"},
       }) {
    auto r = resolve_settings(*m, c.cfg);
    REQUIRE(!r.has_value());
    CHECK(r.error().code == errc::bad_setting);
    CHECK_MESSAGE(r.error().message.find(c.expect) != std::string::npos, r.error().message);
    CHECK(r.error().message.find("keithley2450") != std::string::npos);
  }
}

TEST_CASE("keithley2450 :READ? parsing keeps digits and flags quality") {
  auto s = k2450({{"ilim", "0.1"}});
  auto r = keithley2450::parse_read("1.234567E-03", s);
  REQUIRE(r.has_value());
  REQUIRE(r->size() == 1);
  CHECK((*r)[0].channel == "curr");
  CHECK((*r)[0].unit == "A");
  CHECK((*r)[0].value == semilab::schemas::decimal{1234567, -9});
  CHECK((*r)[0].quality == 0);

  auto lim = keithley2450::parse_read("9.999205E-02", s);
  REQUIRE(lim.has_value());
  CHECK(((*lim)[0].quality & quality::compliance) != 0);
  auto neg = keithley2450::parse_read("-1.000000E-01\r\n", s);
  REQUIRE(neg.has_value());
  CHECK(((*neg)[0].quality & quality::compliance) != 0);
  auto below = keithley2450::parse_read("9.980000E-02", s);
  REQUIRE(below.has_value());
  CHECK((*below)[0].quality == 0);
  auto over = keithley2450::parse_read("9.9E37", s);
  REQUIRE(over.has_value());
  CHECK((*over)[0].quality == quality::over_range);
}

TEST_CASE("keithley2450 parsing of garbage is an error naming the reply, never a crash") {
  auto s = k2450();
  std::string long_reply(500, 'x');
  for (std::string_view reply :
       {std::string_view(""), std::string_view("#\x15GaRbAgE?\x7f,,E+"),
        std::string_view("1.0E-3,2.0E-3"), std::string_view("NaN"), std::string_view("--1"),
        std::string_view("1.0E-999"), std::string_view("1234567890123456789012"),
        std::string_view(long_reply), std::string_view("\0\0\0", 3)}) {
    auto r = keithley2450::parse_read(reply, s);
    REQUIRE(!r.has_value());
    CHECK(r.error().code == errc::bad_reply);
    CHECK(r.error().message.find(":READ? reply '") != std::string::npos);
    CHECK(r.error().message.size() < 200);
  }
  auto g = keithley2450::parse_read("#\x15GaRbAgE", s);
  CHECK(g.error().message.find("'#\\x15GaRbAgE'") != std::string::npos);
}

TEST_CASE("quote_reply truncates to 64 characters and escapes") {
  CHECK(quote_reply("abc") == "'abc'");
  CHECK(quote_reply("a\nb") == "'a\\x0Ab'");
  auto q = quote_reply(std::string(100, 'y'));
  CHECK(q == "'" + std::string(64, 'y') + "'... (100 bytes)");
}

TEST_CASE("error queue entries: Keithley and Keysight forms") {
  auto a = parse_error_entry("0,\"No error\"");
  REQUIRE(a.has_value());
  CHECK(a->code == 0);
  CHECK(a->text == "No error");
  auto b = parse_error_entry("+0,\"No error\"");
  REQUIRE(b.has_value());
  CHECK(b->code == 0);
  auto c = parse_error_entry("-113,\"Undefined header\"");
  REQUIRE(c.has_value());
  CHECK(c->code == -113);
  CHECK(c->text == "Undefined header");
  CHECK(!parse_error_entry("garbage").has_value());
  CHECK(!parse_error_entry("").has_value());
}

TEST_CASE("IDN pattern") {
  const auto* m = find_model("keithley2450");
  CHECK(idn_matches(*m, "KEITHLEY INSTRUMENTS,MODEL 2450,04412345,1.7.12b"));
  CHECK(idn_matches(*m, "Keithley Instruments Inc.,Model 2450,1,2\n"));
  CHECK(!idn_matches(*m, "KEITHLEY INSTRUMENTS INC.,MODEL 2400,1,2"));
  CHECK(!idn_matches(*m, ""));
}
