#pragma once
// One instrument: its session, driver and poll timer, all on one strand.
#include <semilab/agent/config.hpp>
#include <semilab/agent/recorder.hpp>
#include <semilab/drivers/instrument_poller.hpp>
#include <semilab/drivers/scpi_session.hpp>

#include "metrics.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <memory>
#include <mutex>

namespace semilab::agent {

struct instrument_status {
  std::string id;
  std::string model;
  std::string resource;
  std::string idn;
  bool connected = false;
  bool finished = false;  // `count` readings stored
  std::uint64_t readings = 0;
  std::uint64_t errors = 0;
  std::uint64_t consecutive_errors = 0;
  std::int64_t last_good_ns = 0;
  std::string last_error;
  std::string last_value;  // e.g. "1.234567E-03 A"
  std::uint64_t error_queue_entries = 0;  // polls failed by errors the instrument queued
  std::int64_t last_error_queue_ns = 0;
  std::uint64_t reconnects_requested = 0;  // by an operator (status page)
  std::uint64_t connects = 0;  // successful connects of this runner's session (reload keeps unchanged ones)
  // SCPI instruments: the session's transaction ring (refreshed on the strand at most every
  // 250 ms) and every poll's duration, init sequences included.
  std::vector<drivers::scpi_session::transaction> transactions;
  metrics::latency_histogram poll_latency;
};

// What the daemon needs of any instrument, whatever its protocol.
class runner {
 public:
  virtual ~runner() = default;
  virtual void start() = 0;
  virtual void stop() = 0;
  virtual instrument_status status() const = 0;
  // Drop the link and re-run the init sequence on the next poll; false: not supported.
  virtual bool reconnect() { return false; }
};

class instrument_runner : public runner, public std::enable_shared_from_this<instrument_runner> {
 public:
  instrument_runner(boost::asio::io_context& io, const instrument_config& cfg, recorder& rec);
  void start() override;
  void stop() override;
  instrument_status status() const override;
  bool reconnect() override;

  // Run executor (runs.hpp): the instrument accepts one client, so a run borrows this runner's
  // session. lease() pauses polling; `h` runs on the strand once no poll is in flight, with the
  // session and its model (nullptr when the runner is stopped or already leased). release()
  // re-runs the init sequence on the next poll and resumes polling. Any thread.
  using lease_handler = std::function<void(drivers::scpi_session*)>;
  void lease(lease_handler h);
  void release();
  [[nodiscard]] const instrument_config& config() const noexcept { return cfg_; }

 private:
  void grant_lease();
  void schedule();
  void poll();
  void polled(boost::system::error_code ec, std::vector<drivers::reading> readings, timestamp ts);

  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  instrument_config cfg_;
  recorder& rec_;
  std::unique_ptr<drivers::scpi_session> session_;
  std::unique_ptr<drivers::instrument_poller> poller_;
  boost::asio::steady_timer timer_;
  std::chrono::steady_clock::time_point next_;
  std::uint64_t submitted_ = 0;
  bool stopped_ = false;
  bool polling_ = false;  // a poll is in flight
  bool leased_ = false;   // a run owns the session
  lease_handler pending_lease_;
  std::chrono::steady_clock::time_point poll_started_, ring_copied_;

  mutable std::mutex mu_;
  instrument_status st_;
};

}  // namespace semilab::agent
