// Raw SCPI socket (TCPIP::host::port::SOCKET): LF-terminated messages over one TCP connection.
// Resync = close: a late reply dies with its connection (transport.hpp).
#include "stream_link.hpp"
#include "transports.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/version.hpp>

#include <sys/socket.h>
#include <time.h>

#include <cerrno>
#include <cstdint>

// No speculative receive after a command.
// After a command goes out its reply cannot be there yet (the instrument has to read, execute
// and answer; with both on one CPU it has not even run), yet Asio's async_read_some starts with
// a speculative recv() that fails with EAGAIN: one wasted system call per query. Asio's epoll
// reactor skips that recv when the descriptor's try_speculative_ flag is false, and sets the
// flag again for every readiness event it takes from epoll. Clearing the flag (under the
// descriptor's lock) before the command is written therefore sends the read after it straight
// to the reactor, and loses nothing:
//  - the reply arrives after the write, so its edge (EPOLLET) is taken after the flag was
//    cleared: with the read queued (which then receives it), or before the read is queued (by
//    another thread of the io_context), which sets the flag again, and the read receives at
//    once as usual;
//  - bytes that came earlier and whose edge went by with no read queued are what the idle peek
//    (ready_now) looks for before a command; within its window they are read together with the
//    reply (the extra bytes make the link dirty: resync). A peer that closed the connection
//    answers the command with a reset, an edge of its own (test_session_sim.cpp: "a query right
//    after the instrument closed the link fails at once"). Only a peer that half-closed and
//    still reads would be noticed at the deadline rather than at once.
// The public alternative, async_wait(wait_read) followed by a non-blocking receive, costs an
// epoll_ctl(EPOLL_CTL_MOD) per wait in Boost 1.81 instead (measured: one per query), so it saves
// nothing.
// This reaches private members of Asio's reactor (through explicit template instantiation, where
// access is not checked: [temp.spec.general]), so it is enabled only for the Boost version and
// reactor it was written and tested against; elsewhere reads stay speculative (one system call
// more, same behaviour).
#if BOOST_VERSION == 108100 && defined(BOOST_ASIO_HAS_EPOLL) && \
    !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT)
#include <boost/asio/detail/epoll_reactor.hpp>
#define SEMILAB_TCP_NO_SPECULATIVE_READ 1
#endif

namespace semilab::drivers::detail {

#ifdef SEMILAB_TCP_NO_SPECULATIVE_READ
namespace asio_epoll {
using reactor = boost::asio::detail::epoll_reactor;
using state = reactor::descriptor_state;
using lock_type = boost::asio::detail::conditionally_enabled_mutex;
template <class Tag, typename Tag::type Member>
struct grant {
  friend typename Tag::type member(Tag) { return Member; }
};
struct try_speculative {
  using type = bool (state::*)[reactor::max_ops];
  friend type member(try_speculative);
};
struct lock {
  using type = lock_type state::*;
  friend type member(lock);
};
template struct grant<try_speculative, &state::try_speculative_>;
template struct grant<lock, &state::mutex_>;

// basic_socket::impl_ is protected: a pointer to it formed in a derived class.
template <class Executor>
struct socket_impl : boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor> {
  static auto pointer() noexcept { return &socket_impl::impl_; }
};
}  // namespace asio_epoll

template <class Executor>
struct stream_hooks<boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor>> {
  static void before_command(
      boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor>& s) noexcept {
    using namespace asio_epoll;
    state* d = (s.*socket_impl<Executor>::pointer()).get_implementation().reactor_data_;
    if (!d) return;
    lock_type::scoped_lock held(d->*member(lock{}));
    (d->*member(try_speculative{}))[reactor::read_op] = false;
  }
};
#endif

}  // namespace semilab::drivers::detail

namespace semilab::drivers::detail {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;

// The coarse monotonic clock: a few ns through the vDSO where steady_clock costs ~25 ns on a
// VM; its resolution is one scheduler tick (1-10 ms), plenty for "a reply moments ago".
std::int64_t coarse_now_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// The socket's I/O executor is typed as the strand's own executor type when the session runs
// on an io_context strand (the agent's case): completions then enter the strand directly
// rather than through the type-erased any_io_executor (a few hundred instructions per query).
template <class Executor>
class tcp_transport final : public transport {
  using socket_type = asio::basic_stream_socket<tcp, Executor>;

 public:
  tcp_transport(Executor socket_ex, asio::any_io_executor ex, tcp_socket_resource res,
                const transport_options& opt)
      : ex_(std::move(ex)),
        res_(std::move(res)),
        opt_(opt),
        resolver_(ex_),
        socket_(std::move(socket_ex)),
        link_(std::make_shared<stream_link<socket_type>>(
            ex_, socket_, opt_, true, [this, alive = alive_](error_code ec, bool stray) {
              if (*alive) observe(ec, stray);
            })) {}

  ~tcp_transport() override {
    close();
    *alive_ = false;
  }

  // A connection that delivered a clean reply moments ago (in the same tick of the coarse
  // clock, at most a few ms) is not peeked again: the peek guards against what happens while a
  // link sits idle (the instrument closed it, or sent something unsolicited); a chain of queries
  // issued from completion handlers skips a system call each.
  bool ready_now() noexcept override {
    if (!socket_.is_open() || dirty_) return false;
    if (last_clean_ns_ == coarse_now_ns()) return true;
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
      last_clean_ns_ = coarse_now_ns();
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
  socket_type socket_;
  // Handlers of Asio operations may run after this transport is gone (the session keeps its
  // impl alive, not the transport): they check this flag before touching members.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::shared_ptr<stream_link<socket_type>> link_;
  bool dirty_ = false;
  std::int64_t last_clean_ns_ = -1;  // coarse clock, at the last clean reply
  std::uint64_t self_resyncs_ = 0;
  std::uint64_t opens_ = 0;

 public:
  tcp_transport(const tcp_transport&) = delete;
  tcp_transport& operator=(const tcp_transport&) = delete;
};

}  // namespace

std::unique_ptr<transport> make_tcp(asio::any_io_executor ex, tcp_socket_resource res,
                                    const transport_options& opt) {
  using io_strand = asio::strand<asio::io_context::executor_type>;
  if (const auto* strand = ex.target<io_strand>())
    return std::make_unique<tcp_transport<io_strand>>(*strand, ex, std::move(res), opt);
  return std::make_unique<tcp_transport<asio::any_io_executor>>(ex, ex, std::move(res), opt);
}

}  // namespace semilab::drivers::detail
