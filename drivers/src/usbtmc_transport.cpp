// USBTMC / USB488 transport over libusb-1.0 (transport.hpp).
//
// Thread model. Each transport owns one worker thread, the libusb event thread for its own
// libusb context. Every device operation (open, exchange, resync, READ_STATUS_BYTE, clear) is a
// job on that thread: straight-line code that submits asynchronous libusb transfers one at a time
// and handles libusb events until each completes. The job's outcome is posted to the
// transport's executor, where the handler runs. So:
//  - all libusb state (context, handle, endpoints, bTags) is touched on the worker thread only;
//  - the strand side keeps only its own view (open, dirty, busy, describe text);
//  - they share the job queue (mutex) and `abort_` (atomic): interrupt() sets it, the job's
//    event loop sees it within one 20 ms event wait and cancels the transfer in flight with
//    libusb_cancel_transfer, so the operation completes promptly with operation_aborted;
//  - libusb callbacks only set a flag on the worker's stack: no exception, no lock, no post.
// Lifetime: posted results hold a weak_ptr to the transport; the destructor stops and joins the
// worker (after aborting what runs), then releases the interface and the libusb context.
#include <libusb.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "transports.hpp"
#include "usbtmc_proto.hpp"

namespace semilab::drivers::detail {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;
using sys_errc = boost::system::errc::errc_t;

constexpr unsigned kControlTimeoutMs = 500;  // one class request; devices answer in ms
constexpr unsigned kDrainTimeoutMs = 100;    // reading out an aborted Bulk-IN transfer
constexpr int kPollAttempts = 50;            // CHECK_*_STATUS while PENDING, 10 ms apart
constexpr std::size_t kOutChunk = 1 << 20;   // payload per DEV_DEP_MSG_OUT transfer

error_code sys(sys_errc e) {
  return boost::system::errc::make_error_code(e);
}

error_code from_libusb(int rc) {
  switch (rc) {
    case LIBUSB_SUCCESS:
      return {};
    case LIBUSB_ERROR_TIMEOUT:
      return sys(sys_errc::timed_out);
    case LIBUSB_ERROR_PIPE:
      return sys(sys_errc::broken_pipe);
    case LIBUSB_ERROR_NO_DEVICE:
      return sys(sys_errc::no_such_device);
    case LIBUSB_ERROR_NOT_FOUND:
      return sys(sys_errc::no_such_device_or_address);
    case LIBUSB_ERROR_ACCESS:
      return sys(sys_errc::permission_denied);
    case LIBUSB_ERROR_BUSY:
      return sys(sys_errc::device_or_resource_busy);
    case LIBUSB_ERROR_OVERFLOW:
      return sys(sys_errc::value_too_large);
    case LIBUSB_ERROR_INTERRUPTED:
      return asio::error::operation_aborted;
    case LIBUSB_ERROR_NO_MEM:
      return sys(sys_errc::not_enough_memory);
    case LIBUSB_ERROR_NOT_SUPPORTED:
      return sys(sys_errc::operation_not_supported);
    default:
      return sys(sys_errc::io_error);
  }
}

error_code from_status(int status) {
  switch (status) {
    case LIBUSB_TRANSFER_COMPLETED:
      return {};
    case LIBUSB_TRANSFER_TIMED_OUT:
      return sys(sys_errc::timed_out);
    case LIBUSB_TRANSFER_CANCELLED:
      return asio::error::operation_aborted;
    case LIBUSB_TRANSFER_STALL:
      return sys(sys_errc::broken_pipe);
    case LIBUSB_TRANSFER_NO_DEVICE:
      return sys(sys_errc::no_such_device);
    case LIBUSB_TRANSFER_OVERFLOW:
      return sys(sys_errc::value_too_large);
    default:
      return sys(sys_errc::io_error);
  }
}

bool is_gone(const error_code& ec) {
  return ec == sys(sys_errc::no_such_device);
}

std::string hex4(unsigned v) {
  char b[8];
  std::snprintf(b, sizeof b, "%04x", v & 0xFFFFu);
  return b;
}
std::string hex2(unsigned v) {
  char b[8];
  std::snprintf(b, sizeof b, "0x%02x", v & 0xFFu);
  return b;
}

// Runs on the libusb event thread inside libusb_handle_events: only flags completion.
extern "C" void LIBUSB_CALL on_transfer_done(libusb_transfer* t) {
  *static_cast<int*>(t->user_data) = 1;
}

struct xfer_result {
  error_code ec;
  std::size_t actual = 0;
};

class usbtmc_impl : public std::enable_shared_from_this<usbtmc_impl> {
 public:
  usbtmc_impl(asio::any_io_executor ex, usb_resource res, const transport_options& opt)
      : ex_(std::move(ex)), res_(std::move(res)), opt_(opt) {
    describe_ = "usbtmc " + hex4(res_.vendor_id) + ":" + hex4(res_.product_id) +
                (res_.serial.empty() ? std::string() : " serial " + res_.serial) + " (not open)";
    worker_ = std::thread([this] { run_worker(); });
  }

  ~usbtmc_impl() {
    abort_ = true;
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  // ---------------------------------------------------------------- strand side

  void async_ready(transport::handler h) {
    if (open_ && !dirty_) return post_result(std::move(h), error_code{});
    const bool resync = open_ && dirty_;
    start(
        [this, resync]() -> job_outcome {
          job_outcome o;
          if (resync && dev_.handle) {
            o.ec = resync_device();
            if (!o.ec) ++o.resyncs;
            if (o.ec && !is_gone(o.ec) && !abort_) {
              // The device refuses the abort/clear sequence: release it and start over.
              close_device();
              o.ec = open_device();
            }
          } else {
            o.ec = open_device();
          }
          if (o.ec && !abort_ && is_gone(o.ec) && dev_.handle) close_device();
          o.open = dev_.handle != nullptr;
          o.clean = !o.ec;
          return o;
        },
        [h = std::move(h)](job_outcome& o) { h(o.ec); });
  }

  void async_exchange(std::string_view message, bool read_reply, transport::reply_handler h) {
    if (!open_) {
      asio::post(ex_, [h = std::move(h)] { h(asio::error::not_connected, {}); });
      return;
    }
    std::string payload(message);
    if (opt_.termination != '\0') payload.push_back(opt_.termination);
    start(
        [this, payload = std::move(payload), read_reply]() -> job_outcome {
          job_outcome o;
          o.ec = exchange(payload, read_reply, o.reply);
          if (o.ec && is_gone(o.ec)) close_device();
          o.open = dev_.handle != nullptr;
          o.clean = !o.ec;
          return o;
        },
        [h = std::move(h)](job_outcome& o) mutable {
          h(o.ec, o.ec ? std::string() : std::move(o.reply));
        });
  }

  void async_read_stb(transport::stb_handler h) {
    if (!open_) {
      asio::post(ex_, [h = std::move(h)] { h(asio::error::not_connected, 0); });
      return;
    }
    const bool was_dirty = dirty_;
    start(
        [this, was_dirty]() -> job_outcome {
          job_outcome o;
          o.ec = read_status_byte(o.stb);
          if (o.ec && is_gone(o.ec)) close_device();
          o.open = dev_.handle != nullptr;
          // A status byte read does not touch the message stream: it leaves it as it was.
          o.clean = !was_dirty;
          return o;
        },
        [h = std::move(h)](job_outcome& o) { h(o.ec, o.stb); });
  }

  void async_clear(transport::handler h) {
    if (!open_) {
      asio::post(ex_, [h = std::move(h)] { h(asio::error::not_connected); });
      return;
    }
    start(
        [this]() -> job_outcome {
          job_outcome o;
          o.ec = clear_device();
          if (!o.ec) dev_.failed_phase = phase::none;
          if (o.ec && is_gone(o.ec)) close_device();
          o.open = dev_.handle != nullptr;
          o.clean = !o.ec;
          return o;
        },
        [h = std::move(h)](job_outcome& o) { h(o.ec); });
  }

  void interrupt() {
    if (busy_) {
      abort_ = true;
    } else {
      dirty_ = true;
    }
  }

  void close() {
    if (busy_) abort_ = true;
    open_ = false;
    dirty_ = false;
    ++gen_;
    push([this] { close_device(); });
  }

  bool is_open() const noexcept { return open_; }
  bool ready_now() const noexcept { return open_ && !dirty_ && !busy_; }
  std::string describe() const { return describe_; }
  std::uint64_t self_resyncs() const noexcept { return resyncs_; }
  std::uint64_t opens() const noexcept { return opens_; }

 private:
  enum class phase { none, out, in };

  struct job_outcome {
    error_code ec;
    bool open = false;
    bool clean = false;
    std::string reply;
    std::uint8_t stb = 0;
    std::uint64_t resyncs = 0;
    std::string describe;
  };

  template <class Handler>
  void post_result(Handler h, error_code ec) {
    asio::post(ex_, [h = std::move(h), ec] { h(ec); });
  }

  // Queues `work` on the worker thread; its outcome is applied and `done` called on ex_.
  template <class Work, class Done>
  void start(Work work, Done done) {
    busy_ = true;
    std::weak_ptr<usbtmc_impl> weak = shared_from_this();
    const std::uint64_t gen = gen_;
    push([this, weak, gen, work = std::move(work), done = std::move(done)]() mutable {
      job_outcome o = work();
      o.describe = describe_device();
      asio::post(ex_, [weak, gen, o = std::move(o), done = std::move(done)]() mutable {
        auto self = weak.lock();
        if (!self) return;
        self->busy_ = false;
        if (gen == self->gen_) {
          if (o.open && !self->open_) ++self->opens_;
          self->open_ = o.open;
          self->dirty_ = !o.clean || self->abort_;
          self->describe_ = o.describe;
        }
        self->resyncs_ += o.resyncs;
        self->abort_ = false;
        done(o);
      });
    });
  }

  void push(std::function<void()> j) {
    {
      std::lock_guard lk(mu_);
      jobs_.push_back(std::move(j));
    }
    cv_.notify_one();
  }

  void run_worker() {
    for (;;) {
      std::function<void()> j;
      {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [this] { return stop_ || !jobs_.empty(); });
        if (jobs_.empty()) break;  // stop_ and nothing left
        j = std::move(jobs_.front());
        jobs_.pop_front();
      }
      j();
    }
    close_device();
    if (dev_.ctx) libusb_exit(dev_.ctx);
    dev_.ctx = nullptr;
  }

  // ---------------------------------------------------------------- worker side

  // One asynchronous transfer, waited for on this (the event) thread. abort_ cancels it.
  xfer_result run_transfer(libusb_transfer* t) {
    int done = 0;
    t->user_data = &done;
    t->callback = on_transfer_done;
    if (abort_) return {asio::error::operation_aborted, 0};
    int rc = libusb_submit_transfer(t);
    if (rc != 0) return {from_libusb(rc), 0};
    bool cancelled = false;
    while (!done) {
      if (abort_ && !cancelled) {
        libusb_cancel_transfer(t);
        cancelled = true;
      }
      timeval tv{0, 20'000};
      libusb_handle_events_timeout_completed(dev_.ctx, &tv, &done);
    }
    return {from_status(t->status), static_cast<std::size_t>(std::max(t->actual_length, 0))};
  }

  struct transfer_guard {
    libusb_transfer* t = libusb_alloc_transfer(0);
    ~transfer_guard() { libusb_free_transfer(t); }
  };

  xfer_result bulk(unsigned char ep, unsigned char* data, std::size_t len, unsigned timeout_ms) {
    transfer_guard g;
    if (!g.t) return {sys(sys_errc::not_enough_memory), 0};
    libusb_fill_bulk_transfer(g.t, dev_.handle, ep, data, static_cast<int>(len), nullptr, nullptr,
                              timeout_ms);
    return run_transfer(g.t);
  }

  xfer_result interrupt_in(unsigned char* data, std::size_t len, unsigned timeout_ms) {
    transfer_guard g;
    if (!g.t) return {sys(sys_errc::not_enough_memory), 0};
    libusb_fill_interrupt_transfer(g.t, dev_.handle, dev_.ep_int, data, static_cast<int>(len),
                                   nullptr, nullptr, timeout_ms);
    return run_transfer(g.t);
  }

  // Device-to-host class request; `reply` receives the data stage.
  xfer_result control_in(std::uint8_t type, std::uint8_t request, std::uint16_t value,
                         std::uint16_t index, std::vector<std::uint8_t>& reply,
                         std::uint16_t length) {
    transfer_guard g;
    if (!g.t) return {sys(sys_errc::not_enough_memory), 0};
    std::vector<unsigned char> buf(LIBUSB_CONTROL_SETUP_SIZE + length);
    libusb_fill_control_setup(buf.data(), type, request, value, index, length);
    libusb_fill_control_transfer(g.t, dev_.handle, buf.data(), nullptr, nullptr, kControlTimeoutMs);
    auto r = run_transfer(g.t);
    reply.assign(buf.begin() + LIBUSB_CONTROL_SETUP_SIZE,
                 buf.begin() + LIBUSB_CONTROL_SETUP_SIZE +
                     static_cast<std::ptrdiff_t>(std::min<std::size_t>(r.actual, length)));
    return r;
  }

  // Waits `ms` unless aborted.
  bool pause(int ms) {
    for (int i = 0; i < ms && !abort_; i += 2)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return !abort_;
  }

  error_code open_device() {
    close_device();
    // A fresh context per open: its enumeration sees a device that was unplugged and plugged
    // in again (possibly at another address) even where no hotplug events arrive.
    if (dev_.ctx) libusb_exit(dev_.ctx);
    dev_.ctx = nullptr;
    if (int rc = libusb_init(&dev_.ctx); rc != 0) {
      dev_.ctx = nullptr;
      return from_libusb(rc);
    }
    libusb_device** list = nullptr;
    ssize_t n = libusb_get_device_list(dev_.ctx, &list);
    if (n < 0) return from_libusb(static_cast<int>(n));
    error_code last = sys(sys_errc::no_such_device);
    for (ssize_t i = 0; i < n && !dev_.handle && !abort_; ++i) {
      libusb_device_descriptor dd{};
      if (libusb_get_device_descriptor(list[i], &dd) != 0) continue;
      if (dd.idVendor != res_.vendor_id || dd.idProduct != res_.product_id) continue;
      if (auto ec = try_device(list[i], dd); ec) last = ec;
    }
    libusb_free_device_list(list, 1);
    if (abort_ && !dev_.handle) return asio::error::operation_aborted;
    if (!dev_.handle) return last;
    // What a previous session left in the device's queues must not reach this one.
    if (auto ec = clear_device(); ec) {
      close_device();
      return ec;
    }
    dev_.failed_phase = phase::none;
    return {};
  }

  error_code try_device(libusb_device* d, const libusb_device_descriptor& dd) {
    libusb_device_handle* h = nullptr;
    if (int rc = libusb_open(d, &h); rc != 0) return from_libusb(rc);
    auto fail = [&](error_code ec) {
      libusb_close(h);
      return ec;
    };
    std::string serial;
    if (dd.iSerialNumber != 0) {
      unsigned char buf[256];
      int len = libusb_get_string_descriptor_ascii(h, dd.iSerialNumber, buf, sizeof buf);
      if (len > 0) serial.assign(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(len));
    }
    if (!res_.serial.empty() && serial != res_.serial) return fail(sys(sys_errc::no_such_device));

    libusb_config_descriptor* cfg = nullptr;
    if (libusb_get_active_config_descriptor(d, &cfg) != 0 &&
        libusb_get_config_descriptor(d, 0, &cfg) != 0)
      return fail(sys(sys_errc::no_such_device));
    bool found = false;
    for (int i = 0; i < cfg->bNumInterfaces && !found; ++i) {
      if (cfg->interface[i].num_altsetting < 1) continue;
      const libusb_interface_descriptor& id = cfg->interface[i].altsetting[0];
      if (id.bInterfaceClass != usbtmc::kInterfaceClass ||
          id.bInterfaceSubClass != usbtmc::kInterfaceSubclass)
        continue;
      if (res_.interface_number && *res_.interface_number != id.bInterfaceNumber) continue;
      device_state s;
      s.iface = id.bInterfaceNumber;
      s.usb488 = id.bInterfaceProtocol == usbtmc::kProtocolUsb488;
      for (int e = 0; e < id.bNumEndpoints; ++e) {
        const libusb_endpoint_descriptor& ep = id.endpoint[e];
        const int type = ep.bmAttributes & LIBUSB_TRANSFER_TYPE_MASK;
        const bool in = (ep.bEndpointAddress & LIBUSB_ENDPOINT_IN) != 0;
        const std::size_t mps = ep.wMaxPacketSize & 0x7FFu;
        if (type == LIBUSB_TRANSFER_TYPE_BULK && in && !s.ep_in) {
          s.ep_in = ep.bEndpointAddress;
          s.mps_in = mps;
        } else if (type == LIBUSB_TRANSFER_TYPE_BULK && !in && !s.ep_out) {
          s.ep_out = ep.bEndpointAddress;
          s.mps_out = mps;
        } else if (type == LIBUSB_TRANSFER_TYPE_INTERRUPT && in && !s.ep_int) {
          s.ep_int = ep.bEndpointAddress;
          s.mps_int = std::max<std::size_t>(mps, 2);
        }
      }
      if (!s.ep_in || !s.ep_out || s.mps_in == 0) continue;
      found = true;
      s.ctx = dev_.ctx;
      s.serial = serial;
      s.bus = libusb_get_bus_number(d);
      s.address = libusb_get_device_address(d);
      s.vid = dd.idVendor;
      s.pid = dd.idProduct;
      dev_ = std::move(s);
    }
    libusb_free_config_descriptor(cfg);
    if (!found) return fail(sys(sys_errc::no_such_device));

    libusb_set_auto_detach_kernel_driver(h, 1);  // the kernel's usbtmc driver, if bound
    if (int rc = libusb_claim_interface(h, dev_.iface); rc != 0) return fail(from_libusb(rc));
    dev_.handle = h;
    std::vector<std::uint8_t> caps;
    auto r = control_in(usbtmc::kRequestTypeInterfaceIn, usbtmc::kGetCapabilities, 0, dev_.iface,
                        caps, 0x18);
    if (r.ec) {
      close_device();
      return r.ec;
    }
    if (auto c = usbtmc::parse_capabilities(caps); c && c->status == usbtmc::kStatusSuccess) {
      dev_.caps = *c;
      dev_.usb488 = dev_.usb488 || c->usb488;
    }
    return {};
  }

  void close_device() {
    if (!dev_.handle) return;
    libusb_release_interface(dev_.handle, dev_.iface);
    libusb_close(dev_.handle);
    dev_.handle = nullptr;
  }

  std::string describe_device() const {
    if (!dev_.handle) {
      return "usbtmc " + hex4(res_.vendor_id) + ":" + hex4(res_.product_id) +
             (res_.serial.empty() ? std::string() : " serial " + res_.serial) + " (not open)";
    }
    std::string s = "usbtmc " + hex4(dev_.vid) + ":" + hex4(dev_.pid);
    if (!dev_.serial.empty()) s += " serial " + dev_.serial;
    s += " bus " + std::to_string(dev_.bus) + " dev " + std::to_string(dev_.address) + " if " +
         std::to_string(dev_.iface) + " bulk-out " + hex2(dev_.ep_out) + " bulk-in " +
         hex2(dev_.ep_in);
    if (dev_.ep_int) s += " int-in " + hex2(dev_.ep_int);
    s += " max packet " + std::to_string(dev_.mps_in);
    if (dev_.usb488) s += " USB488";
    return s;
  }

  error_code write_out(std::span<const std::uint8_t> bytes, std::uint8_t tag) {
    dev_.failed_phase = phase::out;
    dev_.failed_tag = tag;
    std::vector<unsigned char> buf(bytes.begin(), bytes.end());
    auto r = bulk(dev_.ep_out, buf.data(), buf.size(), 0);
    if (!r.ec && r.actual != buf.size()) r.ec = sys(sys_errc::io_error);
    return r.ec;
  }

  error_code exchange(const std::string& payload, bool read_reply, std::string& reply) {
    if (!dev_.handle) return asio::error::not_connected;
    std::size_t off = 0;
    do {
      std::size_t n = std::min(kOutChunk, payload.size() - off);
      const bool eom = off + n == payload.size();
      std::uint8_t tag = dev_.tags.next();
      std::string wire =
          usbtmc::encode_dev_dep_msg_out(tag, std::string_view(payload).substr(off, n), eom);
      if (auto ec =
              write_out({reinterpret_cast<const std::uint8_t*>(wire.data()), wire.size()}, tag))
        return ec;
      off += n;
    } while (off < payload.size());
    if (!read_reply) {
      dev_.failed_phase = phase::none;
      return {};
    }
    usbtmc::reply_reader reader(dev_.mps_in, opt_.max_reply_bytes);
    std::vector<unsigned char> buf;
    for (;;) {
      switch (reader.state()) {
        case usbtmc::reply_reader::step::request: {
          std::uint8_t tag = dev_.tags.next();
          // TermChar stays off: EOM delimits messages, and TermChar would end a transfer at
          // every LF inside a binary block.
          auto req = usbtmc::encode_request_dev_dep_msg_in(tag, reader.begin_transfer(tag));
          if (auto ec = write_out(req, tag)) return ec;
          dev_.failed_phase = phase::in;
          break;
        }
        case usbtmc::reply_reader::step::read: {
          buf.resize(reader.read_size());
          auto r = bulk(dev_.ep_in, buf.data(), buf.size(), 0);
          if (r.ec) return r.ec;
          reader.feed({buf.data(), r.actual});
          break;
        }
        case usbtmc::reply_reader::step::failed:
          return make_error_code(reader.error());
        case usbtmc::reply_reader::step::complete: {
          reply = reader.take_message();
          if (opt_.termination != '\0' && !reply.empty() && reply.back() == opt_.termination) {
            reply.pop_back();
            if (opt_.termination == '\n' && !reply.empty() && reply.back() == '\r')
              reply.pop_back();
          }
          dev_.failed_phase = phase::none;
          return {};
        }
      }
    }
  }

  // Reads Bulk-IN until a short packet (or nothing more comes): what an aborted transfer left.
  error_code drain_in() {
    std::vector<unsigned char> buf(dev_.mps_in);
    for (int i = 0; i < 1024; ++i) {
      auto r = bulk(dev_.ep_in, buf.data(), buf.size(), kDrainTimeoutMs);
      if (r.ec == sys(sys_errc::timed_out)) return {};
      if (r.ec) return r.ec;
      if (r.actual < buf.size()) return {};
    }
    return sys(sys_errc::io_error);  // the device never stops talking
  }

  // CHECK_*_STATUS until not PENDING; `on_pending` may drain. Returns the final status byte.
  template <class OnPending>
  error_code poll_status(std::uint8_t type, std::uint8_t request, std::uint16_t index,
                         std::uint16_t length, OnPending on_pending) {
    std::vector<std::uint8_t> r;
    for (int i = 0; i < kPollAttempts; ++i) {
      auto x = control_in(type, request, 0, index, r, length);
      if (x.ec) return x.ec;
      if (r.empty()) return sys(sys_errc::protocol_error);
      if (r[0] != usbtmc::kStatusPending) return {};
      if (auto ec = on_pending(r); ec) return ec;
      if (!pause(10)) return asio::error::operation_aborted;
    }
    return sys(sys_errc::timed_out);
  }

  error_code abort_bulk_in(std::uint8_t tag) {
    std::vector<std::uint8_t> r;
    auto x = control_in(usbtmc::kRequestTypeEndpointIn, usbtmc::kInitiateAbortBulkIn, tag,
                        dev_.ep_in, r, 2);
    if (x.ec) return x.ec;
    if (r.empty() || r[0] != usbtmc::kStatusSuccess) return {};  // nothing in progress
    if (auto ec = drain_in(); ec) return ec;
    return poll_status(usbtmc::kRequestTypeEndpointIn, usbtmc::kCheckAbortBulkInStatus, dev_.ep_in,
                       8, [this](const std::vector<std::uint8_t>& s) -> error_code {
                         if (s.size() > 1 && (s[1] & 1)) return drain_in();
                         return {};
                       });
  }

  error_code abort_bulk_out(std::uint8_t tag) {
    std::vector<std::uint8_t> r;
    auto x = control_in(usbtmc::kRequestTypeEndpointIn, usbtmc::kInitiateAbortBulkOut, tag,
                        dev_.ep_out, r, 2);
    if (x.ec) return x.ec;
    if (r.empty() || r[0] != usbtmc::kStatusSuccess) return {};
    if (auto ec = poll_status(usbtmc::kRequestTypeEndpointIn, usbtmc::kCheckAbortBulkOutStatus,
                              dev_.ep_out, 8,
                              [](const std::vector<std::uint8_t>&) { return error_code{}; });
        ec)
      return ec;
    return from_libusb(libusb_clear_halt(dev_.handle, dev_.ep_out));
  }

  // INITIATE_CLEAR, CHECK_CLEAR_STATUS (draining Bulk-IN while bmClear.D0), CLEAR_FEATURE
  // (ENDPOINT_HALT) on both bulk endpoints: the stall case and the data toggles.
  error_code clear_device() {
    if (!dev_.handle) return asio::error::not_connected;
    std::vector<std::uint8_t> r;
    auto x =
        control_in(usbtmc::kRequestTypeInterfaceIn, usbtmc::kInitiateClear, 0, dev_.iface, r, 1);
    if (x.ec) return x.ec;
    if (r.empty() || r[0] != usbtmc::kStatusSuccess) return sys(sys_errc::protocol_error);
    if (auto ec =
            poll_status(usbtmc::kRequestTypeInterfaceIn, usbtmc::kCheckClearStatus, dev_.iface, 2,
                        [this](const std::vector<std::uint8_t>& s) -> error_code {
                          if (s.size() > 1 && (s[1] & 1)) return drain_in();
                          return {};
                        });
        ec)
      return ec;
    if (int rc = libusb_clear_halt(dev_.handle, dev_.ep_out); rc != 0) return from_libusb(rc);
    if (int rc = libusb_clear_halt(dev_.handle, dev_.ep_in); rc != 0) return from_libusb(rc);
    return {};
  }

  error_code resync_device() {
    error_code ec;
    if (dev_.failed_phase == phase::in) ec = abort_bulk_in(dev_.failed_tag);
    if (dev_.failed_phase == phase::out) ec = abort_bulk_out(dev_.failed_tag);
    if (ec) return ec;
    ec = clear_device();
    if (!ec) dev_.failed_phase = phase::none;
    return ec;
  }

  error_code read_status_byte(std::uint8_t& stb) {
    if (!dev_.handle) return asio::error::not_connected;
    const std::uint8_t tag = dev_.stb_tags.next();
    std::vector<std::uint8_t> r;
    auto x =
        control_in(usbtmc::kRequestTypeInterfaceIn, usbtmc::kReadStatusByte, tag, dev_.iface, r, 3);
    if (x.ec) return x.ec;
    if (r.size() < 3 || r[0] != usbtmc::kStatusSuccess || r[1] != tag)
      return make_error_code(errc::bad_reply);
    if (!dev_.ep_int) {
      stb = r[2];
      return {};
    }
    // USB488 3.4.2: with an Interrupt-IN endpoint the byte arrives there as 0x80|bTag, STB.
    // SRQ notifications (0x81) that come first are skipped.
    std::vector<unsigned char> buf(dev_.mps_int);
    for (int i = 0; i < 8; ++i) {
      auto y = interrupt_in(buf.data(), buf.size(), 1000);
      if (y.ec) return y.ec;
      if (y.actual >= 2 && buf[0] == (0x80 | tag)) {
        stb = buf[1];
        return {};
      }
    }
    return make_error_code(errc::bad_reply);
  }

  // Worker-side device state.
  struct device_state {
    libusb_context* ctx = nullptr;
    libusb_device_handle* handle = nullptr;
    std::uint16_t vid = 0, pid = 0;
    std::string serial;
    int bus = 0, address = 0;
    std::uint8_t iface = 0;
    unsigned char ep_out = 0, ep_in = 0, ep_int = 0;
    std::size_t mps_in = 0, mps_out = 0, mps_int = 0;
    bool usb488 = false;
    usbtmc::capabilities caps{};
    usbtmc::btag_counter tags;
    usbtmc::stb_tag_counter stb_tags;
    phase failed_phase = phase::none;
    std::uint8_t failed_tag = 0;
  };

  // Set once, read by both sides.
  asio::any_io_executor ex_;
  const usb_resource res_;
  const transport_options opt_;

  // Strand side.
  bool open_ = false;
  bool dirty_ = false;
  bool busy_ = false;
  std::uint64_t gen_ = 0;  // ++ on close(): outcomes of jobs queued before it change no state
  std::uint64_t resyncs_ = 0;
  std::uint64_t opens_ = 0;  // successful opens (transport::opens)
  std::string describe_;

  // Shared.
  std::atomic<bool> abort_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;

  // Worker side.
  device_state dev_;
  std::thread worker_;  // last: started after everything it uses exists
};

class usbtmc_transport final : public transport {
 public:
  usbtmc_transport(asio::any_io_executor ex, usb_resource res, const transport_options& opt)
      : impl_(std::make_shared<usbtmc_impl>(std::move(ex), std::move(res), opt)) {}
  ~usbtmc_transport() override { impl_->close(); }

  void async_ready(handler h) override { impl_->async_ready(std::move(h)); }
  bool ready_now() noexcept override { return impl_->ready_now(); }
  void async_exchange(std::string_view message, bool read_reply, reply_handler h) override {
    impl_->async_exchange(message, read_reply, std::move(h));
  }
  void interrupt() override { impl_->interrupt(); }
  void close() override { impl_->close(); }
  bool is_open() const noexcept override { return impl_->is_open(); }
  void async_read_stb(stb_handler h) override { impl_->async_read_stb(std::move(h)); }
  void async_clear(handler h) override { impl_->async_clear(std::move(h)); }
  std::string describe() const override { return impl_->describe(); }
  std::uint64_t self_resyncs() const noexcept override { return impl_->self_resyncs(); }
  std::uint64_t opens() const noexcept override { return impl_->opens(); }

 private:
  std::shared_ptr<usbtmc_impl> impl_;
};

}  // namespace

std::unique_ptr<transport> make_usbtmc(boost::asio::any_io_executor ex, usb_resource res,
                                       const transport_options& opt) {
  return std::make_unique<usbtmc_transport>(std::move(ex), std::move(res), opt);
}

}  // namespace semilab::drivers::detail
