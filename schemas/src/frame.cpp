#include <semilab/schemas/frame.hpp>
#include <semilab/schemas/signing.hpp>
#include <semilab/schemas/topics.hpp>

#include <openssl/evp.h>
#include <boost/json.hpp>
#include <zdict.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <deque>
#include <map>
#include <unordered_map>

#include "bytes.hpp"

namespace semilab::schemas {
namespace {

constexpr std::uint8_t kMagic[4] = {'S', 'L', 'B', 'F'};
constexpr std::size_t kFixedHeader = 44;  // magic .. body_len, before the agent id
constexpr std::size_t kChecksumBytes = 32;

// Record header byte: bits 0-1 class, 2-4 value kind, 5 has run id, 6 has quality, 7 reserved.
enum value_kind : std::uint8_t { vk_f64 = 0, vk_i64 = 1, vk_decimal = 2, vk_text = 3 };

sha256_digest sha256(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
  sha256_digest d{};
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned int n = 0;
  if (ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 &&
      EVP_DigestUpdate(ctx, a.data(), a.size()) == 1 &&
      EVP_DigestUpdate(ctx, b.data(), b.size()) == 1)
    EVP_DigestFinal_ex(ctx, d.data(), &n);
  EVP_MD_CTX_free(ctx);
  return d;
}

void encode_body(const batch& b, std::vector<std::uint8_t>& out) {
  detail::writer w(out);
  // String table: instrument, channel, unit and run ids, each once per batch.
  std::unordered_map<std::string_view, std::uint64_t> index;
  std::vector<std::string_view> strings;
  auto intern = [&](std::string_view s) {
    auto [it, added] = index.try_emplace(s, strings.size());
    if (added) strings.push_back(s);
    return it->second;
  };
  std::vector<std::uint64_t> refs;
  refs.reserve(b.records.size() * 4);
  for (const auto& r : b.records) {
    refs.push_back(intern(r.instrument));
    refs.push_back(intern(r.channel));
    refs.push_back(intern(r.unit));
    refs.push_back(r.run_id.empty() ? 0 : intern(r.run_id));
  }
  w.varint(strings.size());
  for (auto s : strings) {
    w.varint(s.size());
    w.bytes(s);
  }
  w.varint(b.records.size());
  std::uint64_t prev_seq = 0;
  std::int64_t prev_ts = 0;
  std::size_t ri = 0;
  for (const auto& r : b.records) {
    std::uint8_t kind = static_cast<std::uint8_t>(r.val.index());
    std::uint8_t h = static_cast<std::uint8_t>(static_cast<std::uint8_t>(r.cls) & 3u);
    h = static_cast<std::uint8_t>(h | (kind << 2));
    if (!r.run_id.empty()) h |= 1u << 5;
    if (r.quality != 0) h |= 1u << 6;
    w.u8(h);
    w.varint(r.seq - prev_seq);
    w.zigzag(static_cast<std::int64_t>(static_cast<std::uint64_t>(r.ts_ns) - static_cast<std::uint64_t>(prev_ts)));
    prev_seq = r.seq;
    prev_ts = r.ts_ns;
    w.varint(refs[ri]);
    w.varint(refs[ri + 1]);
    w.varint(refs[ri + 2]);
    if (r.quality != 0) w.varint(r.quality);
    if (!r.run_id.empty()) w.varint(refs[ri + 3]);
    ri += 4;
    switch (kind) {
      case vk_f64: w.f64(std::get<double>(r.val)); break;
      case vk_i64: w.zigzag(std::get<std::int64_t>(r.val)); break;
      case vk_decimal: {
        const auto& d = std::get<decimal>(r.val);
        w.zigzag(d.mantissa);
        w.u8(static_cast<std::uint8_t>(d.exponent));
        break;
      }
      default: {
        const auto& s = std::get<std::string>(r.val);
        w.varint(s.size());
        w.bytes(s);
      }
    }
  }
}

boost::system::error_code decode_body(std::span<const std::uint8_t> body, const frame_header& h,
                                      std::vector<record>& out) {
  detail::reader rd(body);
  const auto bad = make_error_code(errc::bad_body);
  std::uint64_t nstrings = rd.varint();
  // Each string costs at least one length byte; a larger count is a lie about the body.
  if (!rd.ok() || nstrings > rd.remaining()) return bad;
  std::vector<std::string_view> strings;
  strings.reserve(static_cast<std::size_t>(nstrings));
  for (std::uint64_t i = 0; i < nstrings; ++i) {
    std::uint64_t len = rd.varint();
    if (!rd.ok() || len > rd.remaining()) return bad;
    strings.push_back(rd.str(static_cast<std::size_t>(len)));
  }
  std::uint64_t n = rd.varint();
  if (!rd.ok()) return bad;
  if (n != h.record_count) return make_error_code(errc::record_count_mismatch);
  // The smallest record is 7 bytes: refuse counts the remaining body cannot hold before reserving.
  if (n > rd.remaining() / 7 + 1) return make_error_code(errc::record_count_mismatch);
  out.clear();
  out.reserve(static_cast<std::size_t>(n));
  std::uint64_t prev_seq = 0;
  std::int64_t prev_ts = 0;
  std::size_t range = 0;
  auto str_at = [&](std::uint64_t i, bool& ok) -> std::string_view {
    if (i >= strings.size()) {
      ok = false;
      return {};
    }
    return strings[static_cast<std::size_t>(i)];
  };
  for (std::uint64_t i = 0; i < n; ++i) {
    record r;
    std::uint8_t hb = rd.u8();
    if (hb & 0x80u) return bad;
    r.cls = static_cast<record_class>(hb & 3u);
    std::uint8_t kind = static_cast<std::uint8_t>((hb >> 2) & 7u);
    if (kind > vk_text) return bad;
    std::uint64_t delta = rd.varint();
    if (delta == 0 || prev_seq + delta < prev_seq) return bad;  // strictly increasing, no wrap
    r.seq = prev_seq + delta;
    r.ts_ns = static_cast<std::int64_t>(static_cast<std::uint64_t>(prev_ts) +
                                        static_cast<std::uint64_t>(rd.zigzag()));
    prev_seq = r.seq;
    prev_ts = r.ts_ns;
    bool ok = true;
    r.instrument = str_at(rd.varint(), ok);
    r.channel = str_at(rd.varint(), ok);
    r.unit = str_at(rd.varint(), ok);
    if (hb & (1u << 6)) {
      std::uint64_t q = rd.varint();
      if (q > 0xffffffffu) return bad;
      r.quality = static_cast<std::uint32_t>(q);
    }
    if (hb & (1u << 5)) r.run_id = str_at(rd.varint(), ok);
    switch (kind) {
      case vk_f64: r.val = rd.f64(); break;
      case vk_i64: r.val = rd.zigzag(); break;
      case vk_decimal: {
        decimal d;
        d.mantissa = rd.zigzag();
        d.exponent = static_cast<std::int8_t>(rd.u8());
        r.val = d;
        break;
      }
      default: {
        std::uint64_t len = rd.varint();
        if (len > kMaxTextBytes || len > rd.remaining()) return make_error_code(errc::bad_value);
        r.val = std::string(rd.str(static_cast<std::size_t>(len)));
      }
    }
    if (!rd.ok() || !ok) return bad;
    // Every record must fall inside the declared ranges (which are sorted and disjoint).
    while (range < h.ranges.size() && r.seq > h.ranges[range].last) ++range;
    if (range == h.ranges.size() || r.seq < h.ranges[range].first)
      return make_error_code(errc::record_count_mismatch);
    out.push_back(std::move(r));
  }
  if (rd.remaining() != 0) return bad;
  return {};
}

}  // namespace

std::vector<seq_range> ranges_of(std::span<const std::uint64_t> seqs) {
  std::vector<seq_range> out;
  for (auto s : seqs) {
    if (!out.empty() && out.back().last + 1 == s)
      out.back().last = s;
    else
      out.push_back({s, s});
  }
  return out;
}

std::string to_hex(std::span<const std::uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 2);
  for (auto b : bytes) {
    s += kDigits[b >> 4];
    s += kDigits[b & 15];
  }
  return s;
}

std::string encode_dictionary_request(const dictionary_request& r) {
  boost::json::object o;
  o["v"] = 1;
  o["cmd"] = "dictionary";
  o["agent"] = r.agent_id;
  o["id"] = std::to_string(r.dict_id);
  return boost::json::serialize(o);
}

result<dictionary_request> decode_dictionary_request(std::string_view json) {
  const auto bad = make_error_code(errc::bad_json);
  if (json.size() > 1024) return bad;
  boost::system::error_code ec;
  auto v = boost::json::parse(json, ec);
  if (ec || !v.is_object()) return bad;
  const auto& o = v.get_object();
  auto* ver = o.if_contains("v");
  auto* cmd = o.if_contains("cmd");
  auto* agent = o.if_contains("agent");
  auto* id = o.if_contains("id");
  if (!ver || !ver->is_int64() || ver->get_int64() != 1 || !cmd || !cmd->is_string() ||
      cmd->get_string() != "dictionary" || !agent || !agent->is_string() || !id || !id->is_string())
    return bad;
  dictionary_request r;
  r.agent_id = std::string(agent->get_string());
  if (!valid_id(r.agent_id)) return make_error_code(errc::bad_id);
  std::string_view s = id->get_string();
  std::uint64_t n = 0;
  if (s.empty() || s.size() > 10) return bad;
  for (char c : s) {
    if (c < '0' || c > '9') return bad;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (n == 0 || n > 0xffffffffu) return bad;
  r.dict_id = static_cast<std::uint32_t>(n);
  return r;
}

result<zstd_dictionary> make_dictionary(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < 8 || bytes.size() > kMaxDictionaryBytes) return make_error_code(errc::bad_dictionary);
  // A trained dictionary starts with the zstd dictionary magic and carries a non-zero id; raw
  // content dictionaries (id 0) cannot be named in a frame.
  unsigned id = ZDICT_getDictID(bytes.data(), bytes.size());
  if (id == 0) return make_error_code(errc::bad_dictionary);
  ZSTD_DDict* probe = ZSTD_createDDict(bytes.data(), bytes.size());
  if (!probe) return make_error_code(errc::bad_dictionary);
  ZSTD_freeDDict(probe);
  return zstd_dictionary{id, std::vector<std::uint8_t>(bytes.begin(), bytes.end())};
}

result<zstd_dictionary> train_dictionary(std::span<const record> records,
                                         std::size_t records_per_sample, std::size_t dict_bytes) {
  if (records_per_sample == 0 || dict_bytes < 1024 || dict_bytes > kMaxDictionaryBytes)
    return make_error_code(errc::bad_dictionary);
  std::vector<std::uint8_t> samples;
  std::vector<std::size_t> sizes;
  std::vector<std::uint8_t> body;
  for (std::size_t i = 0; i < records.size(); i += records_per_sample) {
    batch b;
    auto end = std::min(records.size(), i + records_per_sample);
    b.records.assign(records.begin() + static_cast<std::ptrdiff_t>(i),
                     records.begin() + static_cast<std::ptrdiff_t>(end));
    // Seq and time as the batch would carry them: relative to the batch's first record is what
    // varies; the absolute first values are left as they are (they repeat across samples).
    body.clear();
    encode_body(b, body);
    samples.insert(samples.end(), body.begin(), body.end());
    sizes.push_back(body.size());
  }
  // zstd needs a handful of samples and more sample bytes than dictionary bytes to do better
  // than nothing.
  if (sizes.size() < 8) return make_error_code(errc::bad_dictionary);
  std::vector<std::uint8_t> dict(dict_bytes);
  std::size_t n = ZDICT_trainFromBuffer(dict.data(), dict.size(), samples.data(), sizes.data(),
                                        static_cast<unsigned>(sizes.size()));
  if (ZDICT_isError(n)) return make_error_code(errc::bad_dictionary);
  dict.resize(n);
  return make_dictionary(dict);
}

// ---------------------------------------------------------------------------
struct frame_encoder::impl {
  codec c;
  int level;
  ZSTD_CCtx* cctx = nullptr;
  ZSTD_CDict* cdict = nullptr;
  std::uint32_t dict_id = 0;
  std::vector<std::uint8_t> body;
  ~impl() {
    ZSTD_freeCDict(cdict);
    ZSTD_freeCCtx(cctx);
  }
};

frame_encoder::frame_encoder(codec c, int level) : impl_(std::make_unique<impl>()) {
  impl_->c = c;
  impl_->level = level;
  if (c == codec::zstd) impl_->cctx = ZSTD_createCCtx();
}
frame_encoder::~frame_encoder() = default;

void frame_encoder::set_dictionary(std::shared_ptr<const zstd_dictionary> dict) {
  ZSTD_freeCDict(impl_->cdict);
  impl_->cdict = nullptr;
  impl_->dict_id = 0;
  if (impl_->cctx) ZSTD_CCtx_reset(impl_->cctx, ZSTD_reset_session_and_parameters);
  if (!dict || impl_->c != codec::zstd || dict->id == 0) return;
  impl_->cdict = ZSTD_createCDict(dict->bytes.data(), dict->bytes.size(), impl_->level);
  if (impl_->cdict) impl_->dict_id = dict->id;
}

std::uint32_t frame_encoder::dictionary_id() const noexcept { return impl_->dict_id; }

result<std::vector<std::uint8_t>> frame_encoder::encode(const batch& b, const signing_key* signer) {
  if (!valid_id(b.agent_id)) return make_error_code(errc::bad_id);
  if (b.records.empty() || b.records.size() > 0xffffffffu) return make_error_code(errc::bad_header);
  std::vector<std::uint64_t> seqs;
  seqs.reserve(b.records.size());
  for (const auto& r : b.records) {
    if ((!seqs.empty() && r.seq <= seqs.back()) || r.seq == 0) return make_error_code(errc::bad_header);
    if (auto* t = std::get_if<std::string>(&r.val); t && t->size() > kMaxTextBytes)
      return make_error_code(errc::bad_value);
    seqs.push_back(r.seq);
  }
  auto ranges = ranges_of(seqs);
  if (ranges.size() > 0xffffu) return make_error_code(errc::bad_header);

  impl_->body.clear();
  encode_body(b, impl_->body);
  if (impl_->body.size() > 0xffffffffu) return make_error_code(errc::body_too_large);

  std::vector<std::uint8_t> out;
  std::size_t bound = impl_->c == codec::zstd ? ZSTD_compressBound(impl_->body.size()) : impl_->body.size();
  out.reserve(kFixedHeader + b.agent_id.size() + 3 + ranges.size() * 16 + kChecksumBytes + bound + 2);
  detail::writer w(out);
  w.bytes(std::span<const std::uint8_t>(kMagic));
  w.u16(kFrameVersion);
  w.u8(static_cast<std::uint8_t>(impl_->c));
  w.u8(0);  // flags
  std::size_t header_len_at = w.size();
  w.u32(0);  // header_len, patched below
  w.u32(impl_->c == codec::zstd ? impl_->dict_id : 0);
  w.u64(b.store_epoch);
  w.u64(b.batch_id);
  w.u32(static_cast<std::uint32_t>(b.records.size()));
  w.u32(static_cast<std::uint32_t>(impl_->body.size()));
  std::size_t body_len_at = w.size();
  w.u32(0);  // body_len, patched below
  w.u8(static_cast<std::uint8_t>(b.agent_id.size()));
  w.bytes(b.agent_id);
  w.u16(static_cast<std::uint16_t>(ranges.size()));
  for (auto& r : ranges) {
    w.u64(r.first);
    w.u64(r.last);
  }
  std::size_t checksum_at = w.size();
  w.patch_u32(header_len_at, static_cast<std::uint32_t>(checksum_at + kChecksumBytes));
  out.resize(checksum_at + kChecksumBytes);
  std::size_t body_at = out.size();
  if (impl_->c == codec::zstd) {
    out.resize(body_at + bound);
    std::size_t n = 0;
    if (impl_->cdict) {
      // The frame header names the dictionary: zstd's own 4-byte copy of the id is left out.
      ZSTD_CCtx_reset(impl_->cctx, ZSTD_reset_session_and_parameters);
      ZSTD_CCtx_setParameter(impl_->cctx, ZSTD_c_dictIDFlag, 0);
      ZSTD_CCtx_refCDict(impl_->cctx, impl_->cdict);
      n = ZSTD_compress2(impl_->cctx, out.data() + body_at, bound, impl_->body.data(),
                         impl_->body.size());
    } else {
      n = ZSTD_compressCCtx(impl_->cctx, out.data() + body_at, bound, impl_->body.data(),
                            impl_->body.size(), impl_->level);
    }
    if (ZSTD_isError(n)) return make_error_code(errc::decompress_failed);
    out.resize(body_at + n);
  } else {
    out.insert(out.end(), impl_->body.begin(), impl_->body.end());
  }
  std::size_t body_len = out.size() - body_at;
  w.patch_u32(body_len_at, static_cast<std::uint32_t>(body_len));
  auto digest = sha256(std::span(out.data(), checksum_at), std::span(out.data() + body_at, body_len));
  std::copy(digest.begin(), digest.end(), out.begin() + static_cast<std::ptrdiff_t>(checksum_at));
  if (!signer) {
    w.u16(0);  // no signature
    return out;
  }
  auto field = signer->sign_header(std::span<const std::uint8_t>(out.data(), checksum_at + kChecksumBytes));
  if (field.empty() || field.size() > 0xffffu) return make_error_code(errc::bad_value);
  w.u16(static_cast<std::uint16_t>(field.size()));
  w.bytes(std::span<const std::uint8_t>(field));
  return out;
}

// ---------------------------------------------------------------------------
struct frame_decoder::impl {
  frame_limits limits;
  ZSTD_DCtx* dctx = nullptr;
  std::vector<std::uint8_t> body;
  struct ddict_free {
    void operator()(ZSTD_DDict* d) const noexcept { ZSTD_freeDDict(d); }
  };
  using key = std::pair<std::string, std::uint32_t>;
  std::map<key, std::unique_ptr<ZSTD_DDict, ddict_free>, std::less<>> dicts;
  std::deque<key> added;  // oldest first, for the bound
  ~impl() { ZSTD_freeDCtx(dctx); }
};

frame_decoder::frame_decoder(frame_limits limits) : impl_(std::make_unique<impl>()) {
  impl_->limits = limits;
  impl_->dctx = ZSTD_createDCtx();
}
frame_decoder::~frame_decoder() = default;

boost::system::error_code frame_decoder::add_dictionary(std::string_view agent_id,
                                                        const zstd_dictionary& d) {
  if (!valid_id(agent_id)) return make_error_code(errc::bad_id);
  if (d.id == 0 || d.bytes.size() > kMaxDictionaryBytes ||
      ZDICT_getDictID(d.bytes.data(), d.bytes.size()) != d.id)
    return make_error_code(errc::bad_dictionary);
  impl::key k{std::string(agent_id), d.id};
  if (impl_->dicts.contains(k)) return {};
  std::unique_ptr<ZSTD_DDict, impl::ddict_free> dd(ZSTD_createDDict(d.bytes.data(), d.bytes.size()));
  if (!dd) return make_error_code(errc::bad_dictionary);
  while (impl_->dicts.size() >= kMaxDecoderDictionaries && !impl_->added.empty()) {
    impl_->dicts.erase(impl_->added.front());
    impl_->added.pop_front();
  }
  impl_->dicts.emplace(k, std::move(dd));
  impl_->added.push_back(std::move(k));
  return {};
}

bool frame_decoder::has_dictionary(std::string_view agent_id, std::uint32_t id) const {
  return impl_->dicts.contains(impl::key{std::string(agent_id), id});
}

result<frame_header> frame_decoder::decode_header(std::span<const std::uint8_t> in) const {
  const auto& lim = impl_->limits;
  if (in.size() > lim.max_frame_bytes) return make_error_code(errc::frame_too_large);
  if (in.size() < 4) return make_error_code(errc::truncated);
  if (!std::equal(kMagic, kMagic + 4, in.begin())) return make_error_code(errc::bad_magic);
  detail::reader rd(in);
  rd.bytes(4);
  frame_header h;
  h.version = rd.u16();
  if (!rd.ok()) return make_error_code(errc::truncated);
  if (h.version != kFrameVersion) return make_error_code(errc::unsupported_version);
  std::uint8_t c = rd.u8();
  std::uint8_t flags = rd.u8();
  std::uint32_t header_len = rd.u32();
  h.dict_id = rd.u32();
  h.store_epoch = rd.u64();
  h.batch_id = rd.u64();
  h.record_count = rd.u32();
  h.uncompressed_len = rd.u32();
  h.body_len = rd.u32();
  std::uint8_t agent_len = rd.u8();
  if (!rd.ok()) return make_error_code(errc::truncated);
  if (c > static_cast<std::uint8_t>(codec::zstd)) return make_error_code(errc::unknown_codec);
  h.body_codec = static_cast<codec>(c);
  // A dictionary only means something to zstd.
  if (h.dict_id != 0 && h.body_codec != codec::zstd) return make_error_code(errc::bad_header);
  if (flags != 0) return make_error_code(errc::bad_header);
  if (h.record_count > lim.max_records) return make_error_code(errc::too_many_records);
  if (h.uncompressed_len > lim.max_body_bytes) return make_error_code(errc::body_too_large);
  if (h.record_count == 0) return make_error_code(errc::bad_header);
  if (agent_len == 0 || agent_len > kMaxIdBytes) return make_error_code(errc::bad_id);
  h.agent_id = std::string(rd.str(agent_len));
  std::uint16_t nranges = rd.u16();
  if (!rd.ok()) return make_error_code(errc::truncated);
  if (!valid_id(h.agent_id)) return make_error_code(errc::bad_id);
  if (nranges == 0 || nranges > lim.max_ranges) return make_error_code(errc::bad_header);
  if (rd.remaining() < std::size_t{nranges} * 16) return make_error_code(errc::truncated);
  h.ranges.reserve(nranges);
  std::uint64_t total = 0;
  for (std::uint16_t i = 0; i < nranges; ++i) {
    seq_range r{rd.u64(), rd.u64()};
    if (r.first == 0 || r.first > r.last) return make_error_code(errc::bad_header);
    if (!h.ranges.empty() && r.first <= h.ranges.back().last) return make_error_code(errc::bad_header);
    total += r.count();
    if (total > h.record_count || r.count() > h.record_count)
      return make_error_code(errc::record_count_mismatch);
    h.ranges.push_back(r);
  }
  if (total != h.record_count) return make_error_code(errc::record_count_mismatch);
  if (rd.pos() + kChecksumBytes != header_len) return make_error_code(errc::bad_header);
  auto sum = rd.bytes(kChecksumBytes);
  if (!rd.ok()) return make_error_code(errc::truncated);
  std::copy(sum.begin(), sum.end(), h.checksum.begin());
  if (rd.remaining() < h.body_len) return make_error_code(errc::truncated);
  auto body = rd.bytes(h.body_len);
  std::uint16_t sig_len = rd.u16();
  if (!rd.ok() || rd.remaining() < sig_len) return make_error_code(errc::truncated);
  auto sig = rd.bytes(sig_len);
  if (rd.remaining() != 0) return make_error_code(errc::trailing_bytes);
  if (h.body_codec == codec::none && h.body_len != h.uncompressed_len)
    return make_error_code(errc::decompressed_size_mismatch);
  if (sha256(in.first(header_len - kChecksumBytes), body) != h.checksum)
    return make_error_code(errc::checksum_mismatch);
  h.signature.assign(sig.begin(), sig.end());
  return h;
}

result<decoded_frame> frame_decoder::decode(std::span<const std::uint8_t> in) {
  auto hr = decode_header(in);
  if (!hr) return hr.error();
  decoded_frame f;
  f.header = std::move(*hr);
  const auto& h = f.header;
  std::size_t header_len = in.size() - 2 - h.signature.size() - h.body_len;
  auto body = in.subspan(header_len, h.body_len);
  std::span<const std::uint8_t> plain = body;
  if (h.body_codec == codec::zstd) {
    unsigned long long declared = ZSTD_getFrameContentSize(body.data(), body.size());
    if (declared == ZSTD_CONTENTSIZE_ERROR) return make_error_code(errc::decompress_failed);
    if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != h.uncompressed_len)
      return make_error_code(errc::decompressed_size_mismatch);
    // Allocation bounded by the limit-checked declared size, never by the zstd frame.
    const ZSTD_DDict* dd = nullptr;
    if (h.dict_id != 0) {
      auto it = impl_->dicts.find(impl::key{h.agent_id, h.dict_id});
      if (it == impl_->dicts.end()) return make_error_code(errc::unknown_dictionary);
      dd = it->second.get();
    }
    impl_->body.resize(h.uncompressed_len);
    std::size_t n = dd ? ZSTD_decompress_usingDDict(impl_->dctx, impl_->body.data(),
                                                    impl_->body.size(), body.data(), body.size(), dd)
                       : ZSTD_decompressDCtx(impl_->dctx, impl_->body.data(), impl_->body.size(),
                                             body.data(), body.size());
    if (ZSTD_isError(n)) {
      return make_error_code(ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall
                                 ? errc::decompressed_size_mismatch
                                 : errc::decompress_failed);
    }
    if (n != h.uncompressed_len) return make_error_code(errc::decompressed_size_mismatch);
    plain = impl_->body;
  }
  if (auto ec = decode_body(plain, h, f.records)) return ec;
  return f;
}

}  // namespace semilab::schemas
