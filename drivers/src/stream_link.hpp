#pragma once
// Exchange over a byte stream (raw TCP socket, serial port): the message plus terminator goes out
// in one write, the reply is framed by reply_framer (a terminator inside a definite block is
// data). Shared by tcp_transport.cpp and serial_transport.cpp.
//
// The stream must be non-blocking where `try_write_first` is used (TCP): the command is first
// sent with one write_some from the caller's context, which saves a completion round trip per
// query; whatever did not fit goes through async_write. Completions are always posted or come
// from Asio completion handlers, never from inside exchange().
//
// Replies are read straight into one growing buffer (no intermediate chunk) and copied once,
// into the reply string handed to the caller.
#include <semilab/drivers/scpi_reply.hpp>
#include <semilab/drivers/transport.hpp>

#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace semilab::drivers::detail {

// Per-stream hooks; a transport may specialise this before it instantiates stream_link.
template <class Stream>
struct stream_hooks {
  // Called right before a command whose reply will be read is written (write-first links
  // only), so a stream can skip the speculative receive that the read after the write would
  // otherwise start with (tcp_transport.cpp). Default: nothing.
  static void before_command(Stream&) noexcept {}
};

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
    len_ = 0;
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
      if (read_reply_) stream_hooks<Stream>::before_command(stream_);
      boost::system::error_code ec;
      sent = stream_.write_some(boost::asio::buffer(wire_), ec);
      if (ec) {
        if (ec != boost::asio::error::would_block && ec != boost::asio::error::try_again)
          return post_done(ec);
        sent = 0;
      }
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
  // the exchange directly only when the buffer already holds a whole message, which happens only
  // in completion handlers (the buffer is empty when an exchange starts on a clean link).
  void read() {
    switch (framer_.feed(std::string_view(buf_.data(), len_))) {
      case reply_framer::status::complete: return deliver();
      case reply_framer::status::too_long:
        return done(make_error_code(errc::reply_too_long), {});
      case reply_framer::status::need_more: break;
    }
    stream_.async_read_some(read_buffer(),
                            [self = this->shared_from_this()](boost::system::error_code ec,
                                                              std::size_t n) {
                              if (ec) return self->done(ec, {});
                              self->len_ += n;
                              self->read();
                            });
  }

  // Room after the bytes held, at most up to max_reply_bytes + 2 in all (a longer message is
  // too_long before the next read). The buffer grows by doubling, so a large block is read in
  // few system calls and the zero-fill of growth is paid once per link, not per reply.
  boost::asio::mutable_buffer read_buffer() {
    const std::size_t limit = opt_.max_reply_bytes + 2;
    if (buf_.size() - len_ < kMinRoom && buf_.size() < limit)
      buf_.resize(std::min(limit, std::max(2 * buf_.size(), len_ + kMinRoom)));
    return boost::asio::buffer(buf_.data() + len_, std::min(buf_.size(), limit) - len_);
  }

  void deliver() {
    const std::size_t n = framer_.message_size();
    const bool cr = opt_.termination == '\n' && framer_.cr_before_terminator();
    std::string reply(buf_.data(), cr ? n - 1 : n);
    const std::size_t used = n + 1;
    if (len_ > used) {
      // More than one message for one query: the stream cannot be trusted any more.
      std::memmove(buf_.data(), buf_.data() + used, len_ - used);
      len_ -= used;
      stray_ = true;
    } else {
      len_ = 0;
    }
    done({}, std::move(reply));
  }

  void done(boost::system::error_code ec, std::string&& reply) {
    if (ec) len_ = 0;
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
  static constexpr std::size_t kMinRoom = 64 * 1024;
  std::string wire_;
  std::vector<char> buf_;  // received bytes: [0, len_) not yet consumed
  std::size_t len_ = 0;
  reply_framer framer_{opt_.termination, opt_.max_reply_bytes};
  transport::reply_handler handler_;
};

}  // namespace semilab::drivers::detail
