// Reference server for bench/status_bench.py (issue 7): the least a Boost.Beast HTTP/1.1 server
// does to answer a request. One thread, keep-alive, every request answered with the same
// response: a captured /api/v1/status reply of the agent (status line, headers and body, as
// received), read from --response at start. The per-request work is what Beast's
// example/http/server/async does: parse the request, copy the response, write it.
//
//   semilab-bench-bare-http --response FILE [--port N]
// Prints "listening 127.0.0.1:PORT" once bound; SIGTERM or SIGINT stops it.
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

using response = bhttp::response<bhttp::string_body>;

class session : public std::enable_shared_from_this<session> {
 public:
  session(tcp::socket&& s, const response& canned) : stream_(std::move(s)), canned_(canned) {}

  void do_read() {
    parser_.emplace();
    parser_->header_limit(8 * 1024);
    stream_.expires_after(std::chrono::seconds(30));
    bhttp::async_read(stream_, buffer_, *parser_,
                      beast::bind_front_handler(&session::on_read, shared_from_this()));
  }

 private:
  void on_read(beast::error_code ec, std::size_t) {
    if (ec == bhttp::error::end_of_stream) {
      stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
      return;
    }
    if (ec) return;
    const auto& req = parser_->get();
    res_ = canned_;
    res_.version(req.version());
    res_.keep_alive(req.keep_alive());
    bhttp::async_write(stream_, res_,
                       beast::bind_front_handler(&session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t) {
    if (ec) return;
    if (!res_.keep_alive()) {
      stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
      return;
    }
    do_read();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::empty_body>> parser_;
  response res_;
  const response& canned_;
};

void do_accept(tcp::acceptor& acc, const response& canned) {
  acc.async_accept([&acc, &canned](beast::error_code ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      s.set_option(tcp::no_delay(true), ec);
      std::make_shared<session>(std::move(s), canned)->do_read();
    }
    do_accept(acc, canned);
  });
}

// The captured reply, parsed back into a Beast response (headers kept, in order).
std::optional<response> load(const std::string& path, std::string& error) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    error = "cannot read " + path;
    return std::nullopt;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  std::string raw = ss.str();
  bhttp::response_parser<bhttp::string_body> p;
  p.eager(true);
  p.body_limit(64 * 1024 * 1024);
  beast::error_code ec;
  p.put(asio::buffer(raw), ec);
  if (!ec && !p.is_done()) p.put_eof(ec);
  if (ec || !p.is_done()) {
    error = path + ": not a complete HTTP response (" + (ec ? ec.message() : "truncated") + ")";
    return std::nullopt;
  }
  response r = p.release();
  r.prepare_payload();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::string file;
  unsigned short port = 0;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--response" && i + 1 < argc) file = argv[++i];
    else if (a == "--port" && i + 1 < argc)
      port = static_cast<unsigned short>(std::strtoul(argv[++i], nullptr, 10));
    else {
      std::cerr << "usage: semilab-bench-bare-http --response FILE [--port N]\n";
      return 2;
    }
  }
  if (file.empty()) {
    std::cerr << "semilab-bench-bare-http: --response FILE is required\n";
    return 2;
  }
  std::string error;
  auto canned = load(file, error);
  if (!canned) {
    std::cerr << "semilab-bench-bare-http: " << error << "\n";
    return 1;
  }
  asio::io_context io(1);
  beast::error_code ec;
  tcp::acceptor acc(io);
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
  acc.open(ep.protocol(), ec);
  if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(ep, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::cerr << "semilab-bench-bare-http: listen 127.0.0.1:" << port << ": " << ec.message() << "\n";
    return 1;
  }
  std::printf("listening 127.0.0.1:%u\n", static_cast<unsigned>(acc.local_endpoint().port()));
  std::fflush(stdout);
  asio::signal_set sigs(io, SIGINT, SIGTERM);
  sigs.async_wait([&](beast::error_code, int) { io.stop(); });
  do_accept(acc, *canned);
  io.run();
  return 0;
}
