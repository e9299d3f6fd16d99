#pragma once
// systemd integration shared by semilab-agent and semilab-central: readiness and watchdog
// notifications (sd_notify) and the log sink (journald with structured fields under systemd,
// stderr otherwise, plus an optional rotating file). Outside systemd (NOTIFY_SOCKET unset, no
// JOURNAL_STREAM) every call is a cheap no-op and logs go to stderr as before.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/common.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace semilab::service {

// Talks to the service manager. Lives on the main io_context's thread; the watchdog is pinged by
// a timer on that executor (every WatchdogSec/2), so a stuck event loop stops the pings and
// systemd restarts the process. Never throws.
class notifier {
 public:
  explicit notifier(boost::asio::any_io_executor ex);
  notifier(const notifier&) = delete;
  notifier& operator=(const notifier&) = delete;
  ~notifier();

  // READY=1 (and STATUS=text): the service does its job from now on.
  void ready(std::string_view status = {});
  // RELOADING=1 before applying a new configuration; call ready() when done (applied or refused).
  void reloading();
  // STOPPING=1; the watchdog keeps pinging until the loop ends.
  void stopping();
  void status(std::string_view text);
  bool watchdog_enabled() const { return period_.count() > 0; }
  std::chrono::microseconds watchdog_period() const { return period_; }

 private:
  void arm();
  boost::asio::steady_timer timer_;
  std::chrono::microseconds period_{0};  // ping period (half of WATCHDOG_USEC), 0 = off
};

// True when stderr is the journal: JOURNAL_STREAM ("DEV:INODE") names this process's stderr.
bool stderr_is_journal();

// The sink a daemon logs through: journald when stderr_is_journal() (MESSAGE, PRIORITY,
// SYSLOG_IDENTIFIER = `identifier`, COMPONENT and INSTRUMENT fields, see below), else stderr
// (colour on a terminal). The same sink (a fan-out) for every call and logger of the process;
// thread-safe.
// Fields: COMPONENT is the message's "[component]" prefix when it has one (the agent's style:
// "[acq] smu1: poll failed"), else the logger's name (central: "ingest", "http", ...);
// INSTRUMENT is the "id" in "[acq] id: ..." (acquisition messages name their instrument first).
spdlog::sink_ptr default_sink(const std::string& identifier);

// Adds a rotating file to default_sink(): `max_bytes` per file, `files` kept (path, path.1, ...).
// Empty on success; else why (the directory cannot be written, ...).
std::string add_rotating_file(const std::string& path, std::size_t max_bytes, std::size_t files);

// The structured fields of one message (exposed for tests).
struct log_fields {
  std::string component;
  std::string instrument;
};
log_fields parse_fields(std::string_view logger_name, std::string_view message);

}  // namespace semilab::service
