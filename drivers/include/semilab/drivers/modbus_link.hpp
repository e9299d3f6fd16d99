#pragma once
// A Modbus TCP or RTU link: one libmodbus context owned by one named worker thread ("mb-NAME"),
// because a libmodbus context is not thread-safe. Callers queue operations from any thread;
// every completion handler is posted to the executor given at construction (the instrument's
// strand), never run on the worker. No exception leaves the worker.
//
// Recovery (written down, see docs/ARCHITECTURE.md and DEVICES.md):
// - A Modbus exception fails only the points of the request it answered, with its name.
// - A timeout, broken pipe, reset or malformed reply closes the context (RTU: flush, then close):
//   a late reply can never be read as the answer to a later request (libmodbus also checks the
//   TCP transaction id: a stale frame is a malformed reply). The rest of that poll fails with
//   link_down; the next operation reconnects.
// - Once per poll, a request is asked again on a fresh connection when its failure says nothing
//   about the device now: a stale frame, or a connection that died while idle (the device or
//   gateway restarted between two polls: EPIPE/reset on the first request).
// - Failed connects back off from 50 ms, doubling, capped at min(backoff_max_s, device
//   interval); while start_polling() runs, reconnects also happen between polls, so the link is
//   back within two poll intervals, and at most ~1 s, after the device returns.
// - RTU: the resource's RS-485 options (rs485=1, rts=up|down, rts_delay=US) are applied after
//   each connect; a port that cannot do them fails the connect with drivers::errc::not_supported.
// Handlers may run after the link was destroyed if they were already posted: they must not use
// the link unless they keep it alive.
#include <semilab/drivers/error.hpp>
#include <semilab/drivers/modbus_map.hpp>
#include <semilab/drivers/visa_resource.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace semilab::drivers::modbus {

using link_resource = std::variant<modbus_tcp_resource, modbus_rtu_resource>;

// modbus-tcp:// and modbus-rtu:// resources; other kinds are drivers::errc::bad_resource.
[[nodiscard]] result<link_resource> link_resource_of(const resource& r);
[[nodiscard]] result<link_resource> parse_link_resource(std::string_view text);
[[nodiscard]] std::string to_string(const link_resource& r);

struct link_options {
  std::string name = "modbus";  // thread name "mb-" + name (truncated to 15 bytes), logs
  double timeout_s = 0.5;       // response timeout (the map's device.timeout by default)
  double backoff_min_s = 0.05;
  double backoff_max_s = 1.0;   // also capped by the map's interval
};

struct point_value {
  std::size_t index = 0;  // into device_map::points
  result<value> v;
};

struct poll_result {
  std::int64_t utc_ns = 0;  // when the last reply arrived
  bool fastest = true;      // start_polling: the fastest interval group was part of this poll
  std::vector<point_value> values;  // in the order of the requested indices
  unsigned requests = 0;            // read requests sent
  unsigned failed_requests = 0;
};

struct link_stats {
  std::uint64_t requests = 0;
  std::uint64_t exceptions = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t io_errors = 0;
  std::uint64_t connects = 0;         // successful connects (first one included)
  std::uint64_t connect_failures = 0;
  bool connected = false;
  std::string last_error;
};

class session {
 public:
  session(boost::asio::any_io_executor ex, link_resource res, std::shared_ptr<const device_map> map,
       link_options opt = {});
  ~session();  // stops and joins the worker; queued operations are dropped without their handlers
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  // Reads the points `which` (indices; all when empty) in the fewest requests.
  void async_poll(std::vector<std::size_t> which, std::function<void(poll_result)> handler);

  // Polls on the worker by a poll_schedule (modbus_plan.hpp): the points due together are read
  // as one coalesced plan, and each result is posted to the executor. The worker starts the next
  // poll when it is due without waiting for the handler of the previous one, so the hand-off to
  // the strand overlaps the next request instead of adding to it; at most 32 results are
  // undelivered at a time (a slow strand slows polling, it never queues results without bound).
  // Polls running back to back, each under 1 ms, hand their results over in batches (up to 16
  // results or 1 ms, one post and one wake-up of the strand's thread per batch): a result may
  // then wait up to 1 ms plus one poll. A poll with a failed request goes out at once.
  // Queued operations (writes) run between polls. Replaces a running schedule.
  void start_polling(double base_interval_s, std::function<void(poll_result)> handler);
  // No poll starts after this returns; the poll running now, and results already posted, may
  // still be delivered (handlers that must ignore them check their own state).
  void stop_polling();
  // Writes an engineering value to a writable point (range-checked, FC05/06/16), then reads the
  // point (or its `readback` point) and compares. Completes with the value read back.
  void async_write(std::size_t index, value v, std::function<void(result<value>)> handler);

  [[nodiscard]] link_stats stats() const;
  [[nodiscard]] const device_map& map() const noexcept;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;  // shared only with handlers that outlive the session (weakly)
};

struct scan_hit {
  unsigned unit = 0;
  std::string detail;  // "registers" or the exception's name: either way the unit answered
};

// Blocking scan of unit ids [first, last] with a short timeout per unit (for the CLI, not for a
// strand). Reads holding register 0; any reply, an exception included, counts as an answer.
[[nodiscard]] result<std::vector<scan_hit>> scan_units(const link_resource& res, unsigned first,
                                                       unsigned last, double timeout_s);

}  // namespace semilab::drivers::modbus
