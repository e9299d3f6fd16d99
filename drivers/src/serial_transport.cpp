// SCPI over a serial port (ASRL resources): Asio serial_port with the line settings of the
// resource, messages framed by the terminator like a raw socket (stream_link.hpp).
//
// Resync: a serial line cannot be "reconnected" to kill a late reply, so after an interrupted
// exchange the next async_ready() reads and discards input until the line has been quiet for
// transport_options::resync_quiet (at most two quiet windows in all), then flushes the
// driver's buffers. A reply later than that is still possible in principle (an instrument busy
// for longer than three timeouts); it would arrive as stray bytes before the next write, which
// the idle check (FIONREAD) also catches and discards, or right after the next command, where
// only an instrument-specific marker could tell it apart: the one limit of a serial line.
#include "stream_link.hpp"
#include "transports.hpp"

#include <boost/asio/serial_port.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>

#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

namespace semilab::drivers::detail {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;
using namespace std::chrono_literals;


class serial_transport final : public transport {
 public:
  serial_transport(asio::any_io_executor ex, serial_resource res, const transport_options& opt)
      : ex_(std::move(ex)),
        res_(std::move(res)),
        opt_(opt),
        port_(ex_),
        quiet_(ex_),
        link_(std::make_shared<stream_link<asio::serial_port>>(
            ex_, port_, opt_, false, [this, alive = alive_](error_code ec, bool stray) {
              if (*alive) observe(ec, stray);
            })) {}

  ~serial_transport() override {
    close();
    *alive_ = false;
  }

  bool ready_now() noexcept override { return port_.is_open() && !dirty_ && nothing_pending(); }

  void async_ready(handler h) override {
    if (!port_.is_open()) {
      if (auto ec = open(); ec) return asio::post(ex_, [h = std::move(h), ec] { h(ec); });
      return asio::post(ex_, [h = std::move(h)] { h({}); });
    }
    if (!dirty_ && nothing_pending()) return asio::post(ex_, [h = std::move(h)] { h({}); });
    if (!dirty_) ++self_resyncs_;  // unsolicited bytes on an idle line
    drain_started_ = std::chrono::steady_clock::now();
    drain(std::move(h));
  }

  void async_exchange(std::string_view message, bool read_reply, reply_handler h) override {
    link_->exchange(message, read_reply, std::move(h));
  }

  void interrupt() override {
    dirty_ = true;
    error_code ignored;
    port_.cancel(ignored);
    quiet_.cancel();
  }

  void close() override {
    interrupt();
    close_port();
  }

  bool is_open() const noexcept override { return port_.is_open(); }

  void async_read_stb(stb_handler h) override {
    asio::post(ex_, [h = std::move(h)] { h(make_error_code(errc::not_supported), 0); });
  }
  void async_clear(handler h) override {
    asio::post(ex_, [h = std::move(h)] { h(make_error_code(errc::not_supported)); });
  }

  std::string describe() const override {
    const char* flow = res_.flow == serial_resource::flow_control::rts_cts    ? "rtscts"
                       : res_.flow == serial_resource::flow_control::xon_xoff ? "xonxoff"
                                                                               : "none";
    return "serial " + path() + " " + std::to_string(res_.baud) + " " +
           std::to_string(res_.data_bits) + res_.parity + std::to_string(res_.stop_bits) +
           " flow " + flow + (port_.is_open() ? "" : " (closed)");
  }

  std::uint64_t self_resyncs() const noexcept override { return self_resyncs_; }
  std::uint64_t opens() const noexcept override { return opens_; }

 private:
  std::string path() const {
    return res_.board ? "/dev/ttyS" + std::to_string(*res_.board) : res_.device;
  }

  error_code open() {
    error_code ec;
    port_.open(path(), ec);
    if (ec) return ec;
    using sp = asio::serial_port_base;
    auto parity = res_.parity == 'E'   ? sp::parity::even
                  : res_.parity == 'O' ? sp::parity::odd
                                       : sp::parity::none;
    auto flow = res_.flow == serial_resource::flow_control::rts_cts    ? sp::flow_control::hardware
                : res_.flow == serial_resource::flow_control::xon_xoff ? sp::flow_control::software
                                                                        : sp::flow_control::none;
    auto stop = res_.stop_bits == 2 ? sp::stop_bits::two : sp::stop_bits::one;
    if (!ec) port_.set_option(sp::baud_rate(res_.baud), ec);
    if (!ec) port_.set_option(sp::character_size(res_.data_bits), ec);
    if (!ec) port_.set_option(sp::parity(parity), ec);
    if (!ec) port_.set_option(sp::stop_bits(stop), ec);
    if (!ec) port_.set_option(sp::flow_control(flow), ec);
    if (ec) {
      close_port();
      return ec;
    }
    ::tcflush(port_.native_handle(), TCIOFLUSH);  // whatever was queued belongs to nobody
    dirty_ = false;
    ++opens_;
    return {};
  }

  void observe(error_code ec, bool stray) {
    if (!ec && !stray) return;
    if (!ec) ++self_resyncs_;
    dirty_ = true;
    // A vanished adapter (unplugged USB-serial) is reopened by the next async_ready().
    if (ec && ec != asio::error::operation_aborted) close_port();
  }

  void close_port() {
    error_code ignored;
    port_.close(ignored);
    link_->reset();
  }

  // A non-blocking peek for unsolicited input (the port is non-blocking under Asio).
  bool nothing_pending() noexcept {
    int n = 0;
    return ::ioctl(port_.native_handle(), FIONREAD, &n) == 0 && n == 0;
  }

  void drain(handler h) {
    auto now = std::chrono::steady_clock::now();
    if (now - drain_started_ >= 2 * opt_.resync_quiet) return finish_drain(std::move(h));
    auto shared_h = std::make_shared<handler>(std::move(h));
    quiet_.expires_after(std::min<std::chrono::steady_clock::duration>(
        opt_.resync_quiet, drain_started_ + 2 * opt_.resync_quiet - now));
    quiet_.async_wait([this, alive = alive_](error_code ec) {
      if (!*alive || ec) return;
      error_code ignored;
      port_.cancel(ignored);  // the line was quiet: stop the read below
    });
    port_.async_read_some(asio::buffer(scratch_), [this, alive = alive_, shared_h](error_code ec,
                                                                                   std::size_t) {
      if (!*alive) return (*shared_h)(asio::error::operation_aborted);
      quiet_.cancel();
      if (ec == asio::error::operation_aborted && dirty_drain_cancelled()) {
        return finish_drain(std::move(*shared_h));
      }
      if (ec) {
        close_port();
        return (*shared_h)(ec);
      }
      drain(std::move(*shared_h));  // bytes arrived: wait for quiet again
    });
  }

  // True when the read was cancelled by the quiet timer rather than by interrupt()/close().
  bool dirty_drain_cancelled() const noexcept { return port_.is_open(); }

  void finish_drain(handler h) {
    ::tcflush(port_.native_handle(), TCIOFLUSH);
    link_->reset();
    dirty_ = false;
    h({});
  }

  asio::any_io_executor ex_;
  serial_resource res_;
  transport_options opt_;
  asio::serial_port port_;
  asio::steady_timer quiet_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::shared_ptr<stream_link<asio::serial_port>> link_;
  std::array<char, 4096> scratch_{};
  bool dirty_ = false;
  std::chrono::steady_clock::time_point drain_started_{};
  std::uint64_t self_resyncs_ = 0;
  std::uint64_t opens_ = 0;
};

}  // namespace

std::unique_ptr<transport> make_serial(asio::any_io_executor ex, serial_resource res,
                                       const transport_options& opt) {
  return std::make_unique<serial_transport>(std::move(ex), std::move(res), opt);
}

}  // namespace semilab::drivers::detail
