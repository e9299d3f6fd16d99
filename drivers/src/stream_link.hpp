#pragma once
// Exchange over a byte stream (raw TCP socket, serial port): the message plus terminator goes out
// in one write, the reply is framed by reply_framer (a terminator inside a definite block is
// data). Shared by tcp_transport.cpp and serial_transport.cpp.
//
// The stream must be non-blocking where `try_write_first` is used (TCP): the command is first
// sent with one write_some from the caller's context, which saves a completion round trip per
// query; whatever did not fit goes through async_write. Completions are always posted or come
// from Asio completion handlers, never from inside exchange().
#include <semilab/drivers/scpi_reply.hpp>
#include <semilab/drivers/transport.hpp>

#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace semilab::drivers::detail {

template <class Stream>
class stream_link : public std::enable_shared_from_this<stream_link<Stream>> {
 public:
  // `observer` sees every outcome (error, or success with or without stray bytes) before the
  // exchange's handler runs: the transport keeps its dirty/clean state there, with no wrapper
  // around each handler.
  using observer = std::function<void(boost::system::error_code ec, bool stray)>;
  stream_link(boost::asio::any_io_executor ex, Stream& stream, const transport_options& opt,
              bool try_write_first, observer obs)
      : ex_(std::move(ex)),
        stream_(stream),
        opt_(opt),
        write_first_(try_write_first),
        observer_(std::move(obs)) {}

  // Bytes left in the buffer after a reply: the stream is out of step (the caller resyncs).
  [[nodiscard]] bool stray() const noexcept { return stray_; }
  void reset() {
    rbuf_.clear();
    stray_ = false;
  }

  void exchange(std::string_view message, bool read_reply, transport::reply_handler h) {
    handler_ = std::move(h);
    read_reply_ = read_reply;
    framer_ = reply_framer(opt_.termination, opt_.max_reply_bytes);
    wire_.assign(message);
    wire_.push_back(opt_.termination);
    std::size_t sent = 0;
    if (write_first_) {
      boost::system::error_code ec;
      sent = stream_.write_some(boost::asio::buffer(wire_), ec);
      if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) {
        sent = 0;
        ec = {};
      }
      if (ec) return post_done(ec);
    }
    if (sent < wire_.size()) {
      boost::asio::async_write(
          stream_, boost::asio::buffer(wire_.data() + sent, wire_.size() - sent),
          [self = this->shared_from_this()](boost::system::error_code ec, std::size_t) {
            if (ec) return self->done(ec, {});
            if (!self->read_reply_) return self->done({}, {});
            self->read();
          });
      return;
    }
    if (!read_reply_) return post_done({});
    read();
  }

 private:
  void post_done(boost::system::error_code ec) {
    boost::asio::post(ex_, [self = this->shared_from_this(), ec] { self->done(ec, {}); });
  }

  // Runs from exchange() (possibly inside the caller) or from a completion handler. It completes
  // the exchange directly only when rbuf_ already holds a whole message, which happens only in
  // completion handlers (rbuf_ is empty when an exchange starts on a clean link).
  void read() {
    switch (framer_.feed(rbuf_)) {
      case reply_framer::status::complete: return deliver();
      case reply_framer::status::too_long:
        return done(make_error_code(errc::reply_too_long), {});
      case reply_framer::status::need_more: break;
    }
    // Read into a persistent chunk, then append what arrived: growing rbuf_ by a whole chunk per
    // read would zero-fill 64 KiB for every short reply.
    // async_read_some first tries a speculative recv (one wasted system call right after the
    // command went out), but async_wait would cost more: Asio re-arms the descriptor with
    // epoll_ctl for every non-speculative wait.
    stream_.async_read_some(chunk_buffer(),
                            [self = this->shared_from_this()](boost::system::error_code ec,
                                                              std::size_t n) {
                              if (ec) return self->done(ec, {});
                              self->rbuf_.append(self->chunk_.data(), n);
                              self->read();
                            });
  }

  boost::asio::mutable_buffer chunk_buffer() {
    std::size_t room = opt_.max_reply_bytes + 2 - std::min(rbuf_.size(), opt_.max_reply_bytes + 1);
    return boost::asio::buffer(chunk_.data(), std::min(room, chunk_.size()));
  }

  void deliver() {
    std::size_t n = framer_.message_size();
    std::string reply = rbuf_.substr(0, n);
    if (opt_.termination == '\n' && framer_.cr_before_terminator()) reply.pop_back();
    rbuf_.erase(0, n + 1);
    // More than one message for one query: the stream cannot be trusted any more.
    if (!rbuf_.empty()) stray_ = true;
    done({}, std::move(reply));
  }

  void done(boost::system::error_code ec, std::string reply) {
    if (ec) rbuf_.clear();
    observer_(ec, stray_);
    auto h = std::move(handler_);
    handler_ = nullptr;
    h(ec, std::move(reply));
  }

  boost::asio::any_io_executor ex_;
  Stream& stream_;
  transport_options opt_;
  bool write_first_;
  observer observer_;
  bool read_reply_ = false;
  bool stray_ = false;
  std::string wire_;
  std::string rbuf_;
  std::vector<char> chunk_ = std::vector<char>(64 * 1024);
  reply_framer framer_{opt_.termination, opt_.max_reply_bytes};
  transport::reply_handler handler_;
};

}  // namespace semilab::drivers::detail
