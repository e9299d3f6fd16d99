#include <semilab/drivers/backoff.hpp>
#include <semilab/drivers/scpi_reply.hpp>
#include <semilab/drivers/scpi_session.hpp>

#include <semilab/drivers/transport.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <charconv>
#include <deque>
#include <optional>

namespace semilab::drivers {

namespace asio = boost::asio;
using boost::system::error_code;

// Invariant: while busy_, exactly one transport operation (async_ready, async_exchange,
// async_read_stb or async_clear) is outstanding for cur_, and its completion is what finishes
// the op; queue_ holds the ops waiting behind it. Timeouts and cancel() only interrupt() the
// transport and record why; they never complete the op themselves. So no I/O of an old op can
// overlap a new op, and the transport resynchronises (transport.hpp) before the next op, so a
// late reply never reaches it.
struct scpi_session::impl : std::enable_shared_from_this<impl> {
  enum class kind { write, query, read_stb, clear };
  struct op {
    std::string cmd;  // without terminator (the transport adds it)
    kind what = kind::write;
    std::chrono::milliseconds timeout{0};
    query_handler handler;
    std::chrono::steady_clock::time_point started{};
  };
  using clock = std::chrono::steady_clock;

  impl(asio::any_io_executor ex, const drivers::resource& res, options opt)
      : ex_(std::move(ex)), opt_(opt), timer_(ex_) {
    transport_options t;
    t.termination = opt_.termination;
    t.max_reply_bytes = opt_.max_reply_bytes;
    t.connect_timeout = opt_.connect_timeout;
    t.portmapper_port = opt_.portmapper_port;
    t.resync_quiet = std::clamp(opt_.io_timeout, std::chrono::milliseconds{100},
                                std::chrono::milliseconds{2000});
    ready_deadline_ = ready_deadline(t);
    auto made = make_transport(ex_, res, t);
    if (made) {
      transport_ = std::move(*made);
    } else {
      unusable_ = made.error().code;
      unusable_text_ = made.error().message;
    }
  }

  void enqueue(std::string cmd, kind what, std::chrono::milliseconds timeout,
               query_handler handler) {
    if (what == kind::write || what == kind::query) {
      if (auto why = check_command(cmd, what == kind::query); why) {
        asio::post(ex_, [h = std::move(handler), why] { h(make_error_code(why.value()), {}); });
        return;
      }
    }
    if (timeout.count() <= 0) timeout = opt_.io_timeout;
    if (!busy_ && queue_.empty()) {  // the usual case: straight into cur_, no queue traffic
      cur_.cmd = std::move(cmd);
      cur_.what = what;
      cur_.timeout = timeout;
      cur_.handler = std::move(handler);
      return start();
    }
    queue_.push_back(op{std::move(cmd), what, timeout, std::move(handler)});
    start_next();
  }

  std::optional<errc> check_command(std::string_view cmd, bool query) const {
    if (cmd.empty() || cmd.find(opt_.termination) != std::string_view::npos)
      return errc::bad_command;
    if (!query) {
      char quote = 0;
      for (char c : cmd) {
        if (quote) {
          if (c == quote) quote = 0;
        } else if (c == '"' || c == '\'') {
          quote = c;
        } else if (c == '?') {
          return errc::bad_command;
        }
      }
    }
    return std::nullopt;
  }

  void start_next() {
    if (busy_ || queue_.empty()) return;
    cur_ = std::move(queue_.front());
    queue_.pop_front();
    start();
  }

  // Starts cur_ (set, not busy).
  void start() {
    busy_ = true;
    abort_reason_.clear();
    ++gen_;
    const auto now = clock::now();
    cur_.started = now;
    if (!transport_) return post_finish(unusable_);
    if (transport_->ready_now()) {
      arm(cur_.timeout, now);
      return exchange();
    }
    if (!transport_->is_open() && opt_.backoff && now < next_connect_) {
      // No I/O: complete from the executor (never from inside the caller). The deadline still
      // belongs to this op, so a timer left armed by the previous op cannot misfire on it.
      ++stats_.backoff_rejects;
      arm(cur_.timeout, now);
      return post_finish(make_error_code(errc::backing_off));
    }
    bool was_open = transport_->is_open();
    std::uint64_t opens = transport_->opens();
    arm(ready_deadline_);
    transport_->async_ready([self = shared_from_this(), was_open, opens](error_code ec) {
      if (ec || self->abort_reason_) {
        self->connect_failed();
        return self->finish(ec ? ec : asio::error::operation_aborted, {});
      }
      if (!was_open || self->transport_->opens() != opens) ++self->stats_.connects;
      self->backoff_.reset();
      self->next_connect_ = {};
      self->arm(self->cur_.timeout);
      self->exchange();
    });
  }

  void exchange() {
    auto& o = cur_;
    auto done = [self = shared_from_this()](error_code ec, std::string reply) {
      self->finish(ec, std::move(reply));
    };
    switch (o.what) {
      case kind::write:
      case kind::query: return transport_->async_exchange(o.cmd, o.what == kind::query, done);
      case kind::read_stb:
        return transport_->async_read_stb(
            [self = shared_from_this()](error_code ec, std::uint8_t stb) {
              self->finish(ec, ec ? std::string() : std::to_string(stb));
            });
      case kind::clear:
        return transport_->async_clear([done](error_code ec) { done(ec, {}); });
    }
  }

  // Deadlines: one steady_timer serves every operation. arm() only records the deadline and
  // re-arms the timer when it would fire too late (or is not armed); a timer that fires before
  // the current deadline re-arms itself. So a chain of fast queries costs no timer system call
  // per query, and a deadline is never missed: the armed expiry is always <= deadline_.
  void arm(std::chrono::milliseconds d, clock::time_point now = clock::now()) {
    deadline_ = now + d;
    if (timer_armed_ && timer_expiry_ <= deadline_) return;
    start_timer(deadline_);
  }

  void start_timer(clock::time_point at) {
    timer_armed_ = true;
    timer_expiry_ = at;
    timer_.expires_at(at);  // cancels an earlier wait: its handler sees another timer_gen_
    timer_.async_wait([self = shared_from_this(), tg = ++timer_gen_](error_code ec) {
      if (ec || tg != self->timer_gen_) return;
      self->timer_armed_ = false;
      if (!self->busy_) return;
      if (clock::now() < self->deadline_) return self->start_timer(self->deadline_);
      self->abort_reason_ = make_error_code(errc::timeout);
      ++self->stats_.timeouts;
      if (self->transport_) self->transport_->interrupt();
    });
  }

  // Going idle: release the timer so an io_context with nothing else to do returns.
  void stop_timer() {
    if (!timer_armed_) return;
    timer_armed_ = false;
    ++timer_gen_;
    timer_.cancel();
  }

  void connect_failed() {
    ++stats_.connect_failures;
    // A cancel() is not the instrument's fault.
    if (abort_reason_ == asio::error::operation_aborted) return;
    next_connect_ = clock::now() + backoff_.next();
  }

  void post_finish(error_code ec) {
    asio::post(ex_, [self = shared_from_this(), g = gen_, ec] {
      if (g == self->gen_) self->finish(ec, {});
    });
  }

  void finish(error_code ec, std::string&& reply) {
    ++gen_;
    if (ec) {
      if (abort_reason_) ec = abort_reason_;
      // Out-of-band operations a link does not have leave the message stream untouched.
      bool harmless = ec == make_error_code(errc::not_supported) ||
                      ec == make_error_code(errc::backing_off);
      if (transport_ && !harmless) {
        if (transport_->is_open()) ++stats_.resyncs;
        transport_->interrupt();
      }
      reply.clear();
    }
    busy_ = false;
    record(cur_, ec, ec || cur_.what != kind::query ? 0 : reply.size() + 1);
    // The handler may start the next op, which reuses cur_: take the handler out first.
    query_handler h = std::move(cur_.handler);
    cur_.handler = nullptr;
    h(ec, std::move(reply));
    start_next();
    if (!busy_) stop_timer();
  }

  // The ring's slots are reused in place: once it is full, recording costs no allocation.
  void record(const op& done, error_code ec, std::size_t bytes_in) {
    if (opt_.history == 0) return;
    transaction* slot = nullptr;
    if (ring_.size() < opt_.history) {
      slot = &ring_.emplace_back();  // growing: ring_next_ stays 0, the oldest is ring_[0]
    } else {
      slot = &ring_[ring_next_];
      ring_next_ = (ring_next_ + 1) % opt_.history;
    }
    transaction& t = *slot;
    const auto now = clock::now();
    t.time = wall_time(done.started, now);
    switch (done.what) {
      case kind::write:
      case kind::query: t.command.assign(done.cmd, 0, 64); break;
      case kind::read_stb: t.command.assign("(read status byte)"); break;
      case kind::clear: t.command.assign("(device clear)"); break;
    }
    t.bytes_out = done.what == kind::write || done.what == kind::query ? done.cmd.size() + 1 : 0;
    t.bytes_in = bytes_in;
    t.duration = std::chrono::duration_cast<std::chrono::microseconds>(now - done.started);
    t.outcome = ec;
  }

  // Wall-clock time of a steady_clock instant, from an offset between the two clocks taken at
  // most 100 ms ago: one clock read per operation instead of two (a wall-clock step shows in the
  // transaction ring within 100 ms).
  std::chrono::system_clock::time_point wall_time(clock::time_point t, clock::time_point now) {
    if (wall_synced_ == clock::time_point{} || now - wall_synced_ > std::chrono::milliseconds(100)) {
      wall_offset_ = std::chrono::system_clock::now().time_since_epoch() -
                     std::chrono::duration_cast<std::chrono::system_clock::duration>(
                         now.time_since_epoch());
      wall_synced_ = now;
    }
    return std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(t.time_since_epoch()) +
        wall_offset_);
  }

  void cancel() {
    if (!busy_) stop_timer();
    // Queued ops that never started complete now; the in-flight one completes when its I/O
    // returns (after the interrupt below), keeping the single-outstanding-I/O invariant.
    std::deque<op> waiting;
    waiting.swap(queue_);
    if (busy_) {
      abort_reason_ = asio::error::operation_aborted;
      if (transport_) transport_->interrupt();
    }
    for (auto& o : waiting)
      asio::post(ex_, [h = std::move(o.handler)] { h(asio::error::operation_aborted, {}); });
  }

  asio::any_io_executor ex_;
  options opt_;
  std::unique_ptr<transport> transport_;  // null when the resource has no transport
  std::chrono::milliseconds ready_deadline_{};
  error_code unusable_;                   // why transport_ is null
  std::string unusable_text_;
  asio::steady_timer timer_;
  op cur_;                // in flight while busy_
  std::deque<op> queue_;  // waiting behind cur_
  bool busy_ = false;
  std::uint64_t gen_ = 0;      // identifies the current op (for posted completions)
  clock::time_point deadline_{};       // of the operation in flight
  clock::time_point timer_expiry_{};   // what timer_ is armed for, while timer_armed_
  bool timer_armed_ = false;
  std::uint64_t timer_gen_ = 0;        // identifies the latest wait on timer_
  error_code abort_reason_;    // why the in-flight op was interrupted (timeout, aborted)
  counters stats_;
  reconnect_backoff backoff_;
  clock::time_point next_connect_{};
  std::vector<transaction> ring_;
  std::size_t ring_next_ = 0;  // oldest entry once the ring is full
  clock::time_point wall_synced_{};  // see wall_time()
  std::chrono::system_clock::duration wall_offset_{};
};

scpi_session::scpi_session(asio::any_io_executor ex, const drivers::resource& res, options opt)
    : impl_(std::make_shared<impl>(std::move(ex), res, opt)) {}

scpi_session::scpi_session(asio::any_io_executor ex, const drivers::resource& res)
    : scpi_session(std::move(ex), res, options{}) {}

scpi_session::~scpi_session() { close(); }

void scpi_session::async_write(std::string cmd, write_handler handler,
                               std::chrono::milliseconds timeout) {
  impl_->enqueue(std::move(cmd), impl::kind::write, timeout,
                 [h = std::move(handler)](error_code ec, std::string) { h(ec); });
}

void scpi_session::async_query(std::string cmd, query_handler handler,
                               std::chrono::milliseconds timeout) {
  impl_->enqueue(std::move(cmd), impl::kind::query, timeout, std::move(handler));
}

void scpi_session::async_read_status_byte(stb_handler handler) {
  impl_->enqueue({}, impl::kind::read_stb, {},
                 [h = std::move(handler)](error_code ec, std::string v) {
                   unsigned stb = 0;
                   if (!ec) std::from_chars(v.data(), v.data() + v.size(), stb);
                   h(ec, static_cast<std::uint8_t>(stb));
                 });
}

void scpi_session::async_device_clear(write_handler handler) {
  impl_->enqueue({}, impl::kind::clear, {},
                 [h = std::move(handler)](error_code ec, std::string) { h(ec); });
}

void scpi_session::cancel() { impl_->cancel(); }

void scpi_session::close() {
  impl_->cancel();
  if (!impl_->busy_ && impl_->transport_) impl_->transport_->close();
}

const asio::any_io_executor& scpi_session::get_executor() const noexcept { return impl_->ex_; }
bool scpi_session::is_open() const noexcept {
  return impl_->transport_ && impl_->transport_->is_open();
}
scpi_session::counters scpi_session::stats() const noexcept {
  counters c = impl_->stats_;
  if (impl_->transport_) c.resyncs += impl_->transport_->self_resyncs();
  return c;
}
std::string scpi_session::describe() const {
  if (!impl_->transport_) return impl_->unusable_text_;
  return impl_->transport_->describe();
}

std::vector<scpi_session::transaction> scpi_session::recent() const {
  const auto& r = impl_->ring_;
  std::vector<transaction> out;
  out.reserve(r.size());
  for (std::size_t i = 0; i < r.size(); ++i) out.push_back(r[(impl_->ring_next_ + i) % r.size()]);
  return out;
}

std::chrono::milliseconds scpi_session::backoff_remaining() const noexcept {
  auto now = impl::clock::now();
  if (scpi_session::is_open() || now >= impl_->next_connect_) return std::chrono::milliseconds{0};
  return std::chrono::ceil<std::chrono::milliseconds>(impl_->next_connect_ - now);
}

}  // namespace semilab::drivers
