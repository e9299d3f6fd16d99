#pragma once
// Capability interfaces over the one generic SCPI driver: what measurement methods (I-V, C-V,
// four-point probe, Hall) drive. A model profile (model.hpp) declares which capabilities it has
// by pointing at a command table (source_measure_commands, impedance_commands,
// voltmeter_commands): the SCPI strings are data; the code below is the same for every model.
//
// Threading contract (as scpi_session): every member function is called on the session's
// executor (the instrument's strand) and every handler runs there, posted, never from inside
// the call that started the operation. The session must outlive the capability object. One call
// at a time per object: a second call while one is in flight completes with
// boost::asio::error::in_progress (source_measure::abort() is the exception: always accepted).
//
// Errors are values: handlers get result<T> whose error carries the code and a message naming
// the model, the command and (quoted) the reply. errc::not_supported when the profile lacks the
// capability; errc::bad_setting when an argument is outside the profile's limits or a safety
// rule refuses the call; errc::instrument_error when the error queue holds entries after a
// configuration block (drained by integer code, at most kMaxErrorQueueReads reads; the message
// names the block's commands); errc::bad_reply from the typed-reply parsers (scpi_reply.hpp).
#include <semilab/drivers/model.hpp>
#include <semilab/drivers/scpi_reply.hpp>
#include <semilab/drivers/scpi_session.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace semilab::drivers {

using done_handler = std::function<void(result<void>)>;

// ---- IEEE 488.2 synchronisation --------------------------------------------------------------

// *OPC?: the instrument answers "1" once every pending operation (a sweep started by :INIT, a
// list sweep) has finished. `timeout` is this query's deadline (a sweep may take far longer than
// the session's io_timeout). A timeout resynchronises the link as any other (scpi_session.hpp),
// so the late "1" can never be read as a later query's reply. errc::bad_reply if the answer is
// not "1".
void async_wait_complete(scpi_session& session, std::chrono::milliseconds timeout,
                         done_handler handler);

// *ESR? (read clears it). power_on() is set after a power cycle (or the first read after
// switch-on): the instrument lost its configuration.
void async_read_esr(scpi_session& session, std::function<void(result<esr_bits>)> handler);

// ---- source-measure unit (Keithley 2450, 2400) -------------------------------------------------

enum class source_function { voltage, current };

struct smu_point {
  scpi_number source;         // the sourced quantity as read back (V, or A when sourcing current)
  scpi_number measure;        // the measured quantity (A, or V when sourcing current)
  std::uint32_t quality = 0;  // schemas::quality bits: compliance, over_range
  [[nodiscard]] bool in_compliance() const noexcept;
  [[nodiscard]] bool over_range() const noexcept;
};

// A change of the source level larger than max_step (while the output is on) is made in steps of
// at most max_step with `dwell` after each step but the last. max_step <= 0: no ramping. Sweeps
// are refused when two neighbouring points differ by more than max_step; the start level is
// ramped to before the sweep begins.
struct ramp_limits {
  double max_step = 0;
  std::chrono::milliseconds dwell{0};
};

// Safety lives here, not in the method:
//  - compliance (the limit of the measured quantity) must be set for the current source function
//    before the output goes on: async_output_on() fails with errc::bad_setting otherwise, and
//    changing the source function forgets the limit;
//  - level changes follow ramp_limits;
//  - abort() stops whatever runs (the session's in-flight operation is cancelled: its reply dies
//    with the connection), then sends the abort command and :OUTP OFF;
//  - any failed operation that leaves the link down while the output may be on makes the next
//    operation send :OUTP OFF before anything else (the instrument may still be sourcing). The
//    same holds at construction: the output state of an instrument we just met is unknown, so
//    the first operation switches it off first;
//  - a state-changing call while the output is on first asks :OUTP? (one round trip): if that
//    ran on a new connection (the link dropped and the session reconnected silently) or the
//    output is found off, the output is switched off, compliance is forgotten, and the call fails
//    with boost::asio::error::connection_reset (or errc::instrument_error) before changing
//    anything; a measurement that finds its connection changed does the same after the fact;
//  - the destructor queues a last :OUTP OFF (best effort) when the output may be on.
class source_measure {
 public:
  using point_handler = std::function<void(result<smu_point>)>;
  using sweep_handler = std::function<void(result<std::vector<smu_point>>)>;

  source_measure(scpi_session& session, const model_profile& model);
  ~source_measure();
  source_measure(const source_measure&) = delete;
  source_measure& operator=(const source_measure&) = delete;

  void set_ramp(ramp_limits r) noexcept;

  // Source function and the matching measure function; output must be off.
  void async_set_function(source_function f, done_handler handler);
  // The limit of the measured quantity: A when sourcing voltage, V when sourcing current.
  void async_set_compliance(double limit, done_handler handler);
  // Measure range (A or V of the measured quantity); 0 = autorange.
  void async_set_range(double range, done_handler handler);
  void async_set_nplc(double nplc, done_handler handler);
  // errc::bad_setting when compliance was not set for the current source function.
  void async_output_on(done_handler handler);
  // Ramps to 0 (ramp limits) when the output is on, then :OUTP OFF.
  void async_output_off(done_handler handler);
  // Ramped while the output is on; errc::bad_setting beyond the profile's source limits.
  void async_set_level(double level, done_handler handler);
  void async_measure(point_handler handler);
  // Instrument-side sweeps (the whole sweep runs in the instrument, *OPC? waits for it, the
  // readings are read back in one reply). The output must be on. 2 <= points <= the profile's
  // maximum; `delay` is the source delay before each measurement.
  void async_sweep_linear(double start, double stop, std::size_t points,
                          std::chrono::milliseconds delay, sweep_handler handler);
  void async_sweep_list(std::vector<double> levels, std::chrono::milliseconds delay,
                        sweep_handler handler);

  // Emergency stop, always accepted: the call in flight completes with operation_aborted, then
  // the profile's abort command and :OUTP OFF are sent; `handler` (optional) gets the outcome of
  // :OUTP OFF. If the link is down, the next operation switches the output off first.
  void abort(done_handler handler = {});

  [[nodiscard]] bool output_on() const noexcept;        // as far as the driver knows
  [[nodiscard]] double level() const noexcept;          // last level applied (0 until known)
  [[nodiscard]] bool compliance_set() const noexcept;
  [[nodiscard]] source_function function() const noexcept;
  // Times the driver switched the output off because the link had dropped or the output state
  // was unknown (safety actions, for status pages and tests).
  [[nodiscard]] std::uint64_t safety_offs() const noexcept;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

// ---- impedance meter (Keysight E4980A) ---------------------------------------------------------

struct impedance_config {
  std::string function = "CPD";  // CPD CPQ CPG CPRP CSD CSQ CSRS LPD LPQ LSD LSQ RX ZTD ZTR GB
  double frequency = 1e5;        // Hz
  double ac_level = 0.05;        // V rms
  double dc_bias = 0;            // V, applied when bias_on
  bool bias_on = false;
  std::string aperture = "MED";  // SHOR | MED | LONG
};

struct impedance_point {
  double bias = 0;            // V, the DC bias of this point (the configured one for single points)
  scpi_number a;              // primary value (Cp for CPD, |Z| for ZTD, ...)
  scpi_number b;              // secondary value (D, Q, G, Rp, theta, ...)
  int status = 0;             // e4980a::kStatus* (0 normal, 1 overload, 3 source overload, 4 ALC)
  std::uint32_t quality = 0;  // over_range for 1 and 3, non_traceable for 4
  [[nodiscard]] bool ok() const noexcept { return status == 0; }
};

class impedance_meter {
 public:
  using point_handler = std::function<void(result<impedance_point>)>;
  using sweep_handler = std::function<void(result<std::vector<impedance_point>>)>;

  impedance_meter(scpi_session& session, const model_profile& model);
  ~impedance_meter();
  impedance_meter(const impedance_meter&) = delete;
  impedance_meter& operator=(const impedance_meter&) = delete;

  void async_configure(impedance_config cfg, done_handler handler);
  // One triggered measurement. A status of -1 (no data) is errc::bad_reply.
  void async_measure(point_handler handler);
  // DC-bias list sweep (at most the profile's list length), triggered once, *OPC? waited for,
  // read back with the status of every point. The bias is switched off after the sweep.
  void async_bias_list_sweep(std::vector<double> biases, sweep_handler handler);

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

// ---- voltmeter / DMM (Keysight 34461A) ---------------------------------------------------------

struct voltmeter_config {
  std::string function = "VOLT:DC";  // one of the profile's functions (VOLT:DC, RES, ...)
  double range = 0;                  // 0 = autorange
  double nplc = 1;
};

class voltmeter {
 public:
  using reading_handler = std::function<void(result<reading>)>;

  voltmeter(scpi_session& session, const model_profile& model);
  ~voltmeter();
  voltmeter(const voltmeter&) = delete;
  voltmeter& operator=(const voltmeter&) = delete;

  void async_configure(voltmeter_config cfg, done_handler handler);
  // One reading of the configured function (channel and unit from the profile; 9.9E37 flagged
  // over_range).
  void async_read(reading_handler handler);

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace semilab::drivers
