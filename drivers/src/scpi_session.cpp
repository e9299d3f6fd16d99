#include <semilab/drivers/backoff.hpp>
#include <semilab/drivers/scpi_reply.hpp>
#include <semilab/drivers/scpi_session.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
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
    std::chrono::steady_clock::time_point started{};
    std::chrono::system_clock::time_point started_wall{};
  };
  using clock = std::chrono::steady_clock;

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
    queue_.front().started = clock::now();
    queue_.front().started_wall = std::chrono::system_clock::now();
    if (socket_.is_open() && !peer_idle()) close_socket(true);
    if (!socket_.is_open() && opt_.backoff && clock::now() < next_connect_) {
      // No I/O: complete from the executor (never from inside the caller). The deadline still
      // belongs to this op, so a timer left armed by the previous op cannot misfire on it.
      ++stats_.backoff_rejects;
      arm(queue_.front().timeout);
      asio::post(ex_, [self = shared_from_this(), g = gen_] {
        if (g == self->gen_) self->finish(make_error_code(errc::backing_off), {});
      });
      return;
    }
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

  // Deadlines: one steady_timer serves every operation. arm() only records the deadline and
  // re-arms the timer when it would fire too late (or is not armed); a timer that fires before
  // the current deadline re-arms itself. So a chain of fast queries costs no timer system call
  // per query, and a deadline is never missed: the armed expiry is always <= deadline_.
  void arm(std::chrono::milliseconds d) {
    deadline_ = clock::now() + d;
    if (timer_armed_ && timer_expiry_ <= deadline_) return;
    start_timer(deadline_);
  }

  void start_timer(clock::time_point at) {
    timer_armed_ = true;
    timer_expiry_ = at;
    timer_.expires_at(at);  // cancels an earlier wait: its handler sees another timer_gen_
    timer_.async_wait([self = shared_from_this(), tg = ++timer_gen_](error_code ec) {
      if (ec || tg != self->timer_gen_) return;
      self->timer_armed_ = false;
      if (!self->busy_) return;
      if (clock::now() < self->deadline_) return self->start_timer(self->deadline_);
      self->abort_reason_ = make_error_code(errc::timeout);
      ++self->stats_.timeouts;
      self->shutdown_io();
    });
  }

  // Going idle: release the timer so an io_context with nothing else to do returns.
  void stop_timer() {
    if (!timer_armed_) return;
    timer_armed_ = false;
    ++timer_gen_;
    timer_.cancel();
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
          if (ec) {
            self->connect_failed();
            return self->finish(ec, {});
          }
          if (self->abort_reason_) return self->finish(asio::error::operation_aborted, {});
          asio::async_connect(self->socket_, results,
                              [self](error_code ec2, const tcp::endpoint&) {
                                self->on_connect(ec2);
                              });
        });
  }

  void connect_failed() {
    ++stats_.connect_failures;
    // A cancel() is not the instrument's fault.
    if (abort_reason_ == asio::error::operation_aborted) return;
    next_connect_ = clock::now() + backoff_.next();
  }

  void on_connect(error_code ec) {
    if (ec) {
      connect_failed();
      return finish(ec, {});
    }
    backoff_.reset();
    next_connect_ = {};
    error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);  // traps.md: Nagle costs 40 ms per query
    socket_.non_blocking(true, ignored);  // see do_write / read_ready
    ++stats_.connects;
    rbuf_.clear();
    arm(queue_.front().timeout);
    do_write();
  }

  // The socket is non-blocking. A command is first sent with one send() from here (it nearly
  // always fits the socket buffer), which saves a completion round trip per query; the rest,
  // if any, goes through async_write. Completions that would otherwise run inside the caller's
  // async_write/async_query are posted (no re-entrancy), keyed on gen_ like the backoff path.
  void do_write() {
    const std::string& wire = queue_.front().wire;
    error_code ec;
    std::size_t sent = socket_.write_some(asio::buffer(wire), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      sent = 0;
      ec = {};
    }
    if (ec) return post_finish(ec);
    if (sent < wire.size()) {
      asio::async_write(socket_, asio::buffer(wire.data() + sent, wire.size() - sent),
                        [self = shared_from_this()](error_code wec, std::size_t) {
                          if (wec) return self->finish(wec, {});
                          if (!self->queue_.front().query) return self->finish({}, {});
                          self->do_read();
                        });
      return;
    }
    if (!queue_.front().query) return post_finish({});
    do_read();
  }

  void post_finish(error_code ec) {
    asio::post(ex_, [self = shared_from_this(), g = gen_, ec] {
      if (g == self->gen_) self->finish(ec, {});
    });
  }

  // Runs from do_write (possibly inside the caller) or from a completion handler. It never
  // completes the operation itself unless rbuf_ already holds data, which only happens in
  // completion handlers (rbuf_ is empty when an operation starts).
  void do_read() {
    // Whatever is already buffered may complete the message. Then read more.
    switch (framer_.feed(rbuf_)) {
      case reply_framer::status::complete: return deliver();
      case reply_framer::status::too_long:
        return finish(make_error_code(errc::reply_too_long), {});
      case reply_framer::status::need_more: break;
    }
    // Read into a persistent chunk, then append what arrived: growing rbuf_ by a whole chunk
    // per read would zero-fill 64 KiB for every short reply.
    std::size_t room = opt_.max_reply_bytes + 2 - std::min(rbuf_.size(), opt_.max_reply_bytes + 1);
    std::size_t chunk = std::min(room, chunk_.size());
    socket_.async_read_some(asio::buffer(chunk_.data(), chunk),
                            [self = shared_from_this()](error_code ec, std::size_t n) {
                              if (ec) return self->finish(ec, {});
                              self->rbuf_.append(self->chunk_.data(), n);
                              self->bytes_in_ += n;
                              self->do_read();
                            });
  }

  void deliver() {
    std::size_t n = framer_.message_size();
    std::string reply = rbuf_.substr(0, n);
    if (opt_.termination == '\n' && framer_.cr_before_terminator()) reply.pop_back();
    rbuf_.erase(0, n + 1);
    // More than one message for one query: the stream cannot be trusted any more.
    if (!rbuf_.empty()) close_socket(true);
    finish({}, std::move(reply));
  }

  void finish(error_code ec, std::string reply) {
    ++gen_;
    if (ec) {
      if (abort_reason_) ec = abort_reason_;
      close_socket(true);
      reply.clear();
    }
    op done = std::move(queue_.front());
    queue_.pop_front();
    busy_ = false;
    record(done, ec);
    framer_ = reply_framer(opt_.termination, opt_.max_reply_bytes);
    bytes_in_ = 0;
    done.handler(ec, std::move(reply));
    start_next();
    if (!busy_) stop_timer();
  }

  void record(const op& done, error_code ec) {
    if (opt_.history == 0) return;
    transaction t;
    t.time = done.started_wall;
    std::string_view cmd(done.wire);
    cmd.remove_suffix(1);  // terminator
    t.command = std::string(cmd.substr(0, 64));
    t.bytes_out = done.wire.size();
    t.bytes_in = bytes_in_;
    t.duration = std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - done.started);
    t.outcome = ec;
    if (ring_.size() < opt_.history) {
      ring_.push_back(std::move(t));
    } else {
      ring_[ring_next_] = std::move(t);
      ring_next_ = (ring_next_ + 1) % opt_.history;
    }
  }

  void cancel() {
    if (!busy_) stop_timer();
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
  std::uint64_t gen_ = 0;      // identifies the current op (for posted completions)
  clock::time_point deadline_{};       // of the operation in flight
  clock::time_point timer_expiry_{};   // what timer_ is armed for, while timer_armed_
  bool timer_armed_ = false;
  std::uint64_t timer_gen_ = 0;        // identifies the latest wait on timer_
  error_code abort_reason_;    // why the in-flight op's socket was closed (timeout, aborted)
  std::string rbuf_;
  std::vector<char> chunk_ = std::vector<char>(64 * 1024);
  counters stats_;
  reply_framer framer_{opt_.termination, opt_.max_reply_bytes};
  std::size_t bytes_in_ = 0;
  reconnect_backoff backoff_;
  clock::time_point next_connect_{};
  std::vector<transaction> ring_;
  std::size_t ring_next_ = 0;  // oldest entry once the ring is full
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

std::vector<scpi_session::transaction> scpi_session::recent() const {
  const auto& r = impl_->ring_;
  std::vector<transaction> out;
  out.reserve(r.size());
  for (std::size_t i = 0; i < r.size(); ++i) out.push_back(r[(impl_->ring_next_ + i) % r.size()]);
  return out;
}

std::chrono::milliseconds scpi_session::backoff_remaining() const noexcept {
  auto now = impl::clock::now();
  if (impl_->socket_.is_open() || now >= impl_->next_connect_) return std::chrono::milliseconds{0};
  return std::chrono::ceil<std::chrono::milliseconds>(impl_->next_connect_ - now);
}

}  // namespace semilab::drivers
