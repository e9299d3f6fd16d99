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
  std::string_view value = eq == std::string_view::npos ? std::string_view{} : spec.substr(eq + 1);
  std::string bad = "fault '" + std::string(spec) + "': ";
  if (key == "hang") {
    if (eq != std::string_view::npos) return bad + "hang takes no value";
    faults.hang = true;
    return {};
  }
  if (key == "late") {
    auto slash = value.find('/');
    auto ms = parse_count(value.substr(0, slash));
    auto every = slash == std::string_view::npos ? std::nullopt : parse_count(value.substr(slash + 1));
    if (!ms || !every || every.value_or(0) == 0) return bad + "expected late=MS/N with N >= 1";
    faults.late = std::chrono::milliseconds(ms.value_or(0));
    faults.late_every = every.value_or(1);
    return {};
  }
  if (key == "error") {
    auto star = value.find('*');
    std::string_view code_text = value.substr(0, star);
    int code = 0;
    auto [p, ec] = std::from_chars(code_text.data(), code_text.data() + code_text.size(), code);
    auto count = star == std::string_view::npos ? std::optional<unsigned>(1)
                                                : parse_count(value.substr(star + 1));
    if (code_text.empty() || ec != std::errc{} || p != code_text.data() + code_text.size() ||
        code == 0 || !count || count.value_or(0) == 0 || count.value_or(0) > 1000)
      return bad + "expected error=CODE or error=CODE*N (CODE non-zero, 1 <= N <= 1000)";
    faults.errors.insert(faults.errors.end(), count.value_or(1), code);
    return {};
  }
  auto n = eq == std::string_view::npos ? std::nullopt : parse_count(value);
  if (key != "delay" && key != "drop-after" && key != "garbage-every" &&
      key != "power-cycle-after")
    return bad + "unknown fault (see --help: delay=MS, late=MS/N, drop-after=N, garbage-every=N, "
                 "hang, power-cycle-after=N, error=CODE[*N])";
  if (!n) return bad + "expected a non-negative integer after '='";
  const auto v = n.value_or(0);  // (value_or: GCC 12 -O2 misreads *n as maybe-uninitialized)
  if (key == "delay") faults.delay = std::chrono::milliseconds(v);
  if (key == "drop-after") faults.drop_after = v;
  if (key == "garbage-every") faults.garbage_every = v;
  if (key == "power-cycle-after") faults.power_cycle_after = v;
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
    if (server_.hanging()) return read_line();  // a hung instrument: nothing runs, nothing answers
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto reply = execute_line(*server_.instrument_, line);
    auto hold = server_.instrument_->take_reply_hold();  // busy instrument (*OPC? in a sweep)
    if (!reply) return read_line();
    auto plan = server_.plan_reply();
    plan.delay += hold;
    out_ = plan.garbage ? std::string(kGarbageReply) : std::move(*reply);
    out_.push_back('\n');
    drop_after_ = plan.drop_after;
    power_cycle_ = plan.power_cycle;
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
                        if (self->power_cycle_) {
                          sim_log().info("sim: fault power-cycle-after: power cycling");
                          return self->server_.power_cycle_now();
                        }
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
  bool power_cycle_ = false;
};

sim_server::sim_server(asio::io_context& io, std::unique_ptr<sim_instrument> instrument,
                       const tcp::endpoint& listen, fault_config faults)
    : io_(io), acceptor_(io, listen), instrument_(std::move(instrument)), faults_(faults) {
  for (int code : faults.errors) instrument_->inject_error(code);
}

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
  if (faults_.late_every != 0 && reply_counter_ % faults_.late_every == 0) p.delay += faults_.late;
  p.power_cycle = faults_.power_cycle_after != 0 && reply_counter_ == faults_.power_cycle_after;
  return p;
}

bool sim_server::hanging() const {
  std::lock_guard lock(faults_mutex_);
  return faults_.hang;
}

void sim_server::set_faults(const fault_config& faults) {
  {
    std::lock_guard lock(faults_mutex_);
    faults_ = faults;
    reply_counter_ = 0;
  }
  if (!faults.errors.empty()) queue_errors(faults.errors);
}

void sim_server::queue_errors(std::vector<int> codes) {
  asio::post(io_, [this, codes = std::move(codes)] {
    for (int code : codes) instrument_->inject_error(code);
  });
}

void sim_server::power_cycle() {
  asio::post(io_, [this] { power_cycle_now(); });
}

void sim_server::power_cycle_now() {
  instrument_->power_on();
  ++power_cycles_;
  for (auto& w : connections_)
    if (auto c = w.lock()) c->close();
  connections_.clear();
}

fault_config sim_server::faults() const {
  std::lock_guard lock(faults_mutex_);
  return faults_;
}

tcp::endpoint sim_server::local_endpoint() const { return acceptor_.local_endpoint(); }

}  // namespace semilab::sim
