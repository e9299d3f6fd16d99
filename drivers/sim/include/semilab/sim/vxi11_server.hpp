#pragma once
// VXI-11 server for one simulated instrument: its own portmapper (ONC RPC program 100000 v2 over
// TCP, GETPORT and NULL only) on the listen address, and the VXI-11 core channel (program
// 0x0607AF v1) on a second free port of the same address. Same instrument model and command
// processing as sim_server (execute_line), same fault_config.
//
// Like a real instrument, the device has ONE output queue shared by every link: a reply left
// unread by a link that went away is read by the next link unless someone sends device_clear.
// A late reply (fault late=MS/N) holds back the replies after it (the instrument processes one
// message at a time) and is discarded by device_clear. hang: device_write accepts the bytes but
// nothing executes; device_read then ends with error 15 (I/O timeout) after its io_timeout.
// drop-after=N closes the core connection after its Nth whole reply; power-cycle-after=N resets
// the instrument, empties the output queue and closes every core connection.
//
// Supported procedures: create_link (any device name, recorded), device_write (END executes the
// program message; at most maxRecvSize bytes are accepted per call), device_read (END on the
// last byte of a reply message, REQCNT, and CHR when the client sets termChrSet), device_readstb
// (MAV = bit 4 while the output queue holds data, EAV = bit 2 while the error queue does),
// device_clear, destroy_link. Everything else answers PROC_UNAVAIL. No abort or interrupt
// channel (create_link reports abortPort 0).
//
// Threading as sim_server: run the io_context on one thread; set_faults(), power_cycle(), stop()
// and the accessors may be called from any thread. Destroy only after io_context::run() returned.
#include <semilab/sim/instrument.hpp>
#include <semilab/sim/server.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace semilab::sim {

struct vxi11_options {
  std::uint32_t max_recv_size = 4096;  // create_link's maxRecvSize (the spec's minimum is 1024)
  // At most this many bytes per device_read result (0: up to requestSize), as an instrument with
  // a small output buffer answers; the client must keep reading until END.
  std::uint32_t max_read_chunk = 0;
};

class vxi11_server {
 public:
  // Binds both listeners immediately (portmapper on `portmapper_listen`, port 0 = any free
  // port; the core channel on a free port of the same address). Throws
  // boost::system::system_error when binding fails (start-up only).
  vxi11_server(boost::asio::io_context& io, std::unique_ptr<sim_instrument> instrument,
               const boost::asio::ip::tcp::endpoint& portmapper_listen, fault_config faults = {},
               vxi11_options options = {});
  ~vxi11_server();
  vxi11_server(const vxi11_server&) = delete;
  vxi11_server& operator=(const vxi11_server&) = delete;

  void start();
  void stop();
  // As sim_server::set_faults (counters restart; errors are queued into the instrument).
  void set_faults(const fault_config& faults);
  void power_cycle();

  [[nodiscard]] boost::asio::ip::tcp::endpoint portmapper_endpoint() const;
  [[nodiscard]] boost::asio::ip::tcp::endpoint core_endpoint() const;
  // Device names of every create_link so far, oldest first ("inst0", "gpib0,22", ...).
  [[nodiscard]] std::vector<std::string> devices_seen() const;
  [[nodiscard]] std::uint64_t links_created() const noexcept { return links_created_.load(); }
  [[nodiscard]] std::uint64_t links_active() const noexcept { return links_active_.load(); }
  [[nodiscard]] std::uint64_t links_destroyed() const noexcept { return links_destroyed_.load(); }
  [[nodiscard]] std::uint64_t clears() const noexcept { return clears_.load(); }
  [[nodiscard]] std::uint64_t core_connections() const noexcept { return core_accepted_.load(); }
  [[nodiscard]] std::uint64_t replies_sent() const noexcept { return replies_.load(); }
  [[nodiscard]] std::uint64_t power_cycles() const noexcept { return power_cycles_.load(); }

 private:
  class connection;
  friend class connection;
  struct link {
    std::weak_ptr<connection> owner;
    std::string device;
    std::string input;  // program message bytes before END
  };
  struct message {  // one response message in the output queue, terminator included
    std::uint64_t id = 0;
    std::string data;
    bool ready = true;  // false while a late/delay fault holds it
    bool power_cycle = false;
    unsigned drop_after = 0;
  };
  struct waiting_read {
    std::weak_ptr<connection> conn;
    std::uint32_t xid = 0;
    std::uint32_t request_size = 0;
    std::int32_t flags = 0;
    char term_char = 0;
    std::shared_ptr<boost::asio::steady_timer> timer;
  };

  void accept(boost::asio::ip::tcp::acceptor& acceptor, bool core);
  void dispatch(const std::shared_ptr<connection>& c, std::uint32_t xid, std::uint32_t prog,
                std::uint32_t vers, std::uint32_t proc, std::string_view args, bool core);
  void dispatch_portmapper(const std::shared_ptr<connection>& c, std::uint32_t xid,
                           std::uint32_t proc, std::string_view args);
  void dispatch_core(const std::shared_ptr<connection>& c, std::uint32_t xid, std::uint32_t proc,
                     std::string_view args);
  void run_program_message(std::string text);
  void queue_reply(std::string reply);
  void serve_reads();
  void read_timed_out(const std::shared_ptr<boost::asio::steady_timer>& timer);
  void connection_closed(connection* c);
  void clear_device();
  void power_cycle_now();
  std::uint8_t status_byte() const;

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor pm_acceptor_;
  boost::asio::ip::tcp::acceptor core_acceptor_;
  std::unique_ptr<sim_instrument> instrument_;
  vxi11_options options_;
  mutable std::mutex faults_mutex_;
  fault_config faults_;
  std::uint64_t reply_counter_ = 0;  // guarded by faults_mutex_
  std::map<std::int32_t, link> links_;
  std::int32_t next_lid_ = 1;
  std::deque<message> output_;
  std::list<waiting_read> reads_;
  std::list<std::shared_ptr<boost::asio::steady_timer>> hold_timers_;  // late/delay faults
  std::uint64_t next_message_id_ = 1;
  std::vector<std::weak_ptr<connection>> connections_;
  mutable std::mutex devices_mutex_;
  std::vector<std::string> devices_;
  std::atomic<std::uint64_t> links_created_{0}, links_active_{0}, links_destroyed_{0};
  std::atomic<std::uint64_t> clears_{0}, core_accepted_{0}, replies_{0}, power_cycles_{0};
  bool stopped_ = false;
};

}  // namespace semilab::sim
