#pragma once
#include <boost/system/error_code.hpp>

namespace semilab::sync {

// Errors of the outbox and sync engine.
enum class errc { ok = 0, storage = 1, closed, agent_mismatch, bad_record, quota };
const boost::system::error_category& error_category() noexcept;
inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace semilab::sync

template <>
struct boost::system::is_error_code_enum<semilab::sync::errc> : std::true_type {};
