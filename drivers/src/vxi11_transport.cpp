// VXI-11 transport (transport.hpp): portmapper GETPORT, then the core channel (create_link,
// device_write/read/readstb/clear, destroy_link) over Asio TCP with the hand-written ONC RPC
// codec of oncrpc.hpp / vxi11_proto.hpp. No abort channel and no interrupt channel: the session's
// deadline closes the core connection instead (interrupt()), which every VXI-11 server must
// survive, and the next async_ready() opens a new link and sends device_clear.
//
// Lifetime: the public object owns a shared state; every pending Asio handler holds the state, so
// destroying the transport with an operation outstanding is safe (close() runs first and the
// operation completes with an error).
#include "oncrpc.hpp"
#include "transports.hpp"
#include "vxi11_proto.hpp"

#include <semilab/drivers/scpi_reply.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/assert.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <type_traits>
#include <limits>
#include <vector>

namespace semilab::drivers::detail {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;

// io_timeout sent with device_write/device_read/device_readstb/device_clear. The session's
// deadline is what bounds an operation (it calls interrupt()); this only bounds how long the
// instrument blocks one RPC. A device_read that ends with error 15 and no END is simply issued
// again, so a long measurement is not cut short by it.
constexpr std::uint32_t kIoTimeoutMs = 10'000;
// create_link: the spec requires maxRecvSize >= 1024; a server reporting less than 64 is
// treated as reporting 1024 (writing 0-byte chunks would never end).
constexpr std::uint32_t kMinMaxRecv = 64;
constexpr std::uint32_t kFallbackMaxRecv = 1024;
constexpr std::size_t kSmallRecord = 4096;  // limit for every reply record but device_read's
constexpr std::size_t kReadSlack = 64;      // RPC + Device_ReadResp header around the data
constexpr std::uint32_t kMaxRequest = 16u << 20;  // requestSize cap per device_read

struct state : std::enable_shared_from_this<state> {
  using rpc_callback = std::function<void(error_code, std::string_view results)>;

  state(asio::any_io_executor ex, tcpip_instr_resource res, const transport_options& opt)
      : ex_(std::move(ex)), res_(std::move(res)), opt_(opt), resolver_(ex_), pm_(ex_), core_(ex_) {}

  // ---- operations ----------------------------------------------------------------------------

  void ready(transport::handler h) {
    if (link_open_ && !dirty_ && core_.is_open() && peer_idle()) {
      asio::post(ex_, [h = std::move(h)] { h({}); });
      return;
    }
    begin();
    drop_link();
    ready_handler_ = std::move(h);
    resolver_.async_resolve(
        res_.host, std::to_string(opt_.portmapper_port), tcp::resolver::numeric_service,
        [self = shared_from_this()](error_code ec, tcp::resolver::results_type results) {
          if (!ec && self->interrupted_) ec = asio::error::operation_aborted;
          if (ec) return self->finish_ready(ec);
          asio::async_connect(self->pm_, results, [self](error_code cec, const tcp::endpoint& ep) {
            if (!cec && self->interrupted_) cec = asio::error::operation_aborted;
            if (cec) {
              if (cec != asio::error::operation_aborted)
                cec = vxi11::make_error_code(vxi11::errc::portmapper_unreachable);
              return self->finish_ready(cec);
            }
            self->host_address_ = ep.address();
            self->getport();
          });
        });
  }

  void exchange(std::string_view message, bool read_reply, transport::reply_handler h) {
    if (!usable()) return post_error(std::move(h), asio::error::not_connected);
    begin();
    reply_handler_ = std::move(h);
    msg_.assign(message);
    msg_.push_back(opt_.termination);  // NL^END: accepted by every 488.2 instrument
    written_ = 0;
    read_reply_ = read_reply;
    reply_.clear();
    write_next();
  }

  void read_stb(transport::stb_handler h) {
    if (!usable()) {
      asio::post(ex_, [h = std::move(h)] { h(asio::error::not_connected, 0); });
      return;
    }
    begin();
    vxi11::generic_parms p{lid_, 0, 0, kIoTimeoutMs};
    rpc(core_, vxi11::kDeviceReadStb, vxi11::encode(p), kSmallRecord,
        [self = shared_from_this(), h = std::move(h)](error_code ec, std::string_view results) {
          vxi11::device_readstb_resp r;
          if (!ec && !vxi11::decode(results, r)) ec = vxi11::errc::bad_reply;
          if (!ec && r.error != 0) ec = vxi11::device_error(r.error);
          self->end(ec);
          h(ec, ec ? std::uint8_t{0} : r.stb);
        });
  }

  void clear(transport::handler h) {
    if (!usable()) return post_error(std::move(h), asio::error::not_connected);
    begin();
    device_clear([self = shared_from_this(), h = std::move(h)](error_code ec) {
      self->end(ec);
      h(ec);
    });
  }

  void interrupt() {
    dirty_ = true;
    if (busy_) interrupted_ = true;
    shutdown_sockets();
  }

  void close() {
    if (busy_) interrupted_ = true;
    if (!busy_ && link_open_ && !dirty_ && core_.is_open()) send_destroy_link();
    shutdown_sockets();
    dirty_ = false;  // the next open starts a fresh link (and clears the device anyway)
  }

  bool is_open() const noexcept { return link_open_ && core_.is_open(); }

  // Open, clean, idle, and the instrument has not dropped the connection meanwhile.
  bool ready_now() noexcept { return usable() && peer_idle(); }

  std::uint64_t opens_ = 0;  // links created (transport::opens)

  std::string describe() const {
    std::string s = "vxi11 " + res_.host + " device " + res_.device;
    if (!is_open())
      return s + " (not connected; portmapper port " + std::to_string(opt_.portmapper_port) + ")";
    return s + " core port " + std::to_string(core_port_) + " link " + std::to_string(lid_) +
           " maxRecvSize " + std::to_string(max_recv_);
  }

 private:
  // ---- connection sequence ------------------------------------------------------------------

  void getport() {
    error_code ignored;
    pm_.set_option(tcp::no_delay(true), ignored);
    oncrpc::pmap_mapping m{vxi11::kCoreProgram, vxi11::kCoreVersion, oncrpc::kIpprotoTcp, 0};
    rpc_to(pm_, oncrpc::kPmapProgram, oncrpc::kPmapVersion, oncrpc::kPmapProcGetport,
           oncrpc::encode_mapping(m), kSmallRecord,
           [self = shared_from_this()](error_code ec, std::string_view results) {
             std::uint16_t port = 0;
             if (!ec && !oncrpc::decode_getport_result(results, port))
               ec = vxi11::errc::bad_reply;
             if (!ec && port == 0) ec = vxi11::errc::core_not_registered;
             error_code ignored2;
             self->pm_.close(ignored2);
             if (ec) return self->finish_ready(ec);
             self->core_port_ = port;
             self->connect_core();
           });
  }

  void connect_core() {
    core_.async_connect(tcp::endpoint(host_address_, core_port_),
                        [self = shared_from_this()](error_code ec) {
                          if (!ec && self->interrupted_) ec = asio::error::operation_aborted;
                          if (ec) {
                            if (ec != asio::error::operation_aborted)
                              ec = vxi11::errc::core_unreachable;
                            return self->finish_ready(ec);
                          }
                          error_code ignored;
                          self->core_.set_option(tcp::no_delay(true), ignored);
                          self->create_link();
                        });
  }

  void create_link() {
    vxi11::create_link_parms p;
    p.client_id = static_cast<std::int32_t>(reinterpret_cast<std::uintptr_t>(this) & 0x7FFFFFFF);
    p.lock_device = false;
    p.lock_timeout = 0;
    p.device = res_.device;
    rpc(core_, vxi11::kCreateLink, vxi11::encode(p), kSmallRecord,
        [self = shared_from_this()](error_code ec, std::string_view results) {
          vxi11::create_link_resp r;
          if (!ec && !vxi11::decode(results, r)) ec = vxi11::errc::bad_reply;
          if (!ec && r.error != 0) ec = vxi11::device_error(r.error);
          if (ec) return self->finish_ready(ec);
          self->lid_ = r.lid;
          self->abort_port_ = static_cast<std::uint16_t>(r.abort_port);
          self->max_recv_ = r.max_recv_size < kMinMaxRecv ? kFallbackMaxRecv : r.max_recv_size;
          self->link_open_ = true;
          ++self->opens_;
          // The instrument's output queue is shared by all links: a reply that a timed-out query
          // (of this or an earlier process) left there must not reach the next query.
          self->device_clear([self](error_code cec) { self->finish_ready(cec); });
        });
  }

  void finish_ready(error_code ec) {
    if (ec) {
      shutdown_sockets();
      dirty_ = true;
    } else {
      dirty_ = false;
    }
    busy_ = false;
    interrupted_ = false;
    auto h = std::move(ready_handler_);
    ready_handler_ = nullptr;
    h(ec);
  }

  void device_clear(std::function<void(error_code)> done) {
    vxi11::generic_parms p{lid_, 0, 0, kIoTimeoutMs};
    rpc(core_, vxi11::kDeviceClear, vxi11::encode(p), kSmallRecord,
        [done = std::move(done)](error_code ec, std::string_view results) {
          vxi11::device_error_resp r;
          if (!ec && !vxi11::decode(results, r)) ec = vxi11::errc::bad_reply;
          if (!ec && r.error != 0) ec = vxi11::device_error(r.error);
          done(ec);
        });
  }

  // ---- exchange -----------------------------------------------------------------------------

  void write_next() {
    const std::size_t left = msg_.size() - written_;
    const std::size_t n = std::min<std::size_t>(left, max_recv_);
    const bool last = n == left;
    vxi11::device_write_parms p;
    p.lid = lid_;
    p.io_timeout = kIoTimeoutMs;
    p.lock_timeout = 0;
    p.flags = last ? vxi11::kFlagEnd : 0;
    p.data = std::string_view(msg_).substr(written_, n);
    rpc(core_, vxi11::kDeviceWrite, vxi11::encode(p), kSmallRecord,
        [self = shared_from_this(), n](error_code ec, std::string_view results) {
          vxi11::device_write_resp r;
          if (!ec && !vxi11::decode(results, r)) ec = vxi11::errc::bad_reply;
          if (!ec && r.error != 0) ec = vxi11::device_error(r.error);
          // Accepting nothing (or more than was sent) would loop forever or lose bytes.
          if (!ec && (r.size == 0 || r.size > n)) ec = vxi11::errc::bad_reply;
          if (ec) return self->finish_exchange(ec);
          self->written_ += r.size;
          if (self->written_ < self->msg_.size()) return self->write_next();
          if (!self->read_reply_) return self->finish_exchange({});
          self->read_next();
        });
  }

  void read_next() {
    // A reply may be max_reply_bytes long plus its terminator and a CR; one byte more proves
    // it is too long.
    const std::size_t limit = opt_.max_reply_bytes + 3;
    const std::size_t want = limit > reply_.size() ? limit - reply_.size() : 1;
    const auto request = static_cast<std::uint32_t>(std::min<std::size_t>(want, kMaxRequest));
    vxi11::device_read_parms p;
    p.lid = lid_;
    p.request_size = request;
    p.io_timeout = kIoTimeoutMs;
    p.lock_timeout = 0;
    p.flags = 0;  // no termChar: binary blocks contain the terminator byte; END ends a reply
    p.term_char = opt_.termination;
    rpc(core_, vxi11::kDeviceRead, vxi11::encode(p), request + kReadSlack,
        [self = shared_from_this(), request](error_code ec, std::string_view results) {
          vxi11::device_read_resp r;
          if (!ec && !vxi11::decode(results, r, request)) ec = vxi11::errc::bad_reply;
          if (ec) return self->finish_exchange(ec);
          self->reply_.append(r.data);
          if (r.error == static_cast<std::int32_t>(vxi11::errc::io_timeout) &&
              (r.reason & vxi11::kReasonEnd) == 0)
            return self->read_next();  // the instrument is still busy; the session's deadline rules
          if (r.error != 0) return self->finish_exchange(vxi11::device_error(r.error));
          if (r.reason & vxi11::kReasonEnd) return self->deliver();
          if (self->reply_.size() > self->opt_.max_reply_bytes + 2)
            return self->finish_exchange(make_error_code(drivers::errc::reply_too_long));
          self->read_next();
        });
  }

  // END came: strip the terminator (and a CR before an LF terminator) unless the last byte is
  // data of a definite block that ended without one.
  void deliver() {
    std::string reply = std::move(reply_);
    reply_.clear();
    if (!reply.empty() && reply.back() == opt_.termination) {
      reply_framer framer(opt_.termination, std::numeric_limits<std::size_t>::max());
      auto st = framer.feed(reply);
      if (st == reply_framer::status::complete) {
        const bool only = framer.message_size() + 1 == reply.size();
        reply.pop_back();
        if (only && opt_.termination == '\n' && framer.cr_before_terminator()) reply.pop_back();
      }
    }
    if (reply.size() > opt_.max_reply_bytes)
      return finish_exchange(make_error_code(drivers::errc::reply_too_long));
    finish_exchange({}, std::move(reply));
  }

  void finish_exchange(error_code ec, std::string reply = {}) {
    end(ec);
    auto h = std::move(reply_handler_);
    reply_handler_ = nullptr;
    if (ec) reply.clear();
    h(ec, std::move(reply));
  }

  // ---- RPC over a stream socket -------------------------------------------------------------

  void rpc(tcp::socket& sock, std::uint32_t proc, std::string args, std::size_t max_record,
           rpc_callback cb) {
    rpc_to(sock, vxi11::kCoreProgram, vxi11::kCoreVersion, proc, std::move(args), max_record,
           std::move(cb));
  }

  // One call, one reply: at most one call is in flight per socket, so the reply must carry our
  // xid and nothing may follow it.
  void rpc_to(tcp::socket& sock, std::uint32_t prog, std::uint32_t vers, std::uint32_t proc,
              std::string args, std::size_t max_record, rpc_callback cb) {
    const std::uint32_t xid = ++xid_;
    wbuf_ = oncrpc::frame_record(oncrpc::encode_call(xid, prog, vers, proc, args));
    assembler_ = oncrpc::record_assembler(max_record);
    asio::async_write(sock, asio::buffer(wbuf_),
                      [self = shared_from_this(), &sock, xid, cb = std::move(cb)](
                          error_code ec, std::size_t) mutable {
                        if (!ec && self->interrupted_) ec = asio::error::operation_aborted;
                        if (ec) return cb(ec, {});
                        self->read_record(sock, xid, std::move(cb));
                      });
  }

  void read_record(tcp::socket& sock, std::uint32_t xid, rpc_callback cb) {
    sock.async_read_some(
        asio::buffer(chunk_),
        [self = shared_from_this(), &sock, xid, cb = std::move(cb)](error_code ec,
                                                                    std::size_t n) mutable {
          if (!ec && self->interrupted_) ec = asio::error::operation_aborted;
          if (ec) return cb(ec, {});
          self->assembler_.feed(std::string_view(self->chunk_.data(), n));
          switch (self->assembler_.next(self->record_)) {
            case oncrpc::record_assembler::status::need_more:
              return self->read_record(sock, xid, std::move(cb));
            case oncrpc::record_assembler::status::too_long:
              return cb(oncrpc::rpc_errc::record_too_long, {});
            case oncrpc::record_assembler::status::complete: break;
          }
          if (self->assembler_.buffered() != 0)
            return cb(make_error_code(drivers::errc::stray_data), {});
          oncrpc::reply r;
          if (auto e = oncrpc::decode_reply(self->record_, xid, r); e) return cb(e, {});
          cb({}, r.results);
        });
  }

  // ---- helpers ------------------------------------------------------------------------------

  bool usable() const noexcept { return link_open_ && !dirty_ && core_.is_open() && !busy_; }

  void begin() {
    BOOST_ASSERT_MSG(!busy_, "vxi11 transport: one operation at a time");
    busy_ = true;
    interrupted_ = false;
  }

  // After stb/clear/exchange: an error leaves the link dirty; the session's interrupt() (or the
  // next async_ready()) closes it, and async_ready() opens a new link with device_clear.
  void end(error_code ec) {
    busy_ = false;
    interrupted_ = false;
    if (ec) dirty_ = true;
  }

  template <class H>
  void post_error(H h, error_code ec) {
    asio::post(ex_, [h = std::move(h), ec]() mutable {
      if constexpr (std::is_invocable_v<H, error_code, std::string>)
        h(ec, std::string{});
      else
        h(ec);
    });
  }

  // An idle core connection must have nothing to read: EOF means the instrument dropped the
  // link, bytes mean something unsolicited arrived. Either way open a new link before sending.
  bool peer_idle() noexcept {
    char c = 0;
    ssize_t n = ::recv(core_.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    return false;
  }

  // Old link: closing the connection is what every server treats as the end of its links.
  void drop_link() { shutdown_sockets(); }

  void shutdown_sockets() {
    resolver_.cancel();
    error_code ignored;
    pm_.close(ignored);
    core_.close(ignored);
    link_open_ = false;
  }

  // Best effort: one non-blocking send of the destroy_link call (tiny; the idle socket's buffer
  // is empty), no wait for the reply. The close right after it ends the link anyway.
  void send_destroy_link() {
    std::string rec = oncrpc::frame_record(oncrpc::encode_call(
        ++xid_, vxi11::kCoreProgram, vxi11::kCoreVersion, vxi11::kDestroyLink,
        vxi11::encode_link(lid_)));
    error_code ec;
    core_.non_blocking(true, ec);
    if (!ec) (void)core_.write_some(asio::buffer(rec), ec);
  }

  asio::any_io_executor ex_;
  tcpip_instr_resource res_;
  transport_options opt_;
  tcp::resolver resolver_;
  tcp::socket pm_;
  tcp::socket core_;
  asio::ip::address host_address_;
  std::uint16_t core_port_ = 0;
  std::uint16_t abort_port_ = 0;
  std::int32_t lid_ = 0;
  std::uint32_t max_recv_ = kFallbackMaxRecv;
  bool link_open_ = false;
  bool dirty_ = false;
  bool busy_ = false;
  bool interrupted_ = false;  // interrupt()/close() during the current operation
  std::uint32_t xid_ = 0;
  std::string wbuf_;
  std::vector<char> chunk_ = std::vector<char>(64 * 1024);
  oncrpc::record_assembler assembler_{kSmallRecord};
  std::string record_;
  transport::handler ready_handler_;
  transport::reply_handler reply_handler_;
  std::string msg_;
  std::size_t written_ = 0;
  bool read_reply_ = false;
  std::string reply_;
};

class vxi11_transport final : public transport {
 public:
  vxi11_transport(asio::any_io_executor ex, tcpip_instr_resource res, const transport_options& opt)
      : s_(std::make_shared<state>(std::move(ex), std::move(res), opt)) {}
  ~vxi11_transport() override { s_->close(); }
  vxi11_transport(const vxi11_transport&) = delete;
  vxi11_transport& operator=(const vxi11_transport&) = delete;

  void async_ready(handler h) override { s_->ready(std::move(h)); }
  [[nodiscard]] bool ready_now() noexcept override { return s_->ready_now(); }
  void async_exchange(std::string_view message, bool read_reply, reply_handler h) override {
    s_->exchange(message, read_reply, std::move(h));
  }
  void interrupt() override { s_->interrupt(); }
  void close() override { s_->close(); }
  [[nodiscard]] bool is_open() const noexcept override { return s_->is_open(); }
  void async_read_stb(stb_handler h) override { s_->read_stb(std::move(h)); }
  void async_clear(handler h) override { s_->clear(std::move(h)); }
  [[nodiscard]] std::string describe() const override { return s_->describe(); }
  [[nodiscard]] std::uint64_t opens() const noexcept override { return s_->opens_; }

 private:
  std::shared_ptr<state> s_;
};

}  // namespace

std::unique_ptr<transport> make_vxi11(boost::asio::any_io_executor ex, tcpip_instr_resource res,
                                      const transport_options& opt) {
  return std::make_unique<vxi11_transport>(std::move(ex), std::move(res), opt);
}

}  // namespace semilab::drivers::detail
