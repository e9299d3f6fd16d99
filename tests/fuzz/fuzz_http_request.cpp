// Fuzz target: HTTP requests as the agent's status page and central's API receive them from the
// network. The input is a byte stream on one connection: Beast's request parser reads it with the
// limits both servers set (body, header), and every complete request is handed, as the servers
// hand it, to the agent's status routes (Host check, bearer token, instrument actions, assets,
// snapshot routes) and to central's API (route table, query parameters, cursors, tokens and
// roles, cookies and CSRF) over a small SQLite store holding one batch. Nothing may crash, throw,
// read out of bounds, or answer with a status outside 200..599. Central's API gets no writer
// connection, so its POST routes (login: scrypt) answer 503 and the runs stay fast; the agent's
// login (control_routes, scrypt too) is not wired either: its session and JSON handling is
// covered by agent_control_test.
//
// A bearer token cannot be guessed, so "Bearer @viewer@", "@engineer@" and "@admin@" in an
// Authorization header are replaced by real tokens of those roles (the seeds use them) and the
// fuzzer reaches the authenticated routes; anything else is tried as a token as sent.
#include <semilab/central/api.hpp>
#include <semilab/central/auth.hpp>
#include <semilab/central/store.hpp>
#include <semilab/schemas/frame.hpp>
#include <semilab/schemas/topics.hpp>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "status_routes.hpp"

namespace bhttp = boost::beast::http;
namespace sc = semilab::schemas;
namespace ce = semilab::central;
namespace ag = semilab::agent;

namespace {

[[noreturn]] void fail() { std::abort(); }

sc::batch one_batch() {
  sc::batch b;
  b.agent_id = "agent-01";
  b.store_epoch = 3;
  b.batch_id = 1;
  for (std::uint64_t i = 0; i < 6; ++i) {
    sc::record r;
    r.seq = 1 + i;
    r.cls = i == 5 ? sc::record_class::run_result : sc::record_class::telemetry;
    r.ts_ns = 1'764'250'001'000'000'000 + static_cast<std::int64_t>(i);
    r.instrument = "smu1";
    r.channel = i == 5 ? "vth" : "curr";
    r.unit = i == 5 ? "V" : "A";
    switch (i % 3) {
      case 0: r.val = 1.5 * static_cast<double>(i); break;
      case 1: r.val = static_cast<std::int64_t>(-(1ll << 60)); break;
      default: r.val = sc::decimal{12345000, -10};
    }
    if (i >= 3) r.run_id = "run-1";
    b.records.push_back(r);
  }
  return b;
}

// Everything both servers need, made once per process.
struct world {
  std::filesystem::path dir;
  std::unique_ptr<ce::sqlite_store> writer, reader;
  std::unique_ptr<ce::api> api;
  std::string viewer, engineer, admin;
  std::shared_ptr<ag::status_routes> status;

  world() {
    dir = std::filesystem::temp_directory_path() /
          ("semilab-fuzz-http-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::string db = (dir / "central.db").string();
    std::string err;
    auto w = ce::sqlite_store::open(ce::store_options{db}, err);
    if (!w) fail();
    writer = std::move(*w);
    sc::frame_encoder enc;
    auto bytes = enc.encode(one_batch());
    if (!bytes) fail();
    sc::frame_decoder dec;
    auto f = dec.decode(std::span<const std::uint8_t>(bytes->data(), bytes->size()));
    if (!f) fail();
    sc::agent_topic_parts t{"lab1", "agent-01", sc::agent_topic_kind::batch};
    if (!writer->store_batch(t, *f, bytes->size(), "c1").has_value()) fail();
    viewer = token(ce::role::viewer, "dash");
    engineer = token(ce::role::engineer, "eng");
    admin = token(ce::role::admin, "ops");
    auto r = ce::sqlite_store::open(ce::store_options{db, ce::open_mode::read_only}, err);
    if (!r) fail();
    reader = std::move(*r);
    ce::api_sources s;
    s.reader = reader.get();
    s.ingest = [] { return ce::ingest_stats{}; };
    s.mqtt_connected = [] { return true; };
    s.instance = "c1";
    s.clock = [] { return std::int64_t{1'764'250'100'000'000'000}; };
    s.auth = ce::api_auth{};  // anonymous: none; no rate limit
    api = std::make_unique<ce::api>(std::move(s));

    ag::status_actions acts;
    acts.transactions = [](std::string_view id) -> std::optional<std::string> {
      if (id == "smu1") return std::string("{\"transactions\":[]}");
      return std::nullopt;
    };
    acts.reconnect = [](std::string_view id) {
      if (id == "smu1") return ag::action_outcome::done;
      if (id == "dmm1") return ag::action_outcome::not_supported;
      return ag::action_outcome::unknown_instrument;
    };
    status = std::make_shared<ag::status_routes>("fuzz-operator-token", true, std::move(acts));
    auto snap = std::make_shared<ag::status_snapshot>();
    snap->status_json = "{\"agent\":\"agent-01\"}";
    snap->health_json = "{\"status\":\"ok\"}";
    snap->metrics = "semilab_up 1\n";
    snap->ready = true;
    status->publish(std::move(snap));
  }
  ~world() {
    api.reset();
    reader.reset();
    writer.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string token(ce::role ro, const char* name) {
    std::string err;
    auto t = ce::create_token(*writer, ro, name, 1'764'250'000'000'000'000, err);
    if (!t) fail();
    return "Bearer " + t->token;
  }
  std::string_view authorization(std::string_view sent) const {
    if (sent == "Bearer @viewer@") return viewer;
    if (sent == "Bearer @engineer@") return engineer;
    if (sent == "Bearer @admin@") return admin;
    if (sent == "Bearer @operator@") return "Bearer fuzz-operator-token";
    return sent;
  }
};

world& the_world() {
  static world w;
  return w;
}

void check(unsigned status) {
  if (status < 200 || status > 599) fail();
}

void serve(world& w, const bhttp::request<bhttp::string_body>& req) {
  const std::string_view authz = w.authorization(req[bhttp::field::authorization]);
  // As agent/src/http_status.cpp builds the view.
  ag::http_request_view view{std::string_view(req.method_string()),
                             std::string_view(req.target()),
                             authz,
                             std::string_view(req[bhttp::field::host]),
                             std::string_view(req[bhttp::field::cookie]),
                             std::string_view(req["X-CSRF-Token"]),
                             std::string_view(req[bhttp::field::content_type]),
                             std::string_view(req.body()),
                             false};
  auto r = w.status->handle(view);
  check(r.status);
  if (r.status == 405 && r.allow.empty()) fail();
  // As central/src/http.cpp builds its request.
  ce::http_request in;
  in.method = std::string_view(req.method_string());
  in.target = std::string_view(req.target());
  in.authorization = authz;
  in.remote = "10.0.0.9";
  in.cookie = std::string_view(req[bhttp::field::cookie]);
  in.csrf_token = std::string_view(req["X-CSRF-Token"]);
  in.content_type = std::string_view(req[bhttp::field::content_type]);
  in.body = std::string_view(req.body());
  auto c = w.api->handle(in);
  check(c.status);
  if (c.status == 405 && c.allow.empty()) fail();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  world& w = the_world();
  // First byte: size of each read from the socket (1..256), as a slow or fragmenting client.
  if (size == 0) return 0;
  const std::size_t step = static_cast<std::size_t>(data[0]) + 1;
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  // [off, end): bytes received and not yet consumed by the parser (the servers' flat_buffer).
  std::size_t off = 0, end = 0;
  for (int requests = 0; requests < 8; ++requests) {
    bhttp::request_parser<bhttp::string_body> p;
    p.body_limit(8192);
    p.header_limit(8 * 1024);
    p.eager(true);
    boost::beast::error_code ec;
    bool closed = false;
    for (int turns = 0; !p.is_done() && turns < 1 << 16; ++turns) {
      if (off == end || ec == bhttp::error::need_more) {
        ec = {};
        if (end == in.size()) {  // the client closed its side
          closed = true;
          if (p.got_some()) p.put_eof(ec);
          break;
        }
        end = std::min(end + step, in.size());  // the next read
      }
      off += p.put(boost::asio::buffer(in.data() + off, end - off), ec);
      if (ec && ec != bhttp::error::need_more) break;
    }
    if (ec || !p.is_done()) return 0;  // both servers close the connection here
    serve(w, p.get());
    if (closed) break;
  }
  return 0;
}
