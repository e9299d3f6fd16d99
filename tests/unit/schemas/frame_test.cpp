#include <semilab/schemas/frame.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <openssl/evp.h>
#include <zstd.h>

#include <cstring>
#include <random>

using namespace semilab::schemas;

namespace {

batch sample_batch(std::size_t n = 50) {
  batch b;
  b.agent_id = "lab1-agent-01";
  b.store_epoch = 0xfedcba9876543210ull;  // above 2^63: must survive as u64
  b.batch_id = 7;
  std::uint64_t seq = 100;
  for (std::size_t i = 0; i < n; ++i) {
    record r;
    seq += (i % 10 == 9) ? 5 : 1;  // sparse ranges, as when classes interleave
    r.seq = seq;
    r.cls = static_cast<record_class>(i % 4);
    r.ts_ns = 1'764'250'001'223'431'000 + static_cast<std::int64_t>(i) * 1'000'000 - (i == 3 ? 5'000'000'000 : 0);
    r.instrument = i % 2 ? "smu1" : "lcr2";
    r.channel = "curr";
    r.unit = "A";
    r.quality = i % 7 == 0 ? quality::compliance : 0;
    switch (i % 4) {
      case 0: r.val = decimal{1234567, -9}; break;
      case 1: r.val = static_cast<std::int64_t>(-(1ll << 60) + static_cast<long long>(i)); break;
      case 2: r.val = 3.14159 * static_cast<double>(i); break;
      default: r.val = std::string("text value ") + std::to_string(i);
    }
    if (i % 5 == 0) r.run_id = "run-42";
    b.records.push_back(r);
  }
  return b;
}

// Rewrites a header field and recomputes the checksum, so only that field is wrong.
void patch_u32_and_resum(std::vector<std::uint8_t>& f, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) f[at + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (8 * i));
  std::uint32_t header_len = 0, body_len = 0;
  std::memcpy(&header_len, f.data() + 8, 4);
  std::memcpy(&body_len, f.data() + 40, 4);
  unsigned int n = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, f.data(), header_len - 32);
  EVP_DigestUpdate(ctx, f.data() + header_len, body_len);
  EVP_DigestFinal_ex(ctx, f.data() + header_len - 32, &n);
  EVP_MD_CTX_free(ctx);
}

}  // namespace

TEST_CASE("frame round trip keeps every field, both codecs") {
  for (auto c : {codec::zstd, codec::none}) {
    frame_encoder enc(c);
    frame_decoder dec;
    auto b = sample_batch();
    auto f = enc.encode(b);
    REQUIRE(f.has_value());
    auto d = dec.decode(*f);
    REQUIRE_MESSAGE(d.has_value(), d.error().message());
    CHECK(d->header.agent_id == b.agent_id);
    CHECK(d->header.store_epoch == b.store_epoch);
    CHECK(d->header.batch_id == 7);
    CHECK(d->header.record_count == b.records.size());
    CHECK(d->header.signature.empty());
    CHECK(d->header.ranges.size() > 1);
    REQUIRE(d->records.size() == b.records.size());
    for (std::size_t i = 0; i < b.records.size(); ++i) CHECK(d->records[i] == b.records[i]);
  }
}

TEST_CASE("ranges_of collapses runs") {
  std::vector<std::uint64_t> s{1, 2, 3, 7, 9, 10};
  auto r = ranges_of(s);
  REQUIRE(r.size() == 3);
  CHECK(r[0] == seq_range{1, 3});
  CHECK(r[1] == seq_range{7, 7});
  CHECK(r[2] == seq_range{9, 10});
}

TEST_CASE("encoder refuses bad batches") {
  frame_encoder enc;
  auto b = sample_batch(3);
  b.agent_id = "bad/id";
  CHECK(enc.encode(b).error() == errc::bad_id);
  b = sample_batch(3);
  std::swap(b.records[0], b.records[1]);
  CHECK(enc.encode(b).error() == errc::bad_header);
  b.records.clear();
  CHECK(enc.encode(b).error() == errc::bad_header);
}

TEST_CASE("every truncation is a typed error") {
  frame_encoder enc;
  frame_decoder dec;
  auto f = *enc.encode(sample_batch(20));
  for (std::size_t n = 0; n < f.size(); ++n) {
    auto d = dec.decode(std::span(f.data(), n));
    REQUIRE_FALSE(d.has_value());
    CHECK((d.error() == errc::truncated || d.error() == errc::checksum_mismatch ||
           d.error() == errc::bad_header));
  }
}

TEST_CASE("wrong magic, unknown version, trailing bytes") {
  frame_encoder enc;
  frame_decoder dec;
  auto f = *enc.encode(sample_batch(5));
  auto g = f;
  g[0] = 'X';
  CHECK(dec.decode(g).error() == errc::bad_magic);
  g = f;
  g[4] = 2;
  CHECK(dec.decode(g).error() == errc::unsupported_version);
  g = f;
  g.push_back(0);
  CHECK(dec.decode(g).error() == errc::trailing_bytes);
}

TEST_CASE("declared sizes over the limits are refused before allocation") {
  frame_encoder enc;
  auto f = *enc.encode(sample_batch(50));
  SUBCASE("whole frame") {
    frame_decoder dec(frame_limits{.max_frame_bytes = f.size() - 1});
    CHECK(dec.decode(f).error() == errc::frame_too_large);
  }
  SUBCASE("declared body length") {
    auto g = f;
    patch_u32_and_resum(g, 36, 0xffffffffu);  // uncompressed_len = 4 GiB
    frame_decoder dec;
    CHECK(dec.decode(g).error() == errc::body_too_large);
  }
  SUBCASE("declared record count") {
    auto g = f;
    patch_u32_and_resum(g, 32, 2'000'000u);
    frame_decoder dec;
    CHECK(dec.decode(g).error() == errc::too_many_records);
  }
  SUBCASE("body length beyond the buffer") {
    auto g = f;
    std::uint32_t huge = 1u << 30;
    std::memcpy(g.data() + 40, &huge, 4);  // no checksum needed: the length is checked first
    frame_decoder dec;
    CHECK(dec.decode(g).error() == errc::truncated);
  }
}

TEST_CASE("decompressed size different from the declared one") {
  frame_encoder enc;
  frame_decoder dec;
  auto f = *enc.encode(sample_batch(50));
  std::uint32_t declared = 0;
  std::memcpy(&declared, f.data() + 36, 4);
  for (std::uint32_t wrong : {declared - 1, declared + 1, declared / 2}) {
    auto g = f;
    patch_u32_and_resum(g, 36, wrong);
    CHECK(dec.decode(g).error() == errc::decompressed_size_mismatch);
  }
  // A zstd frame without its content size, declared too small: caught while decompressing.
  // (Built by hand: the body is replaced by a streaming-compressed frame.)
  auto b = sample_batch(50);
  frame_encoder raw(codec::none);
  auto plain = *raw.encode(b);
  std::uint32_t header_len = 0, body_len = 0;
  std::memcpy(&header_len, plain.data() + 8, 4);
  std::memcpy(&body_len, plain.data() + 40, 4);
  std::vector<std::uint8_t> body(plain.begin() + header_len, plain.begin() + header_len + body_len);
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
  std::vector<std::uint8_t> z(ZSTD_compressBound(body.size()));
  ZSTD_outBuffer out{z.data(), z.size(), 0};
  ZSTD_inBuffer in{body.data(), body.size(), 0};
  REQUIRE(ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end) == 0);
  ZSTD_freeCCtx(cctx);
  z.resize(out.pos);
  std::vector<std::uint8_t> g(plain.begin(), plain.begin() + header_len);
  g.insert(g.end(), z.begin(), z.end());
  g.push_back(0);
  g.push_back(0);
  g[6] = static_cast<std::uint8_t>(codec::zstd);
  patch_u32_and_resum(g, 40, static_cast<std::uint32_t>(z.size()));
  REQUIRE(dec.decode(g).has_value());  // consistent: accepted
  patch_u32_and_resum(g, 36, body_len - 10);
  CHECK(dec.decode(g).error() == errc::decompressed_size_mismatch);
}

TEST_CASE("checksum mismatch on any flipped byte of header or body") {
  frame_encoder enc;
  frame_decoder dec;
  auto f = *enc.encode(sample_batch(30));
  std::uint32_t header_len = 0;
  std::memcpy(&header_len, f.data() + 8, 4);
  int mismatches = 0;
  // Epoch, batch id, body start and body end: only the checksum can tell.
  for (std::size_t at : {std::size_t{16}, std::size_t{25}, std::size_t{header_len + 5}, f.size() - 4}) {
    auto g = f;
    g[at] ^= 0x01;
    auto d = dec.decode(g);
    REQUIRE_FALSE(d.has_value());
    mismatches += d.error() == errc::checksum_mismatch;
  }
  CHECK(mismatches == 4);
  auto g = f;
  g[header_len - 33] ^= 0x01;  // last byte of the last range: caught by structure or checksum
  CHECK_FALSE(dec.decode(g).has_value());
}

TEST_CASE("random garbage never crashes the decoder") {
  std::mt19937_64 rng(1);
  frame_encoder enc;
  frame_decoder dec;
  auto f = *enc.encode(sample_batch(20));
  for (int i = 0; i < 2000; ++i) {
    auto g = f;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) g[rng() % g.size()] = static_cast<std::uint8_t>(rng());
    auto d = dec.decode(g);
    if (d) CHECK(d->records.size() == d->header.record_count);
  }
}

// ---------------------------------------------------------------------------------------------
// Dictionaries (WIRE.md "Dictionaries") and old frames.

namespace {

std::vector<std::uint8_t> from_hex(std::string_view h) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2)
    out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
  return out;
}

// Telemetry as an agent produces it: a few channels polled at 10 Hz, drifting decimals.
std::vector<record> telemetry(std::size_t n, std::uint64_t first_seq = 1) {
  std::vector<record> out;
  std::mt19937_64 rng(11);
  const char* ch[] = {"curr", "volt", "temp", "res"};
  const char* unit[] = {"A", "V", "K", "Ohm"};
  for (std::size_t i = 0; i < n; ++i) {
    record r;
    r.seq = first_seq + i;
    r.ts_ns = 1'764'250'001'223'431'000 + static_cast<std::int64_t>(i) * 25'000'000 +
              static_cast<std::int64_t>(rng() % 1'000'000);
    r.instrument = i % 8 < 4 ? "smu1" : "dmm2";
    r.channel = ch[i % 4];
    r.unit = unit[i % 4];
    r.val = decimal{static_cast<std::int64_t>(1'234'500 + (i % 4) * 1'000'000 + rng() % 300), -9};
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace

// Written by the version-1 encoder before dictionaries existed (codec none, then zstd): every
// later reader must decode them to the same records.
TEST_CASE("golden version-1 frames without a dictionary stay readable") {
  const auto none = from_hex("534c4246010000007c000000000000001032547698badcfe07000000000000000600000080000000800000000d6c6162312d6167656e742d30310200640000000000000067000000000000006b000000000000006c000000000000005d3d68c285e299f5d8e9ddb11a04210dcecd79cd960d4146e9e143633b3d88c10604736d75310463757272014104766f6c7401560672756e2d3432060a64b0cdbd9eeb81f0fb3000010288d99601f706018084af5f000304ffffffffffffffff1f42018084af5f000102019a9999999999b93f2e018084af5f00030405026f6b0a048084af5f00010288d99601f704018084af5f000304ffffffffffffffff1f0000");
  const auto zstd = from_hex("534c4246010001007c000000000000001032547698badcfe07000000000000000600000080000000680000000d6c6162312d6167656e742d30310200640000000000000067000000000000006b000000000000006c000000000000008bfd7aa362b61b585013123c96493ca20d5df0326f0070afa050638c816babdd28b52ffd2080fd0200a4040604736d75310463757272014104766f6c7401560672756e2d3432060a64b0cdbd9eeb81f0fb3000010288d99601f706018084af5f000304ff1f420102019a99b93f2e05026f6b0a040407003045080e5025ca51347041d71c383300050000");
  frame_decoder d;
  auto a = d.decode(none);
  auto b = d.decode(zstd);
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  CHECK(a->header.version == 1);
  CHECK(a->header.dict_id == 0);
  CHECK(b->header.body_codec == codec::zstd);
  CHECK(a->records == b->records);
  REQUIRE(a->records.size() == 6);
  CHECK(a->header.agent_id == "lab1-agent-01");
  CHECK(a->header.store_epoch == 0xfedcba9876543210ull);
  CHECK(a->header.ranges == std::vector<seq_range>{{100, 103}, {107, 108}});
  CHECK(std::get<decimal>(a->records[0].val) == decimal{1234500, -9});
  CHECK(std::get<std::int64_t>(a->records[1].val) == -(1ll << 60));
  CHECK(a->records[2].quality == quality::compliance);
  CHECK(std::get<double>(a->records[2].val) == 0.1);
  CHECK(a->records[3].run_id == "run-42");
  CHECK(std::get<std::string>(a->records[3].val) == "ok");
  CHECK(a->records[5].cls == record_class::event);
  CHECK(a->records[5].seq == 108);
}

TEST_CASE("a trained dictionary: frames carry its id and decode once it is added") {
  auto train = telemetry(4000);
  auto dict = train_dictionary(train, 16, 8192);
  REQUIRE(dict.has_value());
  CHECK(dict->id != 0);
  CHECK(dict->bytes.size() <= 8192);

  batch b;
  b.agent_id = "lab1-agent-01";
  b.store_epoch = 5;
  b.batch_id = 1;
  b.records = telemetry(10, 9000);
  frame_encoder plain;
  frame_encoder with;
  with.set_dictionary(std::make_shared<zstd_dictionary>(*dict));
  CHECK(with.dictionary_id() == dict->id);
  auto f0 = plain.encode(b);
  auto f1 = with.encode(b);
  REQUIRE(f0.has_value());
  REQUIRE(f1.has_value());
  CHECK(f1->size() < f0->size());  // small batches are where a dictionary pays

  frame_decoder d;
  auto h = d.decode_header(*f1);
  REQUIRE(h.has_value());
  CHECK(h->dict_id == dict->id);
  auto miss = d.decode(*f1);
  REQUIRE(!miss.has_value());
  CHECK(miss.error() == errc::unknown_dictionary);
  // Another agent's dictionary with the same id does not count.
  REQUIRE(!d.add_dictionary("other-agent", *dict));
  CHECK(!d.decode(*f1).has_value());
  REQUIRE(!d.add_dictionary("lab1-agent-01", *dict));
  CHECK(d.has_dictionary("lab1-agent-01", dict->id));
  auto ok = d.decode(*f1);
  REQUIRE(ok.has_value());
  CHECK(ok->records == b.records);
  // Frames without a dictionary still decode with the same decoder.
  auto ok0 = d.decode(*f0);
  REQUIRE(ok0.has_value());
  CHECK(ok0->records == b.records);
  // Dropping the dictionary goes back to plain frames.
  with.set_dictionary(nullptr);
  auto f2 = with.encode(b);
  REQUIRE(f2.has_value());
  CHECK(*f2 == *f0);
}

TEST_CASE("dictionaries that are not zstd dictionaries or lie about their id are refused") {
  std::vector<std::uint8_t> junk(2000, 7);
  CHECK(make_dictionary(junk).error() == errc::bad_dictionary);
  auto dict = train_dictionary(telemetry(2000), 16, 4096);
  REQUIRE(dict.has_value());
  auto again = make_dictionary(dict->bytes);
  REQUIRE(again.has_value());
  CHECK(again->id == dict->id);
  frame_decoder d;
  auto liar = *dict;
  liar.id ^= 1;
  CHECK(d.add_dictionary("lab1-agent-01", liar) == errc::bad_dictionary);
  CHECK(d.add_dictionary("bad id!", *dict) == errc::bad_id);
  CHECK(!train_dictionary(telemetry(20), 16, 4096).has_value());  // too few samples
  // A dictionary id on an uncompressed frame is a malformed header.
  frame_encoder raw(codec::none);
  batch b{"lab1-agent-01", 1, 1, telemetry(4)};
  auto f = raw.encode(b);
  REQUIRE(f.has_value());
  patch_u32_and_resum(*f, 12, dict->id);
  CHECK(d.decode(*f).error() == errc::bad_header);
}

TEST_CASE("dictionary request JSON round trip; other commands are not dictionary requests") {
  auto j = encode_dictionary_request({"lab1-agent-01", 4000000000u});
  auto r = decode_dictionary_request(j);
  REQUIRE(r.has_value());
  CHECK(r->agent_id == "lab1-agent-01");
  CHECK(r->dict_id == 4000000000u);
  CHECK(!decode_dictionary_request(R"({"v":1,"cmd":"replay","agent":"a","id":"1"})").has_value());
  CHECK(!decode_dictionary_request(R"({"v":1,"cmd":"dictionary","agent":"a","id":"0"})").has_value());
  CHECK(!decode_dictionary_request(R"({"v":1,"cmd":"dictionary","agent":"a","id":"4294967296"})").has_value());
  CHECK(!decode_dictionary_request(R"({"v":2,"cmd":"dictionary","agent":"a","id":"1"})").has_value());
  CHECK(!decode_dictionary_request("not json").has_value());
}
