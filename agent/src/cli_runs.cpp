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
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

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

}  // namespace

run_recipe_cli::run_recipe_cli(CLI::App& app) {
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

bool run_recipe_cli::parsed() const { return cmd_->parsed(); }

int run_recipe_cli::run() {
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
  if (cfg->status_tls()) {
    std::cerr << "semilab-agent: run-recipe: the status server serves HTTPS; this client speaks "
                 "plain HTTP to a loopback status server only\n";
    return 2;
  }
  std::string host = cfg->status_bind;
  if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
  if (host == "::") host = "::1";
  auto port = static_cast<std::uint16_t>(cfg->status_port);
  const std::string token = !cfg->runs_token.empty() ? cfg->runs_token : cfg->operator_token;
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
  for (;;) {
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
        if (line != last_line) {
          std::cerr << id << ": " << line << "\n";
          last_line = line;
        }
        std::string prompt(o.at("prompt").as_string());
        if (!prompt.empty() && prompt != last_prompt) std::cerr << "PROMPT: " << prompt << "\n";
        last_prompt = prompt;
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
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace semilab::agent
