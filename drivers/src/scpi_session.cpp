#include <semilab/drivers/scpi_session.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>

#include <cerrno>
#include <deque>
#include <optional>

namespace semilab::drivers {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;

// Invariant: while busy_, exactly one Asio I/O operation (resolve, connect, write or read) is
// outstanding for queue_.front(), and that operation's completion is what finishes the op. Timeouts
// and cancel() only close the socket and record why; they never complete the op themselves. So no
// I/O of an old op can overlap a new op's buffers, and a late reply has no socket to arrive on.
struct scpi_session::impl : std::enable_shared_from_this<impl> {
  struct op {
    std::string wire;  // command + terminator, written in one write
    bool query = false;
    std::chrono::milliseconds timeout{0};
    query_handler handler;
  };

  impl(asio::any_io_executor ex, tcp_socket_resource res, options opt)
      : ex_(std::move(ex)),
        res_(std::move(res)),
        opt_(opt),
        resolver_(ex_),
        socket_(ex_),
        timer_(ex_) {}

  void enqueue(std::string cmd, bool query, std::chrono::milliseconds timeout,
               query_handler handler) {
    if (auto why = check_command(cmd, query); why) {
      asio::post(ex_, [h = std::move(handler), why] { h(make_error_code(why.value()), {}); });
      return;
    }
    cmd.push_back(opt_.termination);
    queue_.push_back(op{std::move(cmd), query, timeout.count() > 0 ? timeout : opt_.io_timeout,
                        std::move(handler)});
    start_next();
  }

  std::optional<errc> check_command(std::string_view cmd, bool query) const {
    if (cmd.empty() || cmd.find(opt_.termination) != std::string_view::npos)
      return errc::bad_command;
    if (!query) {
      char quote = 0;
      for (char c : cmd) {
        if (quote) {
          if (c == quote) quote = 0;
        } else if (c == '"' || c == '\'') {
          quote = c;
        } else if (c == '?') {
          return errc::bad_command;
        }
      }
    }
    return std::nullopt;
  }

  void start_next() {
    if (busy_ || queue_.empty()) return;
    busy_ = true;
    abort_reason_.clear();
    ++gen_;
    if (socket_.is_open() && !peer_idle()) close_socket(true);
    if (socket_.is_open()) {
      arm(queue_.front().timeout);
      do_write();
    } else {
      arm(opt_.connect_timeout);
      do_resolve();
    }
  }

  // An idle connection must have nothing to read. EOF means the instrument closed it; bytes mean
  // something unsolicited arrived. Either way reconnect before sending: nothing is lost, since
  // the command has not been sent yet.
  bool peer_idle() {
    char c = 0;
    ssize_t n = ::recv(socket_.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    return false;
  }

  void arm(std::chrono::milliseconds d) {
    timer_.expires_after(d);
    timer_.async_wait([self = shared_from_this(), g = gen_](error_code ec) {
      if (ec || g != self->gen_ || !self->busy_) return;
      self->abort_reason_ = make_error_code(errc::timeout);
      ++self->stats_.timeouts;
      self->shutdown_io();
    });
  }

  void shutdown_io() {
    resolver_.cancel();
    error_code ignored;
    socket_.close(ignored);
  }

  void close_socket(bool resync) {
    if (socket_.is_open() && resync) ++stats_.resyncs;
    error_code ignored;
    socket_.close(ignored);
    rbuf_.clear();
  }

  void do_resolve() {
    resolver_.async_resolve(
        res_.host, std::to_string(res_.port), tcp::resolver::numeric_service,
        [self = shared_from_this()](error_code ec, tcp::resolver::results_type results) {
          if (ec) return self->finish(ec, {});
          if (self->abort_reason_) return self->finish(asio::error::operation_aborted, {});
          asio::async_connect(self->socket_, results,
                              [self](error_code ec2, const tcp::endpoint&) {
                                self->on_connect(ec2);
                              });
        });
  }

  void on_connect(error_code ec) {
    if (ec) return finish(ec, {});
    error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);  // traps.md: Nagle costs 40 ms per query
    ++stats_.connects;
    rbuf_.clear();
    arm(queue_.front().timeout);
    do_write();
  }

  void do_write() {
    asio::async_write(socket_, asio::buffer(queue_.front().wire),
                      [self = shared_from_this()](error_code ec, std::size_t) {
                        if (ec) return self->finish(ec, {});
                        if (!self->queue_.front().query) return self->finish({}, {});
                        self->do_read();
                      });
  }

  void do_read() {
    asio::async_read_until(
        socket_, asio::dynamic_buffer(rbuf_, opt_.max_reply_bytes), opt_.termination,
        [self = shared_from_this()](error_code ec, std::size_t n) {
          if (ec == asio::error::not_found) ec = make_error_code(errc::reply_too_long);
          if (ec) return self->finish(ec, {});
          std::string reply = self->rbuf_.substr(0, n - 1);
          self->rbuf_.erase(0, n);
          if (self->opt_.termination == '\n' && !reply.empty() && reply.back() == '\r')
            reply.pop_back();
          // More than one message for one query: the stream cannot be trusted any more.
          if (!self->rbuf_.empty()) self->close_socket(true);
          self->finish({}, std::move(reply));
        });
  }

  void finish(error_code ec, std::string reply) {
    timer_.cancel();
    ++gen_;
    if (ec) {
      if (abort_reason_) ec = abort_reason_;
      close_socket(true);
      reply.clear();
    }
    op done = std::move(queue_.front());
    queue_.pop_front();
    busy_ = false;
    done.handler(ec, std::move(reply));
    start_next();
  }

  void cancel() {
    // Queued ops that never started complete now; the in-flight one completes when its I/O
    // returns (after the close below), keeping the single-outstanding-I/O invariant.
    std::deque<op> waiting;
    if (busy_) {
      waiting.assign(std::make_move_iterator(queue_.begin() + 1),
                     std::make_move_iterator(queue_.end()));
      queue_.erase(queue_.begin() + 1, queue_.end());
      abort_reason_ = asio::error::operation_aborted;
      shutdown_io();
    } else {
      waiting.swap(queue_);
    }
    for (auto& o : waiting)
      asio::post(ex_, [h = std::move(o.handler)] { h(asio::error::operation_aborted, {}); });
  }

  asio::any_io_executor ex_;
  tcp_socket_resource res_;
  options opt_;
  tcp::resolver resolver_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  std::deque<op> queue_;  // front() is in flight while busy_
  bool busy_ = false;
  std::uint64_t gen_ = 0;      // identifies the current op for the deadline timer
  error_code abort_reason_;    // why the in-flight op's socket was closed (timeout, aborted)
  std::string rbuf_;
  counters stats_;
};

scpi_session::scpi_session(asio::any_io_executor ex, tcp_socket_resource res, options opt)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(res), opt)) {}

scpi_session::scpi_session(asio::any_io_executor ex, tcp_socket_resource res)
    : scpi_session(std::move(ex), std::move(res), options{}) {}

scpi_session::~scpi_session() { close(); }

void scpi_session::async_write(std::string cmd, write_handler handler,
                               std::chrono::milliseconds timeout) {
  impl_->enqueue(std::move(cmd), false, timeout,
                 [h = std::move(handler)](error_code ec, std::string) { h(ec); });
}

void scpi_session::async_query(std::string cmd, query_handler handler,
                               std::chrono::milliseconds timeout) {
  impl_->enqueue(std::move(cmd), true, timeout, std::move(handler));
}

void scpi_session::cancel() { impl_->cancel(); }

void scpi_session::close() {
  impl_->cancel();
  if (!impl_->busy_) impl_->close_socket(false);
}

const asio::any_io_executor& scpi_session::get_executor() const noexcept { return impl_->ex_; }
bool scpi_session::is_open() const noexcept { return impl_->socket_.is_open(); }
const scpi_session::counters& scpi_session::stats() const noexcept { return impl_->stats_; }
const tcp_socket_resource& scpi_session::resource() const noexcept { return impl_->res_; }

}  // namespace semilab::drivers
