#pragma once
// Error values of the Modbus layer (category "semilab.modbus"). They travel in
// drivers::error_info next to a message naming the file/point/resource concerned.
// A Modbus exception reply is its own code per exception (exception_base + code), so callers can
// tell "illegal data address" from "server busy" without parsing text.
#include <semilab/drivers/error.hpp>

#include <cstdint>
#include <string>
#include <type_traits>

namespace semilab::drivers::modbus {

enum class errc {
  ok = 0,
  bad_map = 1,        // register map file malformed (message: file:line:col: key: reason)
  unknown_point,      // a point name that the map does not define
  unknown_profile,    // no profile file with that name
  bad_value,          // value text or type does not fit the point
  not_writable,       // write to a point without writable = true
  out_of_range,       // write outside the point's min/max or the raw type's range
  readback_mismatch,  // the value read back after a write differs
  timeout,            // no reply within the response timeout; link closed, reconnects
  link_down,          // not connected (connect failed, backoff pending, or lost in this poll)
  bad_frame,          // reply malformed (CRC, length, transaction); link closed to resync
  io_error,           // other transport failure (EPIPE, ECONNRESET, ...); link closed
  exception_base = 100,  // + Modbus exception code 1..11
};

const boost::system::error_category& error_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

[[nodiscard]] error_info make_error(errc e, std::string message);

// An exception code as the standard names it: 2 -> "illegal data address".
[[nodiscard]] std::string exception_name(unsigned code);

// The code for Modbus exception `code` (1..11).
[[nodiscard]] inline boost::system::error_code exception_code(unsigned code) noexcept {
  return {static_cast<int>(errc::exception_base) + static_cast<int>(code), error_category()};
}

// 0 when `ec` is not a Modbus exception, else its exception code.
[[nodiscard]] unsigned exception_of(const boost::system::error_code& ec) noexcept;

}  // namespace semilab::drivers::modbus

template <>
struct boost::system::is_error_code_enum<semilab::drivers::modbus::errc> : std::true_type {};
