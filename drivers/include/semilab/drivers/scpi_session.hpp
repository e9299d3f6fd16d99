#pragma once
// SCPI over any message-based link (transport.hpp): raw TCP socket (port 5025 style), VXI-11,
// USBTMC or serial. One operation in flight; a query is write + read as one unit. On stream
// links replies are framed by reply_framer (scpi_reply.hpp): a terminator inside a definite block
// (#<n><len><data>) is data, so binary blocks with LF, CR and NUL come back whole.
//
// Threading contract: every member function must be called on the executor passed to the
// constructor (the instrument's strand, or a single-threaded io_context), and every handler runs
// there. The session owns no thread. Handlers are never invoked from inside async_write /
// async_query / cancel themselves (no re-entrancy); they always run from the executor.
//
// Backoff: after a failed connect (refused, unreachable, timed out) the session makes no new
// connect attempt before a reconnect_backoff delay (100 ms doubling to 30 s, jittered); an
// operation that would need a connection earlier completes at once with errc::backing_off. A
// successful connect resets the delay. So a dead instrument costs no time and no sockets.
//
// Resync contract: after a timeout, an I/O error, an over-long reply or stray bytes, the link is
// interrupted before the failing operation completes and resynchronised before the next one
// (raw TCP: reconnect, so a late reply dies with its connection; VXI-11: new link + device_clear;
// USBTMC: abort + clear; serial: drain until quiet), so a late reply can never be handed to a
// later query. Operations are never retried automatically: a command may have had an effect.
#include <semilab/drivers/error.hpp>
#include <semilab/drivers/model.hpp>
#include <semilab/drivers/visa_resource.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace semilab::drivers {

class scpi_session {
 public:
  struct options {
    std::chrono::milliseconds connect_timeout{2000};  // resolve + connect
    std::chrono::milliseconds io_timeout{2000};       // write + read of one operation
    char termination = '\n';
    std::size_t max_reply_bytes = 1 << 20;
    std::size_t history = 32;  // transactions kept in the ring (recent())
    bool backoff = true;       // see "Backoff" above; off only for tests of the raw behaviour
    std::uint16_t portmapper_port = 111;  // VXI-11 portmapper (tests run their own elsewhere)
  };
  struct counters {
    std::uint64_t connects = 0;  // successful connects; changes mean "new connection"
    std::uint64_t timeouts = 0;
    std::uint64_t resyncs = 0;   // connection closed because of an error, timeout or stray bytes
    std::uint64_t connect_failures = 0;
    std::uint64_t backoff_rejects = 0;  // operations completed with errc::backing_off
  };
  // One operation as it happened, for diagnostics (probe, error dumps, status).
  struct transaction {
    std::chrono::system_clock::time_point time;  // when it started
    std::string command;                         // without terminator, at most 64 bytes
    std::size_t bytes_out = 0;                   // written, terminator included
    std::size_t bytes_in = 0;                    // reply bytes, terminator included
    std::chrono::microseconds duration{0};
    boost::system::error_code outcome;
  };

  using write_handler = std::function<void(boost::system::error_code)>;
  using stb_handler = std::function<void(boost::system::error_code, std::uint8_t)>;
  // reply without the terminator; empty on error
  using query_handler = std::function<void(boost::system::error_code, std::string)>;

  // Any message-based resource (require_openable() accepts it). Another kind (Modbus) makes
  // every operation complete with errc::not_supported.
  scpi_session(boost::asio::any_io_executor ex, const drivers::resource& res, options opt);
  scpi_session(boost::asio::any_io_executor ex, const drivers::resource& res);
  // Aborts pending operations: their handlers still run later with operation_aborted.
  ~scpi_session();
  scpi_session(const scpi_session&) = delete;
  scpi_session& operator=(const scpi_session&) = delete;

  // `cmd` is sent with the terminator appended in a single write. Errors: errc::bad_command if
  // cmd contains the terminator (or, for async_write, a '?' outside quotes: a reply nobody reads
  // would desynchronise the stream), errc::timeout, errc::reply_too_long, errc::stray_data, Asio
  // socket errors (connection_refused, eof, ...), operation_aborted after cancel()/close().
  // `timeout` overrides options::io_timeout for this operation when non-zero.
  void async_write(std::string cmd, write_handler handler,
                   std::chrono::milliseconds timeout = std::chrono::milliseconds{0});
  void async_query(std::string cmd, query_handler handler,
                   std::chrono::milliseconds timeout = std::chrono::milliseconds{0});

  // The status byte read outside the message stream (VXI-11 device_readstb, USBTMC
  // READ_STATUS_BYTE); errc::not_supported on links without one (raw TCP, serial: use *STB?).
  void async_read_status_byte(stb_handler handler);
  // Device clear (VXI-11 device_clear, USBTMC INITIATE_CLEAR); errc::not_supported on links
  // without one. Queued like any operation.
  void async_device_clear(write_handler handler);

  // Completes every queued and in-flight operation with operation_aborted. If an operation was
  // in flight the connection is closed (its reply may still be on the way).
  void cancel();
  // cancel() and close the connection even when idle.
  void close();

  [[nodiscard]] const boost::asio::any_io_executor& get_executor() const noexcept;
  [[nodiscard]] bool is_open() const noexcept;
  [[nodiscard]] counters stats() const noexcept;
  // The link as it is now, one line: "tcp 127.0.0.1:5025 from 127.0.0.1:41234 nodelay".
  [[nodiscard]] std::string describe() const;
  // The last options::history transactions, oldest first.
  [[nodiscard]] std::vector<transaction> recent() const;
  // Time until the next connect attempt is allowed (zero when not backing off).
  [[nodiscard]] std::chrono::milliseconds backoff_remaining() const noexcept;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;  // shared with in-flight Asio handlers
};

// Reads :SYST:ERR? until the instrument reports an empty queue (code 0, written `0` or `+0`)
// or `max_reads` entries were read. The handler gets the entries found (oldest first), or the
// first I/O error / errc::bad_reply (unparsable entry; the entries before it are kept).
// errc::instrument_error with the entries when the queue was still not empty after max_reads.
using drain_handler =
    std::function<void(boost::system::error_code, std::vector<scpi_error_entry>)>;
inline constexpr int kMaxErrorQueueReads = 32;
void async_drain_errors(scpi_session& session, drain_handler handler,
                        int max_reads = kMaxErrorQueueReads);

}  // namespace semilab::drivers
