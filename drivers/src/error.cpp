#include <semilab/drivers/error.hpp>

#include <boost/system/system_error.hpp>
#include <boost/throw_exception.hpp>

namespace semilab::drivers {
namespace {

class category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "semilab.drivers"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::ok: return "ok";
      case errc::bad_resource: return "malformed resource string";
      case errc::not_supported: return "not supported yet";
      case errc::timeout: return "instrument operation timed out";
      case errc::reply_too_long: return "instrument reply too long";
      case errc::stray_data: return "unexpected bytes from instrument";
      case errc::bad_command: return "command cannot be sent";
      case errc::bad_reply: return "instrument reply does not parse";
      case errc::instrument_error: return "instrument reported an error";
      case errc::unknown_model: return "unknown instrument model";
      case errc::wrong_model: return "instrument identity does not match the model";
      case errc::bad_setting: return "bad model setting";
      case errc::duplicate_model: return "duplicate model name";
      case errc::backing_off: return "instrument unreachable; waiting before the next connect attempt";
    }
    return "unknown semilab.drivers error";
  }
};

}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const category kCategory;
  return kCategory;
}

error_info make_error(errc e, std::string message) {
  return error_info{make_error_code(e), std::move(message)};
}

void throw_exception_from_error(const error_info& e, const boost::source_location& loc) {
  boost::throw_exception(boost::system::system_error(e.code, e.message), loc);
}

}  // namespace semilab::drivers
