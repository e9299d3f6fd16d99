#pragma once
// The agent's HTTP server for the status page (routes in status_routes.hpp). Beast's listener +
// session shape as central's src/http.cpp: a strand per connection, a deadline on every read and
// write, capped request bodies, one write in flight per connection; event-stream connections
// (server-sent events) stay open and receive every published snapshot through a bounded queue
// (a client that falls 8 events behind is dropped). http_status.cpp is the agent's only
// translation unit that includes Beast.
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
  // Thread-safe, idempotent: no new connections, open ones are closed.
  void stop();

  struct impl;

 private:
  explicit status_server(std::shared_ptr<impl> i) : impl_(std::move(i)) {}
  std::shared_ptr<impl> impl_;
};

}  // namespace semilab::agent
