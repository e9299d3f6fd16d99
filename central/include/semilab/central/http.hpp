#pragma once
// Minimal HTTP/1.1 server in Beast's listener + session shape (src/http.cpp is the only
// translation unit that includes Beast). Every read and write has a deadline, request bodies are
// capped, keep-alive is honoured, and stop() closes the acceptor and every open connection.
#include <semilab/central/error.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace semilab::central {

struct http_response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::string allow;  // Allow header, for 405
  std::vector<std::pair<std::string, std::string>> headers = {};  // more (WWW-Authenticate, ...)
};

// What a handler sees of a request. The views point into the session's parser and live for the
// handler call only.
struct http_request {
  std::string_view method;
  std::string_view target;         // path and query as sent
  std::string_view authorization;  // Authorization header, "" when absent
  std::string remote;              // peer address, e.g. "127.0.0.1"
  std::string_view cookie = {};        // Cookie header, "" when absent
  std::string_view csrf_token = {};    // X-CSRF-Token header
  std::string_view content_type = {};  // Content-Type header
  std::string_view body = {};          // request body (at most http_options::body_limit bytes)
  // The connection is HTTPS, or a proxy in front says so (X-Forwarded-Proto: https): session
  // cookies get the Secure attribute.
  bool secure = false;
};

struct http_options {
  std::string listen = "127.0.0.1:8080";  // host:port; port 0 = any free port
  std::chrono::seconds timeout{30};
  std::size_t body_limit = 8192;
};

// Threads: the server runs on whatever threads run the executor's io_context; each connection
// has its own strand, so with N threads up to N requests are handled at once and the handler
// must be thread-safe (api::handle is). central runs it on its own io_context ([http] threads),
// apart from the ingest service's, so a slow store read never delays MQTT handling.
class http_server {
 public:
  // Runs on the connection's strand, possibly on several threads at once for different
  // connections. An exception it throws becomes a 500 response (it never leaves the Asio handler).
  using handler = std::function<http_response(const http_request& req)>;

  // Binds and starts accepting on `ex` (a strand per connection is made from it).
  // errc::bad_listen_address or errc::listen_failed; `error` names the cause.
  static result<std::shared_ptr<http_server>> start(boost::asio::any_io_executor ex,
                                                    const http_options& opts, handler h,
                                                    std::string& error);
  ~http_server();
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  // "127.0.0.1:PORT" or "[::1]:PORT": the address actually bound.
  std::string local_address() const;
  std::uint16_t port() const noexcept;
  // Thread-safe and idempotent: no new connections; open ones are closed.
  void stop();

  struct impl;

 private:
  explicit http_server(std::shared_ptr<impl> i);
  std::shared_ptr<impl> impl_;
};

}  // namespace semilab::central
