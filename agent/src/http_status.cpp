// The agent's only translation unit that includes Beast (compile time). Shape of Beast's
// example/http/server/async + clean-shutdown, as central's src/http.cpp, plus event streams.
#include "http_status.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <pthread.h>
#include <spdlog/spdlog.h>

#include <array>
#include <deque>
#include <list>
#include <mutex>

namespace semilab::agent {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {
class session_base;
constexpr std::size_t kMaxQueuedEvents = 8;
}  // namespace

struct status_server::impl : std::enable_shared_from_this<status_server::impl> {
  impl(asio::any_io_executor ex, status_server_options o, std::shared_ptr<status_routes> r)
      : executor(ex), acceptor(asio::make_strand(ex)), opts(std::move(o)), routes(std::move(r)) {}

  void do_accept();
  void on_accept(beast::error_code ec, tcp::socket socket);
  void stop();
  bool add_stream(const std::shared_ptr<session_base>& s);
  void publish(std::shared_ptr<const status_snapshot> s);
  // Runs f on the POST worker; false once stopped (the caller closes the connection).
  template <class F>
  bool post_work(F&& f) {
    std::lock_guard lock(mutex);
    if (stopped || !pool) return false;
    asio::post(*pool, std::forward<F>(f));
    return true;
  }

  asio::any_io_executor executor;
  tcp::acceptor acceptor;  // used on its strand only
  status_server_options opts;
  std::shared_ptr<status_routes> routes;
  tcp::endpoint bound;
  std::unique_ptr<asio::ssl::context> tls;  // set: every connection is HTTPS
  asio::thread_pool* pool = nullptr;        // owned by status_server (workers_), guarded by mutex

  std::mutex mutex;  // guards the lists, pool and stopped
  std::list<std::weak_ptr<session_base>> sessions;
  std::list<std::weak_ptr<session_base>> streams;
  bool stopped = false;
};

namespace {

// What the server needs of a connection, whatever its stream (plain or TLS).
class session_base {
 public:
  virtual ~session_base() = default;
  virtual void close() = 0;                                           // any thread
  virtual void push(std::shared_ptr<const std::string> event) = 0;  // any thread
};

void set_security_headers(bhttp::response<bhttp::string_body>& res, bool html, bool tls) {
  res.set("X-Content-Type-Options", "nosniff");
  res.set("X-Frame-Options", "DENY");
  res.set("Referrer-Policy", "no-referrer");
  res.set("Cross-Origin-Opener-Policy", "same-origin");
  res.set("Cross-Origin-Resource-Policy", "same-origin");
  if (tls) res.set("Strict-Transport-Security", "max-age=31536000");
  if (html)
    res.set("Content-Security-Policy",
            "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; "
            "script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'");
}

template <bool Tls>
class session : public session_base, public std::enable_shared_from_this<session<Tls>> {
  using stream_type =
      std::conditional_t<Tls, beast::ssl_stream<beast::tcp_stream>, beast::tcp_stream>;
  using std::enable_shared_from_this<session<Tls>>::shared_from_this;

 public:
  session(tcp::socket&& s, std::shared_ptr<status_server::impl> srv)
      : stream_(make_stream(std::move(s), *srv)), srv_(std::move(srv)) {}

  void start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      if constexpr (Tls) {
        beast::get_lowest_layer(self->stream_).expires_after(self->srv_->opts.timeout);
        self->stream_.async_handshake(asio::ssl::stream_base::server,
                                      [self](beast::error_code ec) {
                                        if (ec) {
                                          spdlog::debug("[http] TLS handshake: {}", ec.message());
                                          return;
                                        }
                                        self->do_read();
                                      });
      } else {
        self->do_read();
      }
    });
  }

  void close() override {
    asio::post(stream_.get_executor(), [self = shared_from_this()] { self->shut(); });
  }

  void push(std::shared_ptr<const std::string> event) override {
    asio::post(stream_.get_executor(), [self = shared_from_this(), e = std::move(event)] {
      if (self->closed_) return;
      if (self->queue_.size() >= kMaxQueuedEvents) {
        spdlog::debug("[http] event stream client too slow: dropped");
        return self->shut();
      }
      self->queue_.push_back(e);
      if (self->queue_.size() == 1) self->write_next();
    });
  }

 private:
  static stream_type make_stream(tcp::socket&& s, status_server::impl& srv) {
    if constexpr (Tls) return stream_type(beast::tcp_stream(std::move(s)), *srv.tls);
    else return stream_type(std::move(s));
  }
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

  void shut() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    lowest().close();
  }

  void do_read() {
    parser_.emplace();
    parser_->body_limit(srv_->opts.body_limit);
    parser_->header_limit(8 * 1024);
    lowest().expires_after(srv_->opts.timeout);
    bhttp::async_read(stream_, buffer_, *parser_,
                      beast::bind_front_handler(&session::on_read, shared_from_this()));
  }

  http_reply route(const http_request_view& view) {
    try {
      return srv_->routes->handle(view);
    } catch (const std::exception& e) {
      spdlog::error("[http] handler failed for {}: {}", view.target, e.what());
      return {500, "application/json", "{\"error\":\"internal error\"}\n", {}, false, {}};
    }
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (ec == bhttp::error::end_of_stream) return do_close();
    if (ec == bhttp::error::body_limit)
      return send({413, "application/json", "{\"error\":\"request body too large\"}\n", {}, false, {}},
                  11, false);
    if (ec) return;  // timeout, reset, shutdown: the socket closes with the last reference
    const auto& req = parser_->get();
    http_request_view view{std::string_view(req.method_string()),
                           std::string_view(req.target()),
                           std::string_view(req[bhttp::field::authorization]),
                           std::string_view(req[bhttp::field::host]),
                           std::string_view(req[bhttp::field::cookie]),
                           std::string_view(req["X-CSRF-Token"]),
                           std::string_view(req[bhttp::field::content_type]),
                           std::string_view(req.body()),
                           Tls};
    if (req.method() == bhttp::verb::post && view.target.starts_with("/api/v1/login")) {
      // Off the io thread: a login runs scrypt (tens of ms). Only the login: every other route
      // runs on the io thread, as the daemon's state expects. The parser (which `view` points
      // into) is not touched until the reply is sent.
      bool queued = srv_->post_work([self = shared_from_this(), view] {
        auto r = self->route(view);
        asio::post(self->stream_.get_executor(), [self, r = std::move(r)] {
          const auto& q = self->parser_->get();
          self->send(r, q.version(), q.keep_alive());
        });
      });
      if (!queued) shut();
      return;
    }
    http_reply r = route(view);
    if (r.event_stream) return start_stream(std::move(r));
    send(r, req.version(), req.keep_alive(), req.method() == bhttp::verb::head);
  }

  void send(const http_reply& r, unsigned version, bool keep_alive, bool head = false) {
    if (closed_) return;
    res_ = {};
    res_.version(version);
    res_.result(r.status);
    res_.set(bhttp::field::server, "semilab-agent");
    res_.set(bhttp::field::content_type, r.content_type);
    res_.set(bhttp::field::cache_control, "no-store");
    set_security_headers(res_, r.content_type.starts_with("text/html"), Tls);
    if (!r.allow.empty()) res_.set(bhttp::field::allow, r.allow);
    if (!r.set_cookie.empty()) res_.set(bhttp::field::set_cookie, r.set_cookie);
    res_.keep_alive(keep_alive);
    if (head) {
      res_.content_length(r.body.size());
    } else {
      res_.body() = r.body;
      res_.prepare_payload();
    }
    lowest().expires_after(srv_->opts.timeout);
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
    if constexpr (Tls) {
      lowest().expires_after(std::chrono::seconds(5));
      stream_.async_shutdown([self = shared_from_this()](beast::error_code) { self->shut(); });
    } else {
      lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
    }
  }

  // The response ends when the connection closes (no length, no chunking): what EventSource
  // expects. From here on the connection only writes queued events.
  void start_stream(http_reply r) {
    if (!srv_->add_stream(shared_from_this()))
      return send({503, "application/json", "{\"error\":\"too many event streams\"}\n", {}, false, {}},
                  11, false);
    std::string head =
        "HTTP/1.1 200 OK\r\nServer: semilab-agent\r\nContent-Type: text/event-stream\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n";
    if constexpr (Tls) head += "Strict-Transport-Security: max-age=31536000\r\n";
    queue_.push_back(std::make_shared<std::string>(head + "\r\n" + r.body));
    write_next();
    watch_close();
  }

  // The pending read owns the session between events and notices the client leaving. Plain
  // HTTP reads the raw socket (the tcp_stream's deadline is for writes here); TLS must read
  // through the TLS layer.
  void watch_close() {
    auto on = [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec || self->closed_) return self->shut();
      self->watch_close();  // a client has nothing to say on an event stream: ignore it
    };
    if constexpr (Tls) stream_.async_read_some(asio::buffer(sink_), std::move(on));
    else lowest().socket().async_read_some(asio::buffer(sink_), std::move(on));
  }

  void write_next() {
    lowest().expires_after(srv_->opts.timeout);
    asio::async_write(stream_, asio::buffer(*queue_.front()),
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                        if (ec) return self->shut();
                        self->queue_.pop_front();
                        if (!self->queue_.empty()) self->write_next();
                        else self->lowest().expires_never();
                      });
  }

  stream_type stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> res_;
  std::shared_ptr<status_server::impl> srv_;
  std::deque<std::shared_ptr<const std::string>> queue_;  // event stream only
  bool closed_ = false;
  std::array<char, 256> sink_{};
};

}  // namespace

void status_server::impl::do_accept() {
  acceptor.async_accept(asio::make_strand(executor),
                        beast::bind_front_handler(&impl::on_accept, shared_from_this()));
}

void status_server::impl::on_accept(beast::error_code ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;  // stop()
  if (!ec) {
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto add = [&](const std::shared_ptr<session_base>& s) {
      std::lock_guard lock(mutex);
      if (stopped) return false;
      sessions.remove_if([](const auto& w) { return w.expired(); });
      sessions.push_back(s);
      return true;
    };
    if (tls) {
      auto s = std::make_shared<session<true>>(std::move(socket), shared_from_this());
      if (!add(s)) return;
      s->start();
    } else {
      auto s = std::make_shared<session<false>>(std::move(socket), shared_from_this());
      if (!add(s)) return;
      s->start();
    }
  } else {
    spdlog::warn("[http] accept failed: {}", ec.message());
  }
  do_accept();
}

bool status_server::impl::add_stream(const std::shared_ptr<session_base>& s) {
  std::lock_guard lock(mutex);
  streams.remove_if([](const auto& w) { return w.expired(); });
  if (stopped || streams.size() >= opts.max_streams) return false;
  streams.push_back(s);
  return true;
}

void status_server::impl::publish(std::shared_ptr<const status_snapshot> s) {
  auto event = std::make_shared<const std::string>(sse_event("status", s->status_json));
  routes->publish(std::move(s));
  std::lock_guard lock(mutex);
  streams.remove_if([](const auto& w) { return w.expired(); });
  for (auto& w : streams)
    if (auto p = w.lock()) p->push(event);
}

void status_server::impl::stop() {
  std::list<std::weak_ptr<session_base>> open;
  {
    std::lock_guard lock(mutex);
    if (stopped) return;
    stopped = true;
    open.swap(sessions);
    streams.clear();
  }
  asio::post(acceptor.get_executor(), [self = shared_from_this()] {
    beast::error_code ec;
    self->acceptor.close(ec);
  });
  for (auto& w : open)
    if (auto s = w.lock()) s->close();
}

boost::system::result<std::shared_ptr<status_server>> status_server::start(
    asio::any_io_executor ex, const status_server_options& opts,
    std::shared_ptr<status_routes> routes, std::string& error) {
  beast::error_code ec;
  auto ip = asio::ip::make_address(opts.bind == "localhost" ? "127.0.0.1" : opts.bind, ec);
  if (ec) {
    error = "status page address '" + opts.bind + "': " + ec.message();
    return ec;
  }
  auto i = std::make_shared<impl>(ex, opts, std::move(routes));
  if (!opts.tls_cert_file.empty() || !opts.tls_key_file.empty()) {
    // TLS 1.2 and later only; the files are read now so that a wrong path fails the start.
    i->tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    i->tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                        asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                        asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
    i->tls->use_certificate_chain_file(opts.tls_cert_file, ec);
    if (ec) {
      error = "status page certificate " + opts.tls_cert_file + ": " + ec.message();
      return ec;
    }
    i->tls->use_private_key_file(opts.tls_key_file, asio::ssl::context::pem, ec);
    if (ec) {
      error = "status page key " + opts.tls_key_file + ": " + ec.message();
      return ec;
    }
    if (SSL_CTX_check_private_key(i->tls->native_handle()) != 1) {
      error = "status page key " + opts.tls_key_file + " does not match " + opts.tls_cert_file;
      return make_error_code(boost::system::errc::invalid_argument);
    }
  }
  tcp::endpoint ep(ip, opts.port);
  auto where = ep.address().to_string() + ":" + std::to_string(opts.port);
  auto fail = [&](const char* what) -> boost::system::result<std::shared_ptr<status_server>> {
    error = std::string(what) + " " + where + ": " + ec.message();
    return ec;
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
  auto pool = std::make_shared<asio::thread_pool>(1);
  asio::post(*pool, [] { pthread_setname_np(pthread_self(), "http-post"); });
  i->pool = pool.get();
  asio::dispatch(i->acceptor.get_executor(), [i] { i->do_accept(); });
  auto srv = std::shared_ptr<status_server>(new status_server(std::move(i)));
  srv->workers_ = pool;
  return srv;
}

status_server::~status_server() {
  impl_->stop();  // no new work is posted after this
  if (auto* pool = static_cast<asio::thread_pool*>(workers_.get())) pool->join();
}

bool status_server::tls() const noexcept { return impl_->tls != nullptr; }

void status_server::publish(std::shared_ptr<const status_snapshot> s) { impl_->publish(std::move(s)); }

std::uint16_t status_server::port() const noexcept { return impl_->bound.port(); }

std::string status_server::local_address() const {
  auto a = impl_->bound.address();
  std::string host = a.is_v6() ? "[" + a.to_string() + "]" : a.to_string();
  return host + ":" + std::to_string(impl_->bound.port());
}

void status_server::stop() { impl_->stop(); }

}  // namespace semilab::agent
