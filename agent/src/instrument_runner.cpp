#include "instrument_runner.hpp"

#include <semilab/drivers/visa_resource.hpp>

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

namespace semilab::agent {

namespace asio = boost::asio;
using clock = std::chrono::steady_clock;

instrument_runner::instrument_runner(asio::io_context& io, const instrument_config& cfg,
                                     recorder& rec)
    : strand_(asio::make_strand(io)), cfg_(cfg), rec_(rec), timer_(strand_) {
  // The configuration loader validated resource, model and settings already.
  auto res = drivers::parse_resource(cfg.resource);
  drivers::scpi_session::options opt;
  opt.io_timeout = std::chrono::milliseconds(cfg.timeout_ms);
  opt.connect_timeout = std::chrono::milliseconds(cfg.timeout_ms);
  session_ = std::make_unique<drivers::scpi_session>(strand_, *res, opt);
  const auto& model = *drivers::find_model(cfg.model);
  poller_ = std::make_unique<drivers::instrument_poller>(
      *session_, model, *drivers::resolve_settings(model, cfg.settings));
  st_.id = cfg.id;
  st_.model = cfg.model;
  st_.resource = cfg.resource;
}

void instrument_runner::start() {
  asio::post(strand_, [self = shared_from_this()] {
    self->next_ = clock::now();
    self->poll();
  });
}

void instrument_runner::stop() {
  asio::post(strand_, [self = shared_from_this()] {
    self->stopped_ = true;
    self->timer_.cancel();
    self->session_->cancel();
  });
}

bool instrument_runner::reconnect() {
  asio::post(strand_, [self = shared_from_this()] {
    if (self->stopped_) return;
    spdlog::info("[acq] {}: reconnect requested by an operator", self->cfg_.id);
    self->session_->close();  // a poll in flight completes with operation_aborted
    self->poller_->force_init();
    std::lock_guard lk(self->mu_);
    ++self->st_.reconnects_requested;
  });
  return true;
}

void instrument_runner::lease(lease_handler h) {
  asio::post(strand_, [self = shared_from_this(), h = std::move(h)]() mutable {
    if (self->stopped_ || self->leased_ || self->pending_lease_) return h(nullptr);
    self->pending_lease_ = std::move(h);
    if (!self->polling_) self->grant_lease();  // else polled() grants it
  });
}

void instrument_runner::grant_lease() {
  leased_ = true;
  timer_.cancel();
  auto h = std::move(pending_lease_);
  pending_lease_ = nullptr;
  spdlog::info("[acq] {}: polling paused, a run owns the session", cfg_.id);
  h(session_.get());
}

void instrument_runner::release() {
  asio::post(strand_, [self = shared_from_this()] {
    if (!self->leased_) return;
    self->leased_ = false;
    if (self->stopped_) return;
    spdlog::info("[acq] {}: run finished, polling resumes", self->cfg_.id);
    self->poller_->force_init();  // the run left the instrument configured its way
    self->next_ = clock::now();
    // A runner that took its `count` readings stays finished (the run left the outputs off).
    if (self->cfg_.count > 0 && self->submitted_ >= static_cast<std::uint64_t>(self->cfg_.count))
      return;
    self->poll();
  });
}

instrument_status instrument_runner::status() const {
  std::lock_guard lk(mu_);
  return st_;
}

void instrument_runner::schedule() {
  if (stopped_) return;
  if (cfg_.count > 0 && submitted_ >= static_cast<std::uint64_t>(cfg_.count)) {
    std::lock_guard lk(mu_);
    st_.finished = true;
    spdlog::info("[acq] {}: {} readings taken, polling stops", cfg_.id, submitted_);
    return;
  }
  // Fixed rate: the next poll is due one interval after the previous due time; when late (slow
  // instrument, errors), skip ahead rather than bursting.
  auto interval = std::chrono::duration_cast<clock::duration>(
      std::chrono::duration<double>(cfg_.poll_interval_s));
  next_ += interval;
  auto now = clock::now();
  if (next_ < now) next_ = now;
  timer_.expires_at(next_);
  timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->poll();
  });
}

void instrument_runner::poll() {
  if (stopped_ || leased_) return;
  polling_ = true;
  poll_started_ = clock::now();
  poller_->async_poll([self = shared_from_this()](boost::system::error_code ec,
                                                  std::vector<drivers::reading> readings) {
    // Timestamp at reply: the instant the value is known to the agent.
    self->polled(ec, std::move(readings), self->rec_.stamp());
  });
}

void instrument_runner::polled(boost::system::error_code ec, std::vector<drivers::reading> readings,
                               timestamp ts) {
  polling_ = false;
  if (stopped_) {
    if (pending_lease_) std::exchange(pending_lease_, nullptr)(nullptr);
    return;
  }
  auto now = clock::now();
  {
    std::lock_guard lk(mu_);
    st_.poll_latency.observe(std::chrono::duration<double>(now - poll_started_).count());
    st_.connects = session_->stats().connects;
    if (now - ring_copied_ >= std::chrono::milliseconds(250)) {
      st_.transactions = session_->recent();
      ring_copied_ = now;
    }
    if (ec == drivers::errc::instrument_error) {
      ++st_.error_queue_entries;
      st_.last_error_queue_ns = ts.ts_ns;
    }
  }
  if (ec) {
    std::lock_guard lk(mu_);
    ++st_.errors;
    ++st_.consecutive_errors;
    st_.connected = false;
    st_.last_error = poller_->last_error().empty() ? ec.message() : poller_->last_error();
    // Log the first failure of a streak and then every 60th, so a dead link does not flood logs.
    if (st_.consecutive_errors == 1 || st_.consecutive_errors % 60 == 0)
      spdlog::warn("[acq] {}: poll failed ({} in a row): {}", cfg_.id, st_.consecutive_errors,
                   st_.last_error);
  } else {
    ++submitted_;
    {
      std::lock_guard lk(mu_);
      if (st_.consecutive_errors > 0)
        spdlog::info("[acq] {}: instrument answers again", cfg_.id);
      st_.connected = true;
      st_.consecutive_errors = 0;
      st_.idn = poller_->idn();
      st_.last_good_ns = ts.ts_ns;
      if (!readings.empty())
        st_.last_value = readings.front().value.to_string() + " " + readings.front().unit;
    }
    rec_.submit(cfg_.id, ts, readings,
                [self = shared_from_this(), n = readings.size()](boost::system::error_code sec,
                                                                   schemas::seq_range) {
                  // Outbox writer thread.
                  std::lock_guard lk(self->mu_);
                  if (sec) {
                    ++self->st_.errors;
                    self->st_.last_error = "outbox: " + sec.message();
                    spdlog::error("[acq] {}: storing {} reading(s) failed: {}", self->cfg_.id, n,
                                  sec.message());
                  } else {
                    self->st_.readings += n;
                  }
                });
  }
  if (pending_lease_) return grant_lease();  // a run waits for this poll to finish
  schedule();
}

}  // namespace semilab::agent
