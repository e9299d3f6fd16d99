// The status page's routes without sockets (tokens, Host check, assets, readiness), then the
// Beast server on 127.0.0.1:0 with a plain socket client: one request and an event stream.
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "http_status.hpp"
#include "status_routes.hpp"

using namespace semilab::agent;

namespace {

struct fixture {
  std::atomic<int> reconnects{0};
  std::shared_ptr<status_routes> routes;

  explicit fixture(std::string token = "s3cret-token") {
    status_actions a;
    a.transactions = [](std::string_view id) -> std::optional<std::string> {
      if (id != "smu1") return std::nullopt;
      return std::string("{\"instrument\":\"smu1\",\"transactions\":[]}");
    };
    a.reconnect = [this](std::string_view id) {
      if (id == "mb1") return action_outcome::not_supported;
      if (id != "smu1") return action_outcome::unknown_instrument;
      ++reconnects;
      return action_outcome::done;
    };
    routes = std::make_shared<status_routes>(std::move(token), true, std::move(a));
  }

  http_reply get(std::string_view target, std::string_view host = "127.0.0.1:8470") {
    return routes->handle({"GET", target, "", host});
  }
  http_reply post(std::string_view target, std::string_view auth) {
    return routes->handle({"POST", target, auth, "localhost:8470"});
  }
};

std::shared_ptr<status_snapshot> snap(std::string status, bool ready = true) {
  auto s = std::make_shared<status_snapshot>();
  s->status_json = std::move(status);
  s->health_json = "{\"state\":\"ok\"}";
  s->metrics = "# HELP x y\n# TYPE x gauge\nx 1\n";
  s->ready = ready;
  s->not_ready_json = "{\"ready\":false,\"reasons\":[\"disk\"]}";
  return s;
}

}  // namespace

TEST_CASE("routes: the page, its assets and the JSON behind it") {
  fixture f;
  auto page = f.get("/");
  CHECK(page.status == 200);
  CHECK(page.content_type.rfind("text/html", 0) == 0);
  CHECK(page.body.find("<script src=\"/app.js\">") != std::string::npos);
  // Nothing loaded from outside: no absolute URLs to other hosts in any asset.
  for (const auto& a : embedded_assets()) {
    INFO(a.path);
    CHECK(a.body.find("http://") == std::string_view::npos);
    CHECK(a.body.find("https://") == std::string_view::npos);
    CHECK(f.get(a.path).status == 200);
  }
  CHECK(f.get("/app.js").content_type.rfind("text/javascript", 0) == 0);

  CHECK(f.get("/api/v1/status").status == 503);  // nothing published yet
  CHECK(f.get("/readyz").status == 503);
  CHECK(f.get("/healthz").status == 200);
  f.routes->publish(snap("{\"agent_id\":\"a\"}"));
  CHECK(f.get("/api/v1/status").body == "{\"agent_id\":\"a\"}");
  CHECK(f.get("/api/status?x=1").body == "{\"agent_id\":\"a\"}");
  CHECK(f.get("/api/v1/health").body == "{\"state\":\"ok\"}");
  CHECK(f.get("/metrics").content_type.rfind("text/plain; version=0.0.4", 0) == 0);
  CHECK(f.get("/readyz").status == 200);
  f.routes->publish(snap("{}", false));
  auto nr = f.get("/readyz");
  CHECK(nr.status == 503);
  CHECK(nr.body.find("disk") != std::string::npos);

  auto ev = f.get("/events");
  CHECK(ev.event_stream);
  CHECK(ev.content_type == "text/event-stream");
  CHECK(ev.body == "event: status\ndata: {}\n\n");
  CHECK(f.get("/api/v1/instruments/smu1/transactions").status == 200);
  CHECK(f.get("/api/instruments/smu1/transactions").status == 200);
  CHECK(f.get("/api/v1/instruments/nope/transactions").status == 404);
  CHECK(f.get("/nope").status == 404);
  CHECK(f.routes->handle({"DELETE", "/api/v1/status", "", ""}).status == 405);
}

TEST_CASE("routes: the reconnect action needs the operator token") {
  fixture f;
  const char* url = "/api/v1/instruments/smu1/reconnect";
  CHECK(f.post(url, "").status == 401);
  CHECK(f.post(url, "Basic abc").status == 401);
  CHECK(f.post(url, "Bearer wrong").status == 403);
  CHECK(f.post(url, "Bearer s3cret-tokenX").status == 403);
  CHECK(f.reconnects == 0);
  CHECK(f.routes->handle({"GET", url, "Bearer s3cret-token", ""}).status == 405);
  auto ok = f.post(url, "Bearer s3cret-token");
  CHECK(ok.status == 202);
  CHECK(f.reconnects == 1);
  CHECK(f.post("/api/v1/instruments/nope/reconnect", "Bearer s3cret-token").status == 404);
  CHECK(f.post("/api/v1/instruments/mb1/reconnect", "Bearer s3cret-token").status == 501);

  fixture none("");  // no token configured: actions off, whatever is sent
  CHECK(none.post(url, "Bearer ").status == 403);
  CHECK(none.post(url, "Bearer anything").status == 403);
  CHECK(none.reconnects == 0);
}

TEST_CASE("routes: on loopback, a Host that is not loopback is refused (DNS rebinding)") {
  fixture f;
  CHECK(f.get("/healthz", "evil.example:8470").status == 421);
  CHECK(f.get("/healthz", "127.0.0.1").status == 200);
  CHECK(f.get("/healthz", "[::1]:8470").status == 200);
  CHECK(f.get("/healthz", "localhost").status == 200);
  CHECK(f.get("/healthz", "127.evil.example").status == 421);
  CHECK(same_secret("abc", "abc"));
  CHECK_FALSE(same_secret("abc", "abd"));
  CHECK_FALSE(same_secret("abc", "abcd"));
  CHECK(sse_event("status", "a\nb") == "event: status\ndata: a\ndata: b\n\n");
}

TEST_CASE("server: answers on 127.0.0.1 and streams every published snapshot") {
  namespace asio = boost::asio;
  using tcp = asio::ip::tcp;
  fixture f;
  asio::io_context io;
  status_server_options so;
  so.port = 0;
  std::string err;
  auto srv = status_server::start(io.get_executor(), so, f.routes, err);
  REQUIRE_MESSAGE(srv.has_value(), err);
  auto server = *srv;
  server->publish(snap("{\"n\":1}"));
  std::thread t([&] { io.run(); });
  struct joiner {  // a failed REQUIRE must not leave a joinable thread behind
    boost::asio::io_context& io;
    std::thread& t;
    ~joiner() {
      io.stop();
      if (t.joinable()) t.join();
    }
  } join_at_exit{io, t};
  auto port = server->port();
  CHECK(port != 0);

  {
    asio::io_context cio;
    tcp::socket s(cio);
    s.connect({asio::ip::make_address("127.0.0.1"), port});
    std::string req = "GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    asio::write(s, asio::buffer(req));
    std::string resp;
    boost::system::error_code ec;
    asio::read(s, asio::dynamic_buffer(resp), ec);
    CHECK(resp.rfind("HTTP/1.1 200 OK", 0) == 0);
    CHECK(resp.find("{\"n\":1}") != std::string::npos);
  }
  {
    asio::io_context cio;
    tcp::socket s(cio);
    s.connect({asio::ip::make_address("127.0.0.1"), port});
    std::string req = "GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n";
    asio::write(s, asio::buffer(req));
    std::string buf;
    asio::read_until(s, asio::dynamic_buffer(buf), "{\"n\":1}\n\n");
    CHECK(buf.rfind("HTTP/1.1 200 OK", 0) == 0);
    CHECK(buf.find("Content-Type: text/event-stream") != std::string::npos);
    server->publish(snap("{\"n\":2}"));
    asio::read_until(s, asio::dynamic_buffer(buf), "{\"n\":2}\n\n");
    CHECK(buf.find("event: status\ndata: {\"n\":2}\n\n") != std::string::npos);
  }
  server->stop();
}
