// Raw SCPI socket (TCPIP::host::port::SOCKET): LF-terminated messages over one TCP connection.
// Resync = close: a late reply dies with its connection (transport.hpp).
#include "stream_link.hpp"
#include "transports.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <sys/socket.h>

#include <cerrno>

namespace semilab::drivers::detail {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;

constexpr auto kFreshReply = std::chrono::microseconds(500);

class tcp_transport final : public transport {
 public:
  tcp_transport(asio::any_io_executor ex, tcp_socket_resource res, const transport_options& opt)
      : ex_(std::move(ex)),
        res_(std::move(res)),
        opt_(opt),
        resolver_(ex_),
        socket_(ex_),
        link_(std::make_shared<stream_link<tcp::socket>>(
            ex_, socket_, opt_, true, [this, alive = alive_](error_code ec, bool stray) {
              if (*alive) observe(ec, stray);
            })) {}

  ~tcp_transport() override {
    close();
    *alive_ = false;
  }

  // A connection that delivered a clean reply moments ago is not peeked again: the peek guards
  // against what happens while a link sits idle (the instrument closed it, or sent something
  // unsolicited); a chain of queries issued from completion handlers skips a system call each.
  bool ready_now() noexcept override {
    if (!socket_.is_open() || dirty_) return false;
    if (std::chrono::steady_clock::now() - last_clean_ < kFreshReply) return true;
    return peer_idle();
  }

  void async_ready(handler h) override {
    if (socket_.is_open() && !dirty_) {
      if (peer_idle()) return asio::post(ex_, [h = std::move(h)] { h({}); });
      ++self_resyncs_;  // EOF or unsolicited bytes on an idle connection
    }
    close_socket();
    auto alive = alive_;
    resolver_.async_resolve(
        res_.host, std::to_string(res_.port), tcp::resolver::numeric_service,
        [this, alive, h = std::move(h)](error_code ec, tcp::resolver::results_type results) mutable {
          if (!*alive) return h(asio::error::operation_aborted);
          if (ec) return h(ec);
          asio::async_connect(socket_, results,
                              [this, alive, h = std::move(h)](error_code ec2, const tcp::endpoint&) {
                                if (!*alive) return h(asio::error::operation_aborted);
                                if (ec2) {
                                  close_socket();
                                  return h(ec2);
                                }
                                error_code ignored;
                                // traps.md: Nagle costs 40 ms per query
                                socket_.set_option(tcp::no_delay(true), ignored);
                                socket_.non_blocking(true, ignored);  // stream_link writes first
                                dirty_ = false;
                                ++opens_;
                                h({});
                              });
        });
  }

  void async_exchange(std::string_view message, bool read_reply, reply_handler h) override {
    link_->exchange(message, read_reply, std::move(h));
  }

  void interrupt() override {
    dirty_ = true;
    resolver_.cancel();
    error_code ignored;
    socket_.close(ignored);
  }

  void close() override {
    interrupt();
    link_->reset();
  }

  bool is_open() const noexcept override { return socket_.is_open(); }

  // A raw socket has no channel besides the message stream: *STB? and *CLS instead.
  void async_read_stb(stb_handler h) override {
    asio::post(ex_, [h = std::move(h)] { h(make_error_code(errc::not_supported), 0); });
  }
  void async_clear(handler h) override {
    asio::post(ex_, [h = std::move(h)] { h(make_error_code(errc::not_supported)); });
  }

  std::string describe() const override {
    std::string d = "tcp " + res_.host + ":" + std::to_string(res_.port);
    error_code ec;
    if (socket_.is_open()) {
      auto local = socket_.local_endpoint(ec);
      if (!ec) d += " from " + local.address().to_string() + ":" + std::to_string(local.port());
      d += " nodelay";
    } else {
      d += " (closed)";
    }
    return d;
  }

  std::uint64_t self_resyncs() const noexcept override { return self_resyncs_; }
  std::uint64_t opens() const noexcept override { return opens_; }

 private:
  // An idle connection must have nothing to read. EOF means the instrument closed it; bytes mean
  // something unsolicited arrived. Either way reconnect before sending: nothing is lost, since
  // the command has not been sent yet.
  bool peer_idle() noexcept {
    char c = 0;
    ssize_t n = ::recv(socket_.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    return false;
  }

  void observe(error_code ec, bool stray) {
    if (ec || stray) {
      if (!ec) ++self_resyncs_;
      dirty_ = true;
    } else {
      last_clean_ = std::chrono::steady_clock::now();
    }
  }

  void close_socket() {
    error_code ignored;
    socket_.close(ignored);
    link_->reset();
  }

  asio::any_io_executor ex_;
  tcp_socket_resource res_;
  transport_options opt_;
  tcp::resolver resolver_;
  tcp::socket socket_;
  // Handlers of Asio operations may run after this transport is gone (the session keeps its
  // impl alive, not the transport): they check this flag before touching members.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::shared_ptr<stream_link<tcp::socket>> link_;
  bool dirty_ = false;
  std::chrono::steady_clock::time_point last_clean_{};
  std::uint64_t self_resyncs_ = 0;
  std::uint64_t opens_ = 0;

 public:
  tcp_transport(const tcp_transport&) = delete;
  tcp_transport& operator=(const tcp_transport&) = delete;
};

}  // namespace

std::unique_ptr<transport> make_tcp(asio::any_io_executor ex, tcp_socket_resource res,
                                    const transport_options& opt) {
  return std::make_unique<tcp_transport>(std::move(ex), std::move(res), opt);
}

}  // namespace semilab::drivers::detail
