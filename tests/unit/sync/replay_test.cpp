// Retention of acked records, authenticated replay commands, and the engine serving a replay
// against a real mosquitto and a minimal central; the agent's MQTT client over TLS.
#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/command.hpp>
#include <semilab/schemas/topics.hpp>
#include <semilab/sync/engine.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <mutex>
#include <thread>

#include "support/processes.hpp"

using namespace semilab;
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

constexpr const char* kKey = "0123456789abcdef-test-secret";

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::vector<schemas::record> make(std::size_t n) {
  std::vector<schemas::record> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    v[i].ts_ns = 1'700'000'000'000'000'000 + static_cast<std::int64_t>(i) * 1000;
    v[i].instrument = "smu1";
    v[i].channel = "curr";
    v[i].unit = "A";
    v[i].val = schemas::decimal{static_cast<std::int64_t>(i), -3};
  }
  return v;
}

std::unique_ptr<sync::outbox> open_box(const std::filesystem::path& p, sync::retention_options r) {
  std::string err;
  sync::outbox_options oo{p, "agent-1", sync::durability::normal};
  oo.integrity_interval = 0s;
  oo.retention = r;
  auto b = sync::outbox::open(oo, err);
  REQUIRE_MESSAGE(b.has_value(), err);
  return std::move(*b);
}

std::uint64_t ack_wait(sync::outbox& box, std::vector<schemas::seq_range> ranges) {
  std::promise<std::uint64_t> p;
  auto f = p.get_future();
  box.ack(std::move(ranges), [&](boost::system::error_code ec, std::uint64_t n) {
    p.set_value(ec ? ~std::uint64_t{0} : n);
  });
  return f.get();
}

std::vector<schemas::record> read_retained_wait(sync::outbox& box, std::uint64_t from,
                                                std::uint64_t to, std::size_t max = 100000) {
  std::promise<std::vector<schemas::record>> p;
  auto f = p.get_future();
  box.read_retained(from, to, max,
                    sync::outbox::read_epoch_done([&](boost::system::error_code ec,
                                                      std::vector<schemas::record> r, std::uint64_t) {
                      REQUIRE_FALSE(ec);
                      p.set_value(std::move(r));
                    }));
  return f.get();
}

schemas::replay_command replay_cmd(std::uint64_t epoch, std::uint64_t from, std::uint64_t to) {
  return {"agent-1", epoch, from, to, now_ns(), schemas::new_nonce()};
}

}  // namespace

TEST_CASE("command MAC: canonical bytes, tampering, wrong key, freshness window, parsing") {
  auto c = replay_cmd(42, 10, 20);
  REQUIRE(c.nonce.size() == 32);
  auto wire = schemas::encode_command(c, kKey);
  auto d = schemas::decode_command(wire);
  REQUIRE(d.has_value());
  CHECK(d->cmd.store_epoch == 42);
  CHECK(d->cmd.from == 10);
  CHECK(d->cmd.to == 20);
  CHECK(schemas::verify_command(*d, kKey, now_ns()) == schemas::command_verdict::ok);
  CHECK(schemas::verify_command(*d, "another-secret-of-16+", now_ns()) ==
        schemas::command_verdict::bad_mac);
  auto tampered = *d;
  tampered.cmd.to = 2000;  // a wider range than signed
  CHECK(schemas::verify_command(tampered, kKey, now_ns()) == schemas::command_verdict::bad_mac);
  const auto window = std::chrono::duration_cast<std::chrono::nanoseconds>(schemas::kCommandWindow).count();
  CHECK(schemas::verify_command(*d, kKey, now_ns() + window + 1'000'000'000) ==
        schemas::command_verdict::stale);
  CHECK(schemas::verify_command(*d, kKey, now_ns() - window - 1'000'000'000) ==
        schemas::command_verdict::stale);
  CHECK_FALSE(schemas::decode_command("{}").has_value());
  CHECK_FALSE(schemas::decode_command("not json").has_value());
  auto bad = c;
  bad.from = 30;  // from > to
  CHECK_FALSE(schemas::decode_command(schemas::encode_command(bad, kKey)).has_value());
  // Known answer: HMAC-SHA256 with key "key" over the canonical bytes, computed independently
  // (python3 -c "import hmac,hashlib; print(hmac.new(b'key', b'semilab-cmd-v1\nreplay\na\n1\n2\n3\n4\n' + b'0'*32, hashlib.sha256).hexdigest())").
  schemas::replay_command k{"a", 1, 2, 3, 4, std::string(32, '0')};
  CHECK(schemas::canonical_bytes(k) == "semilab-cmd-v1\nreplay\na\n1\n2\n3\n4\n" + std::string(32, '0'));
  CHECK(schemas::command_mac(k, "key") ==
        "ed10de4f5d9f9bb03923c9c75aa05666436a174fe0d64aaa864efa596195f477");
}

TEST_CASE("command key file: trailing newline trimmed, short keys refused") {
  test::temp_dir dir;
  std::ofstream(dir.path() / "k") << kKey << "\n";
  std::ofstream(dir.path() / "short") << "tooshort\n";
  std::string key, err;
  REQUIRE(schemas::load_command_key(dir.path() / "k", key, err));
  CHECK(key == kKey);
  CHECK_FALSE(schemas::load_command_key(dir.path() / "short", key, err));
  CHECK(err.find("at least 16") != std::string::npos);
  CHECK_FALSE(schemas::load_command_key(dir.path() / "missing", key, err));
}

TEST_CASE("acked records move into the retention window; reads by range; counters persist") {
  test::temp_dir dir;
  {
    auto box = open_box(dir.path() / "o.db", {1h, 1u << 20});
    REQUIRE(box->enqueue_wait(make(100)).has_value());
    CHECK(ack_wait(*box, {{1, 60}}) == 60);
    auto c = box->counters();
    CHECK(c.held == 40);
    CHECK(c.acked == 60);
    CHECK(c.retained == 60);
    CHECK(c.retained_bytes > 0);
    CHECK(c.produced == c.acked + c.held + c.dropped);
    auto r = read_retained_wait(*box, 10, 80);  // 61..80 are held, not retained
    REQUIRE(r.size() == 51);
    CHECK(r.front().seq == 10);
    CHECK(r.back().seq == 60);
    CHECK(std::get<schemas::decimal>(r.front().val).mantissa == 9);
    CHECK(read_retained_wait(*box, 10, 80, 5).size() == 5);
    CHECK(read_retained_wait(*box, 61, 100).empty());
  }
  auto box = open_box(dir.path() / "o.db", {1h, 1u << 20});
  auto c = box->counters();
  CHECK(c.retained == 60);
  std::string err;
  auto st = sync::outbox::read_status(dir.path() / "o.db", err);
  REQUIRE(st.has_value());
  CHECK(st->retained == 60);
  CHECK(st->by_reason.count("retained") == 0);
}

TEST_CASE("retention bounds: size evicts the oldest seq first, age after max_age; off = delete") {
  test::temp_dir dir;
  SUBCASE("size") {
    // ~60 bytes per record as estimated: a 3000-byte budget keeps about 50.
    auto box = open_box(dir.path() / "s.db", {1h, 3000});
    REQUIRE(box->enqueue_wait(make(200)).has_value());
    CHECK(ack_wait(*box, {{1, 200}}) == 200);
    auto c = box->counters();
    CHECK(c.retained_bytes <= 3000);
    CHECK(c.retained > 10);
    CHECK(c.retained < 200);
    auto r = read_retained_wait(*box, 1, 200);
    REQUIRE(!r.empty());
    CHECK(r.size() == c.retained);
    CHECK(r.back().seq == 200);  // the newest stay
    CHECK(r.front().seq == 200 - c.retained + 1);
  }
  SUBCASE("age") {
    auto box = open_box(dir.path() / "a.db", {1s, 1u << 20});
    REQUIRE(box->enqueue_wait(make(20)).has_value());
    CHECK(ack_wait(*box, {{1, 10}}) == 10);
    CHECK(box->counters().retained == 10);
    std::this_thread::sleep_for(1200ms);
    CHECK(ack_wait(*box, {{11, 20}}) == 10);  // this transaction prunes the first ten
    auto c = box->counters();
    CHECK(c.retained == 10);
    auto r = read_retained_wait(*box, 1, 20);
    REQUIRE(r.size() == 10);
    CHECK(r.front().seq == 11);
  }
  SUBCASE("off") {
    auto box = open_box(dir.path() / "n.db", {});
    REQUIRE(box->enqueue_wait(make(20)).has_value());
    CHECK(ack_wait(*box, {{1, 20}}) == 20);
    CHECK(box->counters().retained == 0);
    CHECK(read_retained_wait(*box, 1, 20).empty());
  }
}

namespace {

// A stand-in for central: keeps (epoch, seq) -> times received, acks every batch.
struct fake_central {
  asio::io_context io;
  sync::mqtt_client client;
  schemas::frame_decoder dec;
  std::mutex mu;
  std::map<std::uint64_t, int> received;  // seq -> deliveries
  std::set<std::uint64_t> stored;         // what the "store" holds (may be wiped)
  std::atomic<int> batches{0};
  std::thread th;

  explicit fake_central(const std::string& url)
      : client(io.get_executor(), sync::mqtt_options{.broker_url = url, .client_id = "central-test",
                                                     .clean_start = true}) {
    client.add_subscription(schemas::central_batch_subscription(), 1);
    client.on_message([this](sync::mqtt_message m) {
      auto t = schemas::parse_agent_topic(m.topic);
      if (!t) return;
      std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(m.payload.data()),
                                          m.payload.size());
      auto f = dec.decode(bytes);
      if (!f) return;
      ++batches;
      {
        std::lock_guard lk(mu);
        for (auto& r : f->records) {
          ++received[r.seq];
          stored.insert(r.seq);
        }
      }
      schemas::ack a;
      a.agent_id = f->header.agent_id;
      a.store_epoch = f->header.store_epoch;
      a.batch_id = f->header.batch_id;
      a.ranges = f->header.ranges;
      client.publish(schemas::agent_topic(t->site, t->agent, schemas::agent_topic_kind::ack),
                     schemas::encode_ack(a), 1, false, [](boost::system::error_code) {});
    });
    client.start();
    th = std::thread([this] {
      auto guard = asio::make_work_guard(io);
      io.run();
    });
    REQUIRE(test::wait_until([&] { return client.connected(); }, 5s));
  }
  ~fake_central() {
    client.stop(500ms);
    io.stop();
    th.join();
  }
  std::size_t count() {
    std::lock_guard lk(mu);
    return stored.size();
  }
  int deliveries(std::uint64_t seq) {
    std::lock_guard lk(mu);
    auto it = received.find(seq);
    return it == received.end() ? 0 : it->second;
  }
  void wipe(std::uint64_t from, std::uint64_t to) {
    std::lock_guard lk(mu);
    for (auto s = from; s <= to; ++s) stored.erase(s);
  }
};

// Publishes one raw payload on the agent's cmd topic and waits for the PUBACK.
void publish_cmd(const std::string& url, const std::string& payload) {
  asio::io_context io;
  sync::mqtt_client c(io.get_executor(),
                      sync::mqtt_options{.broker_url = url, .client_id = "operator", .clean_start = true});
  std::atomic<bool> done{false};
  c.on_connected([&] {
    c.publish(schemas::agent_topic("lab", "agent-1", schemas::agent_topic_kind::cmd), payload, 1,
              false, [&](boost::system::error_code ec) {
                CHECK_FALSE(ec);
                done = true;
                io.stop();
              });
  });
  REQUIRE_FALSE(c.start());
  {
    auto guard = asio::make_work_guard(io);
    io.run_for(5s);
  }
  c.stop(500ms);
  REQUIRE(done);
}

struct agent_side {
  asio::io_context io;
  std::unique_ptr<sync::outbox> box;
  std::unique_ptr<sync::engine> eng;
  std::thread th;

  agent_side(const std::filesystem::path& db, sync::mqtt_options mo, std::string key = kKey) {
    box = open_box(db, {1h, 64u << 20});
    sync::engine_options eo{.agent_id = "agent-1", .site = "lab", .batch_max_records = 50,
                            .linger = 20ms};
    eo.command_key = std::move(key);
    eng = std::make_unique<sync::engine>(asio::make_strand(io), *box, eo, std::move(mo));
    REQUIRE_FALSE(eng->start());
    th = std::thread([this] {
      auto guard = asio::make_work_guard(io);
      io.run();
    });
  }
  ~agent_side() {
    eng->stop();
    io.stop();
    th.join();
    eng.reset();
  }
};

}  // namespace

TEST_CASE("replay: a signed command re-sends a retained range once; forged, stale, reused and "
          "foreign-epoch commands are refused") {
  test::temp_dir dir;
  test::mosquitto broker(dir.path());
  fake_central central(broker.url());
  agent_side agent(dir.path() / "o.db", sync::mqtt_options{.broker_url = broker.url()});
  REQUIRE(test::wait_until([&] { return agent.eng->stats().broker_connected; }, 5s));
  REQUIRE(agent.box->enqueue_wait(make(200)).has_value());
  REQUIRE(test::wait_until([&] { return agent.box->counters().held == 0; }, 20s));
  CHECK(central.count() == 200);
  CHECK(agent.box->counters().retained == 200);
  const auto epoch = agent.box->store_epoch();

  // Central lost 50..120 (a restore from an older backup).
  central.wipe(50, 120);
  CHECK(central.count() == 129);

  // Forged: signed with another key. Stale: issued beyond the window. Foreign epoch.
  auto forged = replay_cmd(epoch, 1, 200);
  publish_cmd(broker.url(), schemas::encode_command(forged, "not-the-shared-secret"));
  auto stale = replay_cmd(epoch, 1, 200);
  stale.issued_ns -= std::chrono::duration_cast<std::chrono::nanoseconds>(schemas::kCommandWindow + 10s).count();
  publish_cmd(broker.url(), schemas::encode_command(stale, kKey));
  publish_cmd(broker.url(), schemas::encode_command(replay_cmd(epoch + 1, 1, 200), kKey));
  publish_cmd(broker.url(), "{\"v\":1,\"cmd\":\"replay\"}");
  REQUIRE(test::wait_until([&] { return agent.eng->stats().commands_refused == 4; }, 5s));
  std::this_thread::sleep_for(300ms);
  CHECK(agent.eng->stats().records_replayed == 0);
  CHECK(central.count() == 129);

  // The real one.
  auto good = replay_cmd(epoch, 40, 130);
  auto wire = schemas::encode_command(good, kKey);
  publish_cmd(broker.url(), wire);
  REQUIRE(test::wait_until([&] { return central.count() == 200; }, 10s));
  REQUIRE(test::wait_until([&] { return agent.eng->stats().records_replayed == 91; }, 5s));
  CHECK(agent.eng->stats().commands_accepted == 1);
  CHECK(central.deliveries(39) == 1);
  CHECK(central.deliveries(40) == 2);
  CHECK(central.deliveries(130) == 2);
  CHECK(central.deliveries(131) == 1);
  // The same command again (a captured message re-published): refused by its nonce.
  publish_cmd(broker.url(), wire);
  REQUIRE(test::wait_until([&] { return agent.eng->stats().commands_refused == 5; }, 5s));
  std::this_thread::sleep_for(300ms);
  CHECK(agent.eng->stats().records_replayed == 91);
  auto c = agent.box->counters();
  CHECK(c.acked == 200);  // replays never count as acked twice
  CHECK(c.produced == c.acked + c.held + c.dropped);
}

TEST_CASE("an agent without a command key refuses every command") {
  test::temp_dir dir;
  test::mosquitto broker(dir.path());
  fake_central central(broker.url());
  agent_side agent(dir.path() / "o.db", sync::mqtt_options{.broker_url = broker.url()}, "");
  REQUIRE(agent.box->enqueue_wait(make(20)).has_value());
  REQUIRE(test::wait_until([&] { return agent.box->counters().held == 0; }, 20s));
  publish_cmd(broker.url(), schemas::encode_command(replay_cmd(agent.box->store_epoch(), 1, 20), kKey));
  REQUIRE(test::wait_until([&] { return agent.eng->stats().commands_refused == 1; }, 5s));
  CHECK(agent.eng->stats().records_replayed == 0);
}

namespace {

// A CA, a server certificate for 127.0.0.1 (CN and subjectAltName IP) and a client
// certificate (CN agent-1), made by the openssl CLI into `dir`.
void make_pki(const std::filesystem::path& dir, const std::string& ca_name = "ca") {
  auto run = [](const std::string& cmd) {
    INFO(cmd);
    REQUIRE(std::system((cmd + " >/dev/null 2>&1").c_str()) == 0);
  };
  const std::string d = dir.string() + "/";
  const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  run("openssl req -x509" + ec + " -keyout " + d + ca_name + ".key -out " + d + ca_name +
      ".crt -days 2 -subj /CN=semilab-test-" + ca_name);
  std::ofstream(d + "san.cnf") << "subjectAltName=IP:127.0.0.1\n";
  run("openssl req" + ec + " -keyout " + d + "server.key -out " + d + "server.csr -subj /CN=127.0.0.1");
  run("openssl x509 -req -in " + d + "server.csr -CA " + d + ca_name + ".crt -CAkey " + d + ca_name +
      ".key -CAcreateserial -out " + d + "server.crt -days 2 -extfile " + d + "san.cnf");
  run("openssl req" + ec + " -keyout " + d + "client.key -out " + d + "client.csr -subj /CN=agent-1");
  run("openssl x509 -req -in " + d + "client.csr -CA " + d + ca_name + ".crt -CAkey " + d + ca_name +
      ".key -CAcreateserial -out " + d + "client.crt -days 2");
}

// mosquitto with a plain listener (for the test's central) and a TLS listener that requires a
// client certificate signed by the CA.
struct tls_broker {
  int plain = test::free_port();
  int tls = test::free_port();
  test::child proc;
  explicit tls_broker(const std::filesystem::path& dir) {
    auto conf = dir / "mosquitto-tls.conf";
    // `user root`: as root, mosquitto would drop to its own user, which cannot read the keys in
    // the test's 0700 directory (ignored when the test does not run as root).
    std::ofstream(conf) << "user root\nper_listener_settings false\nallow_anonymous true\npersistence false\n"
                        << "listener " << plain << " 127.0.0.1\n"
                        << "listener " << tls << " 127.0.0.1\n"
                        << "cafile " << (dir / "ca.crt").string() << "\n"
                        << "certfile " << (dir / "server.crt").string() << "\n"
                        << "keyfile " << (dir / "server.key").string() << "\n"
                        << "require_certificate true\n";
    proc = test::child({"/usr/sbin/mosquitto", "-c", conf.string()}, dir / "mosquitto-tls.log");
    REQUIRE(test::wait_until([&] { return test::port_open(plain) && test::port_open(tls); }, 5s));
  }
  std::string plain_url() const { return "tcp://127.0.0.1:" + std::to_string(plain); }
  std::string tls_url() const { return "ssl://127.0.0.1:" + std::to_string(tls); }
};

}  // namespace

TEST_CASE("TLS: the agent uploads through a TLS listener with CA, client certificate and "
          "hostname verification; a broker its CA does not vouch for gets nothing") {
  test::temp_dir dir;
  make_pki(dir.path());
  tls_broker broker(dir.path());
  fake_central central(broker.plain_url());
  const auto d = dir.path();
  SUBCASE("trusted") {
    agent_side agent(d / "o.db", sync::mqtt_options{.broker_url = broker.tls_url(),
                                                    .ca_file = (d / "ca.crt").string(),
                                                    .cert_file = (d / "client.crt").string(),
                                                    .key_file = (d / "client.key").string(),
                                                    .verify_hostname = true});
    REQUIRE(agent.box->enqueue_wait(make(120)).has_value());
    REQUIRE(test::wait_until([&] { return agent.box->counters().held == 0; }, 20s));
    CHECK(central.count() == 120);
    CHECK(agent.eng->stats().broker_connected);
  }
  SUBCASE("another CA") {
    test::temp_dir other;
    make_pki(other.path(), "other");
    agent_side agent(d / "o2.db", sync::mqtt_options{.broker_url = broker.tls_url(),
                                                     .ca_file = (other.path() / "other.crt").string(),
                                                     .cert_file = (d / "client.crt").string(),
                                                     .key_file = (d / "client.key").string()});
    REQUIRE(agent.box->enqueue_wait(make(10)).has_value());
    std::this_thread::sleep_for(2s);
    CHECK_FALSE(agent.eng->stats().broker_connected);
    CHECK(central.count() == 0);
    CHECK(agent.box->counters().held == 10);
  }
  SUBCASE("no client certificate") {
    agent_side agent(d / "o3.db", sync::mqtt_options{.broker_url = broker.tls_url(),
                                                     .ca_file = (d / "ca.crt").string()});
    REQUIRE(agent.box->enqueue_wait(make(10)).has_value());
    std::this_thread::sleep_for(2s);
    CHECK_FALSE(agent.eng->stats().broker_connected);
    CHECK(central.count() == 0);
  }
}
