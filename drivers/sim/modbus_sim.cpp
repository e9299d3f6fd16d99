// Simulated Modbus devices: one thread, a select() loop over the listener and its clients.
#include <semilab/drivers/modbus_map.hpp>
#include <semilab/sim/modbus_sim.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <modbus/modbus.h>
#include <netinet/in.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <random>
#include <thread>

namespace semilab::sim {
namespace mb = semilab::drivers::modbus;

const std::vector<std::string>& modbus_model_names() {
  static const std::vector<std::string> k = {"eurotherm3200", "vacuum-gauge", "mfc"};
  return k;
}

bool is_modbus_model(std::string_view name) noexcept {
  for (const auto& n : modbus_model_names())
    if (n == name) return true;
  return false;
}

namespace {

volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_signal(int) { g_stop = 1; }

struct faults {
  int exception_addr = -1;
  int exception_code = 4;
  unsigned hang_every = 0, disconnect_every = 0, restart_after = 0;
  unsigned restart_ms = 1000, delay_ms = 0;
};

std::string parse_fault(const std::string& spec, faults& f) {
  auto eq = spec.find('=');
  if (eq == std::string::npos) return "fault '" + spec + "': expected NAME=VALUE";
  std::string k = spec.substr(0, eq), v = spec.substr(eq + 1);
  auto num = [&](std::string_view s, unsigned& out) {
    auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return r.ec == std::errc{} && r.ptr == s.data() + s.size();
  };
  unsigned n = 0;
  if (k == "exception") {
    auto colon = v.find(':');
    unsigned addr = 0, code = 4;
    if (!num(std::string_view(v).substr(0, colon), addr) || addr > 65535 ||
        (colon != std::string::npos && (!num(std::string_view(v).substr(colon + 1), code) || code < 1 || code > 11)))
      return "fault '" + spec + "': expected exception=ADDR[:CODE] (CODE 1..11)";
    f.exception_addr = static_cast<int>(addr);
    f.exception_code = static_cast<int>(code);
    return {};
  }
  if (!num(v, n)) return "fault '" + spec + "': expected an unsigned number";
  if (k == "hang-every") f.hang_every = n;
  else if (k == "disconnect-every") f.disconnect_every = n;
  else if (k == "restart-after") f.restart_after = n;
  else if (k == "restart-ms") f.restart_ms = n;
  else if (k == "delay") f.delay_ms = n;
  else return "fault '" + spec + "': unknown (exception, hang-every, disconnect-every, restart-after, restart-ms, delay)";
  return {};
}

// Registers of the device, written through the profile's codec.
class device {
 public:
  explicit device(mb::device_map map) : map_(std::move(map)) {
    int ends[4] = {0, 0, 0, 0};
    for (const auto& p : map_.points) {
      auto& e = ends[static_cast<int>(p.tab)];
      e = std::max(e, static_cast<int>(p.address + p.count()));
    }
    mapping_ = modbus_mapping_new(ends[0], ends[1], ends[3], ends[2]);
  }
  ~device() {
    if (mapping_) modbus_mapping_free(mapping_);
  }
  device(const device&) = delete;
  device& operator=(const device&) = delete;
  modbus_mapping_t* mapping() { return mapping_; }
  const mb::device_map& map() const { return map_; }

  void set(std::string_view name, const mb::value& v) {
    const auto* p = map_.find(name);
    if (!p) return;  // checked at start by require()
    switch (p->tab) {
      case mb::table::coil: mapping_->tab_bits[p->address] = std::get<bool>(v); return;
      case mb::table::discrete: mapping_->tab_input_bits[p->address] = std::get<bool>(v); return;
      default: break;
    }
    std::uint16_t* regs = p->tab == mb::table::holding ? mapping_->tab_registers
                                                       : mapping_->tab_input_registers;
    if (p->bit) {
      auto mask = static_cast<std::uint16_t>(1u << *p->bit);
      regs[p->address] = std::get<bool>(v) ? (regs[p->address] | mask) : (regs[p->address] & ~mask);
      return;
    }
    auto w = mb::encode(*p, v);
    if (!w) {
      // Physics produced a value the register cannot hold (e.g. a runaway setpoint): clamp by
      // leaving the register as it was, and say so once per call site.
      spdlog::debug("{}: {}", name, w.error().message);
      return;
    }
    std::copy(w->begin(), w->end(), regs + p->address);
  }
  double get(std::string_view name) const {
    const auto* p = map_.find(name);
    if (!p) return 0;
    const std::uint16_t* regs = p->tab == mb::table::holding ? mapping_->tab_registers
                                                             : mapping_->tab_input_registers;
    auto v = mb::decode(*p, std::span(regs + p->address, p->count()));
    return v ? mb::as_double(*v).value_or(0) : 0;
  }
  bool require(std::initializer_list<std::string_view> names, std::string& missing) const {
    for (auto n : names)
      if (!map_.find(n)) missing += (missing.empty() ? "" : ", ") + std::string(n);
    return missing.empty();
  }

 private:
  mb::device_map map_;
  modbus_mapping_t* mapping_ = nullptr;
};

// Physical behaviour: first-order lags toward set points, slow drift, seeded noise.
class physics {
 public:
  physics(std::string model, std::uint64_t seed) : model_(std::move(model)), rng_(seed) {}

  std::vector<std::string_view> needs() const {
    if (model_ == "eurotherm3200")
      return {"pv", "sp", "output", "wsp", "active_sp", "program_status", "sensor_break", "pv_float"};
    if (model_ == "vacuum-gauge") return {"pressure", "status", "sensor_ok", "full_scale", "setpoint1", "relay1"};
    return {"flow", "totalizer", "valve", "setpoint", "gas", "valve_override"};
  }

  void init(device& d) {
    if (model_ == "eurotherm3200") {
      pv_ = 25.0;
      d.set("sp", 150.0);
      d.set("program_status", std::int64_t{1});
      d.set("active_sp", std::int64_t{0});
      d.set("sensor_break", false);
    } else if (model_ == "vacuum-gauge") {
      d.set("full_scale", 133.322);
      d.set("setpoint1", 0.05);
      d.set("sensor_ok", true);
    } else {
      d.set("setpoint", 50.0);
      d.set("gas", std::string("N2"));
      total_ = (std::uint64_t{1} << 53) + 12345;  // above 2^53: exercises exact u64 end to end
    }
    step(d, 0.0);
  }

  void step(device& d, double dt) {
    std::normal_distribution<double> noise(0.0, 1.0);
    t_ += dt;
    if (model_ == "eurotherm3200") {
      double sp = d.get("sp");
      pv_ += (sp - pv_) * std::min(1.0, dt / 20.0) + 0.02 * noise(rng_);
      d.set("pv", pv_);
      d.set("pv_float", pv_);
      d.set("wsp", sp);
      d.set("output", std::clamp((sp - pv_) * 2.0 + 20.0, 0.0, 100.0));
    } else if (model_ == "vacuum-gauge") {
      double p = 0.02 * (1.0 + 0.3 * std::sin(t_ / 30.0)) * std::exp(0.02 * noise(rng_));
      d.set("pressure", p);
      d.set("relay1", p < d.get("setpoint1"));
    } else {
      double sp = d.get("setpoint");
      bool open = d.get("valve_override") != 0;
      double target = open ? 200.0 : sp;
      flow_ += (target - flow_) * std::min(1.0, dt / 0.5) + 0.05 * noise(rng_);
      flow_ = std::max(flow_, 0.0);
      frac_ += flow_ * dt / 60.0;  // sccm -> scc
      auto whole = static_cast<std::uint64_t>(frac_);
      total_ += whole;
      frac_ -= static_cast<double>(whole);
      d.set("flow", flow_);
      d.set("totalizer", total_);
      d.set("valve", std::clamp(flow_ / 2.0, 0.0, 100.0));
    }
  }

 private:
  std::string model_;
  std::mt19937_64 rng_;
  double t_ = 0, pv_ = 25, flow_ = 0, frac_ = 0;
  std::uint64_t total_ = 0;
};

// Whether a read request (FC 1-4) covers `addr` (registers only: FC 3/4).
bool covers(const std::uint8_t* req, int header, int addr) {
  int fc = req[header];
  if (fc != 3 && fc != 4) return false;
  int start = req[header + 1] << 8 | req[header + 2];
  int count = req[header + 3] << 8 | req[header + 4];
  return addr >= start && addr < start + count;
}

int listen_tcp(const std::string& host, int port, int& bound_port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1 ||
      ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 16) != 0) {
    ::close(fd);
    return -1;
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  bound_port = ntohs(a.sin_port);
  return fd;
}

}  // namespace

int run_modbus_sim(const modbus_sim_options& opt) {
  faults f;
  for (const auto& s : opt.faults)
    if (auto err = parse_fault(s, f); !err.empty()) {
      spdlog::error("{}", err);
      return 2;
    }
  auto map = mb::load_profile(opt.model);
  if (!map) {
    spdlog::error("{}", map.error().message);
    return 2;
  }
  physics phys(opt.model, opt.seed);
  device dev(std::move(*map));
  std::string missing;
  for (auto n : phys.needs())
    if (!dev.map().find(n)) missing += (missing.empty() ? "" : ", ") + std::string(n);
  if (!missing.empty() || !dev.mapping()) {
    spdlog::error("profile {} lacks the points the simulator drives: {}", dev.map().source, missing);
    return 2;
  }
  phys.init(dev);

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);

  modbus_t* ctx = nullptr;
  int listener = -1;
  int port = 0;
  std::string host;
  std::vector<int> clients;
  if (opt.rtu) {
    int master = ::posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0) {
      spdlog::error("cannot create a pty: {}", std::generic_category().message(errno));
      return 3;
    }
    std::string path = ::ptsname(master);
    ctx = modbus_new_rtu(path.c_str(), 19200, 'N', 8, 1);
    modbus_set_slave(ctx, 1);
    modbus_set_socket(ctx, master);  // serve on the master side; clients open `path`
    clients.push_back(master);
    std::cout << "listening " << path << std::endl;
  } else {
    auto colon = opt.listen.rfind(':');
    int want = 0;
    if (colon == std::string::npos ||
        std::from_chars(opt.listen.data() + colon + 1, opt.listen.data() + opt.listen.size(), want).ec != std::errc{}) {
      spdlog::error("--listen '{}': expected HOST:PORT with an IPv4 address", opt.listen);
      return 2;
    }
    host = opt.listen.substr(0, colon);
    listener = listen_tcp(host, want, port);
    if (listener < 0) {
      spdlog::error("cannot listen on {}: {}", opt.listen, std::generic_category().message(errno));
      return 3;
    }
    ctx = modbus_new_tcp(host.c_str(), port);  // used for framing only; we own the sockets
    std::cout << "listening " << host << ':' << port << std::endl;
  }
  const int header = modbus_get_header_length(ctx);
  spdlog::info("modbus model {} ({} points) seed {}", opt.model, dev.map().points.size(), opt.seed);

  std::vector<std::uint8_t> query(MODBUS_MAX_ADU_LENGTH);
  auto last = std::chrono::steady_clock::now();
  unsigned requests = 0;
  while (!g_stop) {
    fd_set rd;
    FD_ZERO(&rd);
    int maxfd = -1;
    if (listener >= 0) {
      FD_SET(listener, &rd);
      maxfd = listener;
    }
    for (int c : clients) {
      FD_SET(c, &rd);
      maxfd = std::max(maxfd, c);
    }
    timeval tv{0, 50000};
    int n = ::select(maxfd + 1, &rd, nullptr, nullptr, &tv);
    auto now = std::chrono::steady_clock::now();
    phys.step(dev, std::chrono::duration<double>(now - last).count());
    last = now;
    if (n <= 0) continue;
    if (listener >= 0 && FD_ISSET(listener, &rd)) {
      int c = ::accept(listener, nullptr, nullptr);
      if (c >= 0) clients.push_back(c);
    }
    for (std::size_t i = 0; i < clients.size();) {
      int c = clients[i];
      if (!FD_ISSET(c, &rd)) {
        ++i;
        continue;
      }
      modbus_set_socket(ctx, c);
      int rc = modbus_receive(ctx, query.data());
      if (rc == -1 && !opt.rtu) {  // peer closed or broken frame
        ::close(c);
        clients.erase(clients.begin() + static_cast<long>(i));
        continue;
      }
      ++i;
      if (rc <= 0) continue;  // RTU: CRC error or another unit's frame
      ++requests;
      if (f.delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(f.delay_ms));
      if (f.hang_every && requests % f.hang_every == 0) {
        spdlog::info("fault: request {} left unanswered", requests);
        continue;
      }
      if (!opt.rtu && f.disconnect_every && requests % f.disconnect_every == 0) {
        spdlog::info("fault: request {}: disconnecting", requests);
        ::close(c);
        clients.erase(clients.begin() + static_cast<long>(i - 1));
        --i;
        continue;
      }
      if (!opt.rtu && f.restart_after && requests == f.restart_after) {
        spdlog::info("fault: restart, down for {} ms", f.restart_ms);
        for (int x : clients) ::close(x);
        clients.clear();
        ::close(listener);
        std::this_thread::sleep_for(std::chrono::milliseconds(f.restart_ms));
        int again = 0;
        listener = listen_tcp(host, port, again);
        if (listener < 0) {
          spdlog::error("restart: cannot listen again on port {}", port);
          modbus_free(ctx);
          return 3;
        }
        phys.init(dev);  // a restarted device comes back with its power-on values
        break;
      }
      if (f.exception_addr >= 0 && covers(query.data(), header, f.exception_addr)) {
        modbus_reply_exception(ctx, query.data(), static_cast<unsigned>(f.exception_code));
        continue;
      }
      modbus_reply(ctx, query.data(), rc, dev.mapping());
    }
  }
  for (int c : clients) ::close(c);
  if (listener >= 0) ::close(listener);
  modbus_free(ctx);
  spdlog::info("stopped after {} requests", requests);
  return 0;
}

}  // namespace semilab::sim
