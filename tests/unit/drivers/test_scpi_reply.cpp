// IEEE 488.2 response framing and typed replies, and the three new model parsers.
#include <doctest/doctest.h>

#include <semilab/drivers/model.hpp>
#include <semilab/drivers/scpi_reply.hpp>
#include <string>

using namespace semilab::drivers;
namespace quality = semilab::schemas::quality;
using namespace std::string_literals;

namespace {
// Feeds `stream` to a framer in pieces of `step` bytes; returns the message size or -1/-2.
long frame(std::string_view stream, std::size_t step, std::size_t max = 1 << 20,
           bool* cr = nullptr) {
  reply_framer f('\n', max);
  for (std::size_t n = std::min(step, stream.size());; n = std::min(n + step, stream.size())) {
    auto st = f.feed(stream.substr(0, n));
    if (st == reply_framer::status::complete) {
      if (cr) *cr = f.cr_before_terminator();
      return static_cast<long>(f.message_size());
    }
    if (st == reply_framer::status::too_long) return -2;
    if (n == stream.size()) return -1;
  }
}
model_settings defaults(std::string_view name) {
  const auto* m = find_model(name);
  REQUIRE(m);
  auto s = resolve_settings(*m, {});
  REQUIRE(s.has_value());
  return *s;
}
}  // namespace

TEST_CASE("framer: plain messages, CR LF, byte-by-byte and whole") {
  for (std::size_t step : {1u, 3u, 1000u}) {
    CAPTURE(step);
    CHECK(frame("1.0E-3\n", step) == 6);
    bool cr = false;
    CHECK(frame("+0,\"No error\"\r\n", step, 1 << 20, &cr) == 14);
    CHECK(cr);
    CHECK(frame("no terminator", step) == -1);
    CHECK(frame("\n", step) == 0);
    CHECK(frame("#H1F\n", step) == 4);  // hexadecimal number, not a block
    CHECK(frame("\"a#1\"\n", step) == 5);
  }
}

TEST_CASE("framer: definite blocks carry LF, CR and NUL in their data") {
  std::string data = "ab\ncd\0\r\n"s;  // 8 bytes
  std::string msg = "#18" + data + "\n";
  for (std::size_t step : {1u, 2u, 5u, 100u}) {
    CAPTURE(step);
    bool cr = true;
    CHECK(frame(msg, step, 1 << 20, &cr) == static_cast<long>(msg.size() - 1));
    CHECK(!cr);  // the CR inside the data is data
    // Blocks as later elements, several blocks, zero-length block.
    std::string two = "1,#13a\nb,#202\n\n;#10\n";
    CHECK(frame(two, step) == static_cast<long>(two.size() - 1));
    // Not at an element start: '#' is text.
    CHECK(frame("x#15\n", step) == 4);
    // '#3' followed by a non-digit: not a block header; the LF ends the message.
    CHECK(frame("#3a\n", step) == 3);
  }
  // Indefinite block: runs to the terminator (NL^END on a socket), NUL allowed.
  CHECK(frame("#0ab\0c\n"s, 1) == 6);
  // Declared length beyond the limit fails before the data arrives.
  CHECK(frame("#9100000000", 1, 1000) == -2);
  CHECK(frame(std::string(2000, 'x'), 7, 1000) == -2);
  // Incomplete block: needs more.
  CHECK(frame("#15ab\n", 1) == -1);
}

TEST_CASE("parse_block: definite and indefinite, errors name the reply") {
  auto b = parse_block("#18ab\ncd\0\r\n"s);
  REQUIRE(b.has_value());
  CHECK(*b == "ab\ncd\0\r\n"s);
  CHECK(*parse_block("#0xyz") == "xyz");
  CHECK(*parse_block("#10") == "");
  for (std::string_view bad : {"", "#", "#a", "#2", "#21", "#15abc", "abc", "#13abcd"}) {
    auto r = parse_block(bad);
    REQUIRE_MESSAGE(!r.has_value(), bad);
    CHECK(r.error().code == errc::bad_reply);
  }
  CHECK(parse_block("#13abcd").error().message.find("after its block") != std::string::npos);
}

TEST_CASE("typed replies: numbers keep digits, sentinels become flags") {
  auto n = parse_number_reply("+1.234500E-03");
  REQUIRE(n.has_value());
  CHECK(n->value.to_string() == "1.234500E-03");
  CHECK(n->quality == 0);
  auto over = parse_number_reply("9.9E37");
  REQUIRE(over.has_value());
  CHECK(over->quality == quality::over_range);
  CHECK(!over->not_a_number);
  auto neg = parse_number_reply("-9.90000000E+37");
  CHECK(neg->quality == quality::over_range);
  auto nan = parse_number_reply("+9.910000E+37");
  CHECK(nan->quality == quality::over_range);
  CHECK(nan->not_a_number);
  auto bad = parse_number_reply("1.0V", "MEAS:VOLT?");
  REQUIRE(!bad.has_value());
  CHECK(bad.error().message == "MEAS:VOLT? '1.0V' is not a number");

  CHECK(*parse_bool_reply("1"));
  CHECK(*parse_bool_reply(" ON\r"));
  CHECK(!*parse_bool_reply("+0"));
  CHECK(!*parse_bool_reply("off"));
  CHECK(!parse_bool_reply("2").has_value());

  auto list = split_reply_list("1, \"a,b\" ,#13x,y,3");
  REQUIRE(list.has_value());
  CHECK(*list == std::vector<std::string>{"1", "\"a,b\"", "#13x,y", "3"});
  CHECK(split_reply_list("")->empty());
  CHECK(!split_reply_list("\"open").has_value());
  CHECK(!split_reply_list("#19ab").has_value());
  auto nums = parse_number_list("+1.0E-3,-2,9.91E37");
  REQUIRE(nums.has_value());
  REQUIRE(nums->size() == 3);
  CHECK((*nums)[2].not_a_number);
  auto bad_list = parse_number_list("1,x", ":READ?");
  REQUIRE(!bad_list.has_value());
  CHECK(bad_list.error().message.find("element 2") != std::string::npos);
}

TEST_CASE("typed replies: *IDN? fields and *ESR? bits") {
  auto idn = parse_idn("Keysight Technologies,34461A,MY53220001,A.02.14-02.40\n");
  REQUIRE(idn.has_value());
  CHECK(*idn == idn_fields{"Keysight Technologies", "34461A", "MY53220001", "A.02.14-02.40"});
  auto commas = parse_idn("A,B,C,fw 1,2");
  CHECK(commas->firmware == "fw 1,2");
  CHECK(!parse_idn("A,B").has_value());
  CHECK(!parse_idn(",B,C,D").has_value());

  auto esr = parse_esr_reply("+160");
  REQUIRE(esr.has_value());
  CHECK(esr->power_on());
  CHECK(esr->command_error());
  CHECK(!esr->query_error());
  CHECK(esr->describe() == "CME,PON");
  CHECK(parse_esr_reply("0")->describe() == "none");
  CHECK(!parse_esr_reply("256").has_value());
  CHECK(!parse_esr_reply("x").has_value());
}

TEST_CASE("keithley2400 :READ? with VOLT,CURR,STAT: compliance from the status word") {
  auto s = defaults("keithley2400");
  auto r = keithley2400::parse_read("+6.000000E-01,+3.978270E-07,+1.843200E+04", s);
  REQUIRE(r.has_value());
  REQUIRE(r->size() == 2);
  CHECK((*r)[0].channel == "volt");
  CHECK((*r)[0].unit == "V");
  CHECK((*r)[1].channel == "curr");
  CHECK((*r)[1].value.to_string() == "3.978270E-07");
  CHECK((*r)[1].quality == 0);
  // 18432 + 8: bit 3 set.
  auto c = keithley2400::parse_read("+1.2E+00,+1.000000E-04,+18440", s);
  REQUIRE(c.has_value());
  CHECK(((*c)[0].quality & quality::compliance) != 0);
  CHECK(((*c)[1].quality & quality::compliance) != 0);
  auto o = keithley2400::parse_read("+1.2E+00,+9.9E37,+1", s);
  CHECK(((*o)[1].quality & quality::over_range) != 0);
  for (std::string_view bad : {"", "1,2", "1,2,3,4", "1,2,x", "1,2,1.5", "1,2,-1", "a,b,c"}) {
    auto e = keithley2400::parse_read(bad, s);
    REQUIRE_MESSAGE(!e.has_value(), bad);
    CHECK(e.error().code == errc::bad_reply);
    CHECK(e.error().message.find("keithley2400: :READ? reply") == 0);
  }
}

TEST_CASE("e4980a :FETC?: Cp-D with status, overload and no-data") {
  auto s = defaults("e4980a");
  auto r = e4980a::parse_fetch("+9.87654E-11,+1.23450E-03,+0", s);
  REQUIRE(r.has_value());
  REQUIRE(r->size() == 2);
  CHECK((*r)[0].channel == "cp");
  CHECK((*r)[0].unit == "F");
  CHECK((*r)[0].value.to_string() == "9.87654E-11");
  CHECK((*r)[1].channel == "d");
  CHECK((*r)[0].quality == 0);
  auto ov = e4980a::parse_fetch("+9.90000E+37,+9.90000E+37,+1", s);
  REQUIRE(ov.has_value());
  CHECK((*ov)[0].quality == quality::over_range);
  auto alc = e4980a::parse_fetch("+1E-10,+1E-3,+4", s);
  CHECK((*alc)[0].quality == quality::non_traceable);
  auto none = e4980a::parse_fetch("+9.9E37,+9.9E37,-1", s);
  REQUIRE(!none.has_value());
  CHECK(none.error().message.find("status -1") != std::string::npos);
  for (std::string_view bad : {"", "1,2", "1,2,0.5", "x,2,0", "1,2,0,4"})
    CHECK_MESSAGE(!e4980a::parse_fetch(bad, s).has_value(), bad);
}

TEST_CASE("34461a READ?: DC volts, over-range") {
  auto s = defaults("34461a");
  auto r = keysight34461a::parse_read("+2.49987620E+00", s);
  REQUIRE(r.has_value());
  CHECK((*r)[0].channel == "volt");
  CHECK((*r)[0].value.to_string() == "2.49987620E+00");
  CHECK((*r)[0].quality == 0);
  CHECK((*keysight34461a::parse_read("+9.90000000E+37", s))[0].quality == quality::over_range);
  CHECK(!keysight34461a::parse_read("", s).has_value());
  CHECK(!keysight34461a::parse_read("1,2", s).has_value());
}
