#include "modbus_runner.hpp"

#include <semilab/drivers/visa_resource.hpp>

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>

namespace semilab::agent {

namespace asio = boost::asio;
namespace mb = drivers::modbus;

namespace {

// Exact integers stay exact: a u64 beyond int64 travels as its decimal text rather than rounded.
schemas::value to_record_value(const mb::value& v) {
  struct visitor {
    schemas::value operator()(bool b) const { return std::int64_t{b ? 1 : 0}; }
    schemas::value operator()(std::int64_t i) const { return i; }
    schemas::value operator()(std::uint64_t u) const {
      if (u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        return static_cast<std::int64_t>(u);
      return std::to_string(u);
    }
    schemas::value operator()(double d) const { return d; }
    schemas::value operator()(const std::string& s) const { return s.substr(0, schemas::kMaxTextBytes); }
  };
  return std::visit(visitor{}, v);
}

// The fastest interval any point polls at: reconnect backoff never exceeds it (nor 1 s), so the
// link is back within two intervals of the device's return.
double fastest_interval(const mb::device_map& map, double base_s) {
  double f = base_s;
  for (const auto& p : map.points)
    if (p.interval_s > 0) f = std::min(f, p.interval_s);
  return f;
}
}  // namespace

modbus_runner::modbus_runner(asio::io_context& io, const instrument_config& cfg, recorder& rec)
    : strand_(asio::make_strand(io)), cfg_(cfg), rec_(rec), deadband_(*cfg.modbus_map) {
  // The configuration loader validated the resource and loaded the map.
  auto res = mb::link_resource_of(*drivers::parse_resource(cfg.resource));
  mb::link_options opt;
  opt.name = cfg.id;
  opt.timeout_s = static_cast<double>(cfg.timeout_ms) / 1000.0;
  opt.backoff_max_s = std::min(1.0, std::max(opt.backoff_min_s,
                                             fastest_interval(*cfg.modbus_map, cfg.poll_interval_s)));
  session_ = std::make_unique<mb::session>(strand_, *res, cfg.modbus_map, opt);
  st_.id = cfg.id;
  st_.model = cfg.modbus_map->name.empty() ? "modbus" : cfg.modbus_map->name;
  st_.resource = cfg.resource;
}

void modbus_runner::start() {
  // The session's worker keeps the schedule and posts each result to our strand. A weak
  // reference: the session (ours) must not keep us alive.
  std::weak_ptr<modbus_runner> weak = shared_from_this();
  session_->start_polling(cfg_.poll_interval_s, [weak](mb::poll_result r) {
    if (auto self = weak.lock()) self->polled(std::move(r));
  });
}

void modbus_runner::stop() {
  session_->stop_polling();
  asio::post(strand_, [self = shared_from_this()] { self->stopped_ = true; });
}

instrument_status modbus_runner::status() const {
  std::lock_guard lk(mu_);
  return st_;
}

void modbus_runner::polled(mb::poll_result r) {
  if (stopped_) return;  // results of a poll that was running when polling stopped
  auto ts = rec_.stamp();
  const auto& map = session_->map();
  std::vector<schemas::record> recs;
  std::string first_error;
  std::size_t failed = 0;
  for (auto& pv : r.values) {
    if (!pv.v) {
      ++failed;
      if (first_error.empty()) first_error = map.points[pv.index].name + ": " + pv.v.error().message;
      continue;
    }
    if (!deadband_.should_report(pv.index, *pv.v)) continue;
    schemas::record rec;
    rec.cls = schemas::record_class::telemetry;
    rec.ts_ns = ts.ts_ns;
    rec.instrument = cfg_.id;
    rec.channel = map.points[pv.index].name;
    rec.unit = map.points[pv.index].unit;
    rec.quality = ts.quality;
    rec.val = to_record_value(*pv.v);
    recs.push_back(std::move(rec));
  }
  bool answered = failed < r.values.size();
  if (answered && r.fastest) ++polls_;
  {
    std::lock_guard lk(mu_);
    if (failed) {
      ++st_.errors;
      ++st_.consecutive_errors;
      st_.last_error = first_error;
      if (st_.consecutive_errors == 1 || st_.consecutive_errors % 60 == 0)
        spdlog::warn("[acq] {}: {} of {} points failed ({} in a row): {}", cfg_.id, failed,
                     r.values.size(), st_.consecutive_errors, first_error);
    } else {
      if (st_.consecutive_errors > 0) spdlog::info("[acq] {}: all points answer again", cfg_.id);
      st_.consecutive_errors = 0;
    }
    st_.connected = answered;
    if (answered) st_.last_good_ns = ts.ts_ns;
    if (!recs.empty())
      st_.last_value = recs.front().channel + "=" + std::to_string(schemas::value_as_double(recs.front().val)) +
                       " " + recs.front().unit;
  }
  if (!recs.empty()) {
    auto n = recs.size();
    rec_.submit(std::move(recs), [self = shared_from_this(), n](boost::system::error_code ec, schemas::seq_range) {
      std::lock_guard lk(self->mu_);
      if (ec) {
        ++self->st_.errors;
        self->st_.last_error = "outbox: " + ec.message();
        spdlog::error("[acq] {}: storing {} value(s) failed: {}", self->cfg_.id, n, ec.message());
      } else {
        self->st_.readings += n;
      }
    });
  }
  if (cfg_.count > 0 && polls_ >= static_cast<std::uint64_t>(cfg_.count)) {
    stopped_ = true;
    session_->stop_polling();
    std::lock_guard lk(mu_);
    st_.finished = true;
    spdlog::info("[acq] {}: {} polls made, polling stops", cfg_.id, polls_);
  }
}

}  // namespace semilab::agent
