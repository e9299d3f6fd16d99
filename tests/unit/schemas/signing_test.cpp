// Ed25519 batch signatures: sign on encode, verify against the frame's header bytes, and every
// single flipped byte of a signed frame is caught (by the checksum or by the signature).
#include <semilab/schemas/frame.hpp>
#include <semilab/schemas/signing.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

using namespace semilab::schemas;

namespace {

batch small_batch() {
  batch b;
  b.agent_id = "agent-s1";
  b.store_epoch = 0xfedcba9876543210ull;
  b.batch_id = 9;
  for (std::uint64_t i = 1; i <= 20; ++i) {
    record r;
    r.seq = i;
    r.ts_ns = 1'764'250'001'000'000'000 + static_cast<std::int64_t>(i);
    r.instrument = "smu1";
    r.channel = "curr";
    r.unit = "A";
    r.val = decimal{static_cast<std::int64_t>(i) * 7, -6};
    b.records.push_back(r);
  }
  return b;
}

// Central's check, as ingest runs it: decode, pick the key by the field's key id (here: the one
// key of `pub`), then verify the header bytes with it.
bool verifies(const std::vector<std::uint8_t>& frame, const ed25519_public_key& pub) {
  frame_decoder dec;
  auto d = dec.decode(frame);
  if (!d.has_value() || d->header.signature.empty()) return false;
  auto sig = parse_signature_field(d->header.signature);
  if (!sig.has_value() || sig->key_id != key_id_of(pub)) return false;
  auto header = signed_header_bytes(frame, d->header.body_len, d->header.signature.size());
  return verify_header_signature(pub, *sig, header);
}

}  // namespace

TEST_CASE("signing: key id, signature field layout, verification") {
  auto k = signing_key::generate();
  REQUIRE(k.has_value());
  CHECK(k->key_id().size() == 16);
  CHECK(k->key_id() == key_id_of(k->public_key()));
  auto parsed = parse_public_key_hex(public_key_hex(k->public_key()));
  REQUIRE(parsed.has_value());
  CHECK(*parsed == k->public_key());
  CHECK_FALSE(parse_public_key_hex("abc").has_value());
  CHECK_FALSE(parse_public_key_hex(std::string(64, 'g')).has_value());

  frame_encoder enc;
  auto frame = enc.encode(small_batch(), &*k);
  REQUIRE(frame.has_value());
  frame_decoder dec;
  auto d = dec.decode(*frame);
  REQUIRE(d.has_value());
  REQUIRE(d->header.signature.size() == 2 + 16 + 64);
  auto sig = parse_signature_field(d->header.signature);
  REQUIRE(sig.has_value());
  CHECK(sig->algorithm == kSigAlgEd25519);
  CHECK(sig->key_id == k->key_id());
  CHECK(verifies(*frame, k->public_key()));

  // Another key does not verify it; an unsigned frame has an empty field.
  auto other = signing_key::generate();
  REQUIRE(other.has_value());
  CHECK_FALSE(verifies(*frame, other->public_key()));
  auto plain = enc.encode(small_batch());
  REQUIRE(plain.has_value());
  auto pd = dec.decode(*plain);
  REQUIRE(pd.has_value());
  CHECK(pd->header.signature.empty());
  CHECK_FALSE(parse_signature_field({}).has_value());
}

TEST_CASE("signing: a single flipped byte anywhere in a signed frame is rejected") {
  auto k = signing_key::generate();
  REQUIRE(k.has_value());
  frame_encoder enc(codec::none);  // an uncompressed body: flips land in record bytes too
  auto frame = enc.encode(small_batch(), &*k);
  REQUIRE(frame.has_value());
  REQUIRE(verifies(*frame, k->public_key()));
  std::size_t caught = 0;
  for (std::size_t i = 0; i < frame->size(); ++i) {
    auto bad = *frame;
    bad[i] ^= 0x01;
    if (!verifies(bad, k->public_key())) ++caught;
  }
  CHECK(caught == frame->size());

  // A frame re-signed by a forger over a changed header (same key id claimed): rejected.
  auto forger = signing_key::generate();
  REQUIRE(forger.has_value());
  auto b = small_batch();
  b.batch_id = 10;
  auto forged = enc.encode(b, &*forger);
  REQUIRE(forged.has_value());
  CHECK_FALSE(verifies(*forged, k->public_key()));
}

TEST_CASE("signing: key file round trip, mode 0600, no overwrite, bad files refused") {
  auto dir = std::filesystem::temp_directory_path() /
             ("semilab-sign-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto k = signing_key::generate();
  REQUIRE(k.has_value());
  std::string err;
  REQUIRE(k->save(dir / "agent.key", err));
  struct stat st {};
  REQUIRE(::stat((dir / "agent.key").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK_FALSE(k->save(dir / "agent.key", err));  // never replaces a key
  auto back = signing_key::load(dir / "agent.key", err);
  REQUIRE(back.has_value());
  CHECK(back->public_key() == k->public_key());
  CHECK(back->key_id() == k->key_id());
  // The loaded key signs what the original key's public half verifies.
  frame_encoder enc;
  auto frame = enc.encode(small_batch(), &*back);
  REQUIRE(frame.has_value());
  CHECK(verifies(*frame, k->public_key()));
  std::ofstream(dir / "junk.key") << "-----BEGIN PRIVATE KEY-----\nnope\n";
  CHECK_FALSE(signing_key::load(dir / "junk.key", err).has_value());
  CHECK_FALSE(signing_key::load(dir / "missing.key", err).has_value());
  std::filesystem::remove_all(dir);
}
