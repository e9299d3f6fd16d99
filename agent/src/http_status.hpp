#pragma once
// The agent's HTTP server for the status page (routes in status_routes.hpp). Beast's listener +
// session shape as central's src/http.cpp: a strand per connection, a deadline on every read and
// write, capped request bodies, one write in flight per connection; event-stream connections
// (server-sent events) stay open and receive every published snapshot through a bounded queue
// (a client that falls 8 events behind is dropped). http_status.cpp is the agent's only
// translation unit that includes Beast (and Beast's SSL stream: HTTPS when the options name a
// certificate and key). Logins are handled on one worker thread ("http-post"), so their scrypt
// never blocks the io thread; every other request is answered on the connection's strand.
// Every page answer carries security headers (CSP, X-Frame-Options, nosniff, Referrer-Policy,
// HSTS under HTTPS).
#include <boost/asio/any_io_executor.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "status_routes.hpp"

namespace semilab::agent {

struct status_server_options {
  std::string bind = "127.0.0.1";
  std::uint16_t port = 8470;  // 0 = any free port
  std::chrono::seconds timeout{30};
  std::size_t body_limit = 4096;
  std::size_t max_streams = 32;  // concurrent event streams; more get 503
  // HTTPS (both set): every connection is TLS 1.2+; the files are read at start (errors name
  // the file). Empty: plain HTTP.
  std::string tls_cert_file;
  std::string tls_key_file;
};

class status_server {
 public:
  // Binds and starts accepting. On failure `error` names the address and the cause.
  static boost::system::result<std::shared_ptr<status_server>> start(
      boost::asio::any_io_executor ex, const status_server_options& opts,
      std::shared_ptr<status_routes> routes, std::string& error);
  ~status_server();
  status_server(const status_server&) = delete;
  status_server& operator=(const status_server&) = delete;

  // Thread-safe: becomes what the routes answer, and is pushed to every event stream.
  void publish(std::shared_ptr<const status_snapshot> s);
  std::uint16_t port() const noexcept;
  std::string local_address() const;
  bool tls() const noexcept;
  // Thread-safe, idempotent: no new connections, open ones are closed.
  void stop();

  struct impl;

 private:
  explicit status_server(std::shared_ptr<impl> i) : impl_(std::move(i)) {}
  std::shared_ptr<impl> impl_;
  // Logins (scrypt) run on this worker; it is joined after stop() so that no task outlives
  // the server.
  std::shared_ptr<void> workers_;
};

}  // namespace semilab::agent
