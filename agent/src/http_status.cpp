// The agent's only translation unit that includes Beast (compile time). Shape of Beast's
// example/http/server/async + clean-shutdown, as central's src/http.cpp, plus event streams.
#include "http_status.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
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
class session;
constexpr std::size_t kMaxQueuedEvents = 8;
}  // namespace

struct status_server::impl : std::enable_shared_from_this<status_server::impl> {
  impl(asio::any_io_executor ex, status_server_options o, std::shared_ptr<status_routes> r)
      : executor(ex), acceptor(asio::make_strand(ex)), opts(std::move(o)), routes(std::move(r)) {}

  void do_accept();
  void on_accept(beast::error_code ec, tcp::socket socket);
  void stop();
  bool add_stream(const std::shared_ptr<session>& s);
  void publish(std::shared_ptr<const status_snapshot> s);

  asio::any_io_executor executor;
  tcp::acceptor acceptor;  // used on its strand only
  status_server_options opts;
  std::shared_ptr<status_routes> routes;
  tcp::endpoint bound;

  std::mutex mutex;  // guards the lists and stopped
  std::list<std::weak_ptr<session>> sessions;
  std::list<std::weak_ptr<session>> streams;
  bool stopped = false;
};

namespace {

class session : public std::enable_shared_from_this<session> {
 public:
  session(tcp::socket&& s, std::shared_ptr<status_server::impl> srv)
      : stream_(std::move(s)), srv_(std::move(srv)) {}

  void start() {
    asio::dispatch(stream_.get_executor(),
                   beast::bind_front_handler(&session::do_read, shared_from_this()));
  }

  // From any thread.
  void close() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] { self->shut(); });
  }

  // From any thread: queue one event for an event-stream connection.
  void push(std::shared_ptr<const std::string> event) {
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
  void shut() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

  void do_read() {
    parser_.emplace();
    parser_->body_limit(srv_->opts.body_limit);
    parser_->header_limit(8 * 1024);
    stream_.expires_after(srv_->opts.timeout);
    bhttp::async_read(stream_, buffer_, *parser_,
                      beast::bind_front_handler(&session::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (ec == bhttp::error::end_of_stream) return do_close();
    if (ec == bhttp::error::body_limit)
      return send({413, "application/json", "{\"error\":\"request body too large\"}\n", {}, false},
                  11, false);
    if (ec) return;  // timeout, reset, shutdown: the socket closes with the last reference
    const auto& req = parser_->get();
    http_request_view view{std::string_view(req.method_string()), std::string_view(req.target()),
                           std::string_view(req[bhttp::field::authorization]),
                           std::string_view(req[bhttp::field::host])};
    http_reply r;
    try {
      r = srv_->routes->handle(view);
    } catch (const std::exception& e) {
      spdlog::error("[http] handler failed for {}: {}", std::string_view(req.target()), e.what());
      r = {500, "application/json", "{\"error\":\"internal error\"}\n", {}, false};
    }
    if (r.event_stream) return start_stream(std::move(r));
    send(r, req.version(), req.keep_alive(), req.method() == bhttp::verb::head);
  }

  void send(const http_reply& r, unsigned version, bool keep_alive, bool head = false) {
    res_ = {};
    res_.version(version);
    res_.result(r.status);
    res_.set(bhttp::field::server, "semilab-agent");
    res_.set(bhttp::field::content_type, r.content_type);
    res_.set(bhttp::field::cache_control, "no-store");
    res_.set("X-Content-Type-Options", "nosniff");
    if (r.content_type.starts_with("text/html"))
      res_.set("Content-Security-Policy",
               "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'");
    if (!r.allow.empty()) res_.set(bhttp::field::allow, r.allow);
    res_.keep_alive(keep_alive);
    if (head) {
      res_.content_length(r.body.size());
    } else {
      res_.body() = r.body;
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

  // The response ends when the connection closes (no length, no chunking): what EventSource
  // expects. From here on the connection only writes queued events.
  void start_stream(http_reply r) {
    if (!srv_->add_stream(shared_from_this()))
      return send({503, "application/json", "{\"error\":\"too many event streams\"}\n", {}, false},
                  11, false);
    auto head = std::make_shared<std::string>(
        "HTTP/1.1 200 OK\r\nServer: semilab-agent\r\nContent-Type: text/event-stream\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n\r\n" +
        r.body);
    queue_.push_back(std::move(head));
    write_next();
    watch_close();
  }

  // The pending read owns the session between events and notices the client leaving. On the
  // raw socket: the tcp_stream's deadline is for writes here.
  void watch_close() {
    stream_.socket().async_read_some(
        asio::buffer(sink_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
          if (ec || self->closed_) return self->shut();
          self->watch_close();  // a client has nothing to say on an event stream: ignore it
        });
  }

  void write_next() {
    stream_.expires_after(srv_->opts.timeout);
    asio::async_write(stream_, asio::buffer(*queue_.front()),
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                        if (ec) return self->shut();
                        self->queue_.pop_front();
                        if (!self->queue_.empty()) self->write_next();
                        else self->stream_.expires_never();
                      });
  }

  beast::tcp_stream stream_;
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
    auto s = std::make_shared<session>(std::move(socket), shared_from_this());
    {
      std::lock_guard lock(mutex);
      if (stopped) return;
      sessions.remove_if([](const auto& w) { return w.expired(); });
      sessions.push_back(s);
    }
    s->start();
  } else {
    spdlog::warn("[http] accept failed: {}", ec.message());
  }
  do_accept();
}

bool status_server::impl::add_stream(const std::shared_ptr<session>& s) {
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
  std::list<std::weak_ptr<session>> open;
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
  asio::dispatch(i->acceptor.get_executor(), [i] { i->do_accept(); });
  return std::shared_ptr<status_server>(new status_server(std::move(i)));
}

status_server::~status_server() { impl_->stop(); }

void status_server::publish(std::shared_ptr<const status_snapshot> s) { impl_->publish(std::move(s)); }

std::uint16_t status_server::port() const noexcept { return impl_->bound.port(); }

std::string status_server::local_address() const {
  auto a = impl_->bound.address();
  std::string host = a.is_v6() ? "[" + a.to_string() + "]" : a.to_string();
  return host + ":" + std::to_string(impl_->bound.port());
}

void status_server::stop() { impl_->stop(); }

}  // namespace semilab::agent
