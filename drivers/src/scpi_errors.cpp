#include <memory>
#include <semilab/drivers/model.hpp>
#include <semilab/drivers/scpi_session.hpp>

namespace semilab::drivers {
namespace {

struct drain_state : std::enable_shared_from_this<drain_state> {
  scpi_session* session;
  drain_handler handler;
  int max_reads;
  std::vector<scpi_error_entry> found;

  void next() {
    if (static_cast<int>(found.size()) >= max_reads)
      return handler(make_error_code(errc::instrument_error), std::move(found));
    session->async_query(
        ":SYST:ERR?", [self = shared_from_this()](boost::system::error_code ec, std::string reply) {
          if (ec) return self->handler(ec, std::move(self->found));
          auto entry = parse_error_entry(reply);
          if (!entry) return self->handler(entry.error().code, std::move(self->found));
          if (entry->code == 0) return self->handler({}, std::move(self->found));
          self->found.push_back(std::move(*entry));
          self->next();
        });
  }
};

}  // namespace

void async_drain_errors(scpi_session& session, drain_handler handler, int max_reads) {
  auto s = std::make_shared<drain_state>();
  s->session = &session;
  s->handler = std::move(handler);
  s->max_reads = max_reads;
  s->next();
}

}  // namespace semilab::drivers
