#include "transports.hpp"

#include <type_traits>
#include <variant>

namespace semilab::drivers {

result<std::unique_ptr<transport>> make_transport(boost::asio::any_io_executor ex,
                                                  const resource& res,
                                                  const transport_options& opt) {
  return std::visit(
      [&](const auto& r) -> result<std::unique_ptr<transport>> {
        using T = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<T, tcp_socket_resource>) {
          return detail::make_tcp(ex, r, opt);
        } else if constexpr (std::is_same_v<T, tcpip_instr_resource>) {
          if (auto ok = require_openable(res); !ok) return ok.error();  // HiSLIP
          return detail::make_vxi11(ex, r, opt);
        } else if constexpr (std::is_same_v<T, usb_resource>) {
          return detail::make_usbtmc(ex, r, opt);
        } else if constexpr (std::is_same_v<T, serial_resource>) {
          return detail::make_serial(ex, r, opt);
        } else {
          return make_error(errc::not_supported,
                            "resource '" + to_string(res) + "': " + std::string(kind_name(res)) +
                                " is not a message-based (SCPI) resource; Modbus resources are "
                                "polled through a register map");
        }
      },
      res);
}

std::unique_ptr<transport> make_tcp_transport(boost::asio::any_io_executor ex,
                                              tcp_socket_resource res,
                                              const transport_options& opt) {
  return detail::make_tcp(std::move(ex), std::move(res), opt);
}

}  // namespace semilab::drivers
