#include <semilab/drivers/visa_resource.hpp>

#include <doctest/doctest.h>

using namespace semilab::drivers;

namespace {
template <class T>
T parse_as(std::string_view text) {
  auto r = parse_resource(text);
  REQUIRE_MESSAGE(r.has_value(), text << ": " << (r ? "" : r.error().message));
  REQUIRE_MESSAGE(std::holds_alternative<T>(*r), text);
  return std::get<T>(*r);
}

std::string error_of(std::string_view text) {
  auto r = parse_resource(text);
  REQUIRE_MESSAGE(!r.has_value(), text);
  CHECK(r.error().code == errc::bad_resource);
  CHECK_MESSAGE(r.error().message.find(std::string(text)) != std::string::npos,
                r.error().message);
  return r.error().message;
}
}  // namespace

TEST_CASE("resource: raw TCP socket") {
  auto r = parse_as<tcp_socket_resource>("TCPIP0::10.0.0.5::5025::SOCKET");
  CHECK(r == tcp_socket_resource{0, "10.0.0.5", 5025});
  CHECK(parse_as<tcp_socket_resource>("tcpip::Lab-SMU.example::5025::socket") ==
        tcp_socket_resource{0, "Lab-SMU.example", 5025});
  CHECK(parse_as<tcp_socket_resource>("TCPIP3::[fe80::1]::5025::SOCKET") ==
        tcp_socket_resource{3, "fe80::1", 5025});
}

TEST_CASE("resource: TCPIP INSTR and GPIB gateway") {
  CHECK(parse_as<tcpip_instr_resource>("TCPIP0::10.0.0.5::inst0::INSTR") ==
        tcpip_instr_resource{0, "10.0.0.5", "inst0"});
  CHECK(parse_as<tcpip_instr_resource>("TCPIP::10.0.0.5::INSTR").device == "inst0");
  CHECK(parse_as<tcpip_instr_resource>("TCPIP1::10.0.0.5").board == 1);
  CHECK(parse_as<tcpip_instr_resource>("TCPIP0::gw::gpib0,22::INSTR") ==
        tcpip_instr_resource{0, "gw", "gpib0,22"});
  CHECK(parse_as<tcpip_instr_resource>("TCPIP0::10.0.0.5::hislip0::instr").device == "hislip0");
}

TEST_CASE("resource: USB") {
  auto r = parse_as<usb_resource>("USB0::0x05E6::0x2450::04412345::INSTR");
  CHECK(r.vendor_id == 0x05E6);
  CHECK(r.product_id == 0x2450);
  CHECK(r.serial == "04412345");
  CHECK(!r.interface_number);
  auto r2 = parse_as<usb_resource>("usb1::1510::9296::AbC::2::instr");
  CHECK(r2.board == 1);
  CHECK(r2.vendor_id == 1510);
  CHECK(r2.serial == "AbC");
  CHECK(r2.interface_number == std::uint16_t{2});
}

TEST_CASE("resource: serial") {
  CHECK(parse_as<serial_resource>("ASRL/dev/ttyUSB0::INSTR").device == "/dev/ttyUSB0");
  CHECK(parse_as<serial_resource>("asrl/dev/ttyS1").device == "/dev/ttyS1");
  auto r = parse_as<serial_resource>("ASRL3::INSTR");
  CHECK(r.board == 3u);
  CHECK(r.device.empty());
}

TEST_CASE("resource: modbus") {
  CHECK(parse_as<modbus_tcp_resource>("modbus-tcp://plc.lab:1502?unit=7") ==
        modbus_tcp_resource{"plc.lab", 1502, 7});
  CHECK(parse_as<modbus_tcp_resource>("MODBUS-TCP://10.0.0.9") ==
        modbus_tcp_resource{"10.0.0.9", 502, 1});
  CHECK(parse_as<modbus_tcp_resource>("modbus-tcp://[::1]:5020?UNIT=0").host == "::1");
  auto rtu = parse_as<modbus_rtu_resource>("modbus-rtu:///dev/ttyUSB0?baud=9600&parity=n&unit=3");
  CHECK(rtu.device == "/dev/ttyUSB0");
  CHECK(rtu.baud == 9600);
  CHECK(rtu.parity == 'N');
  CHECK(rtu.unit == 3);
  CHECK(rtu.stop_bits == 1);
  auto def = parse_as<modbus_rtu_resource>("modbus-rtu:///dev/ttyS0");
  CHECK(def.baud == 19200);
  CHECK(def.parity == 'E');
  CHECK_FALSE(def.rs485);
  CHECK(def.rts == modbus_rtu_resource::rts_mode::none);
  CHECK_FALSE(def.rts_delay_us.has_value());
  auto rs = parse_as<modbus_rtu_resource>(
      "modbus-rtu:///dev/ttyUSB0?baud=19200&parity=E&stop=1&unit=3&rs485=1&rts=UP&rts_delay=250");
  CHECK(rs.rs485);
  CHECK(rs.rts == modbus_rtu_resource::rts_mode::up);
  CHECK(rs.rts_delay_us == 250u);
  CHECK(parse_as<modbus_rtu_resource>("modbus-rtu:///dev/ttyS0?rts=down").rts ==
        modbus_rtu_resource::rts_mode::down);
}

TEST_CASE("resource: canonical text round-trips") {
  for (std::string_view s :
       {"TCPIP0::10.0.0.5::5025::SOCKET", "TCPIP2::[fe80::1]::5025::SOCKET",
        "TCPIP0::gw::gpib0,22::INSTR", "USB0::0x05E6::0x2450::04412345::1::INSTR",
        "ASRL/dev/ttyUSB0::INSTR", "ASRL4::INSTR", "modbus-tcp://[::1]:502?unit=1",
        "modbus-rtu:///dev/ttyUSB0?baud=19200&parity=E&data=8&stop=2&unit=3",
        "modbus-rtu:///dev/ttyUSB0?baud=19200&parity=E&data=8&stop=1&unit=3&rs485=1&rts=up&rts_delay=0",
        "modbus-rtu:///dev/ttyS1?baud=9600&parity=N&data=8&stop=1&unit=1&rts=down"}) {
    auto r = parse_resource(s);
    REQUIRE(r.has_value());
    CHECK(to_string(*r) == s);
    auto again = parse_resource(to_string(*r));
    REQUIRE(again.has_value());
    CHECK(*again == *r);
  }
}

TEST_CASE("resource: bad strings name the resource and the problem") {
  CHECK(error_of("").find("empty") != std::string::npos);
  CHECK(error_of("TCPIP0::10.0.0.5::99999::SOCKET").find("port '99999'") != std::string::npos);
  CHECK(error_of("TCPIP0::10.0.0.5::0::SOCKET").find("port") != std::string::npos);
  CHECK(error_of("TCPIP0::10.0.0.5::SOCKET").find("SOCKET") != std::string::npos);
  CHECK(error_of("TCPIP0::::5025::SOCKET").find("empty host") != std::string::npos);
  CHECK(error_of("TCPIPx::h::5025::SOCKET").find("board") != std::string::npos);
  CHECK(error_of("TCPIP0::h::a::b::INSTR").find("expected") != std::string::npos);
  CHECK(error_of("GPIB0::22::INSTR").find("unknown interface type 'GPIB0'") != std::string::npos);
  CHECK(error_of("USB0::0xZZZZ::0x2450::1::INSTR").find("vendor id") != std::string::npos);
  CHECK(error_of("USB0::0x05E6::0x12450::1::INSTR").find("product id") != std::string::npos);
  CHECK(error_of("USB0::0x05E6::0x2450::::INSTR").find("serial") != std::string::npos);
  CHECK(error_of("USB0::0x05E6::0x2450::1::RAW").find("RAW") != std::string::npos);
  CHECK(error_of("ASRL::INSTR").find("missing serial port") != std::string::npos);
  CHECK(error_of("ASRLfoo::INSTR").find("'foo'") != std::string::npos);
  CHECK(error_of("TCPIP0::10.0.0.5 ::5025::SOCKET").find("whitespace") != std::string::npos);
  CHECK(error_of("http://x").find("scheme") != std::string::npos);
  CHECK(error_of("modbus-tcp://plc?unit=300").find("unit '300'") != std::string::npos);
  CHECK(error_of("modbus-tcp://plc?slave=3").find("'slave'") != std::string::npos);
  CHECK(error_of("modbus-tcp://plc?unit=1&unit=2").find("twice") != std::string::npos);
  CHECK(error_of("modbus-tcp://:502").find("empty host") != std::string::npos);
  CHECK(error_of("modbus-tcp://[::1").find("'['") != std::string::npos);
  CHECK(error_of("modbus-rtu://dev/ttyUSB0").find("absolute") != std::string::npos);
  CHECK(error_of("modbus-rtu:///dev/ttyUSB0?parity=X").find("parity 'X'") != std::string::npos);
  CHECK(error_of("modbus-rtu:///dev/ttyUSB0?unit=0").find("unit '0'") != std::string::npos);
  CHECK(error_of("modbus-rtu:///dev/ttyUSB0?baud").find("key=value") != std::string::npos);
  CHECK(error_of("modbus-rtu:///dev/ttyUSB0?rs485=yes").find("rs485 'yes'") != std::string::npos);
  CHECK(error_of("modbus-rtu:///dev/ttyUSB0?rts=high").find("rts 'high'") != std::string::npos);
  CHECK(error_of("modbus-rtu:///dev/ttyUSB0?rts_delay=-1").find("rts_delay '-1'") != std::string::npos);
  CHECK(error_of("modbus-rtu:///dev/ttyUSB0?rts_delay=2000000").find("microseconds") != std::string::npos);
}

TEST_CASE("resource: message-based kinds are openable; Modbus and HiSLIP are not_supported") {
  auto sock = parse_resource("TCPIP0::127.0.0.1::5025::SOCKET");
  REQUIRE(sock.has_value());
  for (std::string_view s : {"TCPIP0::127.0.0.1::5025::SOCKET", "TCPIP0::10.0.0.5::inst0::INSTR",
                             "TCPIP0::gw::gpib0,22::INSTR", "USB0::0x05E6::0x2450::1::INSTR",
                             "ASRL/dev/ttyUSB0::INSTR"}) {
    auto r = parse_resource(s);
    REQUIRE(r.has_value());
    CHECK_MESSAGE(require_openable(*r).has_value(), s);
  }
  for (std::string_view s : {"TCPIP0::10.0.0.5::hislip0::INSTR", "modbus-tcp://plc:502?unit=1",
                             "modbus-rtu:///dev/ttyUSB0?unit=3"}) {
    auto r = parse_resource(s);
    REQUIRE(r.has_value());
    auto o = require_openable(*r);
    REQUIRE(!o.has_value());
    CHECK(o.error().code == errc::not_supported);
    CHECK(o.error().message.find(std::string(s.substr(0, 10))) != std::string::npos);
  }
  CHECK(kind_name(*sock) == "tcp-socket");
}

TEST_CASE("resource: serial line settings are resource options") {
  auto r = parse_resource("ASRL/dev/ttyUSB0::INSTR?baud=115200&parity=e&data=7&stop=2&flow=RTSCTS");
  REQUIRE(r.has_value());
  const auto& s = std::get<serial_resource>(*r);
  CHECK(s.device == "/dev/ttyUSB0");
  CHECK(s.baud == 115200);
  CHECK(s.parity == 'E');
  CHECK(s.data_bits == 7);
  CHECK(s.stop_bits == 2);
  CHECK(s.flow == serial_resource::flow_control::rts_cts);
  CHECK(to_string(*r) == "ASRL/dev/ttyUSB0::INSTR?baud=115200&parity=E&data=7&stop=2&flow=rtscts");
  CHECK(parse_resource(to_string(*r)).value() == *r);
  auto d = parse_resource("ASRL3::INSTR");
  REQUIRE(d.has_value());
  CHECK(std::get<serial_resource>(*d).baud == 9600);
  CHECK(to_string(*d) == "ASRL3::INSTR");
  auto bare = parse_resource("ASRL/dev/ttyS0?baud=19200");
  REQUIRE(bare.has_value());
  CHECK(std::get<serial_resource>(*bare).baud == 19200);
  CHECK(error_of("ASRL/dev/ttyUSB0::INSTR?flow=dtr").find("flow 'dtr'") != std::string::npos);
  CHECK(error_of("ASRL/dev/ttyUSB0::INSTR?speed=9600").find("unknown option 'speed'") !=
        std::string::npos);
  CHECK(error_of("ASRL/dev/ttyUSB0::INSTR?baud=12").find("baud '12'") != std::string::npos);
  CHECK(error_of("ASRL/dev/ttyUSB0::INSTR?").find("empty option") != std::string::npos);
}
