// Acks and commands signed with central's Ed25519 key (schemas/ack.hpp, command.hpp): round trip
// through JSON, every tampered field refused, unsigned and unknown-key messages told apart, the
// HMAC-only command still accepted by an agent that pins no key, and ignored by one that does.
#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/command.hpp>
#include <semilab/schemas/signing.hpp>

#include <doctest/doctest.h>

#include <chrono>

namespace sc = semilab::schemas;

namespace {

sc::signing_key new_key() {
  auto k = sc::signing_key::generate();
  REQUIRE(k.has_value());
  return std::move(*k);
}

std::int64_t now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

sc::ack stored_ack() {
  sc::ack a;
  a.agent_id = "agent-1";
  a.store_epoch = 0xFFFF'0000'0000'0001ull;
  a.batch_id = 42;
  a.ranges = {{1, 10}, {12, 20}};
  a.central_instance = "central-a";
  return a;
}

}  // namespace

TEST_CASE("a signed ack survives JSON and verifies with the pinned key only") {
  auto k = new_key();
  auto a = stored_ack();
  sc::sign_ack(a, k);
  auto d = sc::decode_ack(sc::encode_ack(a));
  REQUIRE(d.has_value());
  const sc::ed25519_public_key pinned[] = {new_key().public_key(), k.public_key()};
  CHECK(sc::verify_ack(*d, pinned) == sc::pinned_verdict::ok);
  const sc::ed25519_public_key others[] = {new_key().public_key()};
  CHECK(sc::verify_ack(*d, others) == sc::pinned_verdict::unknown_key);
}

TEST_CASE("every field of a signed ack is covered") {
  auto k = new_key();
  const sc::ed25519_public_key pinned[] = {k.public_key()};
  auto base = stored_ack();
  sc::sign_ack(base, k);
  REQUIRE(sc::verify_ack(base, pinned) == sc::pinned_verdict::ok);
  auto check = [&](auto mutate) {
    auto a = base;
    mutate(a);
    CHECK(sc::verify_ack(a, pinned) == sc::pinned_verdict::bad_signature);
  };
  check([](sc::ack& a) { a.agent_id = "agent-2"; });
  check([](sc::ack& a) { a.store_epoch ^= 1; });
  check([](sc::ack& a) { a.batch_id += 1; });
  check([](sc::ack& a) { a.ranges[1].last = 21; });
  check([](sc::ack& a) { a.ranges.pop_back(); });
  check([](sc::ack& a) { a.central_instance = "central-b"; });
  check([](sc::ack& a) {
    a.stored = false;
    a.code = sc::reject_code::invalid_frame;
  });
  check([](sc::ack& a) { a.signature[5] = a.signature[5] == '0' ? '1' : '0'; });

  // A rejection: code, retry flag and reason are covered too.
  sc::ack r = stored_ack();
  r.stored = false;
  r.ranges.clear();
  r.code = sc::reject_code::quota;
  r.retry = true;
  r.reason = "agent ingest quota exceeded";
  sc::sign_ack(r, k);
  auto rd = sc::decode_ack(sc::encode_ack(r));
  REQUIRE(rd.has_value());
  CHECK(sc::verify_ack(*rd, pinned) == sc::pinned_verdict::ok);
  auto r2 = *rd;
  r2.retry = false;
  CHECK(sc::verify_ack(r2, pinned) == sc::pinned_verdict::bad_signature);
  r2 = *rd;
  r2.reason += "!";
  CHECK(sc::verify_ack(r2, pinned) == sc::pinned_verdict::bad_signature);
}

TEST_CASE("a single flipped byte of a signed ack's JSON never verifies as is") {
  auto k = new_key();
  const sc::ed25519_public_key pinned[] = {k.public_key()};
  auto a = stored_ack();
  sc::sign_ack(a, k);
  const auto json = sc::encode_ack(a);
  int accepted = 0;
  for (std::size_t i = 0; i < json.size(); ++i) {
    auto t = json;
    t[i] = static_cast<char>(t[i] ^ 0x01);
    auto d = sc::decode_ack(t);
    if (!d) continue;
    if (sc::verify_ack(*d, pinned) == sc::pinned_verdict::ok) {
      // Only a flip that leaves every covered value the same (e.g. JSON layout) may pass.
      CHECK(sc::canonical_bytes(*d) == sc::canonical_bytes(a));
      ++accepted;
    }
  }
  CHECK(accepted == 0);
}

TEST_CASE("unsigned and malformed signature fields") {
  const sc::ed25519_public_key pinned[] = {new_key().public_key()};
  auto a = stored_ack();
  auto d = sc::decode_ack(sc::encode_ack(a));
  REQUIRE(d.has_value());
  CHECK(sc::verify_ack(*d, pinned) == sc::pinned_verdict::unsigned_message);
  // "sig" without "kid", or a short signature: not an ack at all.
  CHECK_FALSE(sc::decode_ack(R"({"v":1,"agent":"a","epoch":"1","batch":"1","status":"stored",)"
                             R"("ranges":[],"sig":"00"})")
                  .has_value());
  CHECK_FALSE(sc::decode_ack(R"({"v":1,"agent":"a","epoch":"1","batch":"1","status":"stored",)"
                             R"("ranges":[],"kid":"ab","sig":"00"})")
                  .has_value());
}

TEST_CASE("signed replay commands: pinned key required, MAC ignored; HMAC still works unpinned") {
  auto k = new_key();
  const sc::ed25519_public_key pinned[] = {k.public_key()};
  const std::string secret = "0123456789abcdef0123";
  sc::replay_command c{"agent-1", 7, 10, 20, now(), sc::new_nonce()};

  auto both = sc::decode_command(sc::encode_command(c, secret, &k));
  REQUIRE(both.has_value());
  CHECK(sc::verify_command(*both, secret, pinned, now()) == sc::command_verdict::ok);
  CHECK(sc::verify_command(*both, secret, {}, now()) == sc::command_verdict::ok);  // MAC path

  auto sig_only = sc::decode_command(sc::encode_command(c, "", &k));
  REQUIRE(sig_only.has_value());
  CHECK(sig_only->mac.empty());
  CHECK(sc::verify_command(*sig_only, "", pinned, now()) == sc::command_verdict::ok);
  CHECK(sc::verify_command(*sig_only, secret, {}, now()) == sc::command_verdict::bad_mac);

  // HMAC-only (an older central): refused once a key is pinned.
  auto mac_only = sc::decode_command(sc::encode_command(c, secret));
  REQUIRE(mac_only.has_value());
  CHECK(sc::verify_command(*mac_only, secret, {}, now()) == sc::command_verdict::ok);
  CHECK(sc::verify_command(*mac_only, secret, pinned, now()) ==
        sc::command_verdict::unsigned_command);

  // Tampered range, foreign key, stale.
  auto t = *sig_only;
  t.cmd.to = 30;
  CHECK(sc::verify_command(t, "", pinned, now()) == sc::command_verdict::bad_signature);
  auto other = new_key();
  auto foreign = sc::decode_command(sc::encode_command(c, "", &other));
  REQUIRE(foreign.has_value());
  CHECK(sc::verify_command(*foreign, "", pinned, now()) == sc::command_verdict::bad_signature);
  CHECK(sc::verify_command(*sig_only, "", pinned, now() + 3600'000'000'000) ==
        sc::command_verdict::stale);
}

TEST_CASE("central public key lists") {
  auto a = new_key(), b = new_key();
  auto list = sc::parse_public_key_list(sc::public_key_hex(a.public_key()) + ", " +
                                        sc::public_key_hex(b.public_key()) + "\n");
  REQUIRE(list.has_value());
  REQUIRE(list->size() == 2);
  CHECK((*list)[1] == b.public_key());
  CHECK(sc::parse_public_key_list("").value().empty());
  CHECK_FALSE(sc::parse_public_key_list("abcd").has_value());
}
