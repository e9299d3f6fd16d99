#include <semilab/service/log.hpp>
#include <semilab/service/systemd.hpp>

#include <spdlog/details/null_mutex.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/dist_sink.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <syslog.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>

namespace semilab::service {

namespace {

void notify(const std::string& state) {
  // 0: keep NOTIFY_SOCKET in the environment (the reloads and the watchdog use it again).
  // Without NOTIFY_SOCKET sd_notify returns 0 and does nothing.
  (void)::sd_notify(0, state.c_str());
}

int priority_of(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace:
    case spdlog::level::debug: return LOG_DEBUG;
    case spdlog::level::info: return LOG_INFO;
    case spdlog::level::warn: return LOG_WARNING;
    case spdlog::level::err: return LOG_ERR;
    case spdlog::level::critical: return LOG_CRIT;
    default: return LOG_INFO;
  }
}

// journald: one entry per message with semilab's fields. sd_journal_send is thread-safe; the
// base_sink mutex only keeps spdlog's contract.
class journal_sink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit journal_sink(std::string identifier) : identifier_(std::move(identifier)) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::string_view text(msg.payload.data(), msg.payload.size());
    std::string_view name(msg.logger_name.data(), msg.logger_name.size());
    auto f = parse_fields(name, text);
    const int len = static_cast<int>(std::min<std::size_t>(text.size(), 1 << 20));
    if (f.instrument.empty())
      ::sd_journal_send("MESSAGE=%.*s", len, text.data(), "PRIORITY=%d", priority_of(msg.level),
                        "SYSLOG_IDENTIFIER=%s", identifier_.c_str(), "COMPONENT=%s",
                        f.component.c_str(), nullptr);
    else
      ::sd_journal_send("MESSAGE=%.*s", len, text.data(), "PRIORITY=%d", priority_of(msg.level),
                        "SYSLOG_IDENTIFIER=%s", identifier_.c_str(), "COMPONENT=%s",
                        f.component.c_str(), "INSTRUMENT=%s", f.instrument.c_str(), nullptr);
  }
  void flush_() override {}

 private:
  std::string identifier_;
};

std::mutex g_mu;
std::shared_ptr<spdlog::sinks::dist_sink_mt> g_sink;
std::atomic<bool> g_json{false};
// Text lines in files (no colour codes); stderr keeps spdlog's default or the logger's pattern.
constexpr const char* kFilePattern = "%Y-%m-%dT%H:%M:%S.%e %l [%n] %v";

void json_escape(spdlog::memory_buf_t& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out.append(std::string_view("\\\"")); break;
      case '\\': out.append(std::string_view("\\\\")); break;
      case '\n': out.append(std::string_view("\\n")); break;
      case '\r': out.append(std::string_view("\\r")); break;
      case '\t': out.append(std::string_view("\\t")); break;
      default:
        if (c < 0x20 || c == 0x7f) {
          const char u[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
          out.append(u, u + 6);
        } else {
          out.push_back(ch);
        }
    }
  }
}

class json_formatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& out) override {
    using namespace std::chrono;
    const auto since = msg.time.time_since_epoch();
    const std::time_t secs = static_cast<std::time_t>(duration_cast<seconds>(since).count());
    const auto ms = static_cast<int>(duration_cast<milliseconds>(since).count() % 1000);
    std::tm tm{};
    ::gmtime_r(&secs, &tm);
    char ts[80];  // room for any int the compiler imagines in the fields
    std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    std::string_view text(msg.payload.data(), msg.payload.size());
    std::string_view name(msg.logger_name.data(), msg.logger_name.size());
    const auto f = parse_fields(name, text);
    const auto level = spdlog::level::to_string_view(msg.level);
    out.append(std::string_view("{\"ts\":\""));
    out.append(std::string_view(ts));
    out.append(std::string_view("\",\"level\":\""));
    out.append(std::string_view(level.data(), level.size()));
    out.append(std::string_view("\",\"component\":\""));
    json_escape(out, f.component);
    if (!f.instrument.empty()) {
      out.append(std::string_view("\",\"instrument\":\""));
      json_escape(out, f.instrument);
    }
    out.append(std::string_view("\",\"logger\":\""));
    json_escape(out, name);
    out.append(std::string_view("\",\"msg\":\""));
    json_escape(out, text);
    out.append(std::string_view("\"}\n"));
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<json_formatter>();
  }
};

std::unique_ptr<spdlog::formatter> file_formatter() {
  if (g_json) return std::make_unique<json_formatter>();
  return std::make_unique<spdlog::pattern_formatter>(kFilePattern);
}

}  // namespace

notifier::notifier(boost::asio::any_io_executor ex) : timer_(std::move(ex)) {
  std::uint64_t usec = 0;
  // > 0: systemd expects pings from this very process (WATCHDOG_PID matches or is unset).
  if (::sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    period_ = std::chrono::microseconds(static_cast<std::int64_t>(usec / 2));
    arm();
  }
}

notifier::~notifier() { timer_.cancel(); }

void notifier::arm() {
  notify("WATCHDOG=1");
  timer_.expires_after(period_);
  timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) arm();
  });
}

void notifier::ready(std::string_view status) {
  std::string s = "READY=1";
  if (!status.empty()) s += "\nSTATUS=" + std::string(status);
  notify(s);
}

void notifier::reloading() { notify("RELOADING=1\nSTATUS=reloading the configuration"); }

void notifier::stopping() { notify("STOPPING=1\nSTATUS=stopping"); }

void notifier::status(std::string_view text) { notify("STATUS=" + std::string(text)); }

bool stderr_is_journal() {
  const char* js = std::getenv("JOURNAL_STREAM");
  if (!js || !*js) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (::fstat(2, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

spdlog::sink_ptr default_sink(const std::string& identifier) {
  std::lock_guard lk(g_mu);
  if (!g_sink) {
    g_sink = std::make_shared<spdlog::sinks::dist_sink_mt>();
    if (stderr_is_journal())
      g_sink->add_sink(std::make_shared<journal_sink>(identifier));
    else
      g_sink->add_sink(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  }
  return g_sink;
}

std::string add_rotating_file(const std::string& path, std::size_t max_bytes, std::size_t files) {
  auto dist = std::static_pointer_cast<spdlog::sinks::dist_sink_mt>(default_sink("semilab"));
  try {
    // Throws spdlog_ex when the file cannot be opened: caught here, reported as a value.
    auto f = std::make_shared<spdlog::sinks::rotating_file_sink_mt>(path, max_bytes, files);
    f->set_formatter(file_formatter());
    dist->add_sink(std::move(f));
    return {};
  } catch (const std::exception& e) {
    return "log file " + path + ": " + e.what();
  }
}

log_fields parse_fields(std::string_view logger_name, std::string_view message) {
  log_fields f;
  f.component = std::string(logger_name);
  if (message.size() > 2 && message.front() == '[') {
    auto close = message.find(']');
    if (close != std::string_view::npos && close > 1 && close < 32) {
      f.component = std::string(message.substr(1, close - 1));
      auto rest = message.substr(close + 1);
      if (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
      // "[acq] smu1: ..." names an instrument; ids have no spaces.
      auto colon = rest.find(": ");
      if (f.component == "acq" && colon != std::string_view::npos && colon > 0 &&
          rest.substr(0, colon).find(' ') == std::string_view::npos)
        f.instrument = std::string(rest.substr(0, colon));
    }
  }
  return f;
}

std::string check_log_level(const std::string& v) {
  for (std::string_view l : {"trace", "debug", "info", "warn", "error", "critical", "off"})
    if (v == l) return {};
  return "expected one of trace, debug, info, warn, error, critical, off";
}

std::string check_log_format(const std::string& v) {
  if (v == "text" || v == "json") return {};
  return "expected text or json";
}

bool json_logs() noexcept { return g_json; }

std::unique_ptr<spdlog::formatter> make_json_formatter() { return std::make_unique<json_formatter>(); }

std::string apply_log_options(const log_options& o) {
  if (!o.level.empty()) {
    if (auto why = check_log_level(o.level); !why.empty()) return "log.level: " + why;
  }
  if (auto why = check_log_format(o.format); !why.empty()) return "log.format: " + why;
  auto dist = std::static_pointer_cast<spdlog::sinks::dist_sink_mt>(default_sink("semilab"));
  g_json = o.format == "json";
  if (g_json) {
    // stderr and any file: JSON lines. The journal sink ignores formatters (its own fields).
    for (auto& sink : dist->sinks()) sink->set_formatter(make_json_formatter());
  }
  if (!o.file.empty()) {
    if (auto e = add_rotating_file(o.file, std::size_t{o.file_max_mb} << 20, o.files); !e.empty())
      return e;
  }
  if (!o.level.empty()) {
    const auto l = spdlog::level::from_str(o.level);
    spdlog::set_level(l);
    spdlog::apply_all([l](const std::shared_ptr<spdlog::logger>& lg) { lg->set_level(l); });
  }
  return {};
}

}  // namespace semilab::service
