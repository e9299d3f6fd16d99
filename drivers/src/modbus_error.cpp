#include <semilab/drivers/modbus_error.hpp>

namespace semilab::drivers::modbus {
namespace {

class category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "semilab.modbus"; }
  std::string message(int ev) const override {
    if (ev > static_cast<int>(errc::exception_base))
      return "Modbus exception: " +
             exception_name(static_cast<unsigned>(ev - static_cast<int>(errc::exception_base)));
    switch (static_cast<errc>(ev)) {
      case errc::ok: return "ok";
      case errc::bad_map: return "bad Modbus register map";
      case errc::unknown_point: return "unknown Modbus point";
      case errc::unknown_profile: return "unknown Modbus profile";
      case errc::bad_value: return "value does not fit the point";
      case errc::not_writable: return "point is not writable";
      case errc::out_of_range: return "value out of range";
      case errc::readback_mismatch: return "read-back differs from the written value";
      case errc::timeout: return "Modbus response timeout";
      case errc::link_down: return "Modbus link down";
      case errc::bad_frame: return "malformed Modbus reply";
      case errc::io_error: return "Modbus transport error";
      case errc::exception_base: break;
    }
    return "unknown semilab.modbus error";
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

std::string exception_name(unsigned code) {
  switch (code) {
    case 1: return "illegal function (01)";
    case 2: return "illegal data address (02)";
    case 3: return "illegal data value (03)";
    case 4: return "server device failure (04)";
    case 5: return "acknowledge (05)";
    case 6: return "server device busy (06)";
    case 7: return "negative acknowledge (07)";
    case 8: return "memory parity error (08)";
    case 10: return "gateway path unavailable (0A)";
    case 11: return "gateway target device failed to respond (0B)";
  }
  return "exception code " + std::to_string(code);
}

unsigned exception_of(const boost::system::error_code& ec) noexcept {
  if (ec.category() != error_category()) return 0;
  int v = ec.value() - static_cast<int>(errc::exception_base);
  return v > 0 ? static_cast<unsigned>(v) : 0;
}

}  // namespace semilab::drivers::modbus
