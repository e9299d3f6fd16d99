#pragma once
// The daemon's local control channel: a Unix stream socket (path [agent] control_socket, by
// default <data_dir>/control.sock) created with mode 0660, so the daemon's user and group may
// use it and nobody else (docs/agent-cli.md "Control socket"). Requests and replies are one JSON
// object per line:
//   -> {"cmd":"status"}                 <- {"ok":true, ...}
//   -> {"cmd":"pause","who":"alice"}    <- {"ok":false,"error":"..."}
// Commands: ping, status, instruments, queue, flush, pause, resume, transactions (all
// instruments' last SCPI transactions, for `diag bundle`). Requests are capped at 64 KiB; a
// client has 10 s to send a line; a handler's exception becomes {"ok":false} and never crosses
// the Asio handler. Everything runs on the daemon's io_context thread.
#include <boost/asio/io_context.hpp>
#include <boost/json/value.hpp>
#include <boost/system/result.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace semilab::sync {
class outbox;
class engine;
}  // namespace semilab::sync

namespace semilab::agent {

struct agent_config;
class recorder;
class runner;
class event_log;
struct acquisition_state;

inline constexpr const char* kAgentVersion = "0.1.0";

// Serves the socket; `handle` runs on the io_context's thread for each request and returns the
// reply object. Refuses to start when another process answers on the path (a second daemon);
// removes a stale socket file left by a crash.
class control_server {
 public:
  using handler = std::function<boost::json::value(const boost::json::object& request)>;
  static boost::system::result<std::shared_ptr<control_server>> start(
      boost::asio::io_context& io, const std::filesystem::path& path, handler h, std::string& error);
  ~control_server();
  control_server(const control_server&) = delete;
  control_server& operator=(const control_server&) = delete;
  void stop();  // io thread or any: closes the acceptor and the connections, removes the file

  struct impl;

 private:
  explicit control_server(std::shared_ptr<impl> i) : impl_(std::move(i)) {}
  std::shared_ptr<impl> impl_;
};

// One request over the socket (blocking, for the CLI). On failure `error` says why; a daemon
// that is not running gives `not_running = true` (no socket, or nobody listening).
boost::system::result<boost::json::value> control_call(const std::filesystem::path& path,
                                                       const boost::json::object& request,
                                                       std::chrono::milliseconds timeout,
                                                       std::string& error, bool& not_running);

// The daemon's answers to control requests (and to the status page's actions). Holds references
// to the daemon's objects; every method runs on the io_context thread except call().
class agent_control {
 public:
  agent_control(boost::asio::io_context& io, agent_config& cfg, sync::outbox& outbox,
                sync::engine& engine, recorder& rec, std::vector<std::shared_ptr<runner>>& runners,
                event_log& events);

  // io thread. `request.who` names the caller for the audit event ("cli", a user name).
  boost::json::value dispatch(const boost::json::object& request) noexcept;
  // Any thread but the io thread: runs dispatch() there and waits up to `timeout`.
  boost::json::value call(boost::json::object request,
                          std::chrono::milliseconds timeout = std::chrono::seconds(5));
  bool paused() const noexcept { return paused_.load(); }
  // Who paused acquisition and when (the health model shows instruments `paused`). Any thread.
  acquisition_state acquisition() const;
  // Recipe runs not yet finished (runs.hpp): pause is refused while there is one (409 on the
  // page, exit 1 from the CLI), naming the runs. Set before the socket serves.
  void set_unfinished_runs(std::function<std::vector<std::string>()> f) { unfinished_runs_ = std::move(f); }

 private:
  boost::json::object status() const;
  boost::json::object instruments() const;
  boost::json::object queue() const;
  boost::json::object pause(const std::string& who);
  boost::json::object resume(const std::string& who);
  boost::json::object flush(const std::string& who);
  void audit(std::string_view what, const std::string& who);

  boost::asio::io_context& io_;
  agent_config& cfg_;
  sync::outbox& outbox_;
  sync::engine& engine_;
  recorder& rec_;
  std::vector<std::shared_ptr<runner>>& runners_;
  event_log& events_;
  std::atomic<bool> paused_{false};
  mutable std::mutex pause_mu_;
  std::string paused_by_;
  std::int64_t paused_ns_ = 0;
  std::function<std::vector<std::string>()> unfinished_runs_;
  std::int64_t started_ns_;
};

}  // namespace semilab::agent
