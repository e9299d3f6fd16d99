// libmodbus links on named worker threads. The context is touched only by the worker.
#include <semilab/drivers/modbus_error.hpp>
#include <semilab/drivers/modbus_link.hpp>
#include <semilab/drivers/modbus_plan.hpp>

#include <boost/asio/post.hpp>
#include <modbus/modbus.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>

namespace semilab::drivers::modbus {

result<link_resource> link_resource_of(const resource& r) {
  if (auto* t = std::get_if<modbus_tcp_resource>(&r)) return link_resource{*t};
  if (auto* u = std::get_if<modbus_rtu_resource>(&r)) return link_resource{*u};
  return drivers::make_error(drivers::errc::bad_resource,
                             "resource '" + drivers::to_string(r) +
                                 "' is not Modbus (expected modbus-tcp:// or modbus-rtu://)");
}

result<link_resource> parse_link_resource(std::string_view text) {
  auto r = parse_resource(text);
  if (!r) return r.error();
  return link_resource_of(*r);
}

std::string to_string(const link_resource& r) {
  return std::visit([](const auto& x) { return drivers::to_string(resource{x}); }, r);
}

namespace {

using clock = std::chrono::steady_clock;

std::int64_t utc_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void set_timeout(modbus_t* ctx, double s) {
  auto us = static_cast<std::uint64_t>(std::llround(s * 1e6));
  modbus_set_response_timeout(ctx, static_cast<std::uint32_t>(us / 1000000),
                              static_cast<std::uint32_t>(us % 1000000));
}

// libmodbus reports through errno; strerror-based helpers are not thread-safe, so name errno
// ourselves (std::generic_category uses the reentrant strerror_r).
std::string errno_text(int e) {
  if (e == ETIMEDOUT) return "timeout";
  if (e >= EMBBADCRC && e <= EMBBADSLAVE) {
    switch (e) {
      case EMBBADCRC: return "bad CRC";
      case EMBBADDATA: return "reply does not match the request";
      case EMBBADEXC: return "invalid exception code";
      case EMBUNKEXC: return "unknown exception";
      case EMBMDATA: return "too many data";
      case EMBBADSLAVE: return "reply from the wrong unit";
    }
  }
  return std::generic_category().message(e);
}

modbus_t* new_context(const link_resource& res) {
  if (auto* t = std::get_if<modbus_tcp_resource>(&res)) {
    std::string port = std::to_string(t->port);
    modbus_t* ctx = modbus_new_tcp_pi(t->host.c_str(), port.c_str());
    if (ctx) modbus_set_slave(ctx, t->unit);
    return ctx;
  }
  const auto& r = std::get<modbus_rtu_resource>(res);
  modbus_t* ctx = modbus_new_rtu(r.device.c_str(), static_cast<int>(r.baud), r.parity,
                                 static_cast<int>(r.data_bits), static_cast<int>(r.stop_bits));
  if (ctx) modbus_set_slave(ctx, r.unit);
  return ctx;
}

}  // namespace

struct session::impl {
  boost::asio::any_io_executor ex;
  link_resource res;
  std::shared_ptr<const device_map> map;
  link_options opt;
  std::string where;  // resource text for messages
  std::vector<read_request> full_plan;  // plan of all points, made once

  // Worker-only state.
  modbus_t* ctx = nullptr;
  clock::time_point next_attempt{};
  double backoff_s = 0;

  mutable std::mutex mu;  // guards jobs, stopping, stats
  std::condition_variable cv;
  std::deque<std::function<void()>> jobs;
  bool stopping = false;
  link_stats st;
  std::thread worker;

  void count(std::uint64_t link_stats::*m) {
    std::lock_guard lk(mu);
    ++(st.*m);
  }
  void set_state(bool connected, std::string err) {
    std::lock_guard lk(mu);
    st.connected = connected;
    if (!err.empty()) st.last_error = std::move(err);
  }

  void run() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lk(mu);
        cv.wait(lk, [&] { return stopping || !jobs.empty(); });
        if (stopping) break;
        job = std::move(jobs.front());
        jobs.pop_front();
      }
      job();
    }
    close("link stopped");
  }

  void close(const std::string& why) {
    if (!ctx) return;
    if (std::holds_alternative<modbus_rtu_resource>(res)) modbus_flush(ctx);  // stale bytes
    modbus_close(ctx);
    modbus_free(ctx);
    ctx = nullptr;
    set_state(false, why);
  }

  double backoff_cap() const { return std::min(opt.backoff_max_s, std::max(map->interval_s, opt.backoff_min_s)); }

  // Connects if needed (respecting the backoff). On failure returns the error for the caller.
  std::optional<error_info> ensure_connected() {
    if (ctx) return std::nullopt;
    auto now = clock::now();
    if (now < next_attempt) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(next_attempt - now).count();
      std::lock_guard lk(mu);
      return make_error(errc::link_down, where + ": not connected (" + st.last_error +
                                             "); next attempt in " + std::to_string(ms) + " ms");
    }
    modbus_t* c = new_context(res);
    if (!c) {
      int e = errno;
      return fail_connect(where + ": cannot create context: " + errno_text(e));
    }
    set_timeout(c, opt.timeout_s);
    modbus_set_error_recovery(c, MODBUS_ERROR_RECOVERY_NONE);  // we close and reconnect ourselves
    if (modbus_connect(c) == -1) {
      int e = errno;
      modbus_free(c);
      return fail_connect(where + ": connect failed: " + errno_text(e));
    }
    ctx = c;
    backoff_s = 0;
    {
      std::lock_guard lk(mu);
      ++st.connects;
      st.connected = true;
    }
    return std::nullopt;
  }

  error_info fail_connect(std::string msg) {
    backoff_s = backoff_s == 0 ? opt.backoff_min_s : std::min(backoff_s * 2, backoff_cap());
    next_attempt = clock::now() + std::chrono::microseconds(static_cast<long>(backoff_s * 1e6));
    {
      std::lock_guard lk(mu);
      ++st.connect_failures;
      st.connected = false;
      st.last_error = msg;
    }
    return make_error(errc::link_down, std::move(msg));
  }

  // Turns errno after a failed request into an error; closes the link unless it was a Modbus
  // exception (the device answered: the stream is in sync).
  error_info request_failed(const read_request& r, const char* what) {
    int e = errno;
    std::string ctx_text = where + ": " + what + " " + std::string(name_of(r.tab)) + " " +
                           std::to_string(r.start) + "+" + std::to_string(r.count) + ": ";
    if (e > MODBUS_ENOBASE && e <= EMBXGTAR) {
      unsigned code = static_cast<unsigned>(e - MODBUS_ENOBASE);
      count(&link_stats::exceptions);
      return error_info{exception_code(code), ctx_text + "exception " + exception_name(code)};
    }
    errc kind = errc::io_error;
    if (e == ETIMEDOUT) {
      kind = errc::timeout;
      count(&link_stats::timeouts);
    } else {
      if (e >= EMBBADCRC && e <= EMBBADSLAVE) kind = errc::bad_frame;
      count(&link_stats::io_errors);
    }
    std::string msg = ctx_text + errno_text(e) + "; link closed, reconnecting";
    close(msg);
    return make_error(kind, msg);
  }

  result<std::vector<std::uint16_t>> read(const read_request& r) {
    count(&link_stats::requests);
    std::vector<std::uint16_t> regs(r.count);
    int n = -1;
    if (is_bit_table(r.tab)) {
      std::vector<std::uint8_t> bits(r.count);
      n = r.tab == table::coil ? modbus_read_bits(ctx, r.start, r.count, bits.data())
                               : modbus_read_input_bits(ctx, r.start, r.count, bits.data());
      if (n == r.count) std::copy(bits.begin(), bits.end(), regs.begin());
    } else {
      n = r.tab == table::holding ? modbus_read_registers(ctx, r.start, r.count, regs.data())
                                  : modbus_read_input_registers(ctx, r.start, r.count, regs.data());
    }
    if (n == -1) return request_failed(r, "read");
    if (n != r.count)
      return make_error(errc::bad_frame, where + ": read " + std::string(name_of(r.tab)) + " " +
                                             std::to_string(r.start) + ": " + std::to_string(n) +
                                             " of " + std::to_string(r.count) + " returned");
    return regs;
  }

  result<value> value_of(const point& p, const read_request& r,
                         const std::vector<std::uint16_t>& regs) const {
    auto off = static_cast<std::size_t>(p.address - r.start);
    if (is_bit_table(p.tab)) return value{regs[off] != 0};
    return decode(p, std::span(regs).subspan(off, p.count()));
  }

  poll_result do_poll(const std::vector<std::size_t>& which) {
    poll_result out;
    std::vector<read_request> subset;
    if (!which.empty()) subset = plan_reads(*map, which);
    const auto& plan = which.empty() ? full_plan : subset;
    std::vector<std::optional<result<value>>> got(map->points.size());
    std::optional<error_info> down = ensure_connected();
    for (const auto& r : plan) {
      if (!down && !ctx)
        down = make_error(errc::link_down, where + ": not read, the link was lost earlier in this poll");
      if (down) {
        for (auto i : r.points) got[i] = *down;
        ++out.failed_requests;
        continue;
      }
      ++out.requests;
      auto regs = read(r);
      if (!regs) {
        ++out.failed_requests;
        for (auto i : r.points) got[i] = regs.error();
        continue;
      }
      for (auto i : r.points) got[i] = value_of(map->points[i], r, *regs);
    }
    out.utc_ns = utc_now_ns();
    std::vector<std::size_t> order = which;
    if (order.empty())
      for (std::size_t i = 0; i < map->points.size(); ++i) order.push_back(i);
    for (auto i : order)
      if (got[i]) out.values.push_back(point_value{i, std::move(*got[i])});
    return out;
  }

  result<value> read_point(std::size_t i) {
    std::vector<std::size_t> one{i};
    auto plan = plan_reads(*map, one);
    auto regs = read(plan.front());
    if (!regs) return regs.error();
    return value_of(map->points[i], plan.front(), *regs);
  }

  result<value> do_write(std::size_t index, const value& v) {
    const point& p = map->points[index];
    if (!p.writable)
      return make_error(errc::not_writable, "point '" + p.name + "' is not writable (writable = false in " + map->source + ")");
    std::vector<std::uint16_t> words;
    if (is_bit_table(p.tab)) {
      if (!std::holds_alternative<bool>(v))
        return make_error(errc::bad_value, "point '" + p.name + "': expected true or false");
    } else {
      auto enc = encode(p, v);
      if (!enc) return enc.error();
      words = std::move(*enc);
    }
    if (auto e = ensure_connected()) return *e;
    count(&link_stats::requests);
    int n;
    read_request r{p.tab, p.address, static_cast<std::uint16_t>(p.count()), {index}};
    if (is_bit_table(p.tab)) n = modbus_write_bit(ctx, p.address, std::get<bool>(v) ? 1 : 0);
    else if (words.size() == 1) n = modbus_write_register(ctx, p.address, words[0]);
    else n = modbus_write_registers(ctx, p.address, static_cast<int>(words.size()), words.data());
    if (n == -1) return request_failed(r, "write");
    // Verify by reading back.
    std::size_t rb = index;
    if (!p.readback.empty()) rb = *map->index_of(p.readback);
    auto got = read_point(rb);
    if (!got) return got.error();
    const point& rp = map->points[rb];
    bool same;
    if (rb == index && !is_bit_table(p.tab)) {
      auto expect = decode(p, words);
      same = expect && *expect == *got;
      if (!same && expect)
        return make_error(errc::readback_mismatch, where + ": point '" + p.name + "': wrote " +
                                                       to_text(*expect) + ", read back " + to_text(*got));
    } else if (is_bit_table(p.tab) && rb == index) {
      same = *got == v;
    } else {
      auto a = as_double(v), b = as_double(*got);
      double tol = std::max(std::fabs(rp.scale), std::fabs(p.scale)) * 0.5 + 1e-9 * std::fabs(a.value_or(0));
      same = a && b && std::fabs(*a - *b) <= tol;
    }
    if (!same)
      return make_error(errc::readback_mismatch, where + ": point '" + p.name + "': wrote " +
                                                     to_text(v) + ", read back " + to_text(*got) +
                                                     " from '" + rp.name + "'");
    return *got;
  }

  void enqueue(std::function<void()> job) {
    {
      std::lock_guard lk(mu);
      jobs.push_back(std::move(job));
    }
    cv.notify_one();
  }
};

session::session(boost::asio::any_io_executor ex, link_resource res, std::shared_ptr<const device_map> map,
           link_options opt)
    : impl_(std::make_unique<impl>()) {
  impl_->ex = std::move(ex);
  impl_->res = std::move(res);
  impl_->map = std::move(map);
  impl_->opt = std::move(opt);
  impl_->where = to_string(impl_->res);
  impl_->full_plan = plan_reads(*impl_->map);
  impl_->worker = std::thread([p = impl_.get()] { p->run(); });
  std::string tname = ("mb-" + impl_->opt.name).substr(0, 15);
  pthread_setname_np(impl_->worker.native_handle(), tname.c_str());
}

session::~session() {
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_one();
  impl_->worker.join();
}

void session::async_poll(std::vector<std::size_t> which, std::function<void(poll_result)> handler) {
  impl_->enqueue([p = impl_.get(), which = std::move(which), h = std::move(handler)]() mutable {
    auto r = p->do_poll(which);
    boost::asio::post(p->ex, [h = std::move(h), r = std::move(r)]() mutable { h(std::move(r)); });
  });
}

void session::async_write(std::size_t index, value v, std::function<void(result<value>)> handler) {
  impl_->enqueue([p = impl_.get(), index, v = std::move(v), h = std::move(handler)]() mutable {
    auto r = index < p->map->points.size()
                 ? p->do_write(index, v)
                 : result<value>(make_error(errc::unknown_point, "point index " + std::to_string(index)));
    boost::asio::post(p->ex, [h = std::move(h), r = std::move(r)]() mutable { h(std::move(r)); });
  });
}

link_stats session::stats() const {
  std::lock_guard lk(impl_->mu);
  return impl_->st;
}

const device_map& session::map() const noexcept { return *impl_->map; }

result<std::vector<scan_hit>> scan_units(const link_resource& res, unsigned first, unsigned last,
                                         double timeout_s) {
  if (first < 1 || last > 247 || first > last)
    return make_error(errc::bad_value, "unit range " + std::to_string(first) + ".." +
                                           std::to_string(last) + " (units are 1..247)");
  std::string where = to_string(res);
  modbus_t* ctx = new_context(res);
  if (!ctx) {
    int e = errno;
    return make_error(errc::link_down, where + ": cannot create context: " + errno_text(e));
  }
  set_timeout(ctx, timeout_s);
  modbus_set_error_recovery(ctx, MODBUS_ERROR_RECOVERY_NONE);
  std::vector<scan_hit> hits;
  bool connected = false;
  for (unsigned u = first; u <= last; ++u) {
    if (!connected) {
      if (modbus_connect(ctx) == -1) {
        int e = errno;
        modbus_free(ctx);
        return make_error(errc::link_down, where + ": connect failed: " + errno_text(e));
      }
      connected = true;
    }
    modbus_set_slave(ctx, static_cast<int>(u));
    std::uint16_t reg = 0;
    int n = modbus_read_registers(ctx, 0, 1, &reg);
    int e = errno;
    if (n == 1) {
      hits.push_back({u, "registers"});
    } else if (e > MODBUS_ENOBASE && e <= EMBXGTAR) {
      hits.push_back({u, "exception " + exception_name(static_cast<unsigned>(e - MODBUS_ENOBASE))});
    } else {
      // No answer: a late reply must not be taken for the next unit's, so start afresh.
      if (std::holds_alternative<modbus_rtu_resource>(res)) modbus_flush(ctx);
      modbus_close(ctx);
      connected = false;
    }
  }
  if (connected) modbus_close(ctx);
  modbus_free(ctx);
  return hits;
}

}  // namespace semilab::drivers::modbus
