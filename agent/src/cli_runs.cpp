// `semilab-agent run-recipe` (cli_runs.hpp): a small blocking HTTP/1.1 client of the daemon's
// status server, loopback by default.
#include "cli_runs.hpp"

#include <semilab/agent/config.hpp>
#include <semilab/methods/extraction.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <poll.h>
#include <unistd.h>

namespace semilab::agent {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) { g_interrupted = true; }

struct http_result {
  unsigned status = 0;
  std::string body;
  std::string error;  // transport failure
};

http_result http_call(const std::string& host, std::uint16_t port, std::string_view method,
                      std::string_view target, const std::string& token, const std::string& body) {
  http_result r;
  try {
    asio::io_context io;
    asio::ip::tcp::socket sock(io);
    asio::ip::tcp::resolver res(io);
    asio::connect(sock, res.resolve(host, std::to_string(port)));
    std::string req = std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: " +
                      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                      std::to_string(port) + "\r\nConnection: close\r\nAccept: application/json\r\n";
    if (!token.empty()) req += "Authorization: Bearer " + token + "\r\n";
    if (method == "POST")
      req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    req += "\r\n" + body;
    asio::write(sock, asio::buffer(req));
    std::string in;
    boost::system::error_code ec;
    asio::read(sock, asio::dynamic_buffer(in), ec);  // until the server closes
    if (ec && ec != asio::error::eof) {
      r.error = ec.message();
      return r;
    }
    auto sp = in.find(' ');
    auto hdr_end = in.find("\r\n\r\n");
    if (sp == std::string::npos || hdr_end == std::string::npos) {
      r.error = "malformed HTTP reply";
      return r;
    }
    r.status = static_cast<unsigned>(std::atoi(in.c_str() + sp + 1));
    r.body = in.substr(hdr_end + 4);
    // Chunked bodies are not sent by the status server (it sets Content-Length).
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

std::string json_error_text(const std::string& body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (!ec && v.is_object())
    if (auto* e = v.as_object().if_contains("error"); e && e->is_string())
      return std::string(e->as_string());
  return body;
}

std::string fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}

void print_human(const json::object& run) {
  std::cout << "run        " << run.at("run_id").as_string().c_str() << "\n"
            << "state      " << run.at("state").as_string().c_str() << "\n";
  if (auto r = run.at("reason").as_string(); !r.empty()) std::cout << "reason     " << r.c_str() << "\n";
  auto* res = run.if_contains("result");
  if (!res || !res->is_object()) return;
  const auto& o = res->as_object();
  if (auto* ps = o.if_contains("parameters"); ps && ps->is_object())
    for (const auto& [name, pv] : ps->as_object()) {
      const auto& p = pv.as_object();
      if (p.at("value").is_string()) {
        std::cout << name << "\t" << p.at("value").as_string().c_str() << "\n";
        continue;
      }
      methods::parameter mp;
      mp.name = std::string(name);
      mp.value = p.at("value").to_number<double>();
      mp.unit = std::string(p.at("unit").as_string());
      if (auto* u = p.if_contains("uncertainty")) mp.uncertainty = u->to_number<double>();
      auto cv = methods::to_customary(mp);
      std::cout << name << "\t" << fmt(cv.value) << "\t" << cv.unit;
      if (cv.uncertainty) std::cout << "\t± " << fmt(*cv.uncertainty);
      std::cout << "\n";
    }
  if (auto* w = o.if_contains("warnings"); w && w->is_array())
    for (const auto& x : w->as_array()) std::cerr << "warning: " << x.as_string().c_str() << "\n";
  if (auto* f = o.if_contains("limit_failures"); f && f->is_array())
    for (const auto& x : f->as_array()) std::cerr << "LIMIT: " << x.as_string().c_str() << "\n";
}

// The daemon's status server as the CLI reaches it (plain HTTP, loopback), or a message.
struct endpoint {
  std::string host;
  std::uint16_t port = 0;
  std::string token;
};
std::optional<endpoint> endpoint_of(const agent_config& cfg, std::string& error) {
  if (cfg.status_tls()) {
    error = "the status server serves HTTPS; this client speaks plain HTTP to a loopback status "
            "server only";
    return std::nullopt;
  }
  endpoint e;
  e.host = cfg.status_bind;
  if (e.host == "0.0.0.0" || e.host.empty()) e.host = "127.0.0.1";
  if (e.host == "::") e.host = "::1";
  e.port = static_cast<std::uint16_t>(cfg.status_port);
  e.token = !cfg.runs_token.empty() ? cfg.runs_token : cfg.operator_token;
  return e;
}

// One line from stdin when one is ready within `ms`: 1 a line (Enter), 0 nothing yet, -1 stdin
// closed or unreadable (prompts can then only be confirmed elsewhere).
int stdin_line(int ms) {
  pollfd p{0, POLLIN, 0};
  int n = ::poll(&p, 1, ms);
  if (n <= 0) return n < 0 && errno != EINTR ? -1 : 0;
  if (p.revents & (POLLERR | POLLNVAL)) return -1;
  char buf[256];
  for (;;) {
    ssize_t r = ::read(0, buf, sizeof buf);
    if (r < 0 && errno == EINTR) return 0;
    if (r <= 0) return -1;
    if (std::string_view(buf, static_cast<std::size_t>(r)).find('\n') != std::string_view::npos)
      return 1;
    if (::poll(&p, 1, 0) <= 0) return 0;  // a partial line: the rest comes with Enter
  }
}

}  // namespace

run_recipe_cli::run_recipe_cli(CLI::App& app) {
  runs_ = app.add_subcommand("runs", "Recipe runs of the running daemon: list, show, confirm a "
                                     "prompt, abort");
  runs_->require_subcommand(1);
  auto cfg_opt = [this](CLI::App* c) {
    c->add_option("-c,--config", config_, "Agent configuration file (TOML)")->required();
    c->add_flag("--json", json_, "Machine-readable output");
  };
  list_ = runs_->add_subcommand("list", "Runs newest first: state, progress, recipe, sample");
  cfg_opt(list_);
  show_ = runs_->add_subcommand("show", "One run: state, progress, prompt, result");
  show_->add_option("id", run_id_, "Run id")->required();
  cfg_opt(show_);
  confirm_ = runs_->add_subcommand(
      "confirm", "Confirm the operator prompt a run waits for (state waiting)");
  confirm_->add_option("id", run_id_, "Run id")->required();
  confirm_->add_option("--prompt", prompt_,
                       "Confirm only if the run waits for this prompt number (as shown)");
  cfg_opt(confirm_);
  abort_ = runs_->add_subcommand("abort", "Abort a queued, running or waiting run (outputs off)");
  abort_->add_option("id", run_id_, "Run id")->required();
  cfg_opt(abort_);

  cmd_ = app.add_subcommand("run-recipe",
                            "Submit a recipe to the running daemon and follow the run until it ends");
  cmd_->add_option("recipe", recipe_, "Recipe file (TOML)")->required();
  cmd_->add_option("-c,--config", config_, "Agent configuration file (TOML)")->required();
  cmd_->add_option("--sample", sample_, "Sample id")->required();
  cmd_->add_option("--wafer", wafer_, "Wafer id");
  cmd_->add_option("--lot", lot_, "Lot id");
  cmd_->add_option("--die", die_, "Die id");
  cmd_->add_option("--operator", operator_, "Operator");
  cmd_->add_option("--bind", bind_, "ROLE=INSTRUMENT (repeatable): bind a recipe role");
  cmd_->add_flag("--no-follow", no_follow_, "Print the run id and return once queued");
  cmd_->add_option("--timeout", timeout_s_, "Stop following after this many seconds (0 = never)");
  cmd_->add_flag("--json", json_, "Print the final run object as JSON");
}

bool run_recipe_cli::parsed() const { return cmd_->parsed() || runs_->parsed(); }

int run_recipe_cli::runs_cmd() {
  std::string err;
  auto cfg = load_config(config_, err);
  if (!cfg) {
    std::cerr << "semilab-agent: " << err << "\n";
    return 2;
  }
  auto ep = endpoint_of(*cfg, err);
  if (!ep) {
    std::cerr << "semilab-agent: runs: " << err << "\n";
    return 2;
  }
  std::string target = "/api/v1/runs";
  std::string method = "GET", body;
  if (!list_->parsed()) target += "/" + run_id_;
  if (confirm_->parsed()) {
    method = "POST";
    target += "/confirm";
    body = prompt_ > 0 ? json::serialize(json::object{{"prompt", prompt_}}) : "{}";
  } else if (abort_->parsed()) {
    method = "POST";
    target += "/abort";
  }
  auto r = http_call(ep->host, ep->port, method, target, ep->token, body);
  if (!r.error.empty()) {
    std::cerr << "semilab-agent: runs: the daemon's status server " << ep->host << ":" << ep->port
              << " is not reachable: " << r.error << "\n";
    return 3;
  }
  if (r.status >= 300) {
    std::cerr << "semilab-agent: runs: refused (" << r.status << "): " << json_error_text(r.body)
              << "\n";
    return 1;
  }
  if (json_ || method == "POST") {
    std::cout << r.body;
    return 0;
  }
  boost::system::error_code ec;
  auto v = json::parse(r.body, ec);
  if (ec || !v.is_object()) {
    std::cerr << "semilab-agent: runs: unexpected reply: " << r.body << "\n";
    return 1;
  }
  auto line = [](const json::object& o) {
    std::string s = std::string(o.at("run_id").as_string()) + "\t" +
                    std::string(o.at("state").as_string()) + "\t" +
                    std::to_string(o.at("step").to_number<std::uint64_t>()) + "/" +
                    std::to_string(o.at("steps").to_number<std::uint64_t>());
    if (auto* rp = o.if_contains("repeats"); rp && rp->to_number<std::uint64_t>() > 1)
      s += " (repeat " + std::to_string(o.at("repeat").to_number<std::uint64_t>()) + " of " +
           std::to_string(rp->to_number<std::uint64_t>()) + ")";
    s += "\t" + std::string(o.at("recipe").as_string()) + "\t" + std::string(o.at("method").as_string());
    if (auto* m = o.if_contains("metadata"); m && m->is_object())
      if (auto* smp = m->as_object().if_contains("sample"); smp && smp->is_string())
        s += "\tsample " + std::string(smp->as_string());
    return s;
  };
  if (list_->parsed()) {
    for (const auto& x : v.as_object().at("runs").as_array()) std::cout << line(x.as_object()) << "\n";
    return 0;
  }
  const auto& o = v.as_object();
  std::cout << line(o) << "\n";
  if (auto p = o.at("prompt").as_string(); !p.empty())
    std::cout << "prompt " << o.at("prompt_seq").to_number<std::uint64_t>() << ": " << p.c_str()
              << "\n";
  print_human(o);
  return 0;
}

int run_recipe_cli::run() {
  if (runs_->parsed()) return runs_cmd();
  std::string err;
  auto cfg = load_config(config_, err);
  if (!cfg) {
    std::cerr << "semilab-agent: " << err << "\n";
    return 2;
  }
  std::ifstream f(recipe_);
  if (!f) {
    std::cerr << "semilab-agent: run-recipe: cannot read " << recipe_ << "\n";
    return 2;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  json::object meta{{"sample", sample_}};
  for (auto [k, v] : {std::pair{"wafer", &wafer_}, std::pair{"lot", &lot_}, std::pair{"die", &die_},
                      std::pair{"operator", &operator_}})
    if (!v->empty()) meta[k] = *v;
  json::object binds;
  for (const auto& b : bind_) {
    auto eq = b.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == b.size()) {
      std::cerr << "semilab-agent: run-recipe: --bind '" << b << "': expected ROLE=INSTRUMENT\n";
      return 2;
    }
    binds[b.substr(0, eq)] = b.substr(eq + 1);
  }
  auto ep = endpoint_of(*cfg, err);
  if (!ep) {
    std::cerr << "semilab-agent: run-recipe: " << err << "\n";
    return 2;
  }
  const std::string host = ep->host;
  const auto port = ep->port;
  const std::string token = ep->token;
  auto file_name = std::filesystem::path(recipe_).filename().string();
  std::string body = json::serialize(json::object{
      {"recipe", ss.str()}, {"recipe_file", file_name}, {"metadata", meta}, {"bindings", binds}});
  auto sub = http_call(host, port, "POST", "/api/v1/runs", token, body);
  if (!sub.error.empty()) {
    std::cerr << "semilab-agent: run-recipe: the daemon's status server " << host << ":" << port
              << " is not reachable: " << sub.error << "\n";
    return 3;
  }
  if (sub.status != 201) {
    std::cerr << "semilab-agent: run-recipe: refused (" << sub.status << "): "
              << json_error_text(sub.body) << "\n";
    return 2;
  }
  boost::system::error_code ec;
  auto accepted = json::parse(sub.body, ec);
  if (ec || !accepted.is_object() || !accepted.as_object().contains("run_id")) {
    std::cerr << "semilab-agent: run-recipe: unexpected reply: " << sub.body << "\n";
    return 1;
  }
  std::string id(accepted.as_object().at("run_id").as_string());
  std::cerr << id << " queued\n";
  if (no_follow_) {
    std::cout << id << "\n";
    return 0;
  }
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_int {}, old_term {};
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  auto restore = [&] {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
  };
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<std::int64_t>(timeout_s_ * 1000));
  std::string last_line, last_prompt;
  bool abort_sent = false;
  int misses = 0;
  std::uint64_t asked = 0;            // prompt number shown and waiting for Enter
  bool stdin_usable = ::isatty(0) != 0;  // Enter confirms only from a terminal
  for (;;) {
    bool waited = false;
    if (g_interrupted && !abort_sent) {
      abort_sent = true;
      auto ab = http_call(host, port, "POST", "/api/v1/runs/" + id + "/abort", token, "");
      std::cerr << id << ": abort " << (ab.status == 202 ? "requested" : "refused: " + json_error_text(ab.body))
                << "\n";
    }
    auto g = http_call(host, port, "GET", "/api/v1/runs/" + id, token, "");
    if (!g.error.empty() || g.status != 200) {
      if (++misses >= 25) {  // 5 s without an answer: the daemon went away
        restore();
        std::cerr << "semilab-agent: run-recipe: lost the daemon while following " << id << ": "
                  << (g.error.empty() ? json_error_text(g.body) : g.error) << "\n";
        return 3;
      }
    } else {
      misses = 0;
      auto v = json::parse(g.body, ec);
      if (!ec && v.is_object()) {
        const auto& o = v.as_object();
        std::string state(o.at("state").as_string());
        std::string line = state + " " + std::to_string(o.at("step").to_number<std::uint64_t>()) +
                           "/" + std::to_string(o.at("steps").to_number<std::uint64_t>());
        if (auto* rp = o.if_contains("repeats"); rp && rp->to_number<std::uint64_t>() > 1)
          line += " (repeat " + std::to_string(o.at("repeat").to_number<std::uint64_t>()) + " of " +
                  std::to_string(rp->to_number<std::uint64_t>()) + ")";
        if (line != last_line) {
          std::cerr << id << ": " << line << "\n";
          last_line = line;
        }
        std::string prompt(o.at("prompt").as_string());
        std::uint64_t seq = 0;
        if (auto* ps = o.if_contains("prompt_seq")) seq = ps->to_number<std::uint64_t>();
        if (!prompt.empty() && prompt != last_prompt) std::cerr << "PROMPT: " << prompt << "\n";
        last_prompt = prompt;
        if (state == "waiting" && seq != 0 && seq != asked) {
          asked = seq;
          std::cerr << (stdin_usable ? "press Enter when done (Ctrl-C aborts the run)"
                                     : "confirm with `semilab-agent runs confirm " + id +
                                           "` or on the status page")
                    << "\n";
        }
        if (state == "waiting" && seq == asked && stdin_usable && !g_interrupted) {
          int got = stdin_line(200);
          if (got < 0) {
            stdin_usable = false;
            std::cerr << "stdin closed: confirm with `semilab-agent runs confirm " << id
                      << "` or on the status page\n";
          } else if (got > 0) {
            auto c = http_call(host, port, "POST", "/api/v1/runs/" + id + "/confirm", token,
                               json::serialize(json::object{{"prompt", seq}}));
            std::cerr << id << ": prompt " << seq << " "
                      << (c.status == 202 ? std::string("confirmed")
                                          : "not confirmed: " + json_error_text(c.body))
                      << "\n";
          }
          waited = true;  // poll() waited instead of the sleep below
        }
        if (state == "completed" || state == "failed" || state == "aborted") {
          restore();
          if (json_) std::cout << g.body;
          else print_human(o);
          if (state == "failed") return 1;
          if (state == "aborted") return 5;
          const auto* res = o.if_contains("result");
          bool pass = res && res->is_object() && res->as_object().contains("pass") &&
                      res->as_object().at("pass").as_bool();
          return pass ? 0 : 6;
        }
      }
    }
    if (timeout_s_ > 0 && std::chrono::steady_clock::now() >= deadline) {
      restore();
      std::cerr << "semilab-agent: run-recipe: " << id << " still " << last_line
                << " after --timeout; it goes on in the daemon\n";
      return 4;
    }
    if (!waited) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace semilab::agent
