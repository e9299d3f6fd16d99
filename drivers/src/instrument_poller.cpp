#include <semilab/drivers/instrument_poller.hpp>

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
    bool need_init = inited_on != session->stats().connects || !session->is_open();
    if (need_init) return init_idn();
    poll();
  }

  void init_idn() {
    session->async_query("*IDN?", [self = shared_from_this()](error_code ec, std::string reply) {
      if (ec) return self->complete(ec, "init *IDN?: " + ec.message());
      if (!self->session) return self->complete(boost::asio::error::operation_aborted, "aborted");
      if (!idn_matches(*self->model, reply))
        return self->complete(make_error_code(errc::wrong_model),
                              "*IDN? reply " + quote_reply(reply) + " does not match '" +
                                  std::string(self->model->idn_pattern) + "'");
      self->idn = std::move(reply);
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
      self->inited_on = self->session->stats().connects;
      self->poll();
    });
  }

  void poll() {
    session->async_query(std::string(model->poll_query), [self = shared_from_this()](
                                                             error_code ec, std::string reply) {
      if (ec)
        return self->complete(ec, std::string(self->model->poll_query) + ": " + ec.message());
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
const model_profile& instrument_poller::model() const noexcept { return *state_->model; }

}  // namespace semilab::drivers
