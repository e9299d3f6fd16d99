// The sync engine against a real mosquitto and a minimal central: batches arrive, are acked only
// by the peer, and records are deleted only after that ack; unacked batches are resent.
#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/drop_notice.hpp>
#include <semilab/schemas/state.hpp>
#include <semilab/schemas/topics.hpp>
#include <semilab/sync/engine.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <atomic>
#include <mutex>
#include <future>
#include <set>
#include <thread>

#include "support/processes.hpp"

using namespace semilab;
namespace asio = boost::asio;

namespace {

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

// A stand-in for central: stores seqs in a set, acks after "storing" unless told to stay silent.
struct fake_central {
  asio::io_context io;
  sync::mqtt_client client;
  schemas::frame_decoder dec;
  std::mutex mu;
  std::set<std::uint64_t> stored;
  std::set<std::pair<std::uint64_t, std::uint64_t>> keys;  // (epoch, seq)
  std::vector<schemas::drop_notice> notices;
  std::atomic<int> batches{0};
  std::atomic<bool> silent{false};
  std::atomic<bool> reject{false};  // answer every batch with a permanent rejection
  std::thread th;

  explicit fake_central(const std::string& url)
      : client(io.get_executor(), sync::mqtt_options{.broker_url = url, .client_id = "central-test",
                                                     .clean_start = true}) {
    client.add_subscription(schemas::central_batch_subscription(), 1);
    client.on_message([this](sync::mqtt_message m) {
      auto t = schemas::parse_agent_topic(m.topic);
      REQUIRE(t.has_value());
      std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(m.payload.data()),
                                          m.payload.size());
      auto f = dec.decode(bytes);
      REQUIRE(f.has_value());
      ++batches;
      if (silent) return;
      if (reject) {
        schemas::ack r;
        r.agent_id = f->header.agent_id;
        r.store_epoch = f->header.store_epoch;
        r.batch_id = f->header.batch_id;
        r.stored = false;
        r.code = schemas::reject_code::invalid_frame;
        r.reason = "test says no";
        client.publish(schemas::agent_topic(t->site, t->agent, schemas::agent_topic_kind::ack),
                       schemas::encode_ack(r), 1, false, [](boost::system::error_code) {});
        return;
      }
      {
        std::lock_guard lk(mu);
        for (auto& r : f->records) {
          stored.insert(r.seq);
          if (keys.insert({f->header.store_epoch, r.seq}).second && schemas::is_drop_notice(r)) {
            auto n = schemas::decode_drop_notice(std::get<std::string>(r.val));
            REQUIRE(n.has_value());
            notices.push_back(*n);
          }
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
    test::wait_until([&] { return client.connected(); }, std::chrono::seconds(5));
  }
  ~fake_central() {
    client.stop(std::chrono::milliseconds(500));
    io.stop();
    th.join();
  }
  std::size_t count() {
    std::lock_guard lk(mu);
    return stored.size();
  }
};

struct agent_side {
  asio::io_context io;
  std::unique_ptr<sync::outbox> box;
  std::unique_ptr<sync::engine> eng;
  std::thread th;

  agent_side(const std::filesystem::path& db, const std::string& url,
             std::chrono::milliseconds ack_timeout = std::chrono::milliseconds(10'000),
             double max_bytes_per_s = 0, std::size_t batch = 100, sync::quota_options quota = {}) {
    std::string err;
    sync::outbox_options oo{db, "agent-1", sync::durability::normal};
    oo.quota = quota;
    oo.integrity_interval = std::chrono::seconds(0);
    auto b = sync::outbox::open(oo, err);
    REQUIRE_MESSAGE(b.has_value(), err);
    box = std::move(*b);
    sync::engine_options eo{.agent_id = "agent-1", .site = "lab", .batch_max_records = batch,
                            .ack_timeout = ack_timeout, .linger = std::chrono::milliseconds(20),
                            .max_bytes_per_s = max_bytes_per_s};
    eng = std::make_unique<sync::engine>(asio::make_strand(io), *box, eo,
                                         sync::mqtt_options{.broker_url = url});
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

TEST_CASE("records reach the peer, are acked, and only then leave the outbox") {
  test::temp_dir dir;
  test::mosquitto broker(dir.path());
  fake_central central(broker.url());
  agent_side agent(dir.path() / "o.db", broker.url());
  for (int i = 0; i < 10; ++i) REQUIRE(agent.box->enqueue_wait(make(50)).has_value());
  REQUIRE(test::wait_until([&] { return agent.box->counters().held == 0; }, std::chrono::seconds(20)));
  CHECK(central.count() == 500);
  auto c = agent.box->counters();
  CHECK(c.produced == 500);
  CHECK(c.acked == 500);
  CHECK(agent.eng->stats().batches_acked >= 5);
}

TEST_CASE("without central's ack nothing is deleted; batches are resent until acked") {
  test::temp_dir dir;
  test::mosquitto broker(dir.path());
  fake_central central(broker.url());
  central.silent = true;  // receives, never acks
  agent_side agent(dir.path() / "o.db", broker.url(), std::chrono::milliseconds(300));
  REQUIRE(agent.box->enqueue_wait(make(30)).has_value());
  REQUIRE(test::wait_until([&] { return central.batches >= 2; }, std::chrono::seconds(10)));
  CHECK(agent.box->counters().held == 30);  // PUBACK from the broker deleted nothing
  CHECK(agent.eng->stats().batches_resent >= 1);
  central.silent = false;
  REQUIRE(test::wait_until([&] { return agent.box->counters().held == 0; }, std::chrono::seconds(10)));
  CHECK(central.count() == 30);
}

TEST_CASE("a broker outage loses nothing: records wait in the outbox and flow after reconnect") {
  test::temp_dir dir;
  auto broker = std::make_unique<test::mosquitto>(dir.path());
  int port = broker->port();
  std::string url = broker->url();
  agent_side agent(dir.path() / "o.db", url);
  broker->stop();
  REQUIRE(agent.box->enqueue_wait(make(40)).has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(agent.box->counters().held == 40);
  // Same port again.
  std::ofstream(dir.path() / "m2.conf") << "listener " << port << " 127.0.0.1\nallow_anonymous true\npersistence false\n";
  test::child again({"/usr/sbin/mosquitto", "-c", (dir.path() / "m2.conf").string()}, dir.path() / "m2.log");
  REQUIRE(test::wait_until([&] { return test::port_open(port); }, std::chrono::seconds(5)));
  fake_central central(url);
  REQUIRE(test::wait_until([&] { return agent.box->counters().held == 0; }, std::chrono::seconds(20)));
  CHECK(central.count() == 40);
}

TEST_CASE("the bandwidth cap holds the upload rate to within 5 %") {
  test::temp_dir dir;
  test::mosquitto broker(dir.path());
  fake_central central(broker.url());
  constexpr double kRate = 10'000;  // bytes/s
  agent_side agent(dir.path() / "o.db", broker.url(), std::chrono::milliseconds(10'000), kRate, 200);
  // A backlog far larger than the cap lets through in the measurement window.
  for (int i = 0; i < 40; ++i) REQUIRE(agent.box->enqueue_wait(make(5000)).has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  auto b0 = agent.eng->stats().bytes_published;
  auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(6000));
  auto b1 = agent.eng->stats().bytes_published;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double rate = static_cast<double>(b1 - b0) / secs;
  MESSAGE("measured ", rate, " bytes/s against a cap of ", kRate);
  CHECK(rate == doctest::Approx(kRate).epsilon(0.05));
  CHECK(agent.eng->stats().rate_limited > 0);
  CHECK(agent.box->counters().held > 0);  // the rest waits, nothing dropped
  CHECK(agent.box->counters().dropped == 0);
}

TEST_CASE("the backlog is held while every central instance says offline") {
  test::temp_dir dir;
  test::mosquitto broker(dir.path());
  fake_central central(broker.url());
  auto announce = [&](bool online) {
    std::promise<void> p;
    central.client.publish(schemas::central_state_topic("c1"),
                           schemas::encode_presence({online, "c1", 1, "test"}), 1, true,
                           [&](boost::system::error_code) { p.set_value(); });
    p.get_future().wait();
  };
  announce(false);
  agent_side agent(dir.path() / "o.db", broker.url());
  REQUIRE(test::wait_until([&] { return !agent.eng->stats().central_online; }, std::chrono::seconds(5)));
  REQUIRE(agent.box->enqueue_wait(make(20)).has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(central.batches == 0);  // nothing spent while no central can store it
  CHECK(agent.box->counters().held == 20);
  announce(true);
  REQUIRE(test::wait_until([&] { return agent.box->counters().held == 0; }, std::chrono::seconds(10)));
  CHECK(central.count() == 20);
}

TEST_CASE("permanent rejections move a batch to the dead letters without blocking the queue") {
  test::temp_dir dir;
  test::mosquitto broker(dir.path());
  fake_central central(broker.url());
  central.reject = true;
  agent_side agent(dir.path() / "o.db", broker.url());
  REQUIRE(agent.box->enqueue_wait(make(30)).has_value());
  REQUIRE(test::wait_until([&] { return agent.box->counters().dead_letters == 30; },
                           std::chrono::seconds(10)));
  CHECK(central.batches >= 3);  // tried three times first
  CHECK(agent.box->counters().held == 30);  // still held, never silently dropped
  central.reject = false;
  REQUIRE(agent.box->enqueue_wait(make(10)).has_value());  // later records are not blocked
  REQUIRE(test::wait_until([&] { return agent.box->counters().held == 30; }, std::chrono::seconds(10)));
  CHECK(central.count() == 10);
  std::string err;
  auto listed = sync::outbox::list_dead_letters(dir.path() / "o.db", 100, err);
  REQUIRE(listed.has_value());
  REQUIRE(listed->size() == 30);
  CHECK((*listed)[0].reason.find("test says no") != std::string::npos);
  CHECK((*listed)[0].attempts == 3);
  // The CLI's retry, with the daemon running: the engine's idle rescan sends them.
  auto moved = sync::outbox::retry_dead_letters_in(dir.path() / "o.db", err);
  REQUIRE(moved.has_value());
  CHECK(*moved == 30);
  REQUIRE(test::wait_until([&] { return central.count() == 40; }, std::chrono::seconds(15)));
  REQUIRE(test::wait_until([&] { return agent.box->counters().held == 0; }, std::chrono::seconds(5)));
}

TEST_CASE("quota reached while central is away: after the drain every stored seq is at central or "
          "named by a drop notice, and the accounting adds up") {
  test::temp_dir dir;
  test::mosquitto broker(dir.path());
  fake_central central(broker.url());
  central.silent = true;  // receives, never acks: the backlog grows into the quota
  sync::quota_options q;
  q.max_bytes = 300 * 49;  // 300 of the records below
  q.reserve_bytes = 20'000;
  q.telemetry = sync::full_policy::drop_oldest;
  agent_side agent(dir.path() / "o.db", broker.url(), std::chrono::milliseconds(500), 0, 100, q);
  std::set<std::uint64_t> told;
  for (int i = 0; i < 40; ++i) {
    auto r = agent.box->enqueue_wait(make(50));
    REQUIRE(r.has_value());
    for (auto s = r->first; s <= r->last; ++s) told.insert(s);
  }
  auto c = agent.box->counters();
  CHECK(c.dropped >= 1500);
  central.silent = false;
  REQUIRE(test::wait_until([&] { return agent.box->counters().held == 0; }, std::chrono::seconds(30)));
  c = agent.box->counters();
  CHECK(c.produced == c.acked + c.dropped);
  std::lock_guard lk(central.mu);
  std::set<std::uint64_t> announced;
  std::uint64_t announced_n = 0;
  for (auto& n : central.notices)
    if (n.action == schemas::drop_action::dropped) {
      CHECK(n.store_epoch == agent.box->store_epoch());
      announced_n += n.records;
      for (auto& r : n.ranges)
        for (auto s = r.first; s <= r.last; ++s) announced.insert(s);
    }
  CHECK(announced_n == c.dropped);  // every drop reached central in a notice
  for (auto s : told) CHECK_MESSAGE((central.stored.count(s) || announced.count(s)), s);
}

TEST_CASE("an outbox replaced at run time: the engine follows the new epoch, nothing stalls") {
  test::temp_dir dir;
  test::mosquitto broker(dir.path());
  fake_central central(broker.url());
  agent_side agent(dir.path() / "o.db", broker.url(), std::chrono::milliseconds(500));
  for (int i = 0; i < 20; ++i) REQUIRE(agent.box->enqueue_wait(make(200)).has_value());
  REQUIRE(test::wait_until([&] { return agent.box->counters().held == 0; }, std::chrono::seconds(20)));
  auto old_epoch = agent.box->store_epoch();
  // More records, held (central silent), then the file is damaged behind the writer's back.
  central.silent = true;
  REQUIRE(agent.box->enqueue_wait(make(30)).has_value());
  {
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open((dir.path() / "o.db").c_str(), &h) == SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    sqlite3_exec(h, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
    sqlite3_close(h);
    std::fstream f(dir.path() / "o.db", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096 * 4);
    std::string junk(4096 * 8, '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  agent.box->request_integrity_check();
  REQUIRE(test::wait_until([&] { return agent.box->store_epoch() != old_epoch; },
                           std::chrono::seconds(10)));
  central.silent = false;
  REQUIRE(agent.box->enqueue_wait(make(25)).has_value());
  auto new_epoch = agent.box->store_epoch();
  auto have_new = [&] {
    std::lock_guard lk(central.mu);
    std::size_t n = 0;
    for (auto& [e, s] : central.keys) n += e == new_epoch;
    return n;
  };
  // outbox_replaced event + unrecoverable notice + 25 records, all under the new epoch.
  REQUIRE(test::wait_until([&] { return have_new() == 27; }, std::chrono::seconds(20)));
  REQUIRE(test::wait_until([&] { return agent.box->counters().held == 0; }, std::chrono::seconds(10)));
  std::lock_guard lk(central.mu);
  bool found = false;
  for (auto& n : central.notices)
    if (n.action == schemas::drop_action::unrecoverable) {
      found = true;
      CHECK(n.store_epoch == old_epoch);
      CHECK(n.records == 30);
    }
  CHECK(found);
}

// ---------------------------------------------------------------------------------------------
// zstd dictionaries (schemas/WIRE.md "Dictionaries"): the agent trains one from its telemetry,
// stores it, announces it and answers central's request for it; a restarted agent keeps using it.

namespace {

std::vector<schemas::record> varied(std::size_t n, std::uint64_t salt) {
  std::vector<schemas::record> v(n);
  const char* ch[] = {"curr", "volt", "temp", "res"};
  std::uint64_t x = 12345 + salt;
  for (std::size_t i = 0; i < n; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    v[i].ts_ns = 1'700'000'000'000'000'000 + static_cast<std::int64_t>(salt * n + i) * 25'000'000 +
                 static_cast<std::int64_t>(x >> 44);
    v[i].instrument = i % 8 < 4 ? "smu1" : "dmm2";
    v[i].channel = ch[i % 4];
    v[i].unit = "A";
    v[i].val = schemas::decimal{static_cast<std::int64_t>(1'234'500 + (i % 4) * 1'000'000 + (x >> 54)), -9};
  }
  return v;
}

// Central's side of the protocol: a frame naming an unknown dictionary waits until the
// dictionary arrives on the dict topic, after a request on the agent's cmd topic.
struct dict_central {
  asio::io_context io;
  sync::mqtt_client client;
  schemas::frame_decoder dec;
  std::mutex mu;
  std::set<std::uint64_t> stored;
  std::vector<std::string> waiting;  // frames held for their dictionary
  std::set<std::uint32_t> dict_frames;  // dictionary ids seen in frames
  std::atomic<int> requests{0}, dicts_received{0};
  std::atomic<bool> ignore_announcements{true};
  std::atomic<bool> old_central{false};  // refuses dictionary frames as `unsupported`
  std::thread th;

  explicit dict_central(const std::string& url)
      : client(io.get_executor(), sync::mqtt_options{.broker_url = url, .client_id = "central-dict",
                                                     .clean_start = true}) {
    client.add_subscription(schemas::central_batch_subscription(), 1);
    client.add_subscription(schemas::central_dictionary_subscription(), 1);
    client.on_message([this](sync::mqtt_message m) { on_message(std::move(m)); });
    client.start();
    th = std::thread([this] {
      auto guard = asio::make_work_guard(io);
      io.run();
    });
    test::wait_until([&] { return client.connected(); }, std::chrono::seconds(5));
  }
  ~dict_central() {
    client.stop(std::chrono::milliseconds(500));
    io.stop();
    th.join();
  }
  static std::span<const std::uint8_t> bytes(const std::string& s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
  }
  void on_message(sync::mqtt_message m) {
    auto t = schemas::parse_agent_topic(m.topic);
    REQUIRE(t.has_value());
    if (t->kind == schemas::agent_topic_kind::dict) {
      // The first copies (the announcement) are lost on purpose: central must ask.
      if (requests == 0 && ignore_announcements) return;
      ++dicts_received;
      auto d = schemas::make_dictionary(bytes(m.payload));
      REQUIRE(d.has_value());
      REQUIRE_FALSE(dec.add_dictionary(t->agent, *d));
      auto w = std::move(waiting);
      waiting.clear();
      for (auto& f : w) batch(*t, f);
      return;
    }
    batch(*t, m.payload);
  }
  void batch(const schemas::agent_topic_parts& t, const std::string& payload) {
    if (old_central) {
      auto h = dec.decode_header(bytes(payload));
      REQUIRE(h.has_value());
      if (h->dict_id != 0) {
        schemas::ack r;
        r.agent_id = h->agent_id;
        r.store_epoch = h->store_epoch;
        r.batch_id = h->batch_id;
        r.stored = false;
        r.code = schemas::reject_code::unsupported;
        r.reason = "unknown codec or dictionary";
        client.publish(schemas::agent_topic(t.site, t.agent, schemas::agent_topic_kind::ack),
                       schemas::encode_ack(r), 1, false, [](boost::system::error_code) {});
        return;
      }
    }
    auto f = dec.decode(bytes(payload));
    if (!f && f.error() == schemas::errc::unknown_dictionary) {
      auto h = dec.decode_header(bytes(payload));
      REQUIRE(h.has_value());
      waiting.push_back(payload);
      ++requests;
      client.publish(schemas::agent_topic(t.site, t.agent, schemas::agent_topic_kind::cmd),
                     schemas::encode_dictionary_request({t.agent, h->dict_id}), 1, false,
                     [](boost::system::error_code) {});
      return;
    }
    REQUIRE(f.has_value());
    {
      std::lock_guard lk(mu);
      for (auto& r : f->records) stored.insert(r.seq);
      if (f->header.dict_id) dict_frames.insert(f->header.dict_id);
    }
    schemas::ack a;
    a.agent_id = f->header.agent_id;
    a.store_epoch = f->header.store_epoch;
    a.batch_id = f->header.batch_id;
    a.ranges = f->header.ranges;
    client.publish(schemas::agent_topic(t.site, t.agent, schemas::agent_topic_kind::ack),
                   schemas::encode_ack(a), 1, false, [](boost::system::error_code) {});
  }
  std::size_t count() {
    std::lock_guard lk(mu);
    return stored.size();
  }
};

// Runs `io` on a thread; stops and joins it when it goes (also when a REQUIRE fails).
struct io_runner {
  asio::io_context& io;
  std::thread th;
  explicit io_runner(asio::io_context& c) : io(c), th([this] {
    auto guard = asio::make_work_guard(io);
    io.run();
  }) {}
  ~io_runner() {
    io.stop();
    th.join();
  }
};

std::unique_ptr<sync::engine> dict_engine(asio::io_context& io, sync::outbox& box,
                                          const std::string& url) {
  sync::engine_options eo{.agent_id = "agent-1", .site = "lab", .batch_max_records = 10,
                          .linger = std::chrono::milliseconds(5)};
  eo.dict_train_records = 600;
  eo.dict_bytes = 4096;
  return std::make_unique<sync::engine>(asio::make_strand(io), box, eo,
                                        sync::mqtt_options{.broker_url = url});
}

}  // namespace

TEST_CASE("dictionary: trained from telemetry, fetched by central on request, kept across restarts") {
  test::temp_dir dir;
  test::mosquitto broker(dir.path());
  dict_central central(broker.url());
  std::string err;
  sync::outbox_options oo{dir.path() / "o.db", "agent-1", sync::durability::normal};
  oo.integrity_interval = std::chrono::seconds(0);
  std::uint32_t dict_id = 0;
  {
    auto box = *sync::outbox::open(oo, err);
    asio::io_context io;
    auto eng = dict_engine(io, *box, broker.url());
    REQUIRE_FALSE(eng->start());
    io_runner run(io);
    // Small live batches until a dictionary is in use, then some more.
    std::uint64_t salt = 0;
    test::wait_until([&] {
      REQUIRE(box->enqueue_wait(varied(40, salt++)).has_value());
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      return eng->stats().dictionary_id != 0;
    }, std::chrono::seconds(30));
    dict_id = eng->stats().dictionary_id;
    REQUIRE(dict_id != 0);
    for (int i = 0; i < 5; ++i) REQUIRE(box->enqueue_wait(varied(40, salt++)).has_value());
    REQUIRE(test::wait_until([&] { return box->counters().held == 0; }, std::chrono::seconds(30)));
    CHECK(central.count() == box->counters().produced);
    CHECK(central.requests >= 1);
    CHECK(central.dicts_received >= 1);
    {
      std::lock_guard lk(central.mu);
      CHECK(central.dict_frames.contains(dict_id));
    }
    auto st = eng->stats();
    CHECK(st.dictionaries_trained == 1);
    CHECK(st.dictionaries_published >= 2);  // the announcement and the answer
    eng->stop();
  }
  // Restarted: the stored dictionary is used again at once, without training.
  auto box = *sync::outbox::open(oo, err);
  asio::io_context io;
  auto eng = dict_engine(io, *box, broker.url());
  REQUIRE_FALSE(eng->start());
  io_runner run(io);
  REQUIRE(test::wait_until([&] { return eng->stats().dictionary_id == dict_id; },
                           std::chrono::seconds(10)));
  REQUIRE(box->enqueue_wait(varied(40, 999)).has_value());
  REQUIRE(test::wait_until([&] { return box->counters().held == 0; }, std::chrono::seconds(30)));
  CHECK(central.count() == box->counters().produced);
  CHECK(eng->stats().dictionaries_trained == 0);
  eng->stop();
}

TEST_CASE("dictionary: a central that predates dictionaries gets the records without one") {
  test::temp_dir dir;
  test::mosquitto broker(dir.path());
  dict_central central(broker.url());
  central.old_central = true;
  std::string err;
  sync::outbox_options oo{dir.path() / "o.db", "agent-1", sync::durability::normal};
  oo.integrity_interval = std::chrono::seconds(0);
  auto box = *sync::outbox::open(oo, err);
  asio::io_context io;
  auto eng = dict_engine(io, *box, broker.url());
  REQUIRE_FALSE(eng->start());
  io_runner run(io);
  std::uint64_t salt = 0;
  // Until a dictionary was trained and then given up after the first refusal.
  REQUIRE(test::wait_until([&] {
    REQUIRE(box->enqueue_wait(varied(40, salt++)).has_value());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto st = eng->stats();
    return st.dictionaries_trained == 1 && st.dictionary_id == 0 && st.batches_rejected > 0;
  }, std::chrono::seconds(60)));
  for (int i = 0; i < 3; ++i) REQUIRE(box->enqueue_wait(varied(40, salt++)).has_value());
  REQUIRE(test::wait_until([&] { return box->counters().held == 0; }, std::chrono::seconds(30)));
  auto c = box->counters();
  CHECK(c.dead_letters == 0);
  CHECK(central.count() == c.produced);
  CHECK(eng->stats().dictionary_id == 0);
  eng->stop();
}
