#include <semilab/central/store.hpp>
#include <semilab/central/ingest.hpp>
#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/topics.hpp>

#include <doctest/doctest.h>
#include <sqlite3.h>

#include "test_util.hpp"

using namespace semilab::central;
namespace sc = semilab::schemas;
using central_test::encode;
using central_test::sample_batch;
using central_test::temp_dir;

namespace {

struct fixture {
  temp_dir dir;
  std::unique_ptr<sqlite_store> db;
  ingest_counters counters;
  std::unique_ptr<ingest_processor> proc;

  fixture() {
    std::string err;
    auto s = sqlite_store::open(store_options{dir.file("central.db")}, err);
    REQUIRE(s.has_value());
    db = std::move(*s);
    ingest_options o;
    o.instance = "central-test";
    proc = std::make_unique<ingest_processor>(*db, o, counters);
  }
};

inbound_message msg(std::string site, std::string agent, std::string payload) {
  return {sc::agent_topic(site, agent, sc::agent_topic_kind::batch), std::move(payload), now_ns()};
}

sc::ack decode(const outbound_ack& a) {
  auto r = sc::decode_ack(a.payload);
  REQUIRE(r.has_value());
  return *r;
}

}  // namespace

TEST_CASE("ingest: a valid batch is stored and acked with its ranges on the agent's ack topic") {
  fixture fx;
  auto b = sample_batch("agent-01", 0xfedcba9876543210ull, 5, 10, 8);
  std::vector<inbound_message> in = {msg("lab1", "agent-01", encode(b))};
  auto acks = fx.proc->process(in);
  REQUIRE(acks.size() == 1);
  CHECK(acks[0].topic == "semilab/v1/lab1/agent-01/ack");
  auto a = decode(acks[0]);
  CHECK(a.stored);
  CHECK(a.agent_id == "agent-01");
  CHECK(a.store_epoch == 0xfedcba9876543210ull);
  CHECK(a.batch_id == 5);
  REQUIRE(a.ranges.size() == 1);
  CHECK(a.ranges[0] == sc::seq_range{10, 17});
  CHECK(a.central_instance == "central-test");
  CHECK(*fx.db->record_count() == 8);
  auto st = fx.counters.snapshot();
  CHECK(st.received == 1);
  CHECK(st.batches_stored == 1);
  CHECK(st.records_new == 8);
  CHECK(st.commits == 1);
}

TEST_CASE("ingest: redelivery is acked as stored and counted as duplicates") {
  fixture fx;
  auto frame = encode(sample_batch("agent-01", 1, 1, 1, 5));
  std::vector<inbound_message> in = {msg("lab1", "agent-01", frame)};
  REQUIRE(fx.proc->process(in).size() == 1);
  auto acks = fx.proc->process(in);
  REQUIRE(acks.size() == 1);
  auto a = decode(acks[0]);
  CHECK(a.stored);
  REQUIRE(a.ranges.size() == 1);
  CHECK(a.ranges[0] == sc::seq_range{1, 5});
  CHECK(fx.counters.snapshot().records_duplicate == 5);
  CHECK(*fx.db->record_count() == 5);
}

TEST_CASE("ingest: bad frames are quarantined, rejected without retry, and do not block others") {
  fixture fx;
  auto good = encode(sample_batch("agent-01", 1, 1, 1, 3));
  auto corrupt = good;
  corrupt[corrupt.size() - 1] ^= 0x55;  // checksum mismatch
  auto other = encode(sample_batch("agent-02", 2, 1, 1, 4));
  std::vector<inbound_message> in = {
      msg("lab1", "agent-01", "not a frame at all"),
      msg("lab1", "agent-01", corrupt),
      msg("lab1", "agent-01", good),
      msg("lab1", "agent-99", other),  // agent_id in frame != topic agent
      {"semilab/v1/lab1/agent-01/batch/extra", good, 1},  // bad topic: no ack possible
      {"semilab/v1/lab1/agent-01/state", good, 1},        // not a batch topic
  };
  auto acks = fx.proc->process(in);
  REQUIRE(acks.size() == 4);

  auto a0 = decode(acks[0]);
  CHECK_FALSE(a0.stored);
  CHECK(a0.code == sc::reject_code::invalid_frame);
  CHECK_FALSE(a0.retry);
  CHECK(acks[0].topic == "semilab/v1/lab1/agent-01/ack");

  auto a1 = decode(acks[1]);
  CHECK_FALSE(a1.stored);
  CHECK(a1.code == sc::reject_code::invalid_frame);

  auto a2 = decode(acks[2]);
  CHECK(a2.stored);

  auto a3 = decode(acks[3]);
  CHECK_FALSE(a3.stored);
  CHECK(a3.code == sc::reject_code::agent_mismatch);
  CHECK_FALSE(a3.retry);
  CHECK(acks[3].topic == "semilab/v1/lab1/agent-99/ack");  // answered to the topic's agent

  CHECK(*fx.db->record_count() == 3);
  CHECK(*fx.db->quarantine_count() == 5);
  auto st = fx.counters.snapshot();
  CHECK(st.received == 6);
  CHECK(st.rejected == 5);
  CHECK(st.quarantined == 5);
  CHECK(st.batches_stored == 1);
}

TEST_CASE("ingest: a storage error rejects every batch of the group as internal, retryable") {
  fixture fx;
  REQUIRE(sqlite3_exec(fx.db->native_handle(),
                       "CREATE TRIGGER fail BEFORE INSERT ON records "
                       "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  std::vector<inbound_message> in = {msg("lab1", "a1", encode(sample_batch("a1", 1, 1, 1, 3))),
                                     msg("lab1", "a2", encode(sample_batch("a2", 1, 7, 1, 3)))};
  auto acks = fx.proc->process(in);
  REQUIRE(acks.size() == 2);
  for (auto& o : acks) {
    auto a = decode(o);
    CHECK_FALSE(a.stored);
    CHECK(a.code == sc::reject_code::internal);
    CHECK(a.retry);
  }
  CHECK(decode(acks[1]).batch_id == 7);
  CHECK(fx.counters.snapshot().storage_errors == 1);
  CHECK(fx.counters.snapshot().batches_stored == 0);
}

TEST_CASE("ingest: a frame over the configured limit is refused before decoding") {
  fixture fx;
  ingest_options o;
  o.instance = "c";
  o.limits.max_frame_bytes = 200;
  ingest_counters counters;
  ingest_processor small(*fx.db, o, counters);
  std::vector<inbound_message> in = {msg("lab1", "a1", encode(sample_batch("a1", 1, 1, 1, 50)))};
  REQUIRE(in[0].payload.size() > 200);
  auto acks = small.process(in);
  REQUIRE(acks.size() == 1);
  auto a = decode(acks[0]);
  CHECK_FALSE(a.stored);
  CHECK(a.code == sc::reject_code::invalid_frame);
  CHECK(*fx.db->quarantine_count() == 1);
}

TEST_CASE("ingest: overload ack names the batch and is retryable") {
  sc::frame_decoder dec;
  auto m = msg("lab1", "a1", encode(sample_batch("a1", 77, 12, 1, 2)));
  auto a = make_overload_ack(dec, m, "c");
  REQUIRE(a.has_value());
  auto d = decode(*a);
  CHECK_FALSE(d.stored);
  CHECK(d.code == sc::reject_code::overload);
  CHECK(d.retry);
  CHECK(d.store_epoch == 77);
  CHECK(d.batch_id == 12);
  CHECK_FALSE(make_overload_ack(dec, inbound_message{"bad/topic", "x", 0}, "c").has_value());
}

TEST_CASE("ingest: per-agent quota answers a retryable `quota` rejection and refills with time") {
  temp_dir dir;
  std::string err;
  auto s = sqlite_store::open(store_options{dir.file("central.db")}, err);
  REQUIRE(s.has_value());
  ingest_counters counters;
  ingest_options o;
  o.quota_records_per_s = 100;
  o.quota_burst_records = 200;
  std::int64_t now = 1'000'000'000'000;
  o.clock = [&now] { return now; };
  ingest_processor proc(**s, o, counters);
  auto batch = [](const std::string& agent, std::uint64_t id, std::uint64_t first, std::size_t n) {
    return msg("lab1", agent, encode(sample_batch(agent, 1, id, first, n)));
  };
  std::vector<inbound_message> in = {batch("a1", 1, 1, 150), batch("a1", 2, 151, 100),
                                     batch("a2", 1, 1, 100)};
  auto acks = proc.process(in);
  REQUIRE(acks.size() == 3);
  CHECK(decode(acks[0]).stored);
  auto refused = decode(acks[1]);
  CHECK_FALSE(refused.stored);
  CHECK(refused.code == sc::reject_code::quota);
  CHECK(refused.retry);
  CHECK(refused.batch_id == 2);
  CHECK(decode(acks[2]).stored);  // another agent has its own bucket
  CHECK(counters.snapshot().quota_rejected == 1);
  CHECK(*(*s)->quarantine_count() == 0);  // not invalid: nothing quarantined
  CHECK(*(*s)->record_count() == 250);

  now += 400'000'000;  // +0.4 s: 50 + 40 tokens, still short of 100
  std::vector<inbound_message> retry = {batch("a1", 2, 151, 100)};
  CHECK_FALSE(decode(proc.process(retry)[0]).stored);
  now += 1'000'000'000;  // +1 s more: 190
  CHECK(decode(proc.process(retry)[0]).stored);
  // A batch larger than the burst still passes when the bucket is full (then owes the rest).
  now += 10'000'000'000;
  std::vector<inbound_message> big = {batch("a1", 3, 251, 500)};
  CHECK(decode(proc.process(big)[0]).stored);
  now += 1'000'000'000;
  std::vector<inbound_message> next = {batch("a1", 4, 751, 10)};
  CHECK_FALSE(decode(proc.process(next)[0]).stored);
  CHECK(*(*s)->record_count() == 850);
}

TEST_CASE("ingest: timestamps outside sanity are flagged bad_timestamp, not rejected") {
  fixture fx;
  auto b = sample_batch("agent-01", 1, 1, 1, 4);
  const auto now = now_ns();
  b.records[0].ts_ns = now;                             // fine
  b.records[1].ts_ns = 5;                               // 1970: before the floor
  b.records[2].ts_ns = now + 3'600'000'000'000;         // an hour in the future
  b.records[3].ts_ns = now + 60'000'000'000;            // one minute: within the skew
  b.records[3].quality = sc::quality::over_range;       // other bits are kept
  std::vector<inbound_message> in = {{sc::agent_topic("lab1", "agent-01",
                                                      sc::agent_topic_kind::batch),
                                      encode(b), now}};
  auto acks = fx.proc->process(in);
  REQUIRE(acks.size() == 1);
  CHECK(decode(acks[0]).stored);
  CHECK(fx.counters.snapshot().bad_timestamps == 2);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(fx.db->native_handle(),
                             "SELECT record_seq, quality FROM records ORDER BY record_seq", -1, &st,
                             nullptr) == SQLITE_OK);
  std::vector<std::int64_t> q;
  while (sqlite3_step(st) == SQLITE_ROW) q.push_back(sqlite3_column_int64(st, 1));
  sqlite3_finalize(st);
  const auto bad = static_cast<std::int64_t>(sc::quality::bad_timestamp);
  const auto over = static_cast<std::int64_t>(sc::quality::over_range);
  CHECK(q == std::vector<std::int64_t>{0, bad, bad, over});
}

TEST_CASE("ingest: a failed commit gives the quota back") {
  temp_dir dir;
  std::string err;
  auto s = sqlite_store::open(store_options{dir.file("central.db")}, err);
  REQUIRE(s.has_value());
  ingest_counters counters;
  ingest_options o;
  o.quota_records_per_s = 1;
  o.quota_burst_records = 100;
  o.clock = [] { return std::int64_t{5'000'000'000}; };  // frozen: no refill
  ingest_processor proc(**s, o, counters);
  REQUIRE(sqlite3_exec((*s)->native_handle(),
                       "CREATE TRIGGER fail_ledger BEFORE INSERT ON batches "
                       "BEGIN SELECT RAISE(ABORT, 'injected'); END",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  std::vector<inbound_message> in = {msg("lab1", "a1", encode(sample_batch("a1", 1, 1, 1, 100)))};
  auto first = decode(proc.process(in)[0]);
  CHECK_FALSE(first.stored);
  CHECK(first.code == sc::reject_code::internal);
  REQUIRE(sqlite3_exec((*s)->native_handle(), "DROP TRIGGER fail_ledger", nullptr, nullptr,
                       nullptr) == SQLITE_OK);
  CHECK(decode(proc.process(in)[0]).stored);  // not refused for quota spent on nothing
  CHECK(counters.snapshot().quota_rejected == 0);
}

// ---------------------------------------------------------------------------------------------
// zstd dictionaries (schemas/WIRE.md "Dictionaries").

namespace {

std::vector<sc::record> varied_telemetry(std::size_t n, std::uint64_t first_seq) {
  std::vector<sc::record> out;
  const char* ch[] = {"curr", "volt", "temp", "res"};
  std::uint64_t x = 12345;
  for (std::size_t i = 0; i < n; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    sc::record r;
    r.seq = first_seq + i;
    r.cls = sc::record_class::telemetry;
    r.ts_ns = 1'764'250'001'000'000'000 + static_cast<std::int64_t>(i) * 25'000'000 +
              static_cast<std::int64_t>(x >> 44);
    r.instrument = i % 8 < 4 ? "smu1" : "dmm2";
    r.channel = ch[i % 4];
    r.unit = "A";
    r.val = sc::decimal{static_cast<std::int64_t>(1'234'500 + (i % 4) * 1'000'000 + (x >> 54)), -9};
    out.push_back(std::move(r));
  }
  return out;
}

std::string encode_with(const sc::batch& b, const sc::zstd_dictionary& d) {
  sc::frame_encoder enc;
  enc.set_dictionary(std::make_shared<sc::zstd_dictionary>(d));
  auto f = enc.encode(b);
  REQUIRE(f.has_value());
  return std::string(f->begin(), f->end());
}

inbound_message dict_msg(std::string site, std::string agent, const sc::zstd_dictionary& d) {
  return {sc::agent_topic(site, agent, sc::agent_topic_kind::dict),
          std::string(d.bytes.begin(), d.bytes.end()), now_ns()};
}

}  // namespace

TEST_CASE("ingest: a batch naming an unknown dictionary is held, the dictionary fetched, then stored") {
  fixture fx;
  auto dict = sc::train_dictionary(varied_telemetry(3000, 1), 16, 8192);
  REQUIRE(dict.has_value());
  sc::batch b{"agent-01", 77, 3, varied_telemetry(10, 5000)};
  const auto frame = encode_with(b, *dict);
  std::vector<inbound_message> in = {msg("lab1", "agent-01", frame),
                                     msg("lab1", "agent-01", encode(sample_batch("agent-01", 77, 4, 6000, 3)))};
  auto out = fx.proc->process(in);
  // No ack (neither stored nor rejected) for the held batch; a request on the agent's cmd topic;
  // the other batch of the group is not held up.
  REQUIRE(out.size() == 2);
  CHECK(decode(out[0]).stored);
  CHECK(decode(out[0]).batch_id == 4);
  CHECK(out[1].dictionary_request);
  CHECK(out[1].topic == "semilab/v1/lab1/agent-01/cmd");
  auto req = sc::decode_dictionary_request(out[1].payload);
  REQUIRE(req.has_value());
  CHECK(req->agent_id == "agent-01");
  CHECK(req->dict_id == dict->id);
  CHECK(fx.counters.snapshot().held_for_dictionary == 1);
  CHECK(*fx.db->record_count() == 3);
  // The agent resends before the dictionary came: still held (one copy), asked again only later.
  std::vector<inbound_message> again = {msg("lab1", "agent-01", frame)};
  CHECK(fx.proc->process(again).empty());
  CHECK(fx.counters.snapshot().held_for_dictionary == 1);
  CHECK(fx.counters.snapshot().dictionary_requests == 1);
  CHECK(fx.counters.snapshot().rejected == 0);

  // Another agent cannot supply it: dictionaries are per agent.
  std::vector<inbound_message> foreign = {dict_msg("lab1", "agent-02", *dict)};
  CHECK(fx.proc->process(foreign).empty());
  CHECK(fx.counters.snapshot().held_for_dictionary == 1);
  // Not a dictionary: ignored.
  std::vector<inbound_message> junk = {
      {sc::agent_topic("lab1", "agent-01", sc::agent_topic_kind::dict), "nonsense", now_ns()}};
  CHECK(fx.proc->process(junk).empty());

  // The agent's answer releases the held batch: stored and acked in that group.
  std::vector<inbound_message> answer = {dict_msg("lab1", "agent-01", *dict)};
  out = fx.proc->process(answer);
  REQUIRE(out.size() == 1);
  auto a = decode(out[0]);
  CHECK(a.stored);
  CHECK(a.batch_id == 3);
  CHECK(*fx.db->record_count() == 13);
  auto st = fx.counters.snapshot();
  CHECK(st.held_for_dictionary == 0);
  CHECK(st.dictionaries_stored == 2);  // agent-02's copy is stored under agent-02 too
  CHECK(st.rejected == 0);

  // Persisted: a new processor (central restarted) decodes the next such frame straight away.
  ingest_counters c2;
  ingest_options o;
  ingest_processor p2(*fx.db, o, c2);
  sc::batch b2{"agent-01", 77, 5, varied_telemetry(10, 7000)};
  std::vector<inbound_message> later = {msg("lab1", "agent-01", encode_with(b2, *dict))};
  out = p2.process(later);
  REQUIRE(out.size() == 1);
  CHECK(decode(out[0]).stored);
  CHECK(c2.snapshot().dictionary_requests == 0);
  CHECK(*fx.db->record_count() == 23);
}
