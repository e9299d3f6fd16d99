#pragma once
// VXI-11 core channel messages (VXIbus Consortium VXI-11 rev 1.0, "TCP/IP Instrument Protocol",
// the vxi11.x RPC language file): program numbers, procedures, flags, reason bits, error codes,
// and XDR codecs for the parameters and results of the procedures semilab uses. Both sides are
// here (the client transport encodes parameters and decodes results, the simulator the reverse)
// so the simulator does not need a second codec; the byte layout is pinned by golden vectors in
// tests/unit/drivers/test_oncrpc.cpp.
//
// Decoders take outside input: they never throw, return false on short or malformed input, and
// bound every variable-length item by the caller's limit.
#include "oncrpc.hpp"

#include <boost/system/error_code.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace semilab::drivers::vxi11 {

inline constexpr std::uint32_t kCoreProgram = 0x0607AF;
inline constexpr std::uint32_t kCoreVersion = 1;
inline constexpr std::uint32_t kAbortProgram = 0x0607B0;
inline constexpr std::uint32_t kInterruptProgram = 0x0607B1;

enum proc : std::uint32_t {
  kCreateLink = 10,
  kDeviceWrite = 11,
  kDeviceRead = 12,
  kDeviceReadStb = 13,
  kDeviceTrigger = 14,
  kDeviceClear = 15,
  kDeviceRemote = 16,
  kDeviceLocal = 17,
  kDeviceLock = 18,
  kDeviceUnlock = 19,
  kDeviceEnableSrq = 20,
  kDeviceDocmd = 22,
  kDestroyLink = 23,
  kCreateIntrChan = 25,
  kDestroyIntrChan = 26,
};

// Device_Flags
inline constexpr std::int32_t kFlagWaitLock = 0x01;
inline constexpr std::int32_t kFlagEnd = 0x08;
inline constexpr std::int32_t kFlagTermCharSet = 0x80;
// Device_ReadResp reason bits
inline constexpr std::int32_t kReasonReqCnt = 0x01;
inline constexpr std::int32_t kReasonChr = 0x02;
inline constexpr std::int32_t kReasonEnd = 0x04;

// Device_ErrorCode values (the spec's table), plus failures of this client that are not device
// errors (>= 1000). message() gives the spec's wording.
enum class errc {
  ok = 0,
  syntax_error = 1,
  device_not_accessible = 3,
  invalid_link_identifier = 4,
  parameter_error = 5,
  channel_not_established = 6,
  operation_not_supported = 8,
  out_of_resources = 9,
  device_locked_by_another_link = 11,
  no_lock_held_by_this_link = 12,
  io_timeout = 15,
  io_error = 17,
  invalid_address = 21,
  abort = 23,
  channel_already_established = 29,
  // Client-side failures.
  portmapper_unreachable = 1000,  // no TCP connection to the portmapper
  core_not_registered,            // GETPORT answered 0: no VXI-11 core channel on the host
  core_unreachable,               // no TCP connection to the port GETPORT gave
  bad_reply,                      // a VXI-11 result that does not decode or makes no sense
};
const boost::system::error_category& category() noexcept;
inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), category()};
}
// A Device_ErrorCode from the wire as an error_code (0 = success); unknown codes keep their
// number and read "unknown VXI-11 device error".
inline boost::system::error_code device_error(std::int32_t code) noexcept {
  return {code, category()};
}

// ---- parameters (client encodes, server decodes) -------------------------------------------
struct create_link_parms {
  std::int32_t client_id = 0;
  bool lock_device = false;
  std::uint32_t lock_timeout = 0;  // ms
  std::string_view device;         // "inst0", "gpib0,22"
};
struct device_write_parms {
  std::int32_t lid = 0;
  std::uint32_t io_timeout = 0;
  std::uint32_t lock_timeout = 0;
  std::int32_t flags = 0;
  std::string_view data;
};
struct device_read_parms {
  std::int32_t lid = 0;
  std::uint32_t request_size = 0;
  std::uint32_t io_timeout = 0;
  std::uint32_t lock_timeout = 0;
  std::int32_t flags = 0;
  char term_char = 0;
};
// device_readstb, device_clear, device_trigger, device_remote, device_local.
struct generic_parms {
  std::int32_t lid = 0;
  std::int32_t flags = 0;
  std::uint32_t lock_timeout = 0;
  std::uint32_t io_timeout = 0;
};

[[nodiscard]] std::string encode(const create_link_parms& p);
[[nodiscard]] std::string encode(const device_write_parms& p);
[[nodiscard]] std::string encode(const device_read_parms& p);
[[nodiscard]] std::string encode(const generic_parms& p);
[[nodiscard]] std::string encode_link(std::int32_t lid);  // destroy_link argument

// Views in the results point into `in`.
[[nodiscard]] bool decode(std::string_view in, create_link_parms& p,
                          std::size_t max_device = 256) noexcept;
[[nodiscard]] bool decode(std::string_view in, device_write_parms& p,
                          std::size_t max_data) noexcept;
[[nodiscard]] bool decode(std::string_view in, device_read_parms& p) noexcept;
[[nodiscard]] bool decode(std::string_view in, generic_parms& p) noexcept;
[[nodiscard]] bool decode_link(std::string_view in, std::int32_t& lid) noexcept;

// ---- results (server encodes, client decodes) ----------------------------------------------
struct create_link_resp {
  std::int32_t error = 0;
  std::int32_t lid = 0;
  std::uint32_t abort_port = 0;  // unsigned short on the wire (4 bytes, <= 65535)
  std::uint32_t max_recv_size = 0;
};
struct device_write_resp {
  std::int32_t error = 0;
  std::uint32_t size = 0;
};
struct device_read_resp {
  std::int32_t error = 0;
  std::int32_t reason = 0;
  std::string_view data;
};
struct device_readstb_resp {
  std::int32_t error = 0;
  std::uint8_t stb = 0;  // unsigned char on the wire (4 bytes, <= 255)
};
// Device_Error: device_clear, destroy_link, ...
struct device_error_resp {
  std::int32_t error = 0;
};

[[nodiscard]] std::string encode(const create_link_resp& r);
[[nodiscard]] std::string encode(const device_write_resp& r);
[[nodiscard]] std::string encode(const device_read_resp& r);
[[nodiscard]] std::string encode(const device_readstb_resp& r);
[[nodiscard]] std::string encode(const device_error_resp& r);

[[nodiscard]] bool decode(std::string_view in, create_link_resp& r) noexcept;
[[nodiscard]] bool decode(std::string_view in, device_write_resp& r) noexcept;
[[nodiscard]] bool decode(std::string_view in, device_read_resp& r, std::size_t max_data) noexcept;
[[nodiscard]] bool decode(std::string_view in, device_readstb_resp& r) noexcept;
[[nodiscard]] bool decode(std::string_view in, device_error_resp& r) noexcept;

}  // namespace semilab::drivers::vxi11

template <>
struct boost::system::is_error_code_enum<semilab::drivers::vxi11::errc> : std::true_type {};
