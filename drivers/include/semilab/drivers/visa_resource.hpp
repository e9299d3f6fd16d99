#pragma once
// Instrument resource strings, written the way people already type them (VISA names, Modbus URIs).
// Keywords (TCPIP, SOCKET, INSTR, USB, ASRL, the URI scheme and query keys) are case-insensitive
// as in VISA; host names, device paths and serial numbers keep their case.
//
//   TCPIP[n]::host::port::SOCKET              raw SCPI socket (e.g. port 5025)
//   TCPIP[n]::host[::inst0][::INSTR]          VXI-11 / HiSLIP device ("inst0", "hislip0",
//   TCPIP[n]::gw::gpib0,22::INSTR              a GPIB gateway "gpib0,22")
//   USB[n]::0xVID::0xPID::SERIAL[::intf][::INSTR]
//   ASRL/dev/ttyUSB0[::INSTR]   ASRLn[::INSTR]
//   modbus-tcp://host[:port][?unit=N]
//   modbus-rtu:///dev/ttyUSB0[?baud=19200&parity=E&data=8&stop=1&unit=3]
// IPv6 hosts go in brackets: TCPIP::[fe80::1]::5025::SOCKET, modbus-tcp://[::1]:502.
#include <semilab/drivers/error.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace semilab::drivers {

struct tcp_socket_resource {
  unsigned board = 0;
  std::string host;  // without brackets
  std::uint16_t port = 0;
  friend bool operator==(const tcp_socket_resource&, const tcp_socket_resource&) = default;
};

struct tcpip_instr_resource {
  unsigned board = 0;
  std::string host;
  std::string device = "inst0";  // "inst0", "hislip0", "gpib0,22", ...
  friend bool operator==(const tcpip_instr_resource&, const tcpip_instr_resource&) = default;
};

struct usb_resource {
  unsigned board = 0;
  std::uint16_t vendor_id = 0;
  std::uint16_t product_id = 0;
  std::string serial;
  std::optional<std::uint16_t> interface_number;
  friend bool operator==(const usb_resource&, const usb_resource&) = default;
};

struct serial_resource {
  std::string device;             // "/dev/ttyUSB0"; empty when given as ASRLn
  std::optional<unsigned> board;  // n of ASRLn
  friend bool operator==(const serial_resource&, const serial_resource&) = default;
};

struct modbus_tcp_resource {
  std::string host;
  std::uint16_t port = 502;
  std::uint8_t unit = 1;
  friend bool operator==(const modbus_tcp_resource&, const modbus_tcp_resource&) = default;
};

struct modbus_rtu_resource {
  std::string device;
  unsigned baud = 19200;
  char parity = 'E';  // 'N', 'E' or 'O' (Modbus serial line default: 8E1)
  unsigned data_bits = 8;
  unsigned stop_bits = 1;
  std::uint8_t unit = 1;  // 1..247
  friend bool operator==(const modbus_rtu_resource&, const modbus_rtu_resource&) = default;
};

using resource = std::variant<tcp_socket_resource, tcpip_instr_resource, usb_resource,
                              serial_resource, modbus_tcp_resource, modbus_rtu_resource>;

// Errors are errc::bad_resource with a message quoting the string and naming the wrong part.
[[nodiscard]] result<resource> parse_resource(std::string_view text);

// Canonical text (parse_resource(to_string(r)) == r).
[[nodiscard]] std::string to_string(const resource& r);

// Short kind name for logs and docs: "tcp-socket", "tcpip-instr", "usb", "serial", ...
[[nodiscard]] std::string_view kind_name(const resource& r) noexcept;

// Only raw TCP sockets have a transport in this version: every other kind is
// errc::not_supported (well-formed, just not openable yet), never a generic failure.
[[nodiscard]] result<tcp_socket_resource> require_openable(const resource& r);

}  // namespace semilab::drivers
