// Wire compatibility across releases (issue 10, "a mixed fleet keeps working"), on the vectors of
// tests/upgrade/vectors written by each release's own schemas/ code (gen_vectors.sh, README.md):
// - old agent -> current central: every frame any release wrote decodes with the current decoder
//   to the canonical batch (signed ones verify);
// - current central -> old agent is the other half of verdicts.txt: each release's ack reader on
//   the acks the current code writes;
// - current agent -> old central: verdicts.txt records each release's decoder on the frames the
//   current encoder writes; this test checks the current encoder still writes exactly those bytes
//   (else the verdicts are stale: regenerate) and that every release accepted them;
// - old central -> current agent: every ack any release wrote decodes with the current reader.
#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/frame.hpp>
#include <semilab/schemas/signing.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "canonical_batch.hpp"

using namespace semilab::schemas;
namespace fs = std::filesystem;

namespace {

const fs::path kDir = fs::path(SEMILAB_SOURCE_DIR) / "tests/upgrade/vectors";

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "cannot read " << p);
  return {std::istreambuf_iterator<char>(f), {}};
}

std::vector<fs::path> vectors(const std::string& kind) {  // "_frame_" or "_ack_"
  std::vector<fs::path> out;
  for (auto& e : fs::directory_iterator(kDir))
    if (e.path().filename().string().find(kind) != std::string::npos) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::string prefix_of(const fs::path& p) {
  auto n = p.filename().string();
  return n.substr(0, n.find('_'));
}

std::span<const std::uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

const signing_key& test_key() {
  static signing_key k = [] {
    std::string err;
    auto r = signing_key::load(kDir / "test_signing_key.pem", err);
    REQUIRE_MESSAGE(r.has_value(), err);
    return std::move(*r);
  }();
  return k;
}

}  // namespace

TEST_CASE("every frame any release wrote decodes with the current central to the same records") {
  const auto want = upgrade_vectors::canonical_batch();
  auto files = vectors("_frame_");
  std::set<std::string> releases;
  for (const auto& p : files) {
    CAPTURE(p.filename().string());
    releases.insert(prefix_of(p));
    auto raw = slurp(p);
    frame_decoder dec;
    auto f = dec.decode(bytes_of(raw));
    REQUIRE_MESSAGE(f.has_value(), f.error().message());
    CHECK(f->header.version == 1);
    CHECK(f->header.agent_id == want.agent_id);
    CHECK(f->header.store_epoch == want.store_epoch);
    CHECK(f->header.batch_id == want.batch_id);
    CHECK(f->records == want.records);
    CHECK(upgrade_vectors::digest(f->records) == upgrade_vectors::digest(want.records));
    const bool signed_vec = p.filename().string().find("_signed") != std::string::npos;
    CHECK(f->header.signature.empty() == !signed_vec);
    if (signed_vec) {  // central's ingest check (ingest.cpp) on an old agent's signature
      auto sig = parse_signature_field(f->header.signature);
      REQUIRE(sig.has_value());
      CHECK(sig->key_id == test_key().key_id());
      auto hdr = signed_header_bytes(bytes_of(raw), f->header.body_len, f->header.signature.size());
      CHECK(verify_header_signature(test_key().public_key(), *sig, hdr));
    }
  }
  // The first release and at least one later one, plus what the current code writes.
  CHECK(releases.contains("edaab0b"));
  CHECK(releases.contains("current"));
  CHECK(releases.size() >= 3);
}

TEST_CASE("every ack any release wrote decodes with the current agent") {
  const auto stored = upgrade_vectors::stored_ack();
  for (const auto& p : vectors("_ack_")) {
    CAPTURE(p.filename().string());
    auto a = decode_ack(slurp(p));
    REQUIRE_MESSAGE(a.has_value(), a.error().message());
    CHECK(a->agent_id == stored.agent_id);
    CHECK(a->store_epoch == stored.store_epoch);
    CHECK(a->batch_id == stored.batch_id);
    CHECK(a->central_instance == "central-1");
    const auto name = p.filename().string();
    if (name.find("_stored") != std::string::npos) {
      CHECK(a->stored);
      CHECK(a->ranges == stored.ranges);
    } else {
      CHECK_FALSE(a->stored);
      const std::map<std::string, std::pair<reject_code, bool>> want = {
          {"quota", {reject_code::quota, true}},
          {"invalid", {reject_code::invalid_frame, false}},
          {"bad_signature", {reject_code::bad_signature, false}},
          {"unapproved", {reject_code::unapproved, true}}};
      auto kind = name.substr(name.find("_ack_") + 5);
      kind = kind.substr(0, kind.size() - 5);  // .json
      REQUIRE(want.contains(kind));
      CHECK(a->code == want.at(kind).first);
      CHECK(a->retry == want.at(kind).second);
    }
  }
}

TEST_CASE("the current code still writes the bytes every release was shown to read (verdicts.txt)") {
  const auto b = upgrade_vectors::canonical_batch();
  {
    frame_encoder enc(codec::none, 3);
    auto f = enc.encode(b);
    REQUIRE(f.has_value());
    CHECK_MESSAGE(std::string(f->begin(), f->end()) == slurp(kDir / "current_frame_none.bin"),
                  "the frame encoding changed: regenerate the vectors (gen_vectors.sh) and check "
                  "verdicts.txt: older centrals must still read what this agent writes");
  }
  {
    frame_encoder enc(codec::zstd, 3);
    auto f = enc.encode(b);
    REQUIRE(f.has_value());
    CHECK(std::string(f->begin(), f->end()) == slurp(kDir / "current_frame_zstd.bin"));
    auto s = enc.encode(b, &test_key());
    REQUIRE(s.has_value());
    CHECK(std::string(s->begin(), s->end()) == slurp(kDir / "current_frame_signed.bin"));
  }
  CHECK(encode_ack(upgrade_vectors::stored_ack()) == slurp(kDir / "current_ack_stored.json"));
  CHECK(encode_ack(upgrade_vectors::rejected_ack(reject_code::quota, true)) ==
        slurp(kDir / "current_ack_quota.json"));
  CHECK(encode_ack(upgrade_vectors::rejected_ack(reject_code::invalid_frame, false)) ==
        slurp(kDir / "current_ack_invalid.json"));
  CHECK(encode_ack(upgrade_vectors::rejected_ack(reject_code::bad_signature, false)) ==
        slurp(kDir / "current_ack_bad_signature.json"));
  CHECK(encode_ack(upgrade_vectors::rejected_ack(reject_code::unapproved, true)) ==
        slurp(kDir / "current_ack_unapproved.json"));

  // verdicts.txt: "<release> <file>: <verdict>" for every release and every current_* vector.
  std::map<std::string, std::map<std::string, std::string>> v;  // release -> file -> verdict
  std::istringstream in(slurp(kDir / "verdicts.txt"));
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    auto sp = line.find(' '), colon = line.find(": ");
    REQUIRE((sp != std::string::npos && colon != std::string::npos));
    v[line.substr(0, sp)][line.substr(sp + 1, colon - sp - 1)] = line.substr(colon + 2);
  }
  REQUIRE(v.contains("edaab0b"));
  const std::string records = "ok records=" + std::to_string(b.records.size()) +
                              " digest=" + upgrade_vectors::digest(b.records);
  for (const auto& [rel, files] : v) {
    CAPTURE(rel);
    // Older centrals read the current agent's frames, signed or not, to the same records (a
    // central before signatures skips the length-prefixed field).
    CHECK(files.at("current_frame_none.bin") == records + " signature_bytes=0");
    CHECK(files.at("current_frame_zstd.bin") == records + " signature_bytes=0");
    CHECK(files.at("current_frame_signed.bin").starts_with(records + " signature_bytes="));
    // Older agents read the current central's acks; codes they do not know become retryable
    // (`internal`), so an older agent keeps its records rather than dropping them.
    CHECK(files.at("current_ack_stored.json").starts_with("ok stored ranges="));
    CHECK(files.at("current_ack_quota.json") == "ok rejected code=quota retry=1 central=central-1");
    CHECK(files.at("current_ack_invalid.json") ==
          "ok rejected code=invalid_frame retry=0 central=central-1");
    const auto& bs = files.at("current_ack_bad_signature.json");
    CHECK((bs == "ok rejected code=bad_signature retry=0 central=central-1" ||
           bs == "ok rejected code=internal retry=1 central=central-1"));
    const auto& un = files.at("current_ack_unapproved.json");
    CHECK((un == "ok rejected code=unapproved retry=1 central=central-1" ||
           un == "ok rejected code=internal retry=1 central=central-1"));
  }
}
