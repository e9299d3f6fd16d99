// Audit trail and stored-batch re-verification (central/include/semilab/central/audit.hpp):
// signed acks from central's key; one batch.store entry per ingested batch, hash-chained per
// instance; admin entries with who/what/why/old/new; `audit verify` finds an edited, deleted or
// reordered entry, an edited, deleted or inserted ledger row, and entries deleted at the tail
// against a signed exported head; `verify-batches` re-verifies every stored signature from the
// ledger alone and finds a single flipped byte.
#include <semilab/central/agent_keys.hpp>
#include <semilab/central/audit.hpp>
#include <semilab/central/ingest.hpp>
#include <semilab/central/store.hpp>
#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/signing.hpp>
#include <semilab/schemas/topics.hpp>

#include <sqlite3.h>

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "test_util.hpp"

using namespace semilab::central;
namespace sc = semilab::schemas;
using central_test::sample_batch;
using central_test::temp_dir;

namespace {

sc::signing_key new_key() {
  auto k = sc::signing_key::generate();
  REQUIRE(k.has_value());
  return std::move(*k);
}

struct fixture {
  temp_dir dir;
  std::unique_ptr<sqlite_store> db;
  ingest_counters counters;
  std::unique_ptr<ingest_processor> proc;
  sc::signing_key agent_key = new_key();
  std::shared_ptr<const sc::signing_key> central_key =
      std::make_shared<const sc::signing_key>(new_key());

  fixture() {
    std::string err;
    auto s = sqlite_store::open(store_options{dir.file("central.db")}, err);
    REQUIRE(s.has_value());
    db = std::move(*s);
    ingest_options o;
    o.instance = "central-a";
    o.signer = central_key;
    proc = std::make_unique<ingest_processor>(*db, o, counters);
    REQUIRE(approve_agent_key(*db, "agent-1", agent_key.public_key(), now_ns(), err).has_value());
  }
  // Stores `n` signed batches of 3 records each; returns their acks.
  std::vector<sc::ack> ingest(std::uint64_t first_batch, int n) {
    std::vector<inbound_message> in;
    sc::frame_encoder enc;
    for (int i = 0; i < n; ++i) {
      auto id = first_batch + static_cast<std::uint64_t>(i);
      auto f = enc.encode(sample_batch("agent-1", 7, id, 1 + 3 * id, 3), &agent_key);
      REQUIRE(f.has_value());
      in.push_back({sc::agent_topic("lab1", "agent-1", sc::agent_topic_kind::batch),
                    std::string(f->begin(), f->end()), now_ns()});
    }
    std::vector<sc::ack> out;
    for (auto& a : proc->process(in)) {
      auto d = sc::decode_ack(a.payload);
      REQUIRE(d.has_value());
      out.push_back(*d);
    }
    return out;
  }
  // Raw SQL on a second connection, as somebody tampering with the file would.
  void tamper(const std::string& sql) {
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(dir.file("central.db").c_str(), &h) == SQLITE_OK);
    char* msg = nullptr;
    int rc = sqlite3_exec(h, sql.c_str(), nullptr, nullptr, &msg);
    INFO(sql << ": " << (msg ? msg : ""));
    sqlite3_free(msg);
    sqlite3_close(h);
    REQUIRE(rc == SQLITE_OK);
  }
  audit_report verify(const audit_verify_options& o = {}) {
    auto r = audit_verify(*db, o);
    REQUIRE(r.has_value());
    return *r;
  }
  bool finds(const audit_report& r, std::string_view needle) {
    for (const auto& f : r.findings)
      if (f.what.find(needle) != std::string::npos) return true;
    return false;
  }
};

}  // namespace

TEST_CASE("acks are signed with central's key and a flipped byte does not verify") {
  fixture f;
  auto acks = f.ingest(1, 2);
  REQUIRE(acks.size() == 2);
  const sc::ed25519_public_key pinned[] = {f.central_key->public_key()};
  for (const auto& a : acks) {
    CHECK(a.stored);
    CHECK(a.key_id == f.central_key->key_id());
    CHECK(sc::verify_ack(a, pinned) == sc::pinned_verdict::ok);
  }
  auto forged = acks[0];
  forged.ranges[0].last += 1;  // claims one more record stored
  CHECK(sc::verify_ack(forged, pinned) == sc::pinned_verdict::bad_signature);
  auto unsigned_ack = acks[0];
  unsigned_ack.key_id.clear();
  unsigned_ack.signature.clear();
  CHECK(sc::verify_ack(unsigned_ack, pinned) == sc::pinned_verdict::unsigned_message);
  const sc::ed25519_public_key other[] = {new_key().public_key()};
  CHECK(sc::verify_ack(acks[0], other) == sc::pinned_verdict::unknown_key);
}

TEST_CASE("one audit entry per stored batch, chained; verify is clean") {
  fixture f;
  f.ingest(1, 3);
  f.ingest(4, 2);
  auto n = audit_catch_up(*f.db, "central-a");
  REQUIRE(n.has_value());
  CHECK(*n == 5);
  auto again = audit_catch_up(*f.db, "central-a");
  REQUIRE(again.has_value());
  CHECK(*again == 0);  // idempotent
  auto r = f.verify();
  CHECK(r.findings.empty());
  CHECK(r.entries == 6);  // 5 batches + the admin entry of the fixture's key approval
  CHECK(r.chains == 2);
  CHECK(r.batches_checked == 5);
  CHECK(r.pending_batches == 0);
  // A batch stored after the catch-up is pending, not a finding.
  f.ingest(6, 1);
  r = f.verify();
  CHECK(r.findings.empty());
  CHECK(r.pending_batches == 1);
}

TEST_CASE("admin entries carry who, what, why, old and new values") {
  fixture f;
  set_audit_context({"alice", "quarterly key rotation"});
  std::string err;
  auto k2 = new_key();
  REQUIRE(approve_agent_key(*f.db, "agent-2", k2.public_key(), now_ns(), err).has_value());
  REQUIRE(revoke_agent_key(*f.db, "agent-2", k2.key_id(), now_ns()).has_value());
  set_audit_context({});
  auto rows = f.db->query(
      "SELECT actor, action, target, reason, old_value, new_value FROM audit_log "
      "WHERE chain = 'admin' AND target LIKE 'agent-2%' ORDER BY seq",
      {});
  REQUIRE(rows.has_value());
  REQUIRE(rows->size() == 2);
  CHECK((*rows)[0][0] == "alice");
  CHECK((*rows)[0][1] == "agent_key.approve");
  CHECK((*rows)[0][3] == "quarterly key rotation");
  CHECK((*rows)[0][5] == sc::public_key_hex(k2.public_key()));
  CHECK((*rows)[1][1] == "agent_key.revoke");
  CHECK((*rows)[1][4] == "approved");
  CHECK((*rows)[1][5] == "revoked");
  CHECK(f.verify().findings.empty());
}

TEST_CASE("verify detects an edited entry") {
  fixture f;
  f.ingest(1, 4);
  REQUIRE(audit_catch_up(*f.db, "central-a").has_value());
  f.tamper("UPDATE audit_log SET target = 'agent-1/7/99' WHERE chain = 'ingest:central-a' AND "
           "seq = 2");
  auto r = f.verify();
  REQUIRE(r.findings.size() >= 1);
  CHECK(r.findings[0].seq == 2);
  CHECK(f.finds(r, "edited"));
}

TEST_CASE("verify detects a deleted entry") {
  fixture f;
  f.ingest(1, 4);
  REQUIRE(audit_catch_up(*f.db, "central-a").has_value());
  f.tamper("DELETE FROM audit_log WHERE chain = 'ingest:central-a' AND seq = 3");
  auto r = f.verify();
  CHECK(f.finds(r, "missing (deleted)"));
  CHECK(f.finds(r, "not in the audit trail"));  // its ledger row is now unaccounted for
}

TEST_CASE("verify detects reordered entries") {
  fixture f;
  f.ingest(1, 4);
  REQUIRE(audit_catch_up(*f.db, "central-a").has_value());
  // Swap entries 2 and 3 (their seq numbers), leaving every row's content as written.
  f.tamper("UPDATE audit_log SET seq = -2 WHERE chain = 'ingest:central-a' AND seq = 2;"
           "UPDATE audit_log SET seq = 2 WHERE chain = 'ingest:central-a' AND seq = 3;"
           "UPDATE audit_log SET seq = 3 WHERE chain = 'ingest:central-a' AND seq = -2;");
  auto r = f.verify();
  CHECK(f.finds(r, "does not follow"));
  CHECK(f.finds(r, "edited or moved"));
}

TEST_CASE("verify detects an edited or deleted batch ledger row") {
  fixture f;
  f.ingest(1, 4);
  REQUIRE(audit_catch_up(*f.db, "central-a").has_value());
  SUBCASE("edited") {
    f.tamper("UPDATE batches SET new_records = 0 WHERE id = (SELECT MIN(id) FROM batches)");
    CHECK(f.finds(f.verify(), "was edited"));
  }
  SUBCASE("deleted") {
    f.tamper("DELETE FROM batches WHERE id = (SELECT MAX(id) FROM batches)");
    CHECK(f.finds(f.verify(), "is gone"));
  }
  SUBCASE("deleted by retention is not a finding") {
    f.tamper("DELETE FROM batches WHERE id = (SELECT MIN(id) FROM batches)");
    audit_verify_options o;
    o.ledger_retention_before_ns = now_ns() + 1;
    CHECK(f.verify(o).findings.empty());
  }
  SUBCASE("untouched") { CHECK(f.verify().findings.empty()); }
}

TEST_CASE("verify detects a batch ledger row inserted among audited ones") {
  fixture f;
  f.ingest(1, 4);
  f.tamper("UPDATE batches SET id = 10 WHERE id = (SELECT MAX(id) FROM batches)");
  REQUIRE(audit_catch_up(*f.db, "central-a").has_value());
  CHECK(f.verify().findings.empty());
  f.tamper("INSERT INTO batches(id, agent_id, store_epoch, batch_id, first_seq, last_seq, records, "
           "new_records, checksum, received_ns, instance) SELECT 5, agent_id, store_epoch, 99, "
           "first_seq, last_seq, records, 0, checksum, received_ns, instance FROM batches "
           "WHERE id = (SELECT MIN(id) FROM batches)");
  CHECK(f.finds(f.verify(), "not in the audit trail (inserted)"));
}

TEST_CASE("a signed exported head finds entries deleted at the end of a chain") {
  fixture f;
  f.ingest(1, 3);
  REQUIRE(audit_catch_up(*f.db, "central-a").has_value());
  std::string path, err;
  REQUIRE_FALSE(export_heads(*f.db, f.dir.path / "heads", "central-a", f.central_key.get(),
                             now_ns(), path, err));
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto head = decode_head_file(ss.str());
  REQUIRE(head.has_value());
  REQUIRE(head->heads.size() == 2);  // admin (the key approval) and ingest:central-a
  CHECK(head->heads[0].chain == "admin");
  CHECK(head->heads[1].chain == "ingest:central-a");
  CHECK(head->heads[1].seq == 3);
  audit_verify_options o;
  o.head = *head;
  o.central_key = f.central_key->public_key();
  CHECK(f.verify(o).findings.empty());
  CHECK(f.verify(o).head_checked);

  SUBCASE("tail deleted") {
    f.tamper("DELETE FROM audit_log WHERE chain = 'ingest:central-a' AND seq = 3");
    f.tamper("DELETE FROM batches WHERE id = (SELECT MAX(id) FROM batches)");
    // Without the head the chain looks whole (tail truncation needs the anchor)...
    CHECK(f.verify().findings.empty());
    // ...with it, it does not.
    CHECK(f.finds(f.verify(o), "entries deleted at the end"));
  }
  SUBCASE("forged head") {
    auto forged = *head;
    forged.heads[1].seq = 2;
    o.head = forged;
    CHECK(f.finds(f.verify(o), "not signed by central's key"));
  }
}

TEST_CASE("verify-batches re-verifies stored signatures and finds one flipped byte") {
  fixture f;
  f.ingest(1, 3);
  auto r = verify_stored_batches(*f.db);
  REQUIRE(r.has_value());
  CHECK(r->verified == 3);
  CHECK(r->failures.empty());
  auto rows = f.db->query("SELECT key_id, length(signed_header) FROM batches ORDER BY id", {});
  REQUIRE(rows.has_value());
  REQUIRE(rows->size() == 3);
  CHECK((*rows)[0][0] == f.agent_key.key_id());
  SUBCASE("header byte") {
    // Flip one bit of byte 20 of the stored header (inside the batch's identity fields).
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(f.dir.file("central.db").c_str(), &h) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(h, "SELECT id, signed_header FROM batches ORDER BY id LIMIT 1", -1,
                               &st, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    const auto id = sqlite3_column_int64(st, 0);
    const auto* p = static_cast<const unsigned char*>(sqlite3_column_blob(st, 1));
    std::vector<unsigned char> bytes(p, p + sqlite3_column_bytes(st, 1));
    sqlite3_finalize(st);
    bytes[20] ^= 1;
    REQUIRE(sqlite3_prepare_v2(h, "UPDATE batches SET signed_header = ?1 WHERE id = ?2", -1, &st,
                               nullptr) == SQLITE_OK);
    sqlite3_bind_blob(st, 1, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, id);
    CHECK(sqlite3_step(st) == SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(h);
    r = verify_stored_batches(*f.db);
    REQUIRE(r.has_value());
    CHECK(r->verified == 2);
    CHECK(r->failures.size() == 1);
  }
  SUBCASE("checksum column") {
    f.tamper("UPDATE batches SET checksum = zeroblob(32) WHERE id = (SELECT MAX(id) FROM batches)");
    r = verify_stored_batches(*f.db);
    REQUIRE(r.has_value());
    CHECK(r->failures.size() == 1);
  }
}

TEST_CASE("audit entry hash covers every field") {
  audit_entry e;
  e.chain = "admin";
  e.seq = 1;
  e.at_ns = 5;
  e.actor = "alice";
  e.action = "token.create";
  e.target = "t1";
  e.reason = "r";
  e.new_value = "viewer";
  e.prev_hash = std::string(64, '0');
  const auto h = audit_hash(e);
  auto e2 = e;
  e2.old_value = "";  // NULL and "" differ
  CHECK(audit_hash(e2) != h);
  e2 = e;
  e2.actor = "alicf";
  CHECK(audit_hash(e2) != h);
  e2 = e;
  e2.prev_hash[0] = '1';
  CHECK(audit_hash(e2) != h);
}
