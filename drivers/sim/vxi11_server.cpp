#include <semilab/sim/vxi11_server.hpp>

// The ONC RPC and VXI-11 codecs of the driver (private headers of semilab_drivers).
#include "oncrpc.hpp"
#include "vxi11_proto.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace semilab::sim {

namespace asio = boost::asio;
namespace rpc = semilab::drivers::oncrpc;
namespace vx = semilab::drivers::vxi11;
using boost::system::error_code;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t kMaxCallRecord = 1 << 20;   // a device_write of up to ~1 MiB
constexpr std::size_t kMaxInput = 1 << 20;        // program message bytes held before END
constexpr std::uint32_t kMaxReadWaitMs = 60'000;  // io_timeout cap for a waiting device_read

spdlog::logger& vxi_log() {
  static const std::shared_ptr<spdlog::logger> kLogger = [] {
    if (auto l = spdlog::get("sim")) return l;
    return spdlog::stderr_color_mt("sim");
  }();
  return *kLogger;
}

std::string success(std::uint32_t xid, std::string_view results) {
  return rpc::encode_accepted_reply(xid, rpc::accept_stat::success, results);
}

}  // namespace

// One TCP connection of either service. Calls are handled one at a time in arrival order (a
// device_read that waits for data holds the calls behind it, as on an instrument); the socket is
// always being read, so a client that goes away is noticed at once.
class vxi11_server::connection : public std::enable_shared_from_this<connection> {
 public:
  enum class after { nothing, close, power_cycle };

  connection(vxi11_server& server, tcp::socket socket, bool core)
      : server_(server), socket_(std::move(socket)), core_(core) {}

  void start() { read(); }

  void close() {
    if (closed_) return;
    closed_ = true;
    error_code ignored;
    socket_.close(ignored);
    server_.connection_closed(this);
  }

  // Sends the reply to the call being handled, then handles the next one.
  void reply(const std::string& msg, after then = after::nothing) {
    if (closed_) return;
    out_ = rpc::frame_record(msg);
    asio::async_write(socket_, asio::buffer(out_),
                      [self = shared_from_this(), then](error_code ec, std::size_t) {
                        if (ec) return self->close();
                        if (then == after::close) {
                          vxi_log().info("sim vxi11: fault drop-after: closing core connection");
                          return self->close();
                        }
                        if (then == after::power_cycle) {
                          vxi_log().info("sim vxi11: fault power-cycle-after: power cycling");
                          return self->server_.power_cycle_now();
                        }
                        self->busy_ = false;
                        self->next_call();
                      });
  }

  unsigned replies = 0;  // whole response messages read through this connection

 private:
  void read() {
    socket_.async_read_some(asio::buffer(chunk_),
                            [self = shared_from_this()](error_code ec, std::size_t n) {
                              if (ec) return self->close();
                              self->assembler_.feed(std::string_view(self->chunk_.data(), n));
                              for (;;) {
                                std::string rec;
                                auto st = self->assembler_.next(rec);
                                if (st == rpc::record_assembler::status::need_more) break;
                                if (st == rpc::record_assembler::status::too_long) {
                                  vxi_log().warn("sim vxi11: RPC record too long; closing");
                                  return self->close();
                                }
                                self->calls_.push_back(std::move(rec));
                              }
                              self->next_call();
                              if (!self->closed_) self->read();
                            });
  }

  void next_call() {
    if (busy_ || closed_ || calls_.empty()) return;
    busy_ = true;
    current_ = std::move(calls_.front());
    calls_.pop_front();
    auto c = rpc::decode_call(current_);
    if (!c) {
      vxi_log().warn("sim vxi11: not an RPC call; closing");
      return close();
    }
    if (c->rpcvers != rpc::kRpcVersion) return reply(rpc::encode_rpc_mismatch_reply(c->xid));
    server_.dispatch(shared_from_this(), c->xid, c->prog, c->vers, c->proc, c->args, core_);
  }

  vxi11_server& server_;
  tcp::socket socket_;
  bool core_;
  bool closed_ = false;
  bool busy_ = false;
  rpc::record_assembler assembler_{kMaxCallRecord};
  std::vector<char> chunk_ = std::vector<char>(64 * 1024);
  std::deque<std::string> calls_;
  std::string current_;  // record of the call being handled (its args are views into it)
  std::string out_;
};

vxi11_server::vxi11_server(asio::io_context& io, std::unique_ptr<sim_instrument> instrument,
                           const tcp::endpoint& portmapper_listen, fault_config faults,
                           vxi11_options options)
    : io_(io),
      pm_acceptor_(io, portmapper_listen),
      core_acceptor_(io, tcp::endpoint(portmapper_listen.address(), 0)),
      instrument_(std::move(instrument)),
      options_(options),
      faults_(faults) {
  for (int code : faults.errors) instrument_->inject_error(code);
}

vxi11_server::~vxi11_server() = default;

void vxi11_server::start() {
  asio::post(io_, [this] {
    accept(pm_acceptor_, false);
    accept(core_acceptor_, true);
  });
}

void vxi11_server::stop() {
  asio::post(io_, [this] {
    stopped_ = true;
    error_code ignored;
    pm_acceptor_.close(ignored);
    core_acceptor_.close(ignored);
    auto conns = std::move(connections_);
    connections_.clear();
    for (auto& w : conns)
      if (auto c = w.lock()) c->close();
    for (auto& t : hold_timers_) t->cancel();
    hold_timers_.clear();
    for (auto& r : reads_) r.timer->cancel();
    reads_.clear();
  });
}

void vxi11_server::accept(tcp::acceptor& acceptor, bool core) {
  if (stopped_) return;
  acceptor.async_accept([this, &acceptor, core](error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == asio::error::operation_aborted || stopped_) return;
      vxi_log().warn("sim vxi11: accept failed: {}", ec.message());
      return accept(acceptor, core);
    }
    if (core) ++core_accepted_;
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto c = std::make_shared<connection>(*this, std::move(socket), core);
    std::erase_if(connections_, [](const auto& w) { return w.expired(); });
    connections_.push_back(c);
    c->start();
    accept(acceptor, core);
  });
}

void vxi11_server::dispatch(const std::shared_ptr<connection>& c, std::uint32_t xid,
                            std::uint32_t prog, std::uint32_t vers, std::uint32_t proc,
                            std::string_view args, bool core) {
  const std::uint32_t want_prog = core ? vx::kCoreProgram : rpc::kPmapProgram;
  const std::uint32_t want_vers = core ? vx::kCoreVersion : rpc::kPmapVersion;
  if (prog != want_prog) return c->reply(rpc::encode_accepted_reply(xid, rpc::accept_stat::prog_unavail));
  if (vers != want_vers)
    return c->reply(rpc::encode_accepted_reply(xid, rpc::accept_stat::prog_mismatch, {},
                                               want_vers, want_vers));
  if (core) return dispatch_core(c, xid, proc, args);
  dispatch_portmapper(c, xid, proc, args);
}

void vxi11_server::dispatch_portmapper(const std::shared_ptr<connection>& c, std::uint32_t xid,
                                       std::uint32_t proc, std::string_view args) {
  if (proc == rpc::kPmapProcNull) return c->reply(success(xid, {}));
  if (proc != rpc::kPmapProcGetport)
    return c->reply(rpc::encode_accepted_reply(xid, rpc::accept_stat::proc_unavail));
  rpc::pmap_mapping m;
  if (!rpc::decode_mapping(args, m))
    return c->reply(rpc::encode_accepted_reply(xid, rpc::accept_stat::garbage_args));
  std::uint32_t port = 0;
  if (m.prog == vx::kCoreProgram && m.vers == vx::kCoreVersion && m.prot == rpc::kIpprotoTcp) {
    error_code ignored;
    port = core_acceptor_.local_endpoint(ignored).port();
  }
  std::string results;
  rpc::xdr_writer(results).u32(port);
  c->reply(success(xid, results));
}

void vxi11_server::dispatch_core(const std::shared_ptr<connection>& c, std::uint32_t xid,
                                 std::uint32_t proc, std::string_view args) {
  auto garbage = [&] { c->reply(rpc::encode_accepted_reply(xid, rpc::accept_stat::garbage_args)); };
  auto bad_link = [&](auto resp) {
    resp.error = static_cast<std::int32_t>(vx::errc::invalid_link_identifier);
    c->reply(success(xid, vx::encode(resp)));
  };
  switch (proc) {
    case vx::kCreateLink: {
      vx::create_link_parms p;
      if (!vx::decode(args, p)) return garbage();
      const std::int32_t lid = next_lid_++;
      links_[lid] = link{c, std::string(p.device), {}};
      ++links_created_;
      ++links_active_;
      {
        std::lock_guard lock(devices_mutex_);
        devices_.emplace_back(p.device);
      }
      vxi_log().debug("sim vxi11: create_link '{}' -> link {}", p.device, lid);
      return c->reply(success(xid, vx::encode(vx::create_link_resp{0, lid, 0, options_.max_recv_size})));
    }
    case vx::kDeviceWrite: {
      vx::device_write_parms p;
      if (!vx::decode(args, p, kMaxCallRecord)) return garbage();
      auto it = links_.find(p.lid);
      if (it == links_.end()) return bad_link(vx::device_write_resp{});
      // At most maxRecvSize bytes per call; the rest is the client's to send again (and END only
      // counts when everything was taken).
      const std::size_t take = std::min<std::size_t>(p.data.size(), options_.max_recv_size);
      auto& input = it->second.input;
      if (input.size() + take > kMaxInput) {
        input.clear();
        return c->reply(success(xid, vx::encode(vx::device_write_resp{
                                         static_cast<std::int32_t>(vx::errc::out_of_resources), 0})));
      }
      input.append(p.data.substr(0, take));
      std::string text;
      if ((p.flags & vx::kFlagEnd) && take == p.data.size()) text = std::exchange(input, {});
      c->reply(success(xid, vx::encode(vx::device_write_resp{0, static_cast<std::uint32_t>(take)})));
      if (!text.empty()) run_program_message(std::move(text));
      return;
    }
    case vx::kDeviceRead: {
      vx::device_read_parms p;
      if (!vx::decode(args, p)) return garbage();
      if (!links_.count(p.lid)) return bad_link(vx::device_read_resp{});
      waiting_read w{c, xid, p.request_size, p.flags, p.term_char,
                     std::make_shared<asio::steady_timer>(io_)};
      auto timer = w.timer;
      reads_.push_back(std::move(w));
      timer->expires_after(std::chrono::milliseconds(std::min(p.io_timeout, kMaxReadWaitMs)));
      timer->async_wait([this, timer](error_code ec) {
        if (!ec) read_timed_out(timer);
      });
      return serve_reads();
    }
    case vx::kDeviceReadStb: {
      vx::generic_parms p;
      if (!vx::decode(args, p)) return garbage();
      if (!links_.count(p.lid)) return bad_link(vx::device_readstb_resp{});
      return c->reply(success(xid, vx::encode(vx::device_readstb_resp{0, status_byte()})));
    }
    case vx::kDeviceClear: {
      vx::generic_parms p;
      if (!vx::decode(args, p)) return garbage();
      if (!links_.count(p.lid)) return bad_link(vx::device_error_resp{});
      clear_device();
      return c->reply(success(xid, vx::encode(vx::device_error_resp{0})));
    }
    case vx::kDestroyLink: {
      std::int32_t lid = 0;
      if (!vx::decode_link(args, lid)) return garbage();
      if (links_.erase(lid) == 0) return bad_link(vx::device_error_resp{});
      ++links_destroyed_;
      --links_active_;
      return c->reply(success(xid, vx::encode(vx::device_error_resp{0})));
    }
    default:
      return c->reply(rpc::encode_accepted_reply(xid, rpc::accept_stat::proc_unavail));
  }
}

// A program message that ended with END: every NL-terminated part runs, as on the socket
// interface; each part with a query makes one response message.
void vxi11_server::run_program_message(std::string text) {
  {
    std::lock_guard lock(faults_mutex_);
    if (faults_.hang) return;  // a hung instrument: nothing runs, nothing answers
  }
  std::string_view rest(text);
  while (!rest.empty()) {
    auto nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    if (auto reply = execute_line(*instrument_, line)) queue_reply(std::move(*reply));
  }
}

void vxi11_server::queue_reply(std::string reply) {
  message m;
  std::chrono::milliseconds delay{0};
  {
    std::lock_guard lock(faults_mutex_);
    ++reply_counter_;
    delay = faults_.delay;
    if (faults_.late_every != 0 && reply_counter_ % faults_.late_every == 0) delay += faults_.late;
    if (faults_.garbage_every != 0 && reply_counter_ % faults_.garbage_every == 0)
      reply = std::string(kGarbageReply);
    m.drop_after = faults_.drop_after;
    m.power_cycle = faults_.power_cycle_after != 0 && reply_counter_ == faults_.power_cycle_after;
  }
  m.id = next_message_id_++;
  m.data = std::move(reply);
  m.data.push_back('\n');
  m.ready = delay.count() == 0;
  if (!m.ready) {
    auto timer = std::make_shared<asio::steady_timer>(io_, delay);
    hold_timers_.push_back(timer);
    timer->async_wait([this, timer, id = m.id](error_code ec) {
      std::erase(hold_timers_, timer);
      if (ec) return;
      // Gone when a device_clear or a power cycle came first.
      for (auto& msg : output_)
        if (msg.id == id) msg.ready = true;
      serve_reads();
    });
  }
  output_.push_back(std::move(m));
  serve_reads();
}

// Hands ready output to waiting reads, oldest read first. A held (late) message blocks the ones
// behind it.
void vxi11_server::serve_reads() {
  while (!output_.empty() && output_.front().ready && !reads_.empty()) {
    waiting_read w = std::move(reads_.front());
    reads_.pop_front();
    w.timer->cancel();
    auto c = w.conn.lock();
    if (!c) continue;
    message& m = output_.front();
    std::size_t n = std::min<std::size_t>(m.data.size(), w.request_size);
    if (options_.max_read_chunk != 0) n = std::min<std::size_t>(n, options_.max_read_chunk);
    std::int32_t reason = 0;
    if (w.flags & vx::kFlagTermCharSet) {
      auto pos = std::string_view(m.data).substr(0, n).find(w.term_char);
      if (pos != std::string_view::npos) {
        n = pos + 1;
        reason |= vx::kReasonChr;
      }
    }
    std::string data = m.data.substr(0, n);
    m.data.erase(0, n);
    auto then = connection::after::nothing;
    if (m.data.empty()) {
      reason |= vx::kReasonEnd;
      ++replies_;
      ++c->replies;
      if (m.power_cycle)
        then = connection::after::power_cycle;
      else if (m.drop_after != 0 && c->replies >= m.drop_after)
        then = connection::after::close;
      output_.pop_front();
    } else if (n == w.request_size) {
      reason |= vx::kReasonReqCnt;
    }
    c->reply(success(w.xid, vx::encode(vx::device_read_resp{0, reason, data})), then);
  }
}

void vxi11_server::read_timed_out(const std::shared_ptr<asio::steady_timer>& timer) {
  auto it = std::find_if(reads_.begin(), reads_.end(),
                         [&](const waiting_read& r) { return r.timer == timer; });
  if (it == reads_.end()) return;
  waiting_read w = std::move(*it);
  reads_.erase(it);
  if (auto c = w.conn.lock())
    c->reply(success(w.xid, vx::encode(vx::device_read_resp{
                                static_cast<std::int32_t>(vx::errc::io_timeout), 0, {}})));
}

void vxi11_server::connection_closed(connection* c) {
  for (auto it = links_.begin(); it != links_.end();) {
    auto owner = it->second.owner.lock();
    if (!owner || owner.get() == c) {
      it = links_.erase(it);
      --links_active_;
    } else {
      ++it;
    }
  }
  for (auto it = reads_.begin(); it != reads_.end();) {
    auto owner = it->conn.lock();
    if (!owner || owner.get() == c) {
      it->timer->cancel();
      it = reads_.erase(it);
    } else {
      ++it;
    }
  }
}

// device_clear: output queue (held replies included) and partial input of every link emptied.
void vxi11_server::clear_device() {
  ++clears_;
  output_.clear();
  for (auto& [lid, l] : links_) l.input.clear();
}

void vxi11_server::power_cycle_now() {
  instrument_->power_on();
  ++power_cycles_;
  output_.clear();
  auto conns = std::move(connections_);
  connections_.clear();
  for (auto& w : conns)
    if (auto c = w.lock()) c->close();
  links_.clear();
  links_active_ = 0;
}

std::uint8_t vxi11_server::status_byte() const {
  std::uint8_t stb = 0;
  if (!output_.empty() && output_.front().ready) stb |= 0x10;  // MAV
  if (auto* scpi = dynamic_cast<const scpi_instrument*>(instrument_.get());
      scpi && scpi->error_count() > 0)
    stb |= 0x04;  // EAV
  return stb;
}

void vxi11_server::set_faults(const fault_config& faults) {
  {
    std::lock_guard lock(faults_mutex_);
    faults_ = faults;
    reply_counter_ = 0;
  }
  if (!faults.errors.empty())
    asio::post(io_, [this, codes = faults.errors] {
      for (int code : codes) instrument_->inject_error(code);
    });
}

void vxi11_server::power_cycle() {
  asio::post(io_, [this] { power_cycle_now(); });
}

tcp::endpoint vxi11_server::portmapper_endpoint() const { return pm_acceptor_.local_endpoint(); }
tcp::endpoint vxi11_server::core_endpoint() const { return core_acceptor_.local_endpoint(); }

std::vector<std::string> vxi11_server::devices_seen() const {
  std::lock_guard lock(devices_mutex_);
  return devices_;
}

}  // namespace semilab::sim
