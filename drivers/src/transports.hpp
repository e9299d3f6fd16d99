#pragma once
// Constructors of the concrete transports (transport.hpp), one source file each. Only
// transport.cpp (make_transport) and tests call these.
#include <semilab/drivers/transport.hpp>

namespace semilab::drivers::detail {

// tcp_transport.cpp
std::unique_ptr<transport> make_tcp(boost::asio::any_io_executor ex, tcp_socket_resource res,
                                    const transport_options& opt);
// vxi11_transport.cpp: portmapper GETPORT, then the core channel.
std::unique_ptr<transport> make_vxi11(boost::asio::any_io_executor ex, tcpip_instr_resource res,
                                      const transport_options& opt);
// usbtmc_transport.cpp: libusb-1.0, its own event thread.
std::unique_ptr<transport> make_usbtmc(boost::asio::any_io_executor ex, usb_resource res,
                                       const transport_options& opt);
// serial_transport.cpp: Asio serial_port.
std::unique_ptr<transport> make_serial(boost::asio::any_io_executor ex, serial_resource res,
                                       const transport_options& opt);

}  // namespace semilab::drivers::detail
