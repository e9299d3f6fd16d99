#pragma once
// The generic SCPI driver: drives one model profile over one scpi_session.
//
// Before the first poll and after every reconnect of the session, async_poll first runs the init
// sequence: *IDN? (must match the profile's pattern), *ESR? (power-on bit), *CLS, the profile's
// init commands, then SYST:ERR? until the queue is empty (at most kMaxErrorReads reads, codes
// `0` and `+0` both mean empty); any queued error fails the init with errc::instrument_error.
// Then it sends the poll query and parses the reply.
//
// Power cycles: an init that finds PON set in *ESR?, or an *IDN? different from the one of the
// previous init, counts a power cycle (power_cycles()); the init then re-applies the whole
// configuration, as it does after every reconnect.
//
// Contract: same executor rules as scpi_session; the session must outlive the poller. Destroying
// the poller with a poll in flight is allowed: the handler still runs (with operation_aborted or
// the result), the poller's state is not touched after that.
#include <semilab/drivers/model.hpp>
#include <semilab/drivers/scpi_session.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace semilab::drivers {

class instrument_poller {
 public:
  static constexpr int kMaxErrorReads = 32;
  using poll_handler = std::function<void(boost::system::error_code, std::vector<reading>)>;

  instrument_poller(scpi_session& session, const model_profile& model, model_settings settings);
  ~instrument_poller();
  instrument_poller(const instrument_poller&) = delete;
  instrument_poller& operator=(const instrument_poller&) = delete;

  // One poll at a time (a second call while one is in flight completes with
  // boost::asio::error::in_progress). On failure, last_error() says what happened, naming the
  // instrument reply (quoted, truncated to 64 characters) when it did not parse.
  void async_poll(poll_handler handler);

  // The next poll re-runs the init sequence (e.g. after settings changed or a power cycle).
  void force_init() noexcept;

  [[nodiscard]] const std::string& last_error() const noexcept;
  [[nodiscard]] const std::string& idn() const noexcept;  // empty until the first init
  [[nodiscard]] std::uint64_t power_cycles() const noexcept;
  [[nodiscard]] std::uint64_t inits() const noexcept;  // completed init sequences
  [[nodiscard]] const model_profile& model() const noexcept;

 private:
  struct state;
  std::shared_ptr<state> state_;
};

}  // namespace semilab::drivers
