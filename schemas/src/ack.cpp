#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/topics.hpp>

#include "json_util.hpp"

namespace semilab::schemas {

namespace {
constexpr reject_code kCodes[] = {reject_code::invalid_frame, reject_code::agent_mismatch,
                                  reject_code::unsupported,   reject_code::quota,
                                  reject_code::overload,      reject_code::internal,
                                  reject_code::bad_signature, reject_code::unapproved};
}

std::string_view to_string(reject_code c) noexcept {
  switch (c) {
    case reject_code::invalid_frame: return "invalid_frame";
    case reject_code::agent_mismatch: return "agent_mismatch";
    case reject_code::unsupported: return "unsupported";
    case reject_code::quota: return "quota";
    case reject_code::overload: return "overload";
    case reject_code::internal: return "internal";
    case reject_code::bad_signature: return "bad_signature";
    case reject_code::unapproved: return "unapproved";
  }
  return "internal";
}

std::optional<reject_code> reject_code_from_string(std::string_view s) noexcept {
  for (auto c : kCodes)
    if (to_string(c) == s) return c;
  return std::nullopt;
}

bool retryable(reject_code c) noexcept {
  return c == reject_code::quota || c == reject_code::overload || c == reject_code::internal ||
         c == reject_code::unapproved;
}

std::string encode_ack(const ack& a) {
  boost::json::object o;
  o["v"] = 1;
  o["agent"] = a.agent_id;
  o["epoch"] = detail::u64_str(a.store_epoch);
  o["batch"] = detail::u64_str(a.batch_id);
  o["status"] = a.stored ? "stored" : "rejected";
  if (a.stored) {
    boost::json::array ranges;
    for (auto& r : a.ranges)
      ranges.push_back(boost::json::array{detail::u64_str(r.first), detail::u64_str(r.last)});
    o["ranges"] = std::move(ranges);
  } else {
    // A newer central's code travels on as received (the signature covers it), never as the
    // local reading of it: encode(decode(x)) keeps what central signed.
    const bool foreign = !a.wire_code.empty();
    o["code"] = foreign ? std::string_view(a.wire_code) : to_string(a.code);
    o["retry"] = foreign ? a.wire_retry : a.retry;
    o["reason"] = a.reason;
  }
  if (!a.central_instance.empty()) o["central"] = a.central_instance;
  if (!a.signature.empty()) {
    o["kid"] = a.key_id;
    o["sig"] = a.signature;
  }
  return boost::json::serialize(o);
}

namespace {
void field(std::string& out, std::string_view v) {
  out += std::to_string(v.size());
  out += ':';
  out += v;
  out += '\n';
}
}  // namespace

std::string canonical_bytes(const ack& a) {
  std::string s = "semilab-ack-v1\n";
  field(s, a.agent_id);
  field(s, std::to_string(a.store_epoch));
  field(s, std::to_string(a.batch_id));
  field(s, a.stored ? "stored" : "rejected");
  if (a.stored) {
    std::string r;
    for (auto& x : a.ranges) r += std::to_string(x.first) + '-' + std::to_string(x.last) + ',';
    field(s, r);
  } else {
    const bool foreign = !a.wire_code.empty();
    field(s, foreign ? std::string_view(a.wire_code) : to_string(a.code));
    field(s, (foreign ? a.wire_retry : a.retry) ? "1" : "0");
    field(s, a.reason);
  }
  field(s, a.central_instance);
  return s;
}

void sign_ack(ack& a, const signing_key& key) {
  auto msg = canonical_bytes(a);
  auto sig = key.sign(kAckSigDomain, {reinterpret_cast<const std::uint8_t*>(msg.data()), msg.size()});
  a.key_id = key.key_id();
  a.signature = to_hex(sig);
}

pinned_verdict verify_ack(const ack& a, std::span<const ed25519_public_key> pinned) {
  return verify_pinned(pinned, a.key_id, a.signature, kAckSigDomain, canonical_bytes(a));
}

result<ack> decode_ack(std::string_view json) {
  auto bad = make_error_code(errc::bad_json);
  auto o = detail::parse_object(json);
  if (!o) return bad;
  auto* v = o->if_contains("v");
  if (!v || !v->is_int64()) return bad;
  if (v->get_int64() != 1) return make_error_code(errc::unsupported_version);
  ack a;
  auto agent = detail::get_str(*o, "agent");
  auto epoch = detail::get_u64(*o, "epoch");
  auto batch = detail::get_u64(*o, "batch");
  auto status = detail::get_str(*o, "status");
  if (!agent || !epoch || !batch || !status) return bad;
  if (!valid_id(*agent)) return make_error_code(errc::bad_id);
  a.agent_id = *agent;
  a.store_epoch = *epoch;
  a.batch_id = *batch;
  if (auto c = detail::get_str(*o, "central")) a.central_instance = *c;
  if (auto k = detail::get_str(*o, "kid")) {
    auto sg = detail::get_str(*o, "sig");
    if (!sg || k->empty() || k->size() > 64 || sg->size() != 2 * kEd25519SignatureBytes) return bad;
    a.key_id = *k;
    a.signature = *sg;
  } else if (o->if_contains("sig")) {
    return bad;
  }
  if (*status == "stored") {
    a.stored = true;
    auto* rs = o->if_contains("ranges");
    if (!rs || !rs->is_array()) return bad;
    for (auto& r : rs->get_array()) {
      if (!r.is_array() || r.get_array().size() != 2) return bad;
      auto& p = r.get_array();
      boost::json::object tmp{{"a", p[0]}, {"b", p[1]}};
      auto f = detail::get_u64(tmp, "a");
      auto l = detail::get_u64(tmp, "b");
      if (!f || !l || *f > *l) return bad;
      a.ranges.push_back({*f, *l});
    }
  } else if (*status == "rejected") {
    a.stored = false;
    auto code = detail::get_str(*o, "code");
    auto retry = detail::get_bool(*o, "retry");
    if (!code || !retry) return bad;
    auto c = reject_code_from_string(*code);
    a.code = c.value_or(reject_code::internal);  // a newer central's code: treat as retryable
    a.retry = c ? *retry : true;
    if (!c) {
      a.wire_code = *code;
      a.wire_retry = *retry;
    }
    a.reason = detail::get_str(*o, "reason").value_or("");
  } else {
    return bad;
  }
  return a;
}

}  // namespace semilab::schemas
