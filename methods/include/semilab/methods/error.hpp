#pragma once
// Error values of the analysis library: every extraction returns result<T> whose error carries a
// code (for programs) and a message naming the reason (for people), e.g. "diode-iv: point 37
// (I = 0.01 A) is compliance-flagged inside the fit window". Nothing here throws except value()
// on an error, as boost::system::result does.
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>
#include <string>
#include <type_traits>

namespace semilab::methods {

enum class errc {
  ok = 0,
  insufficient_data = 1,  // too few usable points (after excluding flagged ones)
  flagged_in_window,      // a compliance / over-range point lies inside the fit window
  non_monotonic,          // the swept axis is not monotonic where the method needs it
  bad_input,              // a parameter is missing, non-finite or out of its domain
  no_crossing,            // the curve never reaches the level the method interpolates at
  no_convergence,         // an iterative solver did not converge
  degenerate_fit,         // the least-squares system is singular
  bad_recipe,             // a recipe file failed validation
};

const boost::system::error_category& error_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

// The error of a failed extraction or recipe load.
struct error {
  boost::system::error_code code;
  std::string message;
};

// For boost::system::result<T, error>::value() on an error.
[[noreturn]] void throw_exception_from_error(const error& e, const boost::source_location& loc);

template <class T>
using result = boost::system::result<T, error>;

inline error make_error(errc c, std::string message) {
  return {make_error_code(c), std::move(message)};
}

}  // namespace semilab::methods

template <>
struct boost::system::is_error_code_enum<semilab::methods::errc> : std::true_type {};
