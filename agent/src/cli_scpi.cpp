#include "cli_scpi.hpp"

#include <editline/readline.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <semilab/drivers/model.hpp>
#include <semilab/drivers/scpi_reply.hpp>
#include <semilab/drivers/scpi_session.hpp>
#include <semilab/drivers/visa_resource.hpp>

namespace semilab::agent {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;
using drivers::scpi_session;

// A blocking facade over the asynchronous session for one-shot CLI use: runs the io_context
// (single thread, the session's executor) until the operation completes. The session's own
// deadlines bound every call.
class blocking_session {
 public:
  blocking_session(const drivers::resource& res, const scpi_cli_options& opt)
      : session_(io_.get_executor(), res, make_options(opt)) {}

  std::pair<error_code, std::string> query(const std::string& cmd) {
    std::optional<std::pair<error_code, std::string>> out;
    session_.async_query(cmd, [&](error_code ec, std::string r) { out.emplace(ec, std::move(r)); });
    run_until([&] { return out.has_value(); });
    return std::move(*out);
  }
  error_code write(const std::string& cmd) {
    std::optional<error_code> out;
    session_.async_write(cmd, [&](error_code ec) { out = ec; });
    run_until([&] { return out.has_value(); });
    return *out;
  }
  std::pair<error_code, std::vector<drivers::scpi_error_entry>> drain_errors() {
    std::optional<std::pair<error_code, std::vector<drivers::scpi_error_entry>>> out;
    drivers::async_drain_errors(session_,
                                [&](error_code ec, std::vector<drivers::scpi_error_entry> e) {
                                  out.emplace(ec, std::move(e));
                                });
    run_until([&] { return out.has_value(); });
    return std::move(*out);
  }
  scpi_session& session() { return session_; }

 private:
  static scpi_session::options make_options(const scpi_cli_options& opt) {
    scpi_session::options o;
    auto ms =
        std::chrono::milliseconds(static_cast<long long>(std::llround(opt.timeout_s * 1000.0)));
    o.connect_timeout = ms;
    o.io_timeout = ms;
    o.portmapper_port = opt.portmapper_port;
    return o;
  }
  template <class Pred>
  void run_until(Pred done) {
    while (!done()) {
      if (io_.stopped()) io_.restart();
      io_.run_one();
    }
  }

  asio::io_context io_;
  scpi_session session_;
};

// libedit's readline interface with a history file: $XDG_STATE_HOME/semilab/scpi_history, or
// ~/.local/state/semilab/scpi_history (the last 1000 lines).
class line_editor {
 public:
  line_editor() {
    using_history();
    stifle_history(1000);
    if (const char* state = std::getenv("XDG_STATE_HOME"); state && *state) {
      path_ = std::filesystem::path(state) / "semilab";
    } else if (const char* home = std::getenv("HOME"); home && *home) {
      path_ = std::filesystem::path(home) / ".local" / "state" / "semilab";
    }
    if (!path_.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(path_, ec);
      path_ /= "scpi_history";
      read_history(path_.c_str());
    }
  }
  ~line_editor() {
    if (!path_.empty()) write_history(path_.c_str());
  }
  line_editor(const line_editor&) = delete;
  line_editor& operator=(const line_editor&) = delete;

  std::optional<std::string> read(const char* prompt) {
    char* raw = readline(prompt);
    if (!raw) return std::nullopt;  // EOF (Ctrl-D)
    std::string line(raw);
    std::free(raw);
    if (!line.empty() && (history_length == 0 || last_ != line)) add_history(line.c_str());
    last_ = line;
    return line;
  }

 private:
  std::filesystem::path path_;
  std::string last_;
};

std::string describe(error_code ec) {
  if (ec.category() == drivers::error_category()) return ec.message();
  return ec.message() + " (" + ec.category().name() + ":" + std::to_string(ec.value()) + ")";
}

// One printable line: blocks as length + hex head, other control bytes escaped.
std::string show_reply(std::string_view reply) {
  if (reply.size() >= 2 && reply[0] == '#' && reply[1] >= '0' && reply[1] <= '9') {
    if (auto data = drivers::parse_block(reply)) {
      std::string out = "#block " + std::to_string(data->size()) + " bytes:";
      for (std::size_t i = 0; i < std::min<std::size_t>(data->size(), 32); ++i) {
        char buf[4];
        std::snprintf(buf, sizeof buf, " %02x",
                      static_cast<unsigned>(static_cast<unsigned char>((*data)[i])));
        out += buf;
      }
      if (data->size() > 32) out += " ...";
      return out;
    }
  }
  std::string out;
  for (char c : reply) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u != 0x7F) {
      out.push_back(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", unsigned{u});
      out += buf;
    }
  }
  return out;
}

bool is_query(std::string_view cmd) {
  char quote = 0;
  for (char c : cmd) {
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '?') {
      return true;
    }
  }
  return false;
}

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

std::string wall_time(std::chrono::system_clock::time_point t) {
  auto secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count() % 1000000;
  char buf[48];
  std::snprintf(buf, sizeof buf, "%02d:%02d:%02d.%06lldZ", tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(us));
  return buf;
}

void print_ring(const scpi_session& s, std::ostream& os, std::string_view indent) {
  for (const auto& t : s.recent()) {
    char dur[32];
    std::snprintf(dur, sizeof dur, "%.3f ms", static_cast<double>(t.duration.count()) / 1000.0);
    os << indent << wall_time(t.time) << "  " << drivers::quote_reply(t.command) << "  out "
       << t.bytes_out << " B  in " << t.bytes_in << " B  " << dur << "  "
       << (t.outcome ? describe(t.outcome) : std::string("ok")) << "\n";
  }
}

std::optional<drivers::resource> open_resource(const std::string& text, std::ostream& err) {
  auto r = drivers::parse_resource(text);
  if (!r) {
    err << "semilab-agent: resource '" << text << "': " << r.error().message << "\n";
    return std::nullopt;
  }
  if (auto ok = drivers::require_openable(*r); !ok) {
    err << "semilab-agent: " << ok.error().message << "\n";
    return std::nullopt;
  }
  return *r;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto idx = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, idx == 0 ? 0 : idx - 1)];
}

}  // namespace

int run_probe(const scpi_cli_options& opt, std::ostream& out, std::ostream& err) {
  auto res = open_resource(opt.resource, err);
  if (!res) return 2;
  blocking_session s(*res, opt);
  out << "resource:     " << drivers::to_string(*res) << "\n";
  auto [ec, idn] = s.query("*IDN?");
  if (ec) {
    out << "idn:          ERROR: " << describe(ec) << "\n";
    err << "semilab-agent probe: " << opt.resource << " did not answer *IDN?: " << describe(ec)
        << "\n";
    print_ring(s.session(), err, "  ");
    return 1;
  }
  out << "transport:    " << s.session().describe() << ", timeout " << opt.timeout_s << " s\n";
  out << "idn:          " << show_reply(idn) << "\n";
  if (auto f = drivers::parse_idn(idn)) {
    out << "manufacturer: " << f->manufacturer << "\nmodel:        " << f->model
        << "\nserial:       " << f->serial << "\nfirmware:     " << f->firmware << "\n";
  } else {
    out << "idn fields:   " << f.error().message << "\n";
  }
  std::string profiles;
  for (const auto& m : drivers::models())
    if (drivers::idn_matches(m, idn))
      profiles += (profiles.empty() ? "" : ", ") + std::string(m.name);
  out << "profile:      " << (profiles.empty() ? "none (no model profile matches)" : profiles)
      << "\n";
  auto [oec, opts] = s.query("*OPT?");
  out << "options:      " << (oec ? "ERROR: " + describe(oec) : show_reply(opts)) << "\n";
  auto [eec, esr] = s.query("*ESR?");
  if (eec) {
    out << "esr:          ERROR: " << describe(eec) << "\n";
  } else if (auto bits = drivers::parse_esr_reply(esr)) {
    out << "esr:          " << bits->value << " (" << bits->describe() << ")\n";
  } else {
    out << "esr:          " << bits.error().message << "\n";
  }
  auto [qec, entries] = s.drain_errors();
  out << "errors:       ";
  if (entries.empty() && !qec) out << "none";
  for (std::size_t i = 0; i < entries.size(); ++i)
    out << (i ? "; " : "") << entries[i].code << ",\"" << entries[i].text << "\"";
  if (qec) out << (entries.empty() ? "" : "; ") << "ERROR: " << describe(qec);
  out << "\n";
  std::vector<double> rtt;
  constexpr int kRttQueries = 20;
  for (int i = 0; i < kRttQueries; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    auto [rec, r] = s.query("*OPC?");
    if (rec) break;
    rtt.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  char line[128];
  std::snprintf(line, sizeof line,
                "rtt:          p50 %.3f ms  p99 %.3f ms  (%zu of %d *OPC? queries)\n",
                percentile(rtt, 0.5), percentile(rtt, 0.99), rtt.size(), kRttQueries);
  out << line;
  const auto st = s.session().stats();
  out << "session:      connects " << st.connects << ", timeouts " << st.timeouts << ", resyncs "
      << st.resyncs << "\n";
  out << "recent transactions:\n";
  print_ring(s.session(), out, "  ");
  return 0;
}

int run_scpi(const scpi_cli_options& opt, std::istream& in, std::ostream& out, std::ostream& err) {
  auto res = open_resource(opt.resource, err);
  if (!res) return 2;
  blocking_session s(*res, opt);
  bool any_failed = false;
  auto run_one = [&](const std::string& raw) {
    std::string cmd = trim(raw);
    if (cmd.empty()) return;
    bool query = is_query(cmd);
    std::string failure;
    std::string reply;
    if (query) {
      auto [ec, r] = s.query(cmd);
      if (ec) failure = describe(ec);
      reply = std::move(r);
    } else if (auto ec = s.write(cmd)) {
      failure = describe(ec);
    }
    // With --check-errors the queue is read even after a failure: an unknown query times out
    // (nothing answers it) and the queued error says why.
    if (opt.check_errors && s.session().backoff_remaining().count() == 0) {
      auto [ec, entries] = s.drain_errors();
      for (std::size_t i = 0; i < entries.size(); ++i)
        failure += (i == 0 ? (failure.empty() ? "" : "; ") + std::string("instrument reported ")
                           : std::string("; ")) +
                   std::to_string(entries[i].code) + ",\"" + entries[i].text + "\"";
      if (ec) failure += (failure.empty() ? "" : "; ") + std::string(":SYST:ERR? ") + describe(ec);
    }
    if (!failure.empty()) {
      any_failed = true;
      err << "semilab-agent scpi: " << drivers::quote_reply(cmd) << ": " << failure << "\n";
      print_ring(s.session(), err, "  ");
    }
    if (query)
      out << (failure.empty() ? show_reply(reply) : "ERROR: " + failure) << "\n" << std::flush;
  };
  if (!opt.commands.empty()) {
    for (const auto& c : opt.commands) run_one(c);
  } else {
    if (&in == &std::cin && ::isatty(STDIN_FILENO) != 0) {
      // Interactive: line editing and a history kept across sessions (libedit).
      line_editor editor;
      while (auto line = editor.read("scpi> ")) run_one(*line);
    } else {
      std::string line;
      while (std::getline(in, line)) run_one(line);
    }
  }
  return any_failed ? 1 : 0;
}

scpi_cli::scpi_cli(CLI::App& app) {
  probe_ = app.add_subcommand("probe", "Identify an instrument: *IDN?, options, errors, latency");
  probe_
      ->add_option("resource", probe_opt_.resource,
                   "VISA resource, e.g. TCPIP0::10.0.0.5::5025::SOCKET")
      ->required();
  probe_->add_option("--timeout", probe_opt_.timeout_s, "Seconds per operation")
      ->check(CLI::Range(0.001, 3600.0))
      ->capture_default_str();
  probe_->add_option("--portmapper-port", probe_opt_.portmapper_port,
                     "VXI-11 (TCPIP::host::INSTR): port of the instrument's portmapper")
      ->capture_default_str();
  scpi_ = app.add_subcommand(
      "scpi", "Send SCPI commands (a '?' makes a query); without commands, read them from stdin");
  scpi_->add_option("resource", scpi_opt_.resource, "VISA resource")->required();
  scpi_->add_option("--timeout", scpi_opt_.timeout_s, "Seconds per operation")
      ->check(CLI::Range(0.001, 3600.0))
      ->capture_default_str();
  scpi_->add_option("--portmapper-port", scpi_opt_.portmapper_port,
                    "VXI-11 (TCPIP::host::INSTR): port of the instrument's portmapper")
      ->capture_default_str();
  scpi_->add_flag("--check-errors", scpi_opt_.check_errors,
                  "Drain :SYST:ERR? after each command; an entry fails the command");
  scpi_->add_option("commands", scpi_opt_.commands, "Commands, one per argument");
}

std::optional<int> scpi_cli::run() const {
  if (probe_->parsed()) return run_probe(probe_opt_, std::cout, std::cerr);
  if (scpi_->parsed()) return run_scpi(scpi_opt_, std::cin, std::cout, std::cerr);
  return std::nullopt;
}

}  // namespace semilab::agent
