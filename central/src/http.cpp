// The only translation unit that includes Beast (compile time). Shape of Beast's
// example/http/server/async + clean-shutdown: a listener accepting onto a strand per connection,
// a session reading one request, writing one response (no pipelining: the response is the one
// write in flight), with a deadline on every operation. Any number of threads may run the
// io_context: the acceptor and each session live on their own strand, and the only state shared
// between connections (the session list) is under `mutex`.
#include <semilab/central/http.hpp>

#include "listen_address.hpp"
#include "log.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <list>
#include <mutex>

namespace semilab::central {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {
class session;
}

struct http_server::impl : std::enable_shared_from_this<http_server::impl> {
  impl(asio::any_io_executor ex, http_options o, handler h)
      : executor(ex), acceptor(asio::make_strand(ex)), opts(std::move(o)), fn(std::move(h)) {}

  void do_accept();
  void on_accept(beast::error_code ec, tcp::socket socket);
  void stop();

  asio::any_io_executor executor;
  tcp::acceptor acceptor;  // used on its strand only
  http_options opts;
  handler fn;
  tcp::endpoint bound;

  std::mutex mutex;                          // guards sessions and stopped
  std::list<std::weak_ptr<session>> sessions;
  bool stopped = false;
};

namespace {

class session : public std::enable_shared_from_this<session> {
 public:
  session(tcp::socket&& s, std::shared_ptr<http_server::impl> srv)
      : stream_(std::move(s)), srv_(std::move(srv)) {}

  void start() {
    // Run on the connection's strand from the first operation on.
    asio::dispatch(stream_.get_executor(),
                   beast::bind_front_handler(&session::do_read, shared_from_this()));
  }

  // From any thread: closing the socket on its strand makes pending operations fail.
  void close() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      beast::error_code ec;
      self->stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
      self->stream_.close();
    });
  }

 private:
  void do_read() {
    parser_.emplace();
    parser_->body_limit(srv_->opts.body_limit);
    parser_->header_limit(16 * 1024);
    stream_.expires_after(srv_->opts.timeout);
    bhttp::async_read(stream_, buffer_, *parser_,
                      beast::bind_front_handler(&session::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (ec == bhttp::error::end_of_stream) return do_close();
    if (ec == bhttp::error::body_limit) {
      http_response r{413, "application/json", "{\"error\":\"request body too large\"}\n", {}};
      return send(std::move(r), 11, false);
    }
    if (ec) return;  // timeout, reset, shutdown: the socket closes with the last reference
    const auto& req = parser_->get();
    http_response r;
    try {
      beast::error_code pec;
      const auto peer = stream_.socket().remote_endpoint(pec);
      http_request in{std::string_view(req.method_string()), std::string_view(req.target()),
                      std::string_view(req[bhttp::field::authorization]),
                      pec ? std::string() : peer.address().to_string()};
      in.cookie = std::string_view(req[bhttp::field::cookie]);
      in.csrf_token = std::string_view(req["X-CSRF-Token"]);
      in.content_type = std::string_view(req[bhttp::field::content_type]);
      in.body = std::string_view(req.body());
      // No TLS in this server: only a TLS-terminating proxy in front makes the request secure.
      in.secure = beast::iequals(std::string_view(req["X-Forwarded-Proto"]), "https");
      r = srv_->fn(in);
    } catch (const std::exception& e) {
      logger("http")->error("handler failed for {}: {}", std::string_view(req.target()), e.what());
      r = http_response{500, "application/json", "{\"error\":\"internal error\"}\n", {}};
    }
    send(std::move(r), req.version(), req.keep_alive(), req.method() == bhttp::verb::head);
  }

  // Takes the response by value: its body is moved into the message, not copied.
  void send(http_response r, unsigned version, bool keep_alive, bool head = false) {
    res_ = {};
    res_.version(version);
    res_.result(r.status);
    res_.set(bhttp::field::server, "semilab-central");
    res_.set(bhttp::field::content_type, r.content_type);
    res_.set(bhttp::field::cache_control, "no-store");
    // Security headers on every response (JSON, text and any page): nothing may be framed,
    // sniffed into another type, load sub-resources or leak the URL as a referrer.
    res_.set("X-Content-Type-Options", "nosniff");
    res_.set("X-Frame-Options", "DENY");
    res_.set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'");
    res_.set("Referrer-Policy", "no-referrer");
    if (!r.allow.empty()) res_.set(bhttp::field::allow, r.allow);
    for (const auto& [name, value] : r.headers) res_.set(name, value);
    res_.keep_alive(keep_alive);
    if (head) {
      res_.content_length(r.body.size());  // what GET would send, without the body
    } else {
      res_.body() = std::move(r.body);
      res_.prepare_payload();
    }
    stream_.expires_after(srv_->opts.timeout);
    bhttp::async_write(stream_, res_,
                       beast::bind_front_handler(&session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t) {
    if (ec) return;
    if (!res_.keep_alive()) return do_close();
    do_read();
  }

  void do_close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> res_;
  std::shared_ptr<http_server::impl> srv_;
};

}  // namespace

void http_server::impl::do_accept() {
  acceptor.async_accept(asio::make_strand(executor),
                        beast::bind_front_handler(&impl::on_accept, shared_from_this()));
}

void http_server::impl::on_accept(beast::error_code ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;  // stop()
  if (!ec) {
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);  // whole responses; no Nagle delay
    auto s = std::make_shared<session>(std::move(socket), shared_from_this());
    {
      std::lock_guard lock(mutex);
      if (stopped) return;
      sessions.remove_if([](const auto& w) { return w.expired(); });
      sessions.push_back(s);
    }
    s->start();
  } else {
    // EMFILE and the like: log and keep accepting (the listener must not die).
    logger("http")->warn("accept failed: {}", ec.message());
  }
  do_accept();
}

void http_server::impl::stop() {
  std::list<std::weak_ptr<session>> open;
  {
    std::lock_guard lock(mutex);
    if (stopped) return;
    stopped = true;
    open.swap(sessions);
  }
  asio::post(acceptor.get_executor(), [self = shared_from_this()] {
    beast::error_code ec;
    self->acceptor.close(ec);
  });
  for (auto& w : open)
    if (auto s = w.lock()) s->close();
}

result<std::shared_ptr<http_server>> http_server::start(asio::any_io_executor ex,
                                                        const http_options& opts, handler h,
                                                        std::string& error) {
  auto addr = parse_listen_address(opts.listen);
  if (!addr) {
    error = "listen address '" + opts.listen + "' is not host:port";
    return make_error_code(errc::bad_listen_address);
  }
  beast::error_code ec;
  auto ip = asio::ip::make_address(addr->host, ec);
  if (ec) {
    error = "listen address '" + opts.listen + "': " + ec.message();
    return make_error_code(errc::bad_listen_address);
  }
  auto i = std::make_shared<impl>(ex, opts, std::move(h));
  tcp::endpoint ep(ip, addr->port);
  auto fail = [&](const char* what) -> result<std::shared_ptr<http_server>> {
    error = std::string(what) + " " + opts.listen + ": " + ec.message();
    return make_error_code(errc::listen_failed);
  };
  i->acceptor.open(ep.protocol(), ec);
  if (ec) return fail("open");
  i->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) return fail("set_option");
  i->acceptor.bind(ep, ec);
  if (ec) return fail("bind");
  i->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen");
  i->bound = i->acceptor.local_endpoint(ec);
  if (ec) return fail("local_endpoint");
  asio::dispatch(i->acceptor.get_executor(), [i] { i->do_accept(); });
  return std::shared_ptr<http_server>(new http_server(std::move(i)));
}

http_server::http_server(std::shared_ptr<impl> i) : impl_(std::move(i)) {}
http_server::~http_server() { impl_->stop(); }

std::string http_server::local_address() const {
  auto a = impl_->bound.address();
  std::string host = a.is_v6() ? "[" + a.to_string() + "]" : a.to_string();
  return host + ":" + std::to_string(impl_->bound.port());
}

std::uint16_t http_server::port() const noexcept { return impl_->bound.port(); }

void http_server::stop() { impl_->stop(); }

}  // namespace semilab::central
