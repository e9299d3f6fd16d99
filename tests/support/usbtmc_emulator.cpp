#include "usbtmc_emulator.hpp"

#include <linux/usbdevice_fs.h>
#include <sys/ioctl.h>
#include <umockdev.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <stdexcept>

namespace semilab::test {
namespace {

constexpr std::uint8_t kStatusSuccess = 0x01;
constexpr std::uint8_t kStatusPending = 0x02;
constexpr std::uint8_t kStatusNotInProgress = 0x81;
constexpr unsigned char kEpOut = 0x02;
constexpr unsigned char kEpIn = 0x81;
constexpr unsigned char kEpInt = 0x83;

void put_u32(std::string& s, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) s[at + static_cast<std::size_t>(i)] = static_cast<char>(v >> (8 * i));
}

std::uint32_t get_u32(const unsigned char* p) {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

usbdevfs_urb* urb_of(UMockdevIoctlData* d) {
  return reinterpret_cast<usbdevfs_urb*>(d->data);
}

}  // namespace

struct usbtmc_emulator::impl {
  // One plug-in of the device: a device node, a handler, URBs. Old plugs stay (their fds may
  // still be open in libusb) and answer ENODEV.
  struct plug {
    impl* owner = nullptr;
    int devnum = 0;
    UMockdevIoctlBase* handler = nullptr;
    bool gone = false;
    std::deque<UMockdevIoctlData*> bulk_in;  // pending IN URBs (refs held)
    std::deque<std::size_t> bulk_in_filled;
    std::deque<UMockdevIoctlData*> int_in;
    std::deque<UMockdevIoctlData*> done;  // completed, waiting to be reaped
  };

  options opt;
  UMockdevTestbed* testbed = nullptr;
  mutable std::mutex mu;
  std::vector<std::unique_ptr<plug>> plugs;
  plug* current = nullptr;
  std::string syspath;

  // Instrument state.
  std::string msg;                  // DEV_DEP_MSG_OUT payload until EOM
  std::string output;               // reply bytes not yet sent
  std::deque<std::string> packets;  // Bulk-IN packet stream (each <= max_packet)
  std::deque<std::string> int_packets;
  std::uint8_t stb = 0;
  bool in_halted = false;
  int in_progress_tag = -1;  // bTag of the Bulk-IN transfer the device works on
  int abort_checks_pending = 0;
  int clear_checks_pending = 0;
  std::size_t siglent_owed = 0;  // bytes sent ahead of their declaration
  int faults[5] = {};
  counters stats;
  std::vector<std::string> received;

  bool take_fault(fault f) {
    int& n = faults[static_cast<int>(f)];
    if (n <= 0) return false;
    --n;
    return true;
  }

  std::string device_text(int devnum) const {
    const std::uint16_t mps = opt.max_packet;
    char b[512];
    std::string d;
    // Device descriptor: USB 2.0, class in interface, ep0 64, VID, PID, bcdDevice 1.00,
    // strings 1/2/3, one configuration.
    std::snprintf(b, sizeof b, "12010002000000%02x%02x%02x%02x%02x0001010203%02x", 64,
                  opt.vendor_id & 0xFF, opt.vendor_id >> 8, opt.product_id & 0xFF,
                  opt.product_id >> 8, 1);
    d += b;
    const int eps = opt.interrupt_in ? 3 : 2;
    const int total = 9 + 9 + 7 * eps;
    std::snprintf(b, sizeof b, "0902%02x%02x010100803209040000%02xfe030100", total, 0, eps);
    d += b;
    std::snprintf(b, sizeof b, "0705%02x02%02x%02x00", kEpOut, mps & 0xFF, mps >> 8);
    d += b;
    std::snprintf(b, sizeof b, "0705%02x02%02x%02x00", kEpIn, mps & 0xFF, mps >> 8);
    d += b;
    if (opt.interrupt_in) {
      std::snprintf(b, sizeof b, "0705%02x0308000a", kEpInt);
      d += b;
    }
    std::snprintf(b, sizeof b,
                  "P: /devices/usb1/1-1\n"
                  "N: bus/usb/001/%03d\n"
                  "E: SUBSYSTEM=usb\n"
                  "E: DEVTYPE=usb_device\n"
                  "E: DRIVER=usb\n"
                  "E: BUSNUM=001\n"
                  "E: DEVNUM=%03d\n"
                  "E: DEVNAME=/dev/bus/usb/001/%03d\n"
                  "A: busnum=1\\n\n"
                  "A: devnum=%d\\n\n"
                  "A: speed=%s\\n\n"
                  "A: bConfigurationValue=1\\n\n"
                  "H: descriptors=",
                  devnum, devnum, devnum, devnum, mps >= 512 ? "480" : "12");
    return std::string(b) + d + "\n";
  }

  void add_plug(int devnum) {
    auto p = std::make_unique<plug>();
    p->owner = this;
    p->devnum = devnum;
    p->handler = UMOCKDEV_IOCTL_BASE(g_object_new(UMOCKDEV_TYPE_IOCTL_BASE, nullptr));
    g_signal_connect(p->handler, "handle-ioctl", G_CALLBACK(&impl::on_ioctl), p.get());
    char node[64];
    std::snprintf(node, sizeof node, "/dev/bus/usb/001/%03d", devnum);
    GError* err = nullptr;
    if (!umockdev_testbed_attach_ioctl(testbed, node, p->handler, &err)) {
      std::string why = err ? err->message : "?";
      if (err) g_error_free(err);
      throw std::runtime_error("umockdev attach_ioctl: " + why);
    }
    {
      std::lock_guard lk(mu);
      current = p.get();
      plugs.push_back(std::move(p));
      reset_instrument();
    }
    std::string text = device_text(devnum);
    if (!umockdev_testbed_add_from_string(testbed, text.c_str(), &err)) {
      std::string why = err ? err->message : "?";
      if (err) g_error_free(err);
      throw std::runtime_error("umockdev add_from_string: " + why);
    }
    syspath = "/sys/devices/usb1/1-1";
  }

  void reset_instrument() {
    msg.clear();
    output.clear();
    packets.clear();
    int_packets.clear();
    in_halted = false;
    in_progress_tag = -1;
    siglent_owed = 0;
  }

  // ------------------------------------------------------------ instrument

  void process(const std::string& m) {
    std::string cmd = m;
    while (!cmd.empty() && (cmd.back() == '\n' || cmd.back() == '\r')) cmd.pop_back();
    received.push_back(cmd);
    auto arg = [&](std::size_t at) { return cmd.size() > at ? cmd.substr(at) : std::string(); };
    if (cmd == "*IDN?") {
      output += opt.idn + "\n";
    } else if (cmd.rfind("ECHO? ", 0) == 0) {
      output += arg(6) + "\n";
    } else if (cmd.rfind("LEN? ", 0) == 0) {
      std::size_t n = std::strtoul(arg(5).c_str(), nullptr, 10);
      if (n > 0) output += std::string(n - 1, 'A') + "\n";
    } else if (cmd.rfind("BLOCK? ", 0) == 0) {
      std::size_t n = std::strtoul(arg(7).c_str(), nullptr, 10);
      std::string len = std::to_string(n);
      output += "#" + std::to_string(len.size()) + len;
      for (std::size_t i = 0; i < n; ++i)
        output += static_cast<char>(i % 3 == 0 ? '\n' : i % 3 == 1 ? '\0' : 'x');
      output += "\n";
    } else if (cmd == "*STB?") {
      output += std::to_string(stb) + "\n";
    } else if (cmd.rfind("STB ", 0) == 0) {
      stb = static_cast<std::uint8_t>(std::strtoul(arg(4).c_str(), nullptr, 10));
    } else if (cmd.find('?') != std::string::npos) {
      output += "0\n";
    }
  }

  static std::string header(std::uint8_t tag, std::uint32_t size, bool eom) {
    std::string h(12, '\0');
    h[0] = 2;
    h[1] = static_cast<char>(tag);
    h[2] = static_cast<char>(~tag);
    put_u32(h, 4, size);
    h[8] = eom ? 1 : 0;
    return h;
  }

  void packetize(const std::string& transfer, bool zlp_after_full) {
    const std::size_t mps = opt.max_packet;
    for (std::size_t off = 0; off < transfer.size(); off += mps)
      packets.push_back(transfer.substr(off, mps));
    if (transfer.size() % mps == 0 && zlp_after_full) {
      packets.emplace_back();
      ++stats.zlps;
    }
  }

  void on_request(std::uint8_t tag, std::uint32_t max) {
    ++stats.requests;
    in_progress_tag = tag;
    if (take_fault(fault::hang)) return;  // busy: the reply stays queued, nothing is sent
    if (take_fault(fault::stall)) {
      in_halted = true;
      return;
    }
    if (output.empty() && siglent_owed == 0) return;  // nothing to say: the read waits
    const bool rigol = take_fault(fault::rigol);
    std::uint8_t htag = tag;
    if (take_fault(fault::wrong_tag)) htag = static_cast<std::uint8_t>(tag == 255 ? 1 : tag + 1);
    const std::size_t mps = opt.max_packet;
    if (take_fault(fault::siglent) && mps > 12 + 4 && output.size() > mps - 12) {
      // SDG1062X: declare what fits into the first packet, EOM clear, then 4 more bytes in a
      // header-less short packet (pyvisa-py PR 465).
      std::size_t first = mps - 12;
      std::string t =
          header(htag, static_cast<std::uint32_t>(first), false) + output.substr(0, first);
      packets.push_back(t);
      std::size_t extra = std::min<std::size_t>(4, output.size() - first);
      packets.push_back(output.substr(first, extra));
      output.erase(0, first + extra);
      siglent_owed = extra;
      in_progress_tag = -1;
      return;
    }
    // Siglent's next transfer declares the owed bytes again and pads them with zeros.
    std::size_t n = std::min<std::size_t>(max, output.size() + siglent_owed);
    std::size_t real = n > siglent_owed ? n - siglent_owed : 0;
    bool eom = real == output.size();
    std::string t = header(htag, static_cast<std::uint32_t>(n), eom) + output.substr(0, real) +
                    std::string(n - real, '\0');
    t.append((4 - t.size() % 4) % 4, '\0');
    output.erase(0, real);
    siglent_owed = 0;
    packetize(t, !rigol);
    in_progress_tag = -1;
  }

  void on_bulk_out(const unsigned char* b, std::size_t len) {
    if (len < 12 || b[2] != static_cast<unsigned char>(~b[1])) return;
    stats.out_tags.push_back(b[1]);
    const std::uint32_t size = get_u32(b + 4);
    if (b[0] == 1) {
      msg.append(reinterpret_cast<const char*>(b + 12), std::min<std::size_t>(size, len - 12));
      if (b[8] & 1) {
        std::string m;
        m.swap(msg);
        process(m);
      }
    } else if (b[0] == 2) {
      on_request(b[1], size);
    }
  }

  // Class and standard requests on ep0. Returns false to stall.
  bool on_control(const unsigned char* setup, std::vector<std::uint8_t>& reply) {
    const std::uint8_t type = setup[0], req = setup[1];
    const std::uint16_t value = static_cast<std::uint16_t>(setup[2] | setup[3] << 8);
    const std::uint16_t length = static_cast<std::uint16_t>(setup[6] | setup[7] << 8);
    if (type == 0x80 && req == 6) {  // GET_DESCRIPTOR
      if ((value >> 8) != 3) return false;
      const int index = value & 0xFF;
      if (index == 0) {
        reply = {4, 3, 0x09, 0x04};
      } else {
        std::string s = index == 3 ? opt.serial : index == 1 ? "semilab" : "usbtmc emulator";
        reply = {static_cast<std::uint8_t>(2 + 2 * s.size()), 3};
        for (char c : s) {
          reply.push_back(static_cast<std::uint8_t>(c));
          reply.push_back(0);
        }
      }
    } else if ((type == 0xA2 || type == 0xA1)) {
      const std::uint8_t tag = static_cast<std::uint8_t>(value & 0xFF);
      switch (req) {
        case 1:  // INITIATE_ABORT_BULK_OUT
          ++stats.initiate_abort_out;
          msg.clear();
          reply = {kStatusSuccess, tag};
          break;
        case 2:  // CHECK_ABORT_BULK_OUT_STATUS
          reply = {kStatusSuccess, 0, 0, 0, 0, 0, 0, 0};
          break;
        case 3:  // INITIATE_ABORT_BULK_IN
          ++stats.initiate_abort_in;
          stats.abort_in_tags.push_back(tag);
          if (in_progress_tag == tag) {
            output.clear();
            packets.clear();
            packets.emplace_back();  // the aborted transfer ends with a short packet
            ++stats.zlps;
            in_progress_tag = -1;
            abort_checks_pending = 1;
            reply = {kStatusSuccess, tag};
          } else {
            reply = {kStatusNotInProgress, tag};
          }
          break;
        case 4:  // CHECK_ABORT_BULK_IN_STATUS
          ++stats.check_abort_in;
          reply = {
              abort_checks_pending-- > 0 ? kStatusPending : kStatusSuccess, 0, 0, 0, 0, 0, 0, 0};
          break;
        case 5:  // INITIATE_CLEAR
          ++stats.initiate_clear;
          msg.clear();
          output.clear();
          packets.clear();
          siglent_owed = 0;
          in_progress_tag = -1;
          clear_checks_pending = 1;
          reply = {kStatusSuccess};
          break;
        case 6:  // CHECK_CLEAR_STATUS
          ++stats.check_clear;
          reply = {clear_checks_pending-- > 0 ? kStatusPending : kStatusSuccess, 0};
          break;
        case 7:  // GET_CAPABILITIES
          ++stats.get_capabilities;
          reply.assign(0x18, 0);
          reply[0] = kStatusSuccess;
          reply[2] = 0x00;
          reply[3] = 0x01;  // bcdUSBTMC 1.00
          reply[12] = 0x00;
          reply[13] = 0x01;  // bcdUSB488 1.00
          reply[14] = 0x07;  // 488.2, REN/GTL/LLO, TRIGGER
          reply[15] = 0x0F;  // SCPI, SR1, RL1, DT1
          break;
        case 128:  // READ_STATUS_BYTE
          ++stats.read_status_byte;
          if (opt.interrupt_in) {
            reply = {kStatusSuccess, tag, 0};
            int_packets.push_back(
                std::string{static_cast<char>(0x80 | tag), static_cast<char>(stb)});
          } else {
            reply = {kStatusSuccess, tag, stb};
          }
          break;
        default:
          return false;
      }
    } else {
      return false;
    }
    if (reply.size() > length) reply.resize(length);
    return true;
  }

  // ------------------------------------------------------------ URB plumbing

  static void finish(plug& p, UMockdevIoctlData* d, int status, std::size_t actual) {
    urb_of(d)->status = status;
    urb_of(d)->actual_length = static_cast<int>(actual);
    p.done.push_back(d);
  }

  void pump(plug& p) {
    while (!p.bulk_in.empty()) {
      UMockdevIoctlData* d = p.bulk_in.front();
      usbdevfs_urb* u = urb_of(d);
      if (in_halted) {
        p.bulk_in.pop_front();
        std::size_t f = p.bulk_in_filled.front();
        p.bulk_in_filled.pop_front();
        finish(p, d, -EPIPE, f);
        continue;
      }
      if (packets.empty()) break;
      std::string pk = std::move(packets.front());
      packets.pop_front();
      std::size_t& filled = p.bulk_in_filled.front();
      const std::size_t room = static_cast<std::size_t>(u->buffer_length) - filled;
      const std::size_t n = std::min(room, pk.size());
      std::memcpy(static_cast<char*>(u->buffer) + filled, pk.data(), n);
      filled += n;
      if (pk.size() > room || pk.size() < opt.max_packet ||
          filled == static_cast<std::size_t>(u->buffer_length)) {
        const int status = pk.size() > room ? -EOVERFLOW : 0;
        const std::size_t f = filled;
        p.bulk_in.pop_front();
        p.bulk_in_filled.pop_front();
        finish(p, d, status, f);
      }
    }
    while (!p.int_in.empty() && !int_packets.empty()) {
      UMockdevIoctlData* d = p.int_in.front();
      p.int_in.pop_front();
      std::string pk = std::move(int_packets.front());
      int_packets.pop_front();
      usbdevfs_urb* u = urb_of(d);
      const std::size_t n =
          std::min<std::size_t>(pk.size(), static_cast<std::size_t>(u->buffer_length));
      std::memcpy(u->buffer, pk.data(), n);
      finish(p, d, 0, n);
    }
  }

  static gboolean on_ioctl(UMockdevIoctlBase*, UMockdevIoctlClient* client, gpointer user) {
    auto* p = static_cast<plug*>(user);
    return p->owner->handle(*p, client);
  }

  gboolean handle(plug& p, UMockdevIoctlClient* client) {
    const unsigned long request = umockdev_ioctl_client_get_request(client);
    UMockdevIoctlData* arg = umockdev_ioctl_client_get_arg(client);
    std::lock_guard lk(mu);
    const bool gone = p.gone || &p != current;

    switch (request) {
      case USBDEVFS_REAPURB:
      case USBDEVFS_REAPURBNDELAY: {
        if (p.done.empty()) {
          umockdev_ioctl_client_complete(client, -1, gone ? ENODEV : EAGAIN);
          return TRUE;
        }
        UMockdevIoctlData* d = p.done.front();
        p.done.pop_front();
        UMockdevIoctlData* ptr = umockdev_ioctl_data_resolve(arg, 0, sizeof(void*), nullptr);
        umockdev_ioctl_data_set_ptr(ptr, 0, d);
        umockdev_ioctl_data_unref(ptr);
        umockdev_ioctl_data_unref(d);
        umockdev_ioctl_client_complete(client, 0, 0);
        return TRUE;
      }
      case USBDEVFS_DISCARDURB: {
        const auto addr = reinterpret_cast<gulong>(*reinterpret_cast<void**>(arg->data));
        for (std::size_t i = 0; i < p.bulk_in.size(); ++i) {
          if (p.bulk_in[i]->client_addr == addr) {
            UMockdevIoctlData* d = p.bulk_in[i];
            std::size_t f = p.bulk_in_filled[i];
            p.bulk_in.erase(p.bulk_in.begin() + static_cast<std::ptrdiff_t>(i));
            p.bulk_in_filled.erase(p.bulk_in_filled.begin() + static_cast<std::ptrdiff_t>(i));
            finish(p, d, -ENOENT, f);
            ++stats.discarded;
            umockdev_ioctl_client_complete(client, 0, 0);
            return TRUE;
          }
        }
        for (std::size_t i = 0; i < p.int_in.size(); ++i) {
          if (p.int_in[i]->client_addr == addr) {
            UMockdevIoctlData* d = p.int_in[i];
            p.int_in.erase(p.int_in.begin() + static_cast<std::ptrdiff_t>(i));
            finish(p, d, -ENOENT, 0);
            ++stats.discarded;
            umockdev_ioctl_client_complete(client, 0, 0);
            return TRUE;
          }
        }
        umockdev_ioctl_client_complete(client, -1, EINVAL);
        return TRUE;
      }
      default:
        break;
    }
    if (gone) {
      umockdev_ioctl_client_complete(client, -1, ENODEV);
      return TRUE;
    }
    switch (request) {
      case USBDEVFS_GET_CAPABILITIES: {
        UMockdevIoctlData* d = umockdev_ioctl_data_resolve(arg, 0, sizeof(std::uint32_t), nullptr);
        std::uint32_t caps = USBDEVFS_CAP_ZERO_PACKET | USBDEVFS_CAP_BULK_CONTINUATION |
                             USBDEVFS_CAP_NO_PACKET_SIZE_LIM | USBDEVFS_CAP_REAP_AFTER_DISCONNECT;
        std::memcpy(d->data, &caps, sizeof caps);
        umockdev_ioctl_data_unref(d);
        umockdev_ioctl_client_complete(client, 0, 0);
        return TRUE;
      }
      case USBDEVFS_DISCONNECT_CLAIM:
        ++stats.detach_claims;
        umockdev_ioctl_client_complete(client, 0, 0);
        return TRUE;
      case USBDEVFS_CLAIMINTERFACE:
      case USBDEVFS_RELEASEINTERFACE:
      case USBDEVFS_RESET:
      case USBDEVFS_RESETEP:
      case USBDEVFS_SETINTERFACE:
        umockdev_ioctl_client_complete(client, 0, 0);
        return TRUE;
      case USBDEVFS_CLEAR_HALT: {
        UMockdevIoctlData* d = umockdev_ioctl_data_resolve(arg, 0, sizeof(unsigned int), nullptr);
        unsigned int ep = 0;
        std::memcpy(&ep, d->data, sizeof ep);
        umockdev_ioctl_data_unref(d);
        if (ep == kEpIn) {
          ++stats.clear_halt_in;
          in_halted = false;
        } else if (ep == kEpOut) {
          ++stats.clear_halt_out;
        }
        umockdev_ioctl_client_complete(client, 0, 0);
        return TRUE;
      }
      case USBDEVFS_GETDRIVER:
      case USBDEVFS_IOCTL:
        umockdev_ioctl_client_complete(client, -1, ENODATA);
        return TRUE;
      case USBDEVFS_SUBMITURB: {
        UMockdevIoctlData* d = umockdev_ioctl_data_resolve(arg, 0, sizeof(usbdevfs_urb), nullptr);
        usbdevfs_urb* u = urb_of(d);
        UMockdevIoctlData* buf =
            umockdev_ioctl_data_resolve(d, offsetof(usbdevfs_urb, buffer),
                                        static_cast<gsize>(std::max(u->buffer_length, 0)), nullptr);
        if (buf) umockdev_ioctl_data_unref(buf);  // the URB keeps it
        u = urb_of(d);
        const auto* bytes = static_cast<const unsigned char*>(u->buffer);
        const std::size_t len = static_cast<std::size_t>(std::max(u->buffer_length, 0));
        if (u->type == USBDEVFS_URB_TYPE_CONTROL) {
          std::vector<std::uint8_t> reply;
          if (len < 8 || !on_control(bytes, reply)) {
            finish(p, d, -EPIPE, 0);
          } else {
            std::memcpy(static_cast<unsigned char*>(u->buffer) + 8, reply.data(),
                        std::min(reply.size(), len - 8));
            finish(p, d, 0, reply.size());
          }
        } else if (u->type == USBDEVFS_URB_TYPE_BULK && u->endpoint == kEpOut) {
          on_bulk_out(bytes, len);
          finish(p, d, 0, len);
        } else if (u->type == USBDEVFS_URB_TYPE_BULK && u->endpoint == kEpIn) {
          p.bulk_in.push_back(d);
          p.bulk_in_filled.push_back(0);
        } else if (u->type == USBDEVFS_URB_TYPE_INTERRUPT && u->endpoint == kEpInt) {
          p.int_in.push_back(d);
        } else {
          finish(p, d, -EPIPE, 0);
        }
        pump(p);
        umockdev_ioctl_client_complete(client, 0, 0);
        return TRUE;
      }
      default:
        return FALSE;
    }
  }
};

usbtmc_emulator::usbtmc_emulator(options opt) : impl_(std::make_unique<impl>()) {
  impl_->opt = std::move(opt);
  impl_->testbed = umockdev_testbed_new();
  impl_->add_plug(5);
}

usbtmc_emulator::~usbtmc_emulator() {
  for (auto& p : impl_->plugs) {
    for (auto* d : p->bulk_in) umockdev_ioctl_data_unref(d);
    for (auto* d : p->int_in) umockdev_ioctl_data_unref(d);
    for (auto* d : p->done) umockdev_ioctl_data_unref(d);
  }
  g_object_unref(impl_->testbed);
  for (auto& p : impl_->plugs) g_object_unref(p->handler);
}

bool usbtmc_emulator::available() {
  const char* pre = std::getenv("LD_PRELOAD");
  return pre && std::strstr(pre, "libumockdev-preload") != nullptr;
}

void usbtmc_emulator::inject(fault f, int times) {
  std::lock_guard lk(impl_->mu);
  impl_->faults[static_cast<int>(f)] += times;
}

void usbtmc_emulator::set_status_byte(std::uint8_t stb) {
  std::lock_guard lk(impl_->mu);
  impl_->stb = stb;
}

usbtmc_emulator::counters usbtmc_emulator::stats() const {
  std::lock_guard lk(impl_->mu);
  return impl_->stats;
}

std::vector<std::string> usbtmc_emulator::commands() const {
  std::lock_guard lk(impl_->mu);
  return impl_->received;
}

int usbtmc_emulator::device_number() const {
  std::lock_guard lk(impl_->mu);
  return impl_->current ? impl_->current->devnum : 0;
}

void usbtmc_emulator::unplug() {
  int devnum = 0;
  {
    std::lock_guard lk(impl_->mu);
    auto& p = *impl_->current;
    p.gone = true;
    devnum = p.devnum;
    while (!p.bulk_in.empty()) {
      impl::finish(p, p.bulk_in.front(), -ESHUTDOWN, p.bulk_in_filled.front());
      p.bulk_in.pop_front();
      p.bulk_in_filled.pop_front();
    }
    while (!p.int_in.empty()) {
      impl::finish(p, p.int_in.front(), -ESHUTDOWN, 0);
      p.int_in.pop_front();
    }
  }
  (void)devnum;
  umockdev_testbed_uevent(impl_->testbed, impl_->syspath.c_str(), "remove");
  umockdev_testbed_remove_device(impl_->testbed, impl_->syspath.c_str());
}

void usbtmc_emulator::replug() {
  int next = 0;
  {
    std::lock_guard lk(impl_->mu);
    next = impl_->current->devnum + 1;
  }
  impl_->add_plug(next);
}

}  // namespace semilab::test
