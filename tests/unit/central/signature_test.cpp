// Batch signatures at ingest: an approved key verifies, a single flipped byte, an unsigned batch,
// a foreign key and a revoked key are refused (bad_signature, not retryable, quarantined,
// counted), require_signatures refuses agents without a key (unapproved, retryable), and the
// stored batch keeps its signature field (algorithm, key id, signature).
#include <semilab/central/agent_keys.hpp>
#include <semilab/central/ingest.hpp>
#include <semilab/central/store.hpp>
#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/signing.hpp>
#include <semilab/schemas/topics.hpp>

#include <doctest/doctest.h>

#include "test_util.hpp"

using namespace semilab::central;
namespace sc = semilab::schemas;
using central_test::sample_batch;
using central_test::temp_dir;

namespace {

struct fixture {
  temp_dir dir;
  std::unique_ptr<sqlite_store> db;
  ingest_counters counters;
  std::unique_ptr<ingest_processor> proc;

  explicit fixture(bool require = false) {
    std::string err;
    auto s = sqlite_store::open(store_options{dir.file("central.db")}, err);
    REQUIRE(s.has_value());
    db = std::move(*s);
    ingest_options o;
    o.instance = "central-test";
    o.require_signatures = require;
    proc = std::make_unique<ingest_processor>(*db, o, counters);
  }
  sc::ack one(const std::string& agent, const std::string& payload) {
    std::vector<inbound_message> in = {
        {sc::agent_topic("lab1", agent, sc::agent_topic_kind::batch), payload, now_ns()}};
    auto acks = proc->process(in);
    REQUIRE(acks.size() == 1);
    auto a = sc::decode_ack(acks[0].payload);
    REQUIRE(a.has_value());
    return *a;
  }
};

std::string signed_frame(const sc::batch& b, const sc::signing_key* k) {
  sc::frame_encoder enc;
  auto f = enc.encode(b, k);
  REQUIRE(f.has_value());
  return std::string(f->begin(), f->end());
}

sc::signing_key new_key() {
  auto k = sc::signing_key::generate();
  REQUIRE(k.has_value());
  return std::move(*k);
}

std::string stored_signature_hex(sqlite_store& db, std::uint64_t batch_id) {
  const sql_param p[] = {sql_param{false, static_cast<std::int64_t>(batch_id), {}}};
  auto rows = db.query("SELECT hex(signature) FROM batches WHERE batch_id = ?1", p);
  REQUIRE(rows.has_value());
  if (rows->empty() || !(*rows)[0][0]) return "";
  return *(*rows)[0][0];
}

}  // namespace

TEST_CASE("signatures: an approved key verifies; a flipped byte, an unsigned batch, a foreign "
          "key and a revoked key are refused") {
  fixture fx;
  auto key = new_key();
  std::string err;
  auto added = approve_agent_key(*fx.db, "agent-01", key.public_key(), now_ns(), err);
  REQUIRE(added.has_value());
  CHECK(*added);

  auto b = sample_batch("agent-01", 1, 501, 1, 10);
  auto good = signed_frame(b, &key);
  auto a = fx.one("agent-01", good);
  CHECK(a.stored);
  CHECK(fx.counters.snapshot().signed_verified == 1);
  // The ledger keeps the signature field: algorithm 1, key id, 64-byte signature.
  auto sig_hex = stored_signature_hex(*fx.db, 501);
  CHECK(sig_hex.size() == 2 * (2 + 16 + 64));
  CHECK(sig_hex.substr(0, 4) == "0110");

  // One flipped byte of the record body (zstd) and of the signature itself.
  auto b2 = sample_batch("agent-01", 1, 502, 11, 10);
  auto frame2 = signed_frame(b2, &key);
  for (std::size_t at : {frame2.size() - 10, frame2.size() / 2}) {
    auto bad = frame2;
    bad[at] = static_cast<char>(bad[at] ^ 0x01);
    auto r = fx.one("agent-01", bad);
    CHECK_FALSE(r.stored);
    CHECK_FALSE(r.retry);
    CHECK((r.code == sc::reject_code::bad_signature || r.code == sc::reject_code::invalid_frame));
  }
  // A flip in the signature bytes passes the checksum: only the signature catches it.
  {
    auto bad = frame2;
    bad[bad.size() - 1] = static_cast<char>(bad[bad.size() - 1] ^ 0x01);
    auto r = fx.one("agent-01", bad);
    CHECK_FALSE(r.stored);
    CHECK(r.code == sc::reject_code::bad_signature);
    CHECK_FALSE(r.retry);
  }
  auto st = fx.counters.snapshot();
  CHECK(st.bad_signatures >= 1);
  const auto bad_before = st.bad_signatures;

  // Unsigned, and signed by a key that is not approved: refused.
  CHECK(fx.one("agent-01", signed_frame(b2, nullptr)).code == sc::reject_code::bad_signature);
  auto other = new_key();
  CHECK(fx.one("agent-01", signed_frame(b2, &other)).code == sc::reject_code::bad_signature);
  CHECK(fx.counters.snapshot().bad_signatures == bad_before + 2);
  CHECK(*fx.db->record_count() == 10);  // only the first batch

  // The intact batch still goes through; after revocation the same bytes are refused.
  CHECK(fx.one("agent-01", frame2).stored);
  auto n = revoke_agent_key(*fx.db, "agent-01", key.key_id(), now_ns());
  REQUIRE(n.has_value());
  CHECK(*n == 1);
  // Revoking its only key does not make the agent one "without a key": still refused.
  auto r = fx.one("agent-01", frame2);
  CHECK(r.code == sc::reject_code::bad_signature);
  CHECK(fx.one("agent-01", signed_frame(b2, nullptr)).code == sc::reject_code::bad_signature);
  // Approved again: accepted again.
  REQUIRE(approve_agent_key(*fx.db, "agent-01", key.public_key(), now_ns(), err).has_value());
  CHECK(fx.one("agent-01", frame2).stored);
}

TEST_CASE("signatures: agents without a key pass unless require_signatures; then retryable") {
  {
    fixture fx(false);
    auto b = sample_batch("agent-02", 1, 1, 1, 5);
    CHECK(fx.one("agent-02", signed_frame(b, nullptr)).stored);
  }
  fixture fx(true);
  auto b = sample_batch("agent-02", 1, 1, 1, 5);
  auto r = fx.one("agent-02", signed_frame(b, nullptr));
  CHECK_FALSE(r.stored);
  CHECK(r.code == sc::reject_code::unapproved);
  CHECK(r.retry);
  CHECK(fx.counters.snapshot().unapproved == 1);
  auto key = new_key();
  std::string err;
  REQUIRE(approve_agent_key(*fx.db, "agent-02", key.public_key(), now_ns(), err).has_value());
  CHECK(fx.one("agent-02", signed_frame(b, &key)).stored);
}
