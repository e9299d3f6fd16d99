// libmodbus links on named worker threads. The context is touched only by the worker.
#include <semilab/drivers/modbus_error.hpp>
#include <semilab/drivers/modbus_link.hpp>
#include <semilab/drivers/modbus_plan.hpp>

#include <boost/asio/post.hpp>
#include <modbus/modbus.h>
#include <pthread.h>

#include <algorithm>
#include <span>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
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

  // Continuous polling (start_polling); guarded by mu except `schedule`, which only the worker
  // touches once `polling` is seen.
  bool polling = false;
  std::uint64_t polling_gen = 0;  // bumped by start/stop: a running schedule is replaced
  // Shared, so a poll takes a reference (one atomic increment) rather than a copy of the
  // std::function (a heap allocation per poll), and stop/start may replace it meanwhile.
  std::shared_ptr<const std::function<void(poll_result)>> poll_handler;
  poll_schedule schedule;
  std::uint64_t schedule_gen = 0;  // worker-only: generation `schedule` was built for
  double base_interval_s = 1.0;
  using handler_ptr = std::shared_ptr<const std::function<void(poll_result)>>;
  std::atomic<int> undelivered{0};  // results held or posted, not yet handed to their handler
  std::weak_ptr<impl> self;  // for handlers that outlive the session
  // Hand-off batching (worker-only state). Each post to the strand wakes its thread (for the
  // worker an epoll_ctl, for the io thread a wake-up and two context switches: several us of
  // CPU, as much as the reads of a poll). So while polls run back to back, each taking less
  // than kHoldWindow, their results are held in a batch and go to the strand in one post once
  // the batch is kMaxBatch long or its first result kHoldWindow old. A result is held only
  // while the next poll is due at once and the poll had no failed request; anything else (a
  // queued write, stop_polling, a new schedule, a poll not due yet, the undelivered limit)
  // flushes the batch first. So a result waits at most kHoldWindow plus one poll.
  static constexpr std::size_t kMaxBatch = 16;
  static constexpr int kMaxUndelivered = 2 * static_cast<int>(kMaxBatch);
  static constexpr auto kHoldWindow = std::chrono::milliseconds(1);
  handler_ptr batch_handler;
  std::vector<poll_result> batch;
  clock::time_point batch_since{};  // when the first result of the batch was read
  std::vector<std::size_t> due_buf;  // take_due's output, reused
  std::map<std::vector<std::size_t>, std::vector<read_request>> plans;  // per due set

  void run() {
    std::unique_lock lk(mu);
    for (;;) {
      if (stopping) break;
      // A held batch goes out before anything but the next poll (see kHoldWindow).
      if (!batch.empty() && (!jobs.empty() || !polling || schedule_gen != polling_gen ||
                             undelivered.load(std::memory_order_acquire) >= kMaxUndelivered ||
                             schedule.next_due() > clock::now())) {
        lk.unlock();
        flush_batch();
        lk.lock();
        continue;
      }
      if (!jobs.empty()) {
        auto job = std::move(jobs.front());
        jobs.pop_front();
        lk.unlock();
        job();
        lk.lock();
        continue;
      }
      if (polling && undelivered.load(std::memory_order_acquire) < kMaxUndelivered) {
        if (schedule_gen != polling_gen) {
          schedule = poll_schedule(*map, base_interval_s, clock::now());
          schedule_gen = polling_gen;
        }
        auto due = schedule.next_due();
        auto now = clock::now();
        if (now >= due) {
          auto handler = poll_handler;  // stop/start may replace it while we poll
          lk.unlock();
          poll_due(std::move(handler));
          lk.lock();
          continue;
        }
        // Link down between polls: reconnect in the background at the backoff's pace (at most
        // 1 s apart), so the link is back within a second of the device's return even when the
        // next poll is further away than that.
        if (!ctx && next_attempt < due) {
          if (now >= next_attempt) {
            lk.unlock();
            (void)ensure_connected();
            lk.lock();
            continue;
          }
          due = next_attempt;
        }
        cv.wait_until(lk, due);
        continue;
      }
      cv.wait(lk);  // woken by a job, start/stop, a delivered result or stopping
    }
    lk.unlock();
    close("link stopped");
  }

  void poll_due(handler_ptr handler) {
    const auto started = clock::now();
    schedule.take_due(started, due_buf);
    if (due_buf.empty()) return;
    const bool fastest = schedule.last_had_fastest();
    auto r = due_buf.size() == map->points.size() ? do_poll({}) : do_poll(due_buf);
    r.fastest = fastest;
    const int pending = undelivered.fetch_add(1, std::memory_order_acq_rel) + 1;
    if (!batch.empty() && batch_handler != handler) flush_batch();  // results of an old schedule
    if (batch.empty()) {
      batch_handler = std::move(handler);
      batch_since = started;
    }
    const bool failed = r.failed_requests != 0;
    batch.push_back(std::move(r));
    const auto now = clock::now();
    const bool hold = !failed && batch.size() < kMaxBatch && pending < kMaxUndelivered &&
                      now - started < kHoldWindow && now - batch_since < kHoldWindow &&
                      schedule.next_due() <= now;
    if (!hold) flush_batch();
  }

  // One post for the whole batch; the strand hands the results over in order.
  void flush_batch() {
    if (batch.empty()) return;
    const int n = static_cast<int>(batch.size());
    boost::asio::post(ex, [w = self, h = std::move(batch_handler), rs = std::move(batch),
                           n]() mutable {
      for (auto& r : rs) (*h)(std::move(r));
      delivered(w, n);
    });
    batch_handler = nullptr;
    batch = {};
    batch.reserve(kMaxBatch);
  }

  // On the strand, after `n` results were handed to their handlers.
  static void delivered(const std::weak_ptr<impl>& w, int n) {
    if (auto p = w.lock()) {  // the session may be gone
      const int before = p->undelivered.fetch_sub(n, std::memory_order_acq_rel);
      if (before >= kMaxUndelivered && before - n < kMaxUndelivered) p->wake();
    }
  }

  void wake() {
    { std::lock_guard lk(mu); }
    cv.notify_one();
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
    if (auto* rtu = std::get_if<modbus_rtu_resource>(&res)) {
      // After modbus_connect: the ioctls need the open port (libmodbus #283).
      if (auto e = apply_rs485(c, *rtu)) {
        modbus_close(c);
        modbus_free(c);
        auto err = fail_connect(std::move(e->message));
        err.code = e->code;
        return err;
      }
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

  // RS-485 options of an RTU resource. A port that cannot do what was asked is an error naming
  // the device and the option (not_supported: retrying will not help, the configuration must
  // change), never silently ignored.
  std::optional<error_info> apply_rs485(modbus_t* c, const modbus_rtu_resource& r) const {
    if (r.rs485 && modbus_rtu_set_serial_mode(c, MODBUS_RTU_RS485) == -1) {
      int e = errno;
      return drivers::make_error(
          drivers::errc::not_supported,
          where + ": rs485=1: " + r.device + " cannot switch to RS-485 mode (ioctl TIOCSRS485: " +
              errno_text(e) +
              "); not an RS-485 port: use rts=up|down for RTS driven around each request, or "
              "an adapter with automatic direction control");
    }
    if (r.rts != modbus_rtu_resource::rts_mode::none &&
        modbus_rtu_set_rts(c, r.rts == modbus_rtu_resource::rts_mode::up ? MODBUS_RTU_RTS_UP
                                                                         : MODBUS_RTU_RTS_DOWN) == -1) {
      int e = errno;
      return drivers::make_error(drivers::errc::not_supported,
                                 where + ": rts=" + (r.rts == modbus_rtu_resource::rts_mode::up ? "up" : "down") +
                                     ": " + r.device + " cannot drive RTS: " + errno_text(e));
    }
    if (r.rts_delay_us && modbus_rtu_set_rts_delay(c, static_cast<int>(*r.rts_delay_us)) == -1) {
      int e = errno;
      return drivers::make_error(drivers::errc::not_supported,
                                 where + ": rts_delay=" + std::to_string(*r.rts_delay_us) + ": " +
                                     r.device + ": " + errno_text(e));
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

  // Requests sent but not yet added to st.requests (worker-only): added once per poll or
  // operation instead of taking the lock for every request.
  std::uint64_t requests_uncounted = 0;
  void flush_request_count() {
    if (requests_uncounted == 0) return;
    std::lock_guard lk(mu);
    st.requests += requests_uncounted;
    requests_uncounted = 0;
  }

  // Worker-owned reply buffers: a poll allocates nothing per request. A span returned by read()
  // is valid until the next read().
  std::vector<std::uint16_t> regs_buf = std::vector<std::uint16_t>(2000);
  std::vector<std::uint8_t> bits_buf = std::vector<std::uint8_t>(2000);
  std::vector<std::optional<result<value>>> got_buf;  // do_poll's per-point results

  result<std::span<const std::uint16_t>> read(const read_request& r) {
    ++requests_uncounted;
    int n = -1;
    if (is_bit_table(r.tab)) {
      n = r.tab == table::coil ? modbus_read_bits(ctx, r.start, r.count, bits_buf.data())
                               : modbus_read_input_bits(ctx, r.start, r.count, bits_buf.data());
      if (n == r.count) std::copy_n(bits_buf.begin(), r.count, regs_buf.begin());
    } else {
      n = r.tab == table::holding ? modbus_read_registers(ctx, r.start, r.count, regs_buf.data())
                                  : modbus_read_input_registers(ctx, r.start, r.count, regs_buf.data());
    }
    if (n == -1) return request_failed(r, "read");
    if (n != r.count)
      return make_error(errc::bad_frame, where + ": read " + std::string(name_of(r.tab)) + " " +
                                             std::to_string(r.start) + ": " + std::to_string(n) +
                                             " of " + std::to_string(r.count) + " returned");
    return std::span<const std::uint16_t>(regs_buf.data(), r.count);
  }

  result<value> value_of(const point& p, const read_request& r,
                         std::span<const std::uint16_t> regs) const {
    auto off = static_cast<std::size_t>(p.address - r.start);
    if (is_bit_table(p.tab)) return value{regs[off] != 0};
    return decode(p, regs.subspan(off, p.count()));
  }

  poll_result do_poll(const std::vector<std::size_t>& which) {
    poll_result out;
    const std::vector<read_request>* planp = &full_plan;
    std::vector<read_request> subset;
    if (!which.empty()) {
      // Due sets repeat (one per combination of interval groups): plan each once.
      auto it = plans.find(which);
      if (it != plans.end()) {
        planp = &it->second;
      } else if (plans.size() < 64) {
        planp = &plans.emplace(which, plan_reads(*map, which)).first->second;
      } else {
        subset = plan_reads(*map, which);
        planp = &subset;
      }
    }
    const auto& plan = *planp;
    auto& got = got_buf;  // reused: no allocation per poll once sized
    got.assign(map->points.size(), std::nullopt);
    const bool was_connected = ctx != nullptr;
    std::optional<error_info> down = ensure_connected();
    bool first = true, retried = false;
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
      // Retry once per poll, on a fresh connection, when the failure says nothing about the
      // device now: the connection died while idle (device or gateway restarted between polls:
      // EPIPE, reset or EOF on the first request), or a stale frame arrived (a late or
      // duplicated reply whose transaction id is not this request's: discarded with the old
      // connection, never taken as the answer).
      if (!regs && !retried &&
          ((first && was_connected && regs.error().code == make_error_code(errc::io_error)) ||
           regs.error().code == make_error_code(errc::bad_frame))) {
        retried = true;
        next_attempt = clock::time_point{};
        backoff_s = 0;
        if (auto e = ensure_connected(); !e) {
          ++out.requests;
          regs = read(r);
        }
      }
      first = false;
      if (!regs) {
        ++out.failed_requests;
        for (auto i : r.points) got[i] = regs.error();
        continue;
      }
      for (auto i : r.points) got[i] = value_of(map->points[i], r, *regs);
    }
    out.utc_ns = utc_now_ns();
    const std::size_t n = which.empty() ? map->points.size() : which.size();
    out.values.reserve(n);
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t i = which.empty() ? k : which[k];
      if (got[i]) out.values.push_back(point_value{i, std::move(*got[i])});
    }
    flush_request_count();  // before the result is handed on: stats() already counts its requests
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
    : impl_(std::make_shared<impl>()) {
  impl_->self = impl_;
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

void session::start_polling(double base_interval_s, std::function<void(poll_result)> handler) {
  {
    std::lock_guard lk(impl_->mu);
    impl_->polling = true;
    ++impl_->polling_gen;
    impl_->base_interval_s = base_interval_s;
    impl_->poll_handler =
        std::make_shared<const std::function<void(poll_result)>>(std::move(handler));
  }
  impl_->cv.notify_one();
}

void session::stop_polling() {
  {
    std::lock_guard lk(impl_->mu);
    impl_->polling = false;
    ++impl_->polling_gen;
    impl_->poll_handler = nullptr;
  }
  impl_->cv.notify_one();
}

void session::async_write(std::size_t index, value v, std::function<void(result<value>)> handler) {
  impl_->enqueue([p = impl_.get(), index, v = std::move(v), h = std::move(handler)]() mutable {
    auto r = index < p->map->points.size()
                 ? p->do_write(index, v)
                 : result<value>(make_error(errc::unknown_point, "point index " + std::to_string(index)));
    p->flush_request_count();
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
