#include <semilab/sim/server.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <charconv>

namespace semilab::sim {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;

namespace {
constexpr std::size_t kMaxLine = 64 * 1024;

// Logs go to stderr under the "sim" tag (stdout of semilab-sim carries only the listening line).
spdlog::logger& sim_log() {
  static const std::shared_ptr<spdlog::logger> kLogger = [] {
    if (auto l = spdlog::get("sim")) return l;
    return spdlog::stderr_color_mt("sim");
  }();
  return *kLogger;
}

std::optional<unsigned> parse_count(std::string_view s) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}
}  // namespace

std::string apply_fault_spec(std::string_view spec, fault_config& faults) {
  auto eq = spec.find('=');
  std::string_view key = spec.substr(0, eq);
  auto n = eq == std::string_view::npos ? std::nullopt : parse_count(spec.substr(eq + 1));
  std::string bad = "fault '" + std::string(spec) + "': ";
  if (key != "delay" && key != "drop-after" && key != "garbage-every")
    return bad + "unknown fault (known: delay=MS, drop-after=N, garbage-every=N)";
  if (!n) return bad + "expected a non-negative integer after '='";
  const auto v = n.value_or(0);  // (value_or: GCC 12 -O2 misreads *n as maybe-uninitialized)
  if (key == "delay") faults.delay = std::chrono::milliseconds(v);
  if (key == "drop-after") faults.drop_after = v;
  if (key == "garbage-every") faults.garbage_every = v;
  return {};
}

bool parse_listen(std::string_view text, tcp::endpoint& out) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return false;
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  auto port = parse_count(text.substr(colon + 1));
  if (!port || *port > 65535) return false;
  error_code ec;
  auto addr = asio::ip::make_address(std::string(host), ec);
  if (ec) return false;
  out = tcp::endpoint(addr, static_cast<unsigned short>(*port));
  return true;
}

// One client connection: read a line, execute, (maybe delay,) write the reply, repeat. Only one
// line is processed at a time, as on an instrument's socket interface.
class sim_server::connection : public std::enable_shared_from_this<connection> {
 public:
  connection(sim_server& server, tcp::socket socket)
      : server_(server), socket_(std::move(socket)), timer_(socket_.get_executor()) {}

  void start() { read_line(); }

  void close() {
    error_code ignored;
    socket_.close(ignored);
    timer_.cancel();
  }

 private:
  void read_line() {
    asio::async_read_until(socket_, asio::dynamic_buffer(buf_, kMaxLine), '\n',
                           [self = shared_from_this()](error_code ec, std::size_t n) {
                             self->on_line(ec, n);
                           });
  }

  void on_line(error_code ec, std::size_t n) {
    if (ec) {
      if (ec != asio::error::eof && ec != asio::error::operation_aborted)
        sim_log().debug("sim: connection closed: {}", ec.message());
      return close();
    }
    std::string line = buf_.substr(0, n - 1);
    buf_.erase(0, n);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto reply = execute_line(*server_.instrument_, line);
    if (!reply) return read_line();
    auto plan = server_.plan_reply();
    out_ = plan.garbage ? std::string(kGarbageReply) : std::move(*reply);
    out_.push_back('\n');
    drop_after_ = plan.drop_after;
    if (plan.delay.count() > 0) {
      timer_.expires_after(plan.delay);
      timer_.async_wait([self = shared_from_this()](error_code tec) {
        if (tec) return self->close();
        self->write_reply();
      });
    } else {
      write_reply();
    }
  }

  void write_reply() {
    asio::async_write(socket_, asio::buffer(out_),
                      [self = shared_from_this()](error_code ec, std::size_t) {
                        if (ec) return self->close();
                        ++self->server_.replies_;
                        ++self->replies_;
                        if (self->drop_after_ != 0 && self->replies_ >= self->drop_after_) {
                          sim_log().info("sim: fault drop-after={}: closing connection",
                                       self->drop_after_);
                          return self->close();
                        }
                        self->read_line();
                      });
  }

  sim_server& server_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  std::string buf_;
  std::string out_;
  unsigned replies_ = 0;
  unsigned drop_after_ = 0;
};

sim_server::sim_server(asio::io_context& io, std::unique_ptr<sim_instrument> instrument,
                       const tcp::endpoint& listen, fault_config faults)
    : io_(io), acceptor_(io, listen), instrument_(std::move(instrument)), faults_(faults) {}

sim_server::~sim_server() = default;

void sim_server::start() {
  asio::post(io_, [this] { do_accept(); });
}

void sim_server::stop() {
  asio::post(io_, [this] {
    stopped_ = true;
    error_code ignored;
    acceptor_.close(ignored);
    for (auto& w : connections_)
      if (auto c = w.lock()) c->close();
    connections_.clear();
  });
}

void sim_server::do_accept() {
  if (stopped_) return;
  acceptor_.async_accept([this](error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == asio::error::operation_aborted || stopped_) return;
      sim_log().warn("sim: accept failed: {}", ec.message());
      return do_accept();
    }
    ++accepted_;
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    sim_log().debug("sim: connection from {}", socket.remote_endpoint(ignored).address().to_string());
    auto c = std::make_shared<connection>(*this, std::move(socket));
    std::erase_if(connections_, [](const auto& w) { return w.expired(); });
    connections_.push_back(c);
    c->start();
    do_accept();
  });
}

sim_server::reply_plan sim_server::plan_reply() {
  std::lock_guard lock(faults_mutex_);
  ++reply_counter_;
  reply_plan p;
  p.delay = faults_.delay;
  p.garbage = faults_.garbage_every != 0 && reply_counter_ % faults_.garbage_every == 0;
  p.drop_after = faults_.drop_after;
  return p;
}

void sim_server::set_faults(const fault_config& faults) {
  std::lock_guard lock(faults_mutex_);
  faults_ = faults;
  reply_counter_ = 0;
}

fault_config sim_server::faults() const {
  std::lock_guard lock(faults_mutex_);
  return faults_;
}

tcp::endpoint sim_server::local_endpoint() const { return acceptor_.local_endpoint(); }

}  // namespace semilab::sim
