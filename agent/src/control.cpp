#include "control.hpp"

#include <semilab/agent/config.hpp>
#include <semilab/agent/recorder.hpp>
#include <semilab/sync/engine.hpp>
#include <semilab/sync/outbox.hpp>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>
#include <list>

#include "instrument_runner.hpp"
#include "reload.hpp"
#include "status_model.hpp"

namespace semilab::agent {

namespace asio = boost::asio;
namespace json = boost::json;
using local = asio::local::stream_protocol;

namespace {
constexpr std::size_t kMaxRequest = 64 * 1024;
constexpr auto kReadTimeout = std::chrono::seconds(10);

json::object fail(std::string_view msg) { return {{"ok", false}, {"error", msg}}; }

class connection : public std::enable_shared_from_this<connection> {
 public:
  connection(local::socket s, control_server::handler& h)
      : sock_(std::move(s)), timer_(sock_.get_executor()), buf_(kMaxRequest), handler_(h) {}

  void start() { read(); }
  void close() {
    boost::system::error_code ec;
    timer_.cancel();
    sock_.close(ec);
  }

 private:
  void read() {
    timer_.expires_after(kReadTimeout);
    timer_.async_wait([w = weak_from_this()](boost::system::error_code ec) {
      if (auto s = w.lock(); s && !ec) s->close();  // idle client
    });
    asio::async_read_until(sock_, buf_, '\n',
                           [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                             self->timer_.cancel();
                             if (ec) return;  // EOF, reset, too long (not_found), closed
                             self->on_line(n);
                           });
  }

  void on_line(std::size_t n) {
    std::string line(asio::buffers_begin(buf_.data()),
                     asio::buffers_begin(buf_.data()) + static_cast<std::ptrdiff_t>(n));
    buf_.consume(n);
    json::value reply;
    try {
      boost::system::error_code ec;
      auto req = json::parse(line, ec);
      if (ec || !req.is_object()) reply = fail("a request is one JSON object per line");
      else reply = handler_(req.as_object());
    } catch (const std::exception& e) {
      spdlog::error("[control] request failed: {}", e.what());
      reply = fail(std::string("internal error: ") + e.what());
    }
    out_ = json::serialize(reply) + "\n";
    asio::async_write(sock_, asio::buffer(out_),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        if (!ec) self->read();
                      });
  }

  local::socket sock_;
  asio::steady_timer timer_;
  asio::streambuf buf_;
  std::string out_;
  control_server::handler& handler_;
};

}  // namespace

struct control_server::impl : std::enable_shared_from_this<control_server::impl> {
  impl(asio::io_context& io, std::filesystem::path p, handler h)
      : acceptor(io), path(std::move(p)), handle(std::move(h)) {}

  void accept() {
    acceptor.async_accept([self = shared_from_this()](boost::system::error_code ec, local::socket s) {
      if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) return;
      if (!ec) {
        auto c = std::make_shared<connection>(std::move(s), self->handle);
        self->conns.remove_if([](auto& w) { return w.expired(); });
        self->conns.push_back(c);
        c->start();
      } else {
        spdlog::warn("[control] accept failed: {}", ec.message());
      }
      self->accept();
    });
  }

  void stop() {
    if (stopped) return;
    stopped = true;
    boost::system::error_code ec;
    acceptor.close(ec);
    for (auto& w : conns)
      if (auto c = w.lock()) c->close();
    conns.clear();
    std::error_code fec;
    std::filesystem::remove(path, fec);
  }

  local::acceptor acceptor;
  std::filesystem::path path;
  handler handle;
  std::list<std::weak_ptr<connection>> conns;
  bool stopped = false;
};

boost::system::result<std::shared_ptr<control_server>> control_server::start(
    asio::io_context& io, const std::filesystem::path& path, handler h, std::string& error) {
  if (path.native().size() >= sizeof(sockaddr_un::sun_path)) {
    error = path.string() + ": control socket path too long (at most " +
            std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes)";
    return boost::system::errc::make_error_code(boost::system::errc::filename_too_long);
  }
  std::error_code fec;
  if (std::filesystem::exists(std::filesystem::symlink_status(path, fec))) {
    // Somebody answering there is another daemon; otherwise the file is left from a crash.
    std::string e;
    bool not_running = false;
    if (control_call(path, {{"cmd", "ping"}}, std::chrono::milliseconds(500), e, not_running)) {
      error = path.string() + ": another semilab-agent answers on this control socket";
      return boost::system::errc::make_error_code(boost::system::errc::address_in_use);
    }
    if (!std::filesystem::is_socket(std::filesystem::symlink_status(path, fec))) {
      error = path.string() + ": exists and is not a socket (refusing to remove it)";
      return boost::system::errc::make_error_code(boost::system::errc::file_exists);
    }
    std::filesystem::remove(path, fec);
  }
  auto i = std::make_shared<impl>(io, path, std::move(h));
  boost::system::error_code ec;
  i->acceptor.open(local(), ec);
  if (!ec) {
    // Created 0660 from the start (no window where it is wider): umask for the bind only. The
    // io thread is the only thread creating files at this point of start-up.
    mode_t old = ::umask(0117);
    i->acceptor.bind(local::endpoint(path.string()), ec);
    ::umask(old);
  }
  if (!ec && ::chmod(path.c_str(), 0660) != 0)
    ec = boost::system::error_code(errno, boost::system::system_category());
  if (!ec) i->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    error = path.string() + ": control socket: " + ec.message();
    return ec;
  }
  i->accept();
  return std::shared_ptr<control_server>(new control_server(std::move(i)));
}

control_server::~control_server() {
  // Destroyed on the io thread (the daemon) after stop() or at the end of run_daemon.
  impl_->stop();
}

void control_server::stop() { impl_->stop(); }

boost::system::result<json::value> control_call(const std::filesystem::path& path,
                                                const json::object& request,
                                                std::chrono::milliseconds timeout,
                                                std::string& error, bool& not_running) {
  using boost::system::errc::make_error_code;
  namespace errc = boost::system::errc;
  not_running = false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.native().size() >= sizeof addr.sun_path) {
    error = path.string() + ": control socket path too long";
    return make_error_code(errc::filename_too_long);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.native().size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::string("socket: ") + std::strerror(errno);
    return make_error_code(errc::io_error);
  }
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } guard{fd};
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    not_running = e == ENOENT || e == ECONNREFUSED;
    error = path.string() + ": " + (not_running ? "the daemon is not running (" : "cannot connect (") +
            std::strerror(e) + ")";
    return make_error_code(static_cast<errc::errc_t>(e));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto wait = [&](short events) -> bool {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                      std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    return ::poll(&p, 1, static_cast<int>(left.count())) == 1;
  };
  std::string out = json::serialize(request) + "\n";
  std::size_t sent = 0;
  while (sent < out.size()) {
    if (!wait(POLLOUT)) {
      error = path.string() + ": timed out sending the request";
      return make_error_code(errc::timed_out);
    }
    auto n = ::send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      error = path.string() + ": send: " + std::strerror(errno);
      return make_error_code(errc::io_error);
    }
    sent += static_cast<std::size_t>(n);
  }
  std::string in;
  char buf[16384];
  while (in.find('\n') == std::string::npos) {
    if (!wait(POLLIN)) {
      error = path.string() + ": timed out waiting for the daemon's reply";
      return make_error_code(errc::timed_out);
    }
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      error = path.string() + ": the daemon closed the connection";
      return make_error_code(errc::connection_reset);
    }
    in.append(buf, static_cast<std::size_t>(n));
    if (in.size() > (64u << 20)) {
      error = path.string() + ": reply too large";
      return make_error_code(errc::message_size);
    }
  }
  in.resize(in.find('\n'));
  boost::system::error_code ec;
  auto v = json::parse(in, ec);
  if (ec) {
    error = path.string() + ": bad reply: " + ec.message();
    return ec;
  }
  return v;
}

// ---- agent_control ----------------------------------------------------------------------------

agent_control::agent_control(asio::io_context& io, agent_config& cfg, sync::outbox& outbox,
                             sync::engine& engine, recorder& rec,
                             std::vector<std::shared_ptr<runner>>& runners, event_log& events)
    : io_(io), cfg_(cfg), outbox_(outbox), engine_(engine), rec_(rec), runners_(runners),
      events_(events), started_ns_(utc_now_ns()) {}

json::value agent_control::dispatch(const json::object& req) noexcept {
  try {
    auto* c = req.if_contains("cmd");
    if (!c || !c->is_string()) return fail("missing \"cmd\"");
    std::string cmd(c->as_string());
    std::string who = "cli";
    if (auto* w = req.if_contains("who"); w && w->is_string()) who = std::string(w->as_string());
    if (cmd == "ping") return json::object{{"ok", true}, {"version", kAgentVersion}};
    if (cmd == "status") return status();
    if (cmd == "instruments") return instruments();
    if (cmd == "queue") return queue();
    if (cmd == "pause") return pause(who);
    if (cmd == "resume") return resume(who);
    if (cmd == "flush") return flush(who);
    if (cmd == "transactions") {
      json::object out{{"ok", true}};
      json::object per;
      for (auto& r : runners_) {
        auto id = r->status().id;
        if (auto t = transactions_json(runners_, id)) {
          boost::system::error_code ec;
          auto v = json::parse(*t, ec);
          if (!ec) per[id] = std::move(v);
        }
      }
      out["instruments"] = std::move(per);
      return out;
    }
    return fail("unknown command '" + cmd + "'");
  } catch (const std::exception& e) {
    return fail(std::string("internal error: ") + e.what());
  }
}

json::value agent_control::call(json::object request, std::chrono::milliseconds timeout) {
  auto p = std::make_shared<std::promise<json::value>>();
  auto f = p->get_future();
  asio::post(io_, [this, p, r = std::move(request)] { p->set_value(dispatch(r)); });
  if (f.wait_for(timeout) != std::future_status::ready)
    return fail("the daemon did not answer in time");
  return f.get();
}

json::object agent_control::status() const {
  auto c = outbox_.counters();
  auto s = engine_.stats();
  return {{"ok", true},
          {"agent_id", cfg_.id},
          {"site", cfg_.site},
          {"version", kAgentVersion},
          {"pid", static_cast<std::int64_t>(::getpid())},
          {"uptime_s", static_cast<double>(utc_now_ns() - started_ns_) / 1e9},
          {"acquisition", paused_ ? "paused" : "running"},
          {"instruments", runners_.size()},
          {"outbox", {{"held", c.held}, {"bytes", c.held_bytes}, {"dead_letters", c.dead_letters},
                      {"oldest_ts_ns", std::to_string(c.oldest_ts_ns)}, {"retained", c.retained}}},
          {"counters", {{"produced", c.produced}, {"acked", c.acked}, {"dropped", c.dropped},
                        {"refused", c.refused}}},
          {"broker", {{"url", cfg_.broker}, {"connected", s.broker_connected}}},
          {"central_online", s.central_online},
          {"last_ack_ns", std::to_string(s.last_ack_ns)},
          {"inflight_batches", s.inflight},
          {"alarms", [&] {
             json::array a;
             for (auto& x : outbox_.alarms()) a.push_back(json::value(x));
             return a;
           }()}};
}

json::object agent_control::instruments() const {
  json::array list;
  for (auto& r : runners_) {
    auto st = r->status();
    list.push_back(instrument_fields(st));
  }
  return {{"ok", true}, {"acquisition", paused_ ? "paused" : "running"}, {"instruments", std::move(list)}};
}

json::object agent_control::queue() const {
  auto c = outbox_.counters();
  auto s = engine_.stats();
  json::object paused;
  for (int k = 0; k < schemas::kRecordClassCount; ++k)
    paused[std::string(schemas::to_string(static_cast<schemas::record_class>(k)))] =
        (c.paused_classes >> k & 1u) != 0;
  return {{"ok", true},
          {"held", c.held},
          {"dead_letters", c.dead_letters},
          {"inflight_batches", s.inflight},
          {"broker_connected", s.broker_connected},
          {"intake_paused", std::move(paused)},
          {"acquisition", paused_ ? "paused" : "running"}};
}

void agent_control::audit(std::string_view what, const std::string& who) {
  // Recorded like any event: stored first, sent to central (who paused the data, and when).
  schemas::record ev;
  ev.cls = schemas::record_class::event;
  ev.ts_ns = utc_now_ns();
  ev.instrument = "agent";
  ev.channel = std::string(what);
  ev.val = std::string("by ") + who;
  outbox_.enqueue({std::move(ev)}, [w = std::string(what)](boost::system::error_code ec, schemas::seq_range) {
    if (ec) spdlog::error("[control] storing the {} event failed: {}", w, ec.message());
  });
  events_.add(utc_now_ns(), "ok", "agent", std::string(what) + " by " + who);
  spdlog::info("[control] {} by {}", what, who);
}

acquisition_state agent_control::acquisition() const {
  std::lock_guard lk(pause_mu_);
  return {paused_.load(), paused_by_, paused_ns_};
}

json::object agent_control::pause(const std::string& who) {
  if (paused_) return {{"ok", true}, {"acquisition", "paused"}, {"changed", false}};
  // A recipe run borrows the instruments' sessions: pausing would stop them under it. Refused
  // (docs/agent-cli.md "Pause and recipe runs"): abort the run or let it end first.
  if (auto runs = unfinished_runs_ ? unfinished_runs_() : std::vector<std::string>{}; !runs.empty()) {
    std::string list;
    json::array ids;
    for (const auto& id : runs) {
      list += (list.empty() ? "" : ", ") + id;
      ids.push_back(json::value(id));
    }
    return {{"ok", false},
            {"status", 409},
            {"error", "recipe run(s) in progress (" + list +
                          "): pausing would stop their instruments; abort them or wait until they end"},
            {"runs", std::move(ids)}};
  }
  {
    std::lock_guard lk(pause_mu_);
    paused_by_ = who;
    paused_ns_ = utc_now_ns();
  }
  // Stopped runners keep their last status (the page shows them); resume makes new ones.
  for (auto& r : runners_) r->stop();
  paused_ = true;
  audit("acquisition_paused", who);
  return {{"ok", true}, {"acquisition", "paused"}, {"changed", true}};
}

json::object agent_control::resume(const std::string& who) {
  if (!paused_) return {{"ok", true}, {"acquisition", "running"}, {"changed", false}};
  // runners_[i] drives cfg_.instruments[i] (reload.hpp's invariant).
  for (std::size_t i = 0; i < runners_.size() && i < cfg_.instruments.size(); ++i) {
    runners_[i] = make_runner(io_, cfg_.instruments[i], rec_);
    runners_[i]->start();
  }
  paused_ = false;
  {
    std::lock_guard lk(pause_mu_);
    paused_by_.clear();
    paused_ns_ = 0;
  }
  audit("acquisition_resumed", who);
  return {{"ok", true}, {"acquisition", "running"}, {"changed", true}};
}

json::object agent_control::flush(const std::string& who) {
  // The audit event's commit wakes the sync engine at once (it also rescans the outbox when
  // idle); the caller then watches `held` fall as central acks (the CLI's --wait).
  audit("flush_requested", who);
  auto c = outbox_.counters();
  auto s = engine_.stats();
  return {{"ok", true},
          {"held", c.held},
          {"dead_letters", c.dead_letters},
          {"broker_connected", s.broker_connected},
          {"central_online", s.central_online}};
}

}  // namespace semilab::agent
