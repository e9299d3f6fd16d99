#pragma once
// Error values of the instrument layer. Asynchronous operations complete with an error_code;
// synchronous parsers and validators return result<T> whose error carries a human-readable
// message (which resource, which setting, which reply) next to the code.
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <string>
#include <type_traits>

namespace semilab::drivers {

enum class errc {
  ok = 0,
  bad_resource = 1,   // resource string malformed
  not_supported,      // well-formed, but no transport for it yet (distinct from a failure)
  timeout,            // an operation's deadline passed; the connection was closed
  reply_too_long,     // no terminator within the reply size limit; connection closed
  stray_data,         // bytes arrived that belong to no query; connection closed to resync
  bad_command,        // command text not sendable (contains the terminator, or a query via write)
  bad_reply,          // the instrument's reply does not parse
  instrument_error,   // the instrument reported an error in its error queue
  unknown_model,      // no model profile with that name
  wrong_model,        // *IDN? reply does not match the configured model
  bad_setting,        // model setting missing, unknown or out of range
  duplicate_model,    // two registry entries share a name
  backing_off,        // the last connect failed; no new attempt before the backoff delay ends
};

const boost::system::error_category& error_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

// An error with context. `message` names the thing that is wrong (resource, setting, reply) and
// never contains secrets.
struct error_info {
  boost::system::error_code code;
  std::string message;
};

error_info make_error(errc e, std::string message);

// boost::system::result calls this (found by ADL) when value() is used on an error.
[[noreturn]] void throw_exception_from_error(const error_info& e, const boost::source_location& loc);

template <class T>
using result = boost::system::result<T, error_info>;

}  // namespace semilab::drivers

template <>
struct boost::system::is_error_code_enum<semilab::drivers::errc> : std::true_type {};
