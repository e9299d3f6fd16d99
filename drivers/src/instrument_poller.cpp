#include <semilab/drivers/instrument_poller.hpp>
#include <semilab/drivers/scpi_reply.hpp>

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>

#include <limits>

namespace semilab::drivers {

using boost::system::error_code;

struct instrument_poller::state : std::enable_shared_from_this<state> {
  state(scpi_session& s, const model_profile& m, model_settings st)
      : session(&s), model(&m), settings(std::move(st)), init_cmds(render_init(m, settings)) {}

  scpi_session* session;  // null once the poller is destroyed
  const model_profile* model;
  model_settings settings;
  std::vector<std::string> init_cmds;
  std::uint64_t inited_on = std::numeric_limits<std::uint64_t>::max();  // session connect count
  bool busy = false;
  std::string last_error;
  std::string idn;
  std::uint64_t power_cycles = 0;
  std::uint64_t inits = 0;
  std::uint64_t init_conn = 0;  // session connect count when this init's *IDN? was answered
  int attempts = 0;             // init sequences started by the current async_poll
  poll_handler handler;
  // first error found while draining the error queue after init
  std::string init_error;

  std::string who() const { return std::string(model->name) + ": "; }

  void complete(error_code ec, std::string why, std::vector<reading> r = {}) {
    if (ec) last_error = who() + why;
    busy = false;
    auto h = std::move(handler);
    handler = nullptr;
    h(ec, std::move(r));
  }

  // Each step checks `session` first: the poller may be gone while a step was in flight.
  void start() {
    if (!session) return complete(boost::asio::error::operation_aborted, "poller destroyed");
    attempts = 0;
    bool need_init = inited_on != session->stats().connects || !session->is_open();
    if (need_init) return init_idn();
    poll();
  }

  // A connection that is not the one the init ran on has not been initialised: the instrument
  // may have been power cycled in between (its settings and output state lost). Retry the init
  // once per poll; a link that drops again is an error, not a loop.
  void init_idn() {
    if (++attempts > 2)
      return complete(make_error_code(errc::stray_data),
                      "connection lost again during init (reconnected " +
                          std::to_string(session->stats().connects) + " times so far)");
    session->async_query("*IDN?", [self = shared_from_this()](error_code ec, std::string reply) {
      if (ec) return self->complete(ec, "init *IDN?: " + ec.message());
      if (!self->session) return self->complete(boost::asio::error::operation_aborted, "aborted");
      if (!idn_matches(*self->model, reply))
        return self->complete(make_error_code(errc::wrong_model),
                              "*IDN? reply " + quote_reply(reply) + " does not match '" +
                                  std::string(self->model->idn_pattern) + "'");
      if (!self->idn.empty() && self->idn != reply) ++self->power_cycles;  // another unit
      self->idn = std::move(reply);
      self->init_conn = self->session->stats().connects;
      self->init_esr();
    });
  }

  void init_esr() {
    session->async_query("*ESR?", [self = shared_from_this()](error_code ec, std::string reply) {
      if (ec) return self->complete(ec, "init *ESR?: " + ec.message());
      if (!self->session) return self->complete(boost::asio::error::operation_aborted, "aborted");
      auto esr = parse_esr_reply(reply);
      if (!esr) return self->complete(esr.error().code, "init: " + esr.error().message);
      // PON at the very first init only says the instrument was switched on at some point.
      if (esr->power_on() && self->inits > 0) ++self->power_cycles;
      self->init_write(-1);
    });
  }

  // step -1 is *CLS (so older errors are not blamed on this init), then the init commands.
  void init_write(int step) {
    if (step >= static_cast<int>(init_cmds.size())) {
      init_error.clear();
      return drain_errors(0);
    }
    std::string cmd = step < 0 ? std::string("*CLS") : init_cmds[static_cast<std::size_t>(step)];
    session->async_write(cmd, [self = shared_from_this(), step, cmd](error_code ec) {
      if (ec) return self->complete(ec, "init '" + cmd + "': " + ec.message());
      if (!self->session) return self->complete(boost::asio::error::operation_aborted, "aborted");
      self->init_write(step + 1);
    });
  }

  void drain_errors(int reads) {
    if (reads == kMaxErrorReads)
      return complete(make_error_code(errc::instrument_error),
                      "init: error queue not empty after " + std::to_string(reads) + " reads" +
                          (init_error.empty() ? "" : "; first: " + init_error));
    session->async_query(":SYST:ERR?", [self = shared_from_this(), reads](error_code ec,
                                                                          std::string reply) {
      if (ec) return self->complete(ec, "init :SYST:ERR?: " + ec.message());
      if (!self->session) return self->complete(boost::asio::error::operation_aborted, "aborted");
      auto entry = parse_error_entry(reply);
      if (!entry) return self->complete(entry.error().code, "init: " + entry.error().message);
      if (entry->code != 0) {
        if (self->init_error.empty())
          self->init_error = std::to_string(entry->code) + ",\"" + entry->text + "\"";
        return self->drain_errors(reads + 1);
      }
      if (!self->init_error.empty())
        return self->complete(make_error_code(errc::instrument_error),
                              "init: instrument reported " + quote_reply(self->init_error));
      if (self->session->stats().connects != self->init_conn) return self->init_idn();
      self->inited_on = self->session->stats().connects;
      ++self->inits;
      self->poll();
    });
  }

  void poll() {
    session->async_query(std::string(model->poll_query), [self = shared_from_this()](
                                                             error_code ec, std::string reply) {
      if (ec)
        return self->complete(ec, std::string(self->model->poll_query) + ": " + ec.message());
      if (!self->session) return self->complete(boost::asio::error::operation_aborted, "aborted");
      // The poll reconnected on the way (the instrument closed the idle link): the reply came
      // from an uninitialised connection. Discard it, initialise, poll again.
      if (self->session->stats().connects != self->inited_on) return self->init_idn();
      auto r = self->model->parse(reply, self->settings);
      if (!r) return self->complete(r.error().code, r.error().message);
      self->complete({}, {}, std::move(*r));
    });
  }
};

instrument_poller::instrument_poller(scpi_session& session, const model_profile& model,
                                     model_settings settings)
    : state_(std::make_shared<state>(session, model, std::move(settings))) {}

instrument_poller::~instrument_poller() { state_->session = nullptr; }

void instrument_poller::async_poll(poll_handler handler) {
  if (state_->busy) {
    boost::asio::post(state_->session->get_executor(), [h = std::move(handler)] {
      h(boost::asio::error::in_progress, {});
    });
    return;
  }
  state_->busy = true;
  state_->handler = std::move(handler);
  state_->start();
}

void instrument_poller::force_init() noexcept {
  state_->inited_on = std::numeric_limits<std::uint64_t>::max();
}
const std::string& instrument_poller::last_error() const noexcept { return state_->last_error; }
const std::string& instrument_poller::idn() const noexcept { return state_->idn; }
std::uint64_t instrument_poller::power_cycles() const noexcept { return state_->power_cycles; }
std::uint64_t instrument_poller::inits() const noexcept { return state_->inits; }
const model_profile& instrument_poller::model() const noexcept { return *state_->model; }

}  // namespace semilab::drivers
