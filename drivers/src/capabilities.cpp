#include <semilab/drivers/capabilities.hpp>

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <utility>

namespace semilab::drivers {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

// A reading at or beyond this fraction of the limit is taken as clamped by the limit (the
// 2450's buffer readings carry no status word; the source holds the measured quantity there).
constexpr double kComplianceFraction = 0.999;

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

using vars = std::initializer_list<std::pair<std::string_view, std::string_view>>;

// Substitutes {name} placeholders; an unknown placeholder is left as it is (the instrument then
// rejects the command and the error queue names it).
std::string render(std::string_view t, vars v) {
  std::string out;
  std::size_t pos = 0;
  while (pos < t.size()) {
    auto open = t.find('{', pos);
    if (open == std::string_view::npos) break;
    auto close = t.find('}', open);
    if (close == std::string_view::npos) break;
    auto key = t.substr(open + 1, close - open - 1);
    out.append(t.substr(pos, open - pos));
    bool found = false;
    for (const auto& [k, val] : v) {
      if (k == key) {
        out.append(val);
        found = true;
        break;
      }
    }
    if (!found) out.append(t.substr(open, close - open + 1));
    pos = close + 1;
  }
  out.append(t.substr(pos));
  return out;
}

std::string join(const std::vector<double>& v, std::size_t from, std::size_t to) {
  std::string out;
  for (std::size_t i = from; i < to; ++i) {
    if (i != from) out.push_back(',');
    out += fmt(v[i]);
  }
  return out;
}

error_info aborted(std::string_view who) {
  return error_info{asio::error::operation_aborted, std::string(who) + ": aborted"};
}

template <class H, class R>
void post_result(const asio::any_io_executor& ex, H handler, R r) {
  asio::post(ex, [h = std::move(handler), r = std::move(r)]() mutable { h(std::move(r)); });
}

// What every capability shares: the session, sequential writes and queries with errors that
// name the command, configuration blocks followed by an error-queue drain, one call at a time.
struct link_base {
  link_base(scpi_session& s, std::string_view name)
      : session(&s), ex(s.get_executor()), who(name) {}

  scpi_session* session;  // null once the owning object is destroyed
  asio::any_io_executor ex;
  std::string who;
  bool busy = false;
  bool touched = false;   // a call was ever started
  std::uint64_t gen = 0;  // changes on abort: continuations of older operations stop

  error_info io_error(std::string_view cmd, error_code ec) const {
    return error_info{ec, who + ": '" + std::string(cmd) + "': " + ec.message()};
  }

  template <class Self>
  void write(const std::shared_ptr<Self>& self, std::string cmd, done_handler next) {
    if (!session) return post_result(ex, std::move(next), result<void>(aborted(who)));
    auto g = gen;
    session->async_write(cmd, [self, cmd, g, next = std::move(next)](error_code ec) {
      if (!self->session || g != self->gen) return next(aborted(self->who));
      if (ec) return next(self->io_error(cmd, ec));
      next({});
    });
  }

  template <class Self>
  void query(const std::shared_ptr<Self>& self, std::string cmd, std::chrono::milliseconds timeout,
             std::function<void(result<std::string>)> next) {
    if (!session) return post_result(ex, std::move(next), result<std::string>(aborted(who)));
    auto g = gen;
    session->async_query(
        cmd,
        [self, cmd, g, next = std::move(next)](error_code ec, std::string reply) {
          if (!self->session || g != self->gen) return next(aborted(self->who));
          if (ec) return next(self->io_error(cmd, ec));
          next(std::move(reply));
        },
        timeout);
  }

  template <class Self>
  void write_all(const std::shared_ptr<Self>& self, std::shared_ptr<std::vector<std::string>> cmds,
                 std::size_t i, done_handler next) {
    if (i == cmds->size()) return next({});
    write(self, (*cmds)[i], [self, cmds, i, next = std::move(next)](result<void> r) mutable {
      if (!r) return next(std::move(r));
      self->write_all(self, cmds, i + 1, std::move(next));
    });
  }

  // The commands, then :SYST:ERR? until empty: an entry fails the block with
  // errc::instrument_error naming the entries and the block's commands.
  template <class Self>
  void configure(const std::shared_ptr<Self>& self, std::vector<std::string> cmds,
                 done_handler next) {
    auto shared = std::make_shared<std::vector<std::string>>(std::move(cmds));
    write_all(self, shared, 0, [self, shared, next = std::move(next)](result<void> r) mutable {
      if (!r) return next(std::move(r));
      if (!self->session) return next(aborted(self->who));
      auto g = self->gen;
      async_drain_errors(*self->session, [self, shared, g, next = std::move(next)](
                                             error_code ec, std::vector<scpi_error_entry> found) {
        if (!self->session || g != self->gen) return next(aborted(self->who));
        std::string block;
        for (const auto& c : *shared) block += (block.empty() ? "" : "; ") + c;
        if (ec && found.empty())
          return next(error_info{ec, self->who + ": :SYST:ERR? after '" + block + "': " +
                                         ec.message()});
        if (!found.empty()) {
          std::string entries;
          for (const auto& e : found)
            entries += (entries.empty() ? "" : ", ") + std::to_string(e.code) + " \"" + e.text +
                       "\"";
          return next(make_error(errc::instrument_error, self->who + ": instrument reported " +
                                                             entries + " after '" + block + "'"));
        }
        next({});
      });
    });
  }

  // One call at a time; validation errors and "busy" complete posted, never inline.
  template <class H>
  bool begin(H& handler, bool capable, std::string_view capability) {
    if (!capable) {
      post_result(ex, std::move(handler),
                  make_error(errc::not_supported, who + ": model has no " +
                                                      std::string(capability) + " capability"));
      return false;
    }
    if (busy) {
      post_result(ex, std::move(handler),
                  error_info{asio::error::in_progress, who + ": another call is in flight"});
      return false;
    }
    busy = true;
    touched = true;
    return true;
  }
};

}  // namespace

// ---- IEEE 488.2 helpers ------------------------------------------------------------------------

void async_wait_complete(scpi_session& session, std::chrono::milliseconds timeout,
                         done_handler handler) {
  session.async_query(
      "*OPC?",
      [h = std::move(handler)](error_code ec, std::string reply) {
        if (ec) return h(error_info{ec, "*OPC?: " + ec.message()});
        auto n = parse_number_reply(reply, "*OPC? reply");
        if (!n) return h(n.error());
        if (n->value.to_double() != 1.0)
          return h(make_error(errc::bad_reply, "*OPC? reply " + quote_reply(reply) + " is not 1"));
        h({});
      },
      timeout);
}

void async_read_esr(scpi_session& session, std::function<void(result<esr_bits>)> handler) {
  session.async_query("*ESR?", [h = std::move(handler)](error_code ec, std::string reply) {
    if (ec) return h(error_info{ec, "*ESR?: " + ec.message()});
    h(parse_esr_reply(reply));
  });
}

// ---- source-measure ----------------------------------------------------------------------------

bool smu_point::in_compliance() const noexcept {
  return (quality & schemas::quality::compliance) != 0;
}
bool smu_point::over_range() const noexcept {
  return (quality & schemas::quality::over_range) != 0;
}

namespace {

result<std::vector<smu_point>> parse_smu_points(std::string_view reply, smu_reply_format format,
                                                source_function func, double compliance,
                                                const std::string& what) {
  auto values = parse_number_list(reply, what);
  if (!values) return values.error();
  std::vector<smu_point> out;
  if (format == smu_reply_format::source_reading) {
    if (values->empty() || values->size() % 2 != 0)
      return make_error(errc::bad_reply, what + " " + quote_reply(reply) + " has " +
                                             std::to_string(values->size()) +
                                             " values, expected <source>,<reading> pairs");
    for (std::size_t i = 0; i < values->size(); i += 2) {
      smu_point p{(*values)[i], (*values)[i + 1], 0};
      p.quality = p.source.quality | p.measure.quality;
      double m = p.measure.value.to_double();
      if (!(p.quality & schemas::quality::over_range) && compliance > 0 &&
          std::fabs(m) >= compliance * kComplianceFraction)
        p.quality |= schemas::quality::compliance;
      out.push_back(std::move(p));
    }
    return out;
  }
  // volt_curr_stat: canonical order VOLT,CURR,STAT whatever order was configured.
  if (values->empty() || values->size() % 3 != 0)
    return make_error(errc::bad_reply, what + " " + quote_reply(reply) + " has " +
                                           std::to_string(values->size()) +
                                           " values, expected VOLT,CURR,STAT triples");
  for (std::size_t i = 0; i < values->size(); i += 3) {
    double stat = (*values)[i + 2].value.to_double();
    if (!(stat >= 0 && stat < 16777216.0) || stat != std::floor(stat))
      return make_error(errc::bad_reply, what + " " + quote_reply(reply) + ": status word " +
                                             (*values)[i + 2].value.to_string() +
                                             " is not an integer");
    auto status = static_cast<std::uint32_t>(stat);
    const auto& v = (*values)[i];
    const auto& c = (*values)[i + 1];
    smu_point p = func == source_function::voltage ? smu_point{v, c, 0} : smu_point{c, v, 0};
    p.quality = p.source.quality | p.measure.quality;
    if (status & keithley2400::kStatusCompliance) p.quality |= schemas::quality::compliance;
    if (status & keithley2400::kStatusOverflow) p.quality |= schemas::quality::over_range;
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace

struct source_measure::impl : link_base, std::enable_shared_from_this<impl> {
  impl(scpi_session& s, const model_profile& m)
      : link_base(s, m.name), cmd(m.source_measure), timer(s.get_executor()) {}

  const source_measure_commands* cmd;
  asio::steady_timer timer;
  ramp_limits ramp;
  source_function func = source_function::voltage;
  bool output_on = false;
  bool pending_off = true;  // output state unknown (new object, lost link): off before anything
  bool compliance_set = false;
  double compliance = 0;
  double level = 0;
  bool level_known = false;
  double nplc = 1;
  std::uint64_t conn_seen = 0;   // session connects at the last successful call
  std::uint64_t setup_conn = ~std::uint64_t{0};  // connection point_setup was sent on
  std::uint64_t safety_offs = 0;

  std::string_view f() const { return func == source_function::voltage ? "VOLT" : "CURR"; }
  std::string_view sense() const { return func == source_function::voltage ? "CURR" : "VOLT"; }
  double source_max() const {
    return func == source_function::voltage ? cmd->max_volts : cmd->max_amps;
  }
  double limit_max() const {
    return func == source_function::voltage ? cmd->max_amps : cmd->max_volts;
  }
  std::uint64_t connects() const { return session ? session->stats().connects : 0; }

  template <class H, class R>
  void finish(H& handler, R r) {
    busy = false;
    if (r) {
      conn_seen = connects();
    } else if (session && !session->is_open() && (output_on || pending_off)) {
      pending_off = true;  // the link is down while the output may be on
    }
    handler(std::move(r));
  }

  void switch_off(done_handler next) {
    auto self = shared_from_this();
    write(self, std::string(cmd->output_off), [self, next = std::move(next)](result<void> r) {
      if (!r) {
        self->pending_off = true;
        return next(std::move(r));
      }
      self->output_on = false;
      self->pending_off = false;
      self->conn_seen = self->connects();
      next({});
    });
  }

  // Before every call: a pending safety off goes first; a state-changing call while the output
  // is on checks that the output is still on over the connection it was switched on over.
  void prelude(bool state_changing, done_handler next) {
    auto self = shared_from_this();
    if (pending_off) {
      compliance_set = false;
      level_known = false;
      ++safety_offs;
      return switch_off(std::move(next));
    }
    if (!output_on || !state_changing) return next({});
    query(self, std::string(cmd->output_query), {},
          [self, next = std::move(next)](result<std::string> r) mutable {
            if (!r) return next(r.error());
            bool new_conn = self->connects() != self->conn_seen;
            auto on = parse_bool_reply(*r, self->who + ": " + std::string(self->cmd->output_query));
            if (!on) return next(on.error());
            if (!new_conn && *on) return next({});
            self->lost_output(new_conn, std::move(next));
          });
  }

  // The output is not (or no longer provably) on under our control: off, forget the limit.
  void lost_output(bool new_conn, done_handler next) {
    compliance_set = false;
    level_known = false;
    ++safety_offs;
    auto why = new_conn ? error_info{asio::error::connection_reset,
                                     who + ": the connection was re-established while the output "
                                           "was on; output switched off, compliance forgotten"}
                        : make_error(errc::instrument_error,
                                     who + ": output found off (interlock or power cycle); "
                                           "compliance forgotten");
    switch_off([next = std::move(next), why = std::move(why)](result<void> r) {
      if (!r) return next(std::move(r));
      next(why);
    });
  }

  void set_level_cmd(double v, done_handler next) {
    auto self = shared_from_this();
    write(self, render(cmd->source_level, {{"func", f()}, {"value", fmt(v)}}),
          [self, v, next = std::move(next)](result<void> r) {
            if (r) {
              self->level = v;
              self->level_known = true;
            }
            next(std::move(r));
          });
  }

  void ramp_to(double target, done_handler next) {
    auto self = shared_from_this();
    if (!output_on || ramp.max_step <= 0) return set_level_cmd(target, std::move(next));
    if (!level_known) {
      return query(self, render(cmd->source_level_query, {{"func", f()}}), {},
                   [self, target, next = std::move(next)](result<std::string> r) mutable {
                     if (!r) return next(r.error());
                     auto n = parse_number_reply(*r, self->who + ": source level reply");
                     if (!n) return next(n.error());
                     self->level = n->value.to_double();
                     self->level_known = true;
                     self->ramp_to(target, std::move(next));
                   });
    }
    double from = level;
    double delta = target - from;
    auto steps = static_cast<int>(std::ceil(std::fabs(delta) / ramp.max_step - 1e-9));
    if (steps <= 1) return set_level_cmd(target, std::move(next));
    ramp_step(from, delta, 1, steps, std::move(next));
  }

  void ramp_step(double from, double delta, int k, int n, done_handler next) {
    double v = k == n ? from + delta : from + delta * k / n;
    auto self = shared_from_this();
    set_level_cmd(v, [self, from, delta, k, n, next = std::move(next)](result<void> r) mutable {
      if (!r || k == n) return next(std::move(r));
      // The dwell starts once the instrument has applied the step (*OPC? answered), so the
      // device sees every step held for at least the dwell even when the link buffers writes.
      self->query(self, "*OPC?", {},
                  [self, from, delta, k, n, next = std::move(next)](result<std::string> q) mutable {
                    if (!q) return next(q.error());
                    auto g = self->gen;
                    self->timer.expires_after(self->ramp.dwell);
                    self->timer.async_wait([self, from, delta, k, n, g,
                                            next = std::move(next)](error_code ec) mutable {
                      if (ec || g != self->gen || !self->session) return next(aborted(self->who));
                      self->ramp_step(from, delta, k + 1, n, std::move(next));
                    });
                  });
    });
  }

  void ensure_point_setup(done_handler next) {
    if (cmd->point_setup.empty() || (session && setup_conn == connects() && session->is_open()))
      return next({});
    std::vector<std::string> cmds(cmd->point_setup.begin(), cmd->point_setup.end());
    auto self = shared_from_this();
    configure(self, std::move(cmds), [self, next = std::move(next)](result<void> r) {
      if (r) self->setup_conn = self->connects();
      next(std::move(r));
    });
  }

  std::chrono::milliseconds sweep_budget(std::size_t points, std::chrono::milliseconds delay) const {
    // Per point: the source delay, the aperture at 50 Hz, some overhead; twice that, plus 5 s.
    double per_point = static_cast<double>(delay.count()) / 1000.0 + nplc * 0.02 + 0.002;
    return std::chrono::milliseconds(
        static_cast<std::int64_t>(2000.0 * per_point * static_cast<double>(points)) + 5000);
  }

  void sweep(std::vector<double> levels, bool linear, std::chrono::milliseconds delay,
             sweep_handler handler);
};

source_measure::source_measure(scpi_session& session, const model_profile& model)
    : impl_(std::make_shared<impl>(session, model)) {}

source_measure::~source_measure() {
  auto& s = *impl_;
  ++s.gen;
  s.timer.cancel();
  // Best effort on the way out, when the output is or may be on (not for an instrument this
  // object never touched): the session sends it if its executor keeps running.
  if (s.cmd && s.session && (s.output_on || (s.pending_off && s.touched)))
    s.session->async_write(std::string(s.cmd->output_off), [](error_code) {});
  s.session = nullptr;
}

void source_measure::set_ramp(ramp_limits r) noexcept { impl_->ramp = r; }
bool source_measure::output_on() const noexcept { return impl_->output_on; }
double source_measure::level() const noexcept { return impl_->level; }
bool source_measure::compliance_set() const noexcept { return impl_->compliance_set; }
source_function source_measure::function() const noexcept { return impl_->func; }
std::uint64_t source_measure::safety_offs() const noexcept { return impl_->safety_offs; }

void source_measure::async_set_function(source_function fn, done_handler handler) {
  auto s = impl_;
  if (!s->begin(handler, s->cmd != nullptr, "source-measure")) return;
  s->prelude(false, [s, fn, handler = std::move(handler)](result<void> r) mutable {
    if (!r) return s->finish(handler, std::move(r));
    if (s->output_on)
      return s->finish(handler, result<void>(make_error(
                                    errc::bad_setting,
                                    s->who + ": switch the output off before changing the source "
                                             "function")));
    auto prev = s->func;
    s->func = fn;
    std::vector<std::string> cmds{render(s->cmd->source_function, {{"func", s->f()}}),
                                  render(s->cmd->sense_function, {{"sense", s->sense()}})};
    s->func = prev;
    s->configure(s, std::move(cmds), [s, fn, handler = std::move(handler)](result<void> r2) mutable {
      if (r2) {
        s->func = fn;
        s->compliance_set = false;  // the limit is of the other quantity now
        s->level_known = false;
      }
      s->finish(handler, std::move(r2));
    });
  });
}

void source_measure::async_set_compliance(double limit, done_handler handler) {
  auto s = impl_;
  if (!s->begin(handler, s->cmd != nullptr, "source-measure")) return;
  if (!(limit > 0) || limit > s->limit_max()) {
    s->busy = false;
    return post_result(s->ex, std::move(handler),
                       result<void>(make_error(errc::bad_setting,
                                               s->who + ": compliance " + fmt(limit) +
                                                   " outside (0, " + fmt(s->limit_max()) + "]")));
  }
  s->prelude(true, [s, limit, handler = std::move(handler)](result<void> r) mutable {
    if (!r) return s->finish(handler, std::move(r));
    auto tmpl = s->func == source_function::voltage ? s->cmd->limit_for_voltage_source
                                                    : s->cmd->limit_for_current_source;
    s->configure(s, {render(tmpl, {{"value", fmt(limit)}})},
                 [s, limit, handler = std::move(handler)](result<void> r2) mutable {
                   if (r2) {
                     s->compliance_set = true;
                     s->compliance = limit;
                   }
                   s->finish(handler, std::move(r2));
                 });
  });
}

void source_measure::async_set_range(double range, done_handler handler) {
  auto s = impl_;
  if (!s->begin(handler, s->cmd != nullptr, "source-measure")) return;
  if (range < 0 || range > s->limit_max()) {
    s->busy = false;
    return post_result(s->ex, std::move(handler),
                       result<void>(make_error(errc::bad_setting, s->who + ": range " + fmt(range) +
                                                                      " outside [0, " +
                                                                      fmt(s->limit_max()) + "]")));
  }
  s->prelude(true, [s, range, handler = std::move(handler)](result<void> r) mutable {
    if (!r) return s->finish(handler, std::move(r));
    std::string c = range == 0 ? render(s->cmd->sense_autorange, {{"sense", s->sense()}})
                               : render(s->cmd->sense_range,
                                        {{"sense", s->sense()}, {"value", fmt(range)}});
    s->configure(s, {std::move(c)}, [s, handler = std::move(handler)](result<void> r2) mutable {
      s->finish(handler, std::move(r2));
    });
  });
}

void source_measure::async_set_nplc(double nplc, done_handler handler) {
  auto s = impl_;
  if (!s->begin(handler, s->cmd != nullptr, "source-measure")) return;
  if (!(nplc >= 0.01 && nplc <= 10)) {
    s->busy = false;
    return post_result(s->ex, std::move(handler),
                       result<void>(make_error(errc::bad_setting, s->who + ": NPLC " + fmt(nplc) +
                                                                      " outside [0.01, 10]")));
  }
  s->prelude(true, [s, nplc, handler = std::move(handler)](result<void> r) mutable {
    if (!r) return s->finish(handler, std::move(r));
    s->configure(s, {render(s->cmd->nplc, {{"sense", s->sense()}, {"value", fmt(nplc)}})},
                 [s, nplc, handler = std::move(handler)](result<void> r2) mutable {
                   if (r2) s->nplc = nplc;
                   s->finish(handler, std::move(r2));
                 });
  });
}

void source_measure::async_output_on(done_handler handler) {
  auto s = impl_;
  if (!s->begin(handler, s->cmd != nullptr, "source-measure")) return;
  s->prelude(true, [s, handler = std::move(handler)](result<void> r) mutable {
    if (!r) return s->finish(handler, std::move(r));
    if (!s->compliance_set)
      return s->finish(handler,
                       result<void>(make_error(errc::bad_setting,
                                               s->who + ": compliance must be set before the "
                                                        "output goes on (refused)")));
    if (s->output_on) return s->finish(handler, result<void>());
    // With ramp limits the output goes on at 0 and the programmed level is ramped to.
    bool ramped = s->ramp.max_step > 0;
    double programmed = s->level_known ? s->level : 0.0;
    auto on = [s, ramped, programmed, handler = std::move(handler)](result<void> r2) mutable {
      if (!r2) return s->finish(handler, std::move(r2));
      s->configure(s, {std::string(s->cmd->output_on)},
                   [s, ramped, programmed, handler = std::move(handler)](result<void> r3) mutable {
                     if (!r3) {
                       s->pending_off = true;  // state unknown: off first next time
                       return s->finish(handler, std::move(r3));
                     }
                     s->output_on = true;
                     s->conn_seen = s->connects();
                     if (!ramped || programmed == 0) return s->finish(handler, std::move(r3));
                     s->ramp_to(programmed, [s, handler = std::move(handler)](
                                                result<void> r4) mutable {
                       s->finish(handler, std::move(r4));
                     });
                   });
    };
    if (ramped && (!s->level_known || s->level != 0)) return s->set_level_cmd(0.0, std::move(on));
    on({});
  });
}

void source_measure::async_output_off(done_handler handler) {
  auto s = impl_;
  if (!s->begin(handler, s->cmd != nullptr, "source-measure")) return;
  s->prelude(false, [s, handler = std::move(handler)](result<void> r) mutable {
    if (!r) return s->finish(handler, std::move(r));
    auto off = [s, handler = std::move(handler)](result<void> ramped) mutable {
      // Off even when the ramp down failed; report the ramp's error then.
      s->switch_off([s, ramped, handler = std::move(handler)](result<void> r2) mutable {
        s->finish(handler, !r2 ? std::move(r2) : std::move(ramped));
      });
    };
    if (s->output_on && s->ramp.max_step > 0) return s->ramp_to(0.0, std::move(off));
    off({});
  });
}

void source_measure::async_set_level(double v, done_handler handler) {
  auto s = impl_;
  if (!s->begin(handler, s->cmd != nullptr, "source-measure")) return;
  if (!(std::fabs(v) <= s->source_max())) {
    s->busy = false;
    return post_result(s->ex, std::move(handler),
                       result<void>(make_error(errc::bad_setting,
                                               s->who + ": level " + fmt(v) + " outside +-" +
                                                   fmt(s->source_max()))));
  }
  s->prelude(true, [s, v, handler = std::move(handler)](result<void> r) mutable {
    if (!r) return s->finish(handler, std::move(r));
    s->ramp_to(v, [s, handler = std::move(handler)](result<void> r2) mutable {
      s->finish(handler, std::move(r2));
    });
  });
}

void source_measure::async_measure(point_handler handler) {
  auto s = impl_;
  if (!s->begin(handler, s->cmd != nullptr, "source-measure")) return;
  s->prelude(false, [s, handler = std::move(handler)](result<void> r) mutable {
    if (!r) return s->finish(handler, result<smu_point>(r.error()));
    s->ensure_point_setup([s, handler = std::move(handler)](result<void> r2) mutable {
      if (!r2) return s->finish(handler, result<smu_point>(r2.error()));
      std::string q(s->cmd->point_query);
      s->query(s, q, {}, [s, q, handler = std::move(handler)](result<std::string> reply) mutable {
        if (!reply) return s->finish(handler, result<smu_point>(reply.error()));
        // A reading taken over a connection the output was not switched on over: the link
        // dropped in between; the instrument may have been sourcing unattended.
        if (s->output_on && s->connects() != s->conn_seen)
          return s->lost_output(true, [s, handler = std::move(handler)](result<void> r3) mutable {
            s->finish(handler, result<smu_point>(r3.error()));
          });
        auto pts = parse_smu_points(*reply, s->cmd->format, s->func,
                                    s->compliance_set ? s->compliance : 0,
                                    s->who + ": '" + q + "' reply");
        if (!pts) return s->finish(handler, result<smu_point>(pts.error()));
        if (pts->size() != 1)
          return s->finish(handler, result<smu_point>(make_error(
                                        errc::bad_reply, s->who + ": '" + q + "' reply " +
                                                             quote_reply(*reply) +
                                                             " holds more than one reading")));
        s->finish(handler, result<smu_point>(std::move(pts->front())));
      });
    });
  });
}

void source_measure::async_sweep_linear(double start, double stop, std::size_t points,
                                        std::chrono::milliseconds delay, sweep_handler handler) {
  std::vector<double> levels;
  if (points >= 2 && points <= 1000000) {
    levels.reserve(points);
    for (std::size_t i = 0; i < points; ++i)
      levels.push_back(i + 1 == points ? stop
                                       : start + (stop - start) * static_cast<double>(i) /
                                                     static_cast<double>(points - 1));
  }
  impl_->sweep(std::move(levels), true, delay, std::move(handler));
}

void source_measure::async_sweep_list(std::vector<double> levels, std::chrono::milliseconds delay,
                                      sweep_handler handler) {
  impl_->sweep(std::move(levels), false, delay, std::move(handler));
}

void source_measure::impl::sweep(std::vector<double> levels, bool linear,
                                 std::chrono::milliseconds delay, sweep_handler handler) {
  auto s = shared_from_this();
  if (!begin(handler, cmd != nullptr, "source-measure")) return;
  auto refuse = [&](std::string why) {
    busy = false;
    post_result(ex, std::move(handler),
                result<std::vector<smu_point>>(make_error(errc::bad_setting, who + ": " + why)));
  };
  if (levels.size() < 2 || levels.size() > cmd->max_sweep_points)
    return refuse("sweep of " + std::to_string(levels.size()) + " points (2 to " +
                  std::to_string(cmd->max_sweep_points) + " allowed)");
  if (!linear && cmd->list_append.empty() && levels.size() > cmd->list_chunk)
    return refuse("list of " + std::to_string(levels.size()) + " levels (at most " +
                  std::to_string(cmd->list_chunk) + " on this model)");
  if (delay.count() < 0) return refuse("negative source delay");
  for (std::size_t i = 0; i < levels.size(); ++i) {
    if (!(std::fabs(levels[i]) <= source_max()))
      return refuse("sweep level " + fmt(levels[i]) + " outside +-" + fmt(source_max()));
    if (i > 0 && ramp.max_step > 0 &&
        std::fabs(levels[i] - levels[i - 1]) > ramp.max_step * (1 + 1e-9))
      return refuse("sweep step " + fmt(levels[i] - levels[i - 1]) + " exceeds the ramp step " +
                    fmt(ramp.max_step));
  }
  auto lv = std::make_shared<std::vector<double>>(std::move(levels));
  auto h = std::make_shared<sweep_handler>(std::move(handler));
  auto fail = [s, h](error_info e) { s->finish(*h, result<std::vector<smu_point>>(std::move(e))); };
  prelude(true, [s, lv, linear, delay, h, fail](result<void> r) {
    if (!r) return fail(r.error());
    if (!s->output_on)
      return fail(make_error(errc::bad_setting,
                             s->who + ": switch the output on (compliance set) before a sweep"));
    s->ramp_to(lv->front(), [s, lv, linear, delay, h, fail](result<void> r2) {
      if (!r2) return fail(r2.error());
      s->ensure_point_setup([s, lv, linear, delay, h, fail](result<void> r3) {
        if (!r3) return fail(r3.error());
        const auto& c = *s->cmd;
        std::string n = std::to_string(lv->size());
        std::string d = fmt(static_cast<double>(delay.count()) / 1000.0);
        std::vector<std::string> block;
        if (linear) {
          std::string a = fmt(lv->front()), b = fmt(lv->back());
          for (auto t : c.linear_sweep)
            block.push_back(render(t, {{"func", s->f()}, {"start", a}, {"stop", b},
                                       {"points", n}, {"delay", d}}));
        } else {
          std::size_t chunk = std::max<std::size_t>(c.list_chunk, 1);
          for (std::size_t i = 0; i < lv->size(); i += chunk) {
            auto list = join(*lv, i, std::min(lv->size(), i + chunk));
            block.push_back(render(i == 0 ? c.list_first : c.list_append,
                                   {{"func", s->f()}, {"list", list}}));
          }
          for (auto t : c.list_sweep)
            block.push_back(render(t, {{"func", s->f()}, {"points", n}, {"delay", d}}));
        }
        s->configure(s, std::move(block), [s, lv, delay, h, fail, n](result<void> r4) {
          if (!r4) return fail(r4.error());
          s->write(s, std::string(s->cmd->sweep_start), [s, lv, delay, h, fail, n](result<void> r5) {
            if (!r5) return fail(r5.error());
            if (!s->session) return fail(aborted(s->who));
            auto g = s->gen;
            async_wait_complete(
                *s->session, s->sweep_budget(lv->size(), delay),
                [s, lv, h, fail, n, g](result<void> r6) {
                  if (!s->session || g != s->gen) return fail(aborted(s->who));
                  if (!r6) return fail(error_info{r6.error().code,
                                                  s->who + ": sweep: " + r6.error().message});
                  std::string q = render(s->cmd->sweep_fetch, {{"points", n}});
                  s->query(s, q, {}, [s, lv, h, fail, q](result<std::string> reply) {
                    if (!reply) return fail(reply.error());
                    auto pts = parse_smu_points(*reply, s->cmd->format, s->func,
                                                s->compliance_set ? s->compliance : 0,
                                                s->who + ": '" + q + "' reply");
                    if (!pts) return fail(pts.error());
                    if (pts->size() != lv->size())
                      return fail(make_error(errc::bad_reply,
                                             s->who + ": sweep returned " +
                                                 std::to_string(pts->size()) + " readings for " +
                                                 std::to_string(lv->size()) + " points"));
                    auto data = std::make_shared<std::vector<smu_point>>(std::move(*pts));
                    std::vector<std::string> restore;
                    for (auto t : s->cmd->sweep_restore)
                      restore.push_back(render(t, {{"func", s->f()}}));
                    auto after = [s, h, fail, data](result<void> r7) {
                      if (!r7) return fail(r7.error());
                      // Where the source stands after the sweep (model-dependent): read it back.
                      s->level_known = false;
                      s->query(s, render(s->cmd->source_level_query, {{"func", s->f()}}), {},
                               [s, h, fail, data](result<std::string> lvl) {
                                 if (!lvl) return fail(lvl.error());
                                 auto num = parse_number_reply(*lvl, s->who + ": source level");
                                 if (!num) return fail(num.error());
                                 s->level = num->value.to_double();
                                 s->level_known = true;
                                 s->finish(*h, result<std::vector<smu_point>>(std::move(*data)));
                               });
                    };
                    if (restore.empty()) return after({});
                    s->configure(s, std::move(restore), std::move(after));
                  });
                });
          });
        });
      });
    });
  });
}

void source_measure::abort(done_handler handler) {
  auto s = impl_;
  if (!s->cmd || !s->session) {
    if (handler)
      post_result(s->ex, std::move(handler),
                  result<void>(make_error(errc::not_supported, s->who + ": cannot abort")));
    return;
  }
  ++s->gen;  // continuations of the call in flight stop
  s->timer.cancel();
  if (s->busy) s->session->cancel();  // its reply (a held *OPC?) dies with the connection
  s->write(s, std::string(s->cmd->abort), [s, handler = std::move(handler)](result<void>) mutable {
    // The abort command may fail (nothing running); the output goes off regardless.
    s->switch_off([handler = std::move(handler)](result<void> r) {
      if (handler) handler(std::move(r));
    });
  });
}

// ---- impedance meter ---------------------------------------------------------------------------

namespace {

result<std::vector<impedance_point>> parse_impedance(std::string_view reply, std::size_t stride,
                                                     const std::string& what) {
  auto values = parse_number_list(reply, what);
  if (!values) return values.error();
  if (values->empty() || values->size() % stride != 0)
    return make_error(errc::bad_reply, what + " " + quote_reply(reply) + " has " +
                                           std::to_string(values->size()) + " values, expected " +
                                           std::to_string(stride) + " per point");
  std::vector<impedance_point> out;
  for (std::size_t i = 0; i < values->size(); i += stride) {
    double st = (*values)[i + 2].value.to_double();
    if (st != std::floor(st) || std::fabs(st) > 100)
      return make_error(errc::bad_reply,
                        what + " " + quote_reply(reply) + ": status is not an integer");
    impedance_point p;
    p.a = (*values)[i];
    p.b = (*values)[i + 1];
    p.status = static_cast<int>(st);
    p.quality = p.a.quality | p.b.quality;
    switch (p.status) {
      case e4980a::kStatusNormal: break;
      case e4980a::kStatusOverload:
      case e4980a::kStatusSourceOverload: p.quality |= schemas::quality::over_range; break;
      case e4980a::kStatusAlcUnregulated: p.quality |= schemas::quality::non_traceable; break;
      default:
        return make_error(errc::bad_reply, what + " " + quote_reply(reply) +
                                               ": measurement status " + std::to_string(p.status) +
                                               " (no valid data)");
    }
    out.push_back(std::move(p));
  }
  return out;
}

std::chrono::milliseconds aperture_time(std::string_view aperture) {
  if (aperture == "SHOR") return std::chrono::milliseconds{50};
  if (aperture == "LONG") return std::chrono::milliseconds{600};
  return std::chrono::milliseconds{200};
}

}  // namespace

struct impedance_meter::impl : link_base, std::enable_shared_from_this<impl> {
  impl(scpi_session& s, const model_profile& m) : link_base(s, m.name), cmd(m.impedance) {}
  const impedance_commands* cmd;
  impedance_config cfg;

  template <class H, class R>
  void finish(H& handler, R r) {
    busy = false;
    handler(std::move(r));
  }
  std::vector<std::string> bias_block() const {
    return {render(cmd->bias_level, {{"value", fmt(cfg.dc_bias)}}),
            std::string(cfg.bias_on ? cmd->bias_on : cmd->bias_off)};
  }
};

impedance_meter::impedance_meter(scpi_session& session, const model_profile& model)
    : impl_(std::make_shared<impl>(session, model)) {}
impedance_meter::~impedance_meter() { impl_->session = nullptr; }

void impedance_meter::async_configure(impedance_config cfg, done_handler handler) {
  auto s = impl_;
  if (!s->begin(handler, s->cmd != nullptr, "impedance")) return;
  std::string why;
  const auto& c = *s->cmd;
  if (std::none_of(c.functions.begin(), c.functions.end(),
                   [&](std::string_view f) { return f == cfg.function; }))
    why = "function '" + cfg.function + "' unknown";
  else if (!(cfg.frequency >= c.min_frequency && cfg.frequency <= c.max_frequency))
    why = "frequency " + fmt(cfg.frequency) + " outside [" + fmt(c.min_frequency) + ", " +
          fmt(c.max_frequency) + "] Hz";
  else if (!(cfg.ac_level >= 0 && cfg.ac_level <= c.max_ac_level))
    why = "AC level " + fmt(cfg.ac_level) + " outside [0, " + fmt(c.max_ac_level) + "] V";
  else if (!(std::fabs(cfg.dc_bias) <= c.max_bias))
    why = "DC bias " + fmt(cfg.dc_bias) + " outside +-" + fmt(c.max_bias) + " V";
  else if (cfg.aperture != "SHOR" && cfg.aperture != "MED" && cfg.aperture != "LONG")
    why = "aperture '" + cfg.aperture + "' (SHOR, MED or LONG)";
  if (!why.empty()) {
    s->busy = false;
    return post_result(s->ex, std::move(handler),
                       result<void>(make_error(errc::bad_setting, s->who + ": " + why)));
  }
  std::vector<std::string> block;
  for (auto t : c.configure)
    block.push_back(render(t, {{"function", cfg.function},
                               {"frequency", fmt(cfg.frequency)},
                               {"level", fmt(cfg.ac_level)},
                               {"aperture", cfg.aperture}}));
  auto prev = std::exchange(s->cfg, cfg);
  for (auto& b : s->bias_block()) block.push_back(std::move(b));
  s->configure(s, std::move(block),
               [s, prev = std::move(prev), handler = std::move(handler)](result<void> r) mutable {
                 if (!r) s->cfg = std::move(prev);
                 s->finish(handler, std::move(r));
               });
}

void impedance_meter::async_measure(point_handler handler) {
  auto s = impl_;
  if (!s->begin(handler, s->cmd != nullptr, "impedance")) return;
  s->write(s, std::string(s->cmd->trigger), [s, handler = std::move(handler)](result<void> r) mutable {
    if (!r) return s->finish(handler, result<impedance_point>(r.error()));
    std::string q(s->cmd->fetch);
    s->query(s, q, {}, [s, q, handler = std::move(handler)](result<std::string> reply) mutable {
      if (!reply) return s->finish(handler, result<impedance_point>(reply.error()));
      // A single-point fetch is <A>,<B>,<status>, or with the comparator on also <bin>.
      auto values = split_reply_list(*reply);
      std::size_t stride = values && values->size() == 4 ? 4 : 3;
      auto pts = parse_impedance(*reply, stride, s->who + ": '" + q + "' reply");
      if (!pts) return s->finish(handler, result<impedance_point>(pts.error()));
      if (pts->size() != 1)
        return s->finish(handler, result<impedance_point>(make_error(
                                      errc::bad_reply, s->who + ": '" + q + "' reply " +
                                                           quote_reply(*reply) +
                                                           " holds more than one point")));
      auto p = std::move(pts->front());
      p.bias = s->cfg.bias_on ? s->cfg.dc_bias : 0.0;
      s->finish(handler, result<impedance_point>(std::move(p)));
    });
  });
}

void impedance_meter::async_bias_list_sweep(std::vector<double> biases, sweep_handler handler) {
  auto s = impl_;
  if (!s->begin(handler, s->cmd != nullptr, "impedance")) return;
  const auto& c = *s->cmd;
  std::string why;
  if (biases.empty() || biases.size() > c.max_list_points)
    why = "list of " + std::to_string(biases.size()) + " bias points (1 to " +
          std::to_string(c.max_list_points) + " allowed)";
  for (double b : biases)
    if (why.empty() && !(std::fabs(b) <= c.max_bias))
      why = "bias " + fmt(b) + " outside +-" + fmt(c.max_bias) + " V";
  if (!why.empty()) {
    s->busy = false;
    return post_result(s->ex, std::move(handler),
                       result<std::vector<impedance_point>>(
                           make_error(errc::bad_setting, s->who + ": " + why)));
  }
  auto lv = std::make_shared<std::vector<double>>(std::move(biases));
  auto h = std::make_shared<sweep_handler>(std::move(handler));
  // Whatever happens after the list went in: the list page and the configured bias state back.
  auto restore_then = [s](std::function<void()> next) {
    std::vector<std::string> block(s->cmd->list_restore.begin(), s->cmd->list_restore.end());
    for (auto& b : s->bias_block()) block.push_back(std::move(b));
    auto shared = std::make_shared<std::vector<std::string>>(std::move(block));
    s->write_all(s, shared, 0, [next = std::move(next)](result<void>) { next(); });
  };
  auto fail = [s, h, restore_then](error_info e) {
    restore_then([s, h, e = std::move(e)]() mutable {
      s->finish(*h, result<std::vector<impedance_point>>(std::move(e)));
    });
  };
  std::vector<std::string> block(c.list_setup.begin(), c.list_setup.end());
  block.push_back(render(c.list_bias, {{"list", join(*lv, 0, lv->size())}}));
  block.emplace_back(c.bias_on);
  s->configure(s, std::move(block), [s, lv, h, fail, restore_then](result<void> r) {
    if (!r) return fail(r.error());
    s->write(s, std::string(s->cmd->trigger), [s, lv, h, fail, restore_then](result<void> r2) {
      if (!r2) return fail(r2.error());
      if (!s->session) return fail(aborted(s->who));
      auto budget = 2 * aperture_time(s->cfg.aperture) * static_cast<std::int64_t>(lv->size()) +
                    std::chrono::milliseconds{5000};
      async_wait_complete(*s->session, budget, [s, lv, h, fail, restore_then](result<void> r3) {
        if (!s->session) return fail(aborted(s->who));
        if (!r3) return fail(error_info{r3.error().code, s->who + ": list sweep: " +
                                                             r3.error().message});
        std::string q(s->cmd->list_fetch);
        s->query(s, q, {}, [s, lv, h, fail, restore_then, q](result<std::string> reply) {
          if (!reply) return fail(reply.error());
          auto pts = parse_impedance(*reply, 4, s->who + ": '" + q + "' reply");
          if (!pts) return fail(pts.error());
          if (pts->size() != lv->size())
            return fail(make_error(errc::bad_reply, s->who + ": list sweep returned " +
                                                        std::to_string(pts->size()) +
                                                        " points for " +
                                                        std::to_string(lv->size())));
          for (std::size_t i = 0; i < pts->size(); ++i) (*pts)[i].bias = (*lv)[i];
          auto data = std::make_shared<std::vector<impedance_point>>(std::move(*pts));
          restore_then([s, h, data] {
            s->finish(*h, result<std::vector<impedance_point>>(std::move(*data)));
          });
        });
      });
    });
  });
}

// ---- voltmeter ---------------------------------------------------------------------------------

struct voltmeter::impl : link_base, std::enable_shared_from_this<impl> {
  impl(scpi_session& s, const model_profile& m) : link_base(s, m.name), cmd(m.voltmeter) {
    if (cmd && !cmd->functions.empty()) fn = &cmd->functions.front();
  }
  const voltmeter_commands* cmd;
  const voltmeter_function* fn = nullptr;

  template <class H, class R>
  void finish(H& handler, R r) {
    busy = false;
    handler(std::move(r));
  }
};

voltmeter::voltmeter(scpi_session& session, const model_profile& model)
    : impl_(std::make_shared<impl>(session, model)) {}
voltmeter::~voltmeter() { impl_->session = nullptr; }

void voltmeter::async_configure(voltmeter_config cfg, done_handler handler) {
  auto s = impl_;
  if (!s->begin(handler, s->cmd != nullptr, "voltmeter")) return;
  const voltmeter_function* found = nullptr;
  for (const auto& f : s->cmd->functions)
    if (f.name == cfg.function) found = &f;
  std::string why;
  if (!found)
    why = "function '" + cfg.function + "' unknown";
  else if (!(cfg.range >= 0 && cfg.range <= found->max_range))
    why = "range " + fmt(cfg.range) + " outside [0, " + fmt(found->max_range) + "]";
  else if (!(cfg.nplc >= 0.001 && cfg.nplc <= 100))
    why = "NPLC " + fmt(cfg.nplc) + " outside [0.001, 100]";
  if (!why.empty()) {
    s->busy = false;
    return post_result(s->ex, std::move(handler),
                       result<void>(make_error(errc::bad_setting, s->who + ": " + why)));
  }
  std::string fname(found->name);
  std::vector<std::string> block;
  block.push_back(cfg.range == 0 ? render(s->cmd->configure_auto, {{"function", fname}})
                                 : render(s->cmd->configure,
                                          {{"function", fname}, {"value", fmt(cfg.range)}}));
  block.push_back(render(s->cmd->nplc, {{"function", fname}, {"value", fmt(cfg.nplc)}}));
  for (auto t : s->cmd->setup) block.emplace_back(t);
  s->configure(s, std::move(block), [s, found, handler = std::move(handler)](result<void> r) mutable {
    if (r) s->fn = found;
    s->finish(handler, std::move(r));
  });
}

void voltmeter::async_read(reading_handler handler) {
  auto s = impl_;
  if (!s->begin(handler, s->cmd != nullptr && s->fn != nullptr, "voltmeter")) return;
  std::string q(s->cmd->read);
  s->query(s, q, {}, [s, q, handler = std::move(handler)](result<std::string> reply) mutable {
    if (!reply) return s->finish(handler, result<reading>(reply.error()));
    auto n = parse_number_reply(*reply, s->who + ": '" + q + "' reply");
    if (!n) return s->finish(handler, result<reading>(n.error()));
    s->finish(handler, result<reading>(reading{std::string(s->fn->channel),
                                               std::string(s->fn->unit), n->value, n->quality}));
  });
}

}  // namespace semilab::drivers
