#pragma once
// One link to a message-based instrument, as the SCPI session (scpi_session.hpp) drives it:
// raw TCP socket, VXI-11 core channel, USBTMC/USB488 over libusb, or a serial port.
//
// Threading contract: every member function is called on the executor passed at construction
// (the instrument's strand); every handler runs there, posted, never from inside the call that
// started the operation. At most one operation (async_ready / async_exchange / async_read_stb /
// async_clear) is outstanding at a time; the session guarantees that.
//
// Deadlines belong to the session: it arms one timer per operation and, when it fires (or on
// cancel()), calls interrupt(). interrupt() must make the outstanding operation complete soon
// (with any error; the session reports timeout or operation_aborted itself) and leave the link
// "dirty". The next async_ready() then resynchronises before anything else is sent, so a reply
// that arrives late can never be handed to a later query:
//   raw TCP   close the socket (the late reply dies with the connection), reconnect;
//   VXI-11    reconnect the core channel, create_link, device_clear (the instrument's output
//             queue is shared by links, so the new link must clear it);
//   USBTMC    INITIATE_ABORT_BULK_IN/OUT + CHECK_* for the failed bTag, then INITIATE_CLEAR +
//             CHECK_CLEAR_STATUS; after an unplug, find the device again by VID/PID/serial;
//   serial    discard input until the line has been quiet, flush, send nothing.
#include <semilab/drivers/error.hpp>
#include <semilab/drivers/visa_resource.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace semilab::drivers {

struct transport_options {
  char termination = '\n';                 // message terminator (stream links; TermChar on USB)
  std::size_t max_reply_bytes = 1 << 20;   // a longer reply fails with errc::reply_too_long
  std::chrono::milliseconds connect_timeout{2000};  // informational; the session enforces it
  // Serial resync: input is discarded until the line has been quiet this long (the session sets
  // it from its I/O timeout: an instrument that did not answer within the timeout gets as long
  // again to finish a late reply before the next command goes out).
  std::chrono::milliseconds resync_quiet{500};
  // Overrides for tests: VXI-11 portmapper port (111 by default).
  std::uint16_t portmapper_port = 111;
};

// How long async_ready() may take: connect_timeout plus two resync_quiet windows (a serial drain
// waits for quiet, at most twice; VXI-11 and USBTMC clear within the same allowance).
[[nodiscard]] inline std::chrono::milliseconds ready_deadline(const transport_options& o) noexcept {
  return o.connect_timeout + 2 * o.resync_quiet;
}

class transport {
 public:
  using handler = std::function<void(boost::system::error_code)>;
  // reply: one complete message without its terminator (a CR before an LF terminator is dropped
  // too); empty when the exchange wrote only or failed.
  using reply_handler = std::function<void(boost::system::error_code, std::string)>;
  using stb_handler = std::function<void(boost::system::error_code, std::uint8_t)>;

  virtual ~transport() = default;

  // Make the link usable: open it when closed (connect, create_link, claim the interface) and
  // resynchronise it when dirty. Errors here are connection-class: the session backs off.
  // Completes at once (posted) when the link is open and clean. The session's deadline for it
  // is ready_deadline(opt) (connect + resync), after which it calls interrupt().
  virtual void async_ready(handler h) = 0;
  // True when async_ready() would have nothing to do: the session then skips it (saves a posted
  // completion per operation on a fast link). The default always asks for async_ready().
  [[nodiscard]] virtual bool ready_now() noexcept { return false; }

  // Send one whole message (`message` has no terminator: stream links append it, message links
  // send it with END/EOM, adding the terminator too when the instrument expects one), then, when
  // `read_reply`, read one whole reply. Errors: errc::reply_too_long, errc::stray_data, I/O
  // errors; on any error the link is left dirty.
  virtual void async_exchange(std::string_view message, bool read_reply, reply_handler h) = 0;

  // See the header comment. Safe to call when nothing is outstanding (then: mark dirty).
  virtual void interrupt() = 0;

  // Release everything (socket, link, interface). Outstanding operations complete with an error.
  virtual void close() = 0;

  [[nodiscard]] virtual bool is_open() const noexcept = 0;

  // Status byte read outside the message stream (VXI-11 device_readstb, USBTMC
  // READ_STATUS_BYTE). errc::not_supported where the link has none (raw TCP, serial): use *STB?.
  virtual void async_read_stb(stb_handler h) = 0;
  // Device clear outside the message stream (VXI-11 device_clear, USBTMC INITIATE_CLEAR).
  // errc::not_supported where the link has none.
  virtual void async_clear(handler h) = 0;

  // One line for probe and logs: "tcp 127.0.0.1:5025 nodelay", "vxi11 host inst0 link 3 ...".
  [[nodiscard]] virtual std::string describe() const = 0;
  // Successful opens so far (connect + create_link, claim, ...): the session counts a change as
  // a new connection, which drivers take as "re-apply the configuration".
  [[nodiscard]] virtual std::uint64_t opens() const noexcept { return 0; }
  // Resynchronisations the link did on its own (stray bytes, unsolicited data before a write).
  [[nodiscard]] virtual std::uint64_t self_resyncs() const noexcept { return 0; }
};

// A transport for any message-based resource (tcp_socket_resource, tcpip_instr_resource,
// usb_resource, serial_resource). Modbus resources are errc::not_supported here.
[[nodiscard]] result<std::unique_ptr<transport>> make_transport(boost::asio::any_io_executor ex,
                                                                const resource& res,
                                                                const transport_options& opt);

// The raw TCP transport, for tests and for make_transport.
[[nodiscard]] std::unique_ptr<transport> make_tcp_transport(boost::asio::any_io_executor ex,
                                                            tcp_socket_resource res,
                                                            const transport_options& opt);

}  // namespace semilab::drivers
