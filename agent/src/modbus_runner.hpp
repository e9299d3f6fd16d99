#pragma once
// One Modbus instrument: its session (a libmodbus context on its own worker thread, which also
// keeps the poll schedule: every point at its own `interval`, else the instrument's
// poll_interval_s, points due together read as one coalesced plan) and its deadband filter on
// this runner's strand, where every poll result is posted.
#include <semilab/drivers/modbus_link.hpp>

#include "instrument_runner.hpp"

namespace semilab::agent {

class modbus_runner : public runner, public std::enable_shared_from_this<modbus_runner> {
 public:
  modbus_runner(boost::asio::io_context& io, const instrument_config& cfg, recorder& rec);
  void start() override;
  void stop() override;
  instrument_status status() const override;

 private:
  void polled(drivers::modbus::poll_result r);

  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  instrument_config cfg_;
  recorder& rec_;
  std::unique_ptr<drivers::modbus::session> session_;
  drivers::modbus::deadband_filter deadband_;
  std::uint64_t polls_ = 0;  // answered polls of the fastest interval group (what `count` counts)
  bool stopped_ = false;

  mutable std::mutex mu_;
  instrument_status st_;
};

}  // namespace semilab::agent
