#pragma once
// Instrument resource strings, written the way people already type them (VISA names, Modbus URIs).
// Keywords (TCPIP, SOCKET, INSTR, USB, ASRL, the URI scheme and query keys) are case-insensitive
// as in VISA; host names, device paths and serial numbers keep their case.
//
//   TCPIP[n]::host::port::SOCKET              raw SCPI socket (e.g. port 5025)
//   TCPIP[n]::host[::inst0][::INSTR]          VXI-11 / HiSLIP device ("inst0", "hislip0",
//   TCPIP[n]::gw::gpib0,22::INSTR              a GPIB gateway "gpib0,22")
//   USB[n]::0xVID::0xPID::SERIAL[::intf][::INSTR]
//   ASRL/dev/ttyUSB0[::INSTR][?baud=9600&parity=N&data=8&stop=1&flow=none|xonxoff|rtscts]
//   ASRLn[::INSTR][?...]            (/dev/ttyS<n>)
//   modbus-tcp://host[:port][?unit=N]
//   modbus-rtu:///dev/ttyUSB0[?baud=19200&parity=E&data=8&stop=1&unit=3&rs485=1&rts=up&rts_delay=US]
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
  enum class flow_control { none, xon_xoff, rts_cts };
  std::string device;             // "/dev/ttyUSB0"; empty when given as ASRLn
  std::optional<unsigned> board;  // n of ASRLn (opened as /dev/ttyS<n>)
  unsigned baud = 9600;           // options: ?baud=9600&parity=N&data=8&stop=1&flow=none
  char parity = 'N';
  unsigned data_bits = 8;
  unsigned stop_bits = 1;
  flow_control flow = flow_control::none;
  friend bool operator==(const serial_resource&, const serial_resource&) = default;
};

struct modbus_tcp_resource {
  std::string host;
  std::uint16_t port = 502;
  std::uint8_t unit = 1;
  friend bool operator==(const modbus_tcp_resource&, const modbus_tcp_resource&) = default;
};

struct modbus_rtu_resource {
  // RS-485 direction control, through libmodbus: rs485=1 puts the port in the kernel's RS-485
  // mode (ioctl TIOCSRS485; the driver switches the transceiver), rts=up|down has libmodbus raise
  // (up) or lower (down) RTS around each request it sends, rts_delay=US the wait before and
  // after (libmodbus default: one character time). Absent = not touched.
  enum class rts_mode : std::uint8_t { none, up, down };
  std::string device;
  unsigned baud = 19200;
  char parity = 'E';  // 'N', 'E' or 'O' (Modbus serial line default: 8E1)
  unsigned data_bits = 8;
  unsigned stop_bits = 1;
  std::uint8_t unit = 1;  // 1..247
  bool rs485 = false;
  rts_mode rts = rts_mode::none;
  std::optional<unsigned> rts_delay_us;  // 0..1000000
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

// Succeeds for the message-based (SCPI) kinds: TCPIP SOCKET, TCPIP INSTR (VXI-11), USB, ASRL.
// Modbus kinds are errc::not_supported here (they are polled through a register map).
[[nodiscard]] result<void> require_openable(const resource& r);

}  // namespace semilab::drivers
