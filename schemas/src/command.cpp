#include <semilab/schemas/command.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <fstream>
#include <iterator>

#include <semilab/schemas/frame.hpp>
#include <semilab/schemas/topics.hpp>

#include "json_util.hpp"

namespace semilab::schemas {

namespace {

std::string hex(const unsigned char* p, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[p[i] >> 4]);
    out.push_back(kDigits[p[i] & 0xf]);
  }
  return out;
}

bool is_hex(std::string_view s, std::size_t len) {
  if (s.size() != len) return false;
  for (char ch : s)
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return false;
  return true;
}

}  // namespace

std::string canonical_bytes(const replay_command& c) {
  std::string s = "semilab-cmd-v1\nreplay\n";
  s += c.agent_id;
  s += '\n' + std::to_string(c.store_epoch) + '\n' + std::to_string(c.from) + '\n' +
       std::to_string(c.to) + '\n' + std::to_string(c.issued_ns) + '\n' + c.nonce;
  return s;
}

std::string command_mac(const replay_command& c, std::string_view key) {
  auto msg = canonical_bytes(c);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out, &len))
    return {};  // never matches a received MAC (64 hex digits)
  return hex(out, len);
}

std::string encode_command(const replay_command& c, std::string_view key) {
  return encode_command(c, key, nullptr);
}

std::string encode_command(const replay_command& c, std::string_view hmac_key,
                           const signing_key* signer) {
  boost::json::object o;
  o["v"] = 1;
  o["cmd"] = "replay";
  o["agent"] = c.agent_id;
  o["epoch"] = detail::u64_str(c.store_epoch);
  o["from"] = detail::u64_str(c.from);
  o["to"] = detail::u64_str(c.to);
  o["issued_ns"] = std::to_string(c.issued_ns);
  o["nonce"] = c.nonce;
  if (!hmac_key.empty() || !signer) o["mac"] = command_mac(c, hmac_key);
  if (signer) {
    auto msg = canonical_bytes(c);
    auto sig = signer->sign(kCommandSigDomain,
                            {reinterpret_cast<const std::uint8_t*>(msg.data()), msg.size()});
    o["kid"] = signer->key_id();
    o["sig"] = to_hex(sig);
  }
  return boost::json::serialize(o);
}

result<signed_replay_command> decode_command(std::string_view json) {
  auto bad = make_error_code(errc::bad_json);
  auto o = detail::parse_object(json);
  if (!o) return bad;
  auto* v = o->if_contains("v");
  if (!v || !v->is_int64() || v->get_int64() != 1) return bad;
  auto cmd = detail::get_str(*o, "cmd");
  if (!cmd || *cmd != "replay") return bad;
  signed_replay_command s;
  auto agent = detail::get_str(*o, "agent");
  auto epoch = detail::get_u64(*o, "epoch");
  auto from = detail::get_u64(*o, "from");
  auto to = detail::get_u64(*o, "to");
  auto issued = detail::get_u64(*o, "issued_ns");
  auto nonce = detail::get_str(*o, "nonce");
  auto mac = detail::get_str(*o, "mac");
  auto kid = detail::get_str(*o, "kid");
  auto sig = detail::get_str(*o, "sig");
  if (!agent || !epoch || !from || !to || !issued || !nonce || (!mac && !sig)) return bad;
  if (*issued > static_cast<std::uint64_t>(INT64_MAX) || *from > *to || !is_hex(*nonce, 32) ||
      (mac && mac->size() > 128))
    return bad;
  if (sig && (!kid || kid->empty() || kid->size() > 64 || !is_hex(*sig, 128))) return bad;
  if (!valid_id(*agent)) return make_error_code(errc::bad_id);
  s.cmd = {*agent, *epoch, *from, *to, static_cast<std::int64_t>(*issued), *nonce};
  if (mac) s.mac = *mac;
  if (sig) {
    s.key_id = *kid;
    s.sig = *sig;
  }
  return s;
}

namespace {
command_verdict fresh(const signed_replay_command& c, std::int64_t now_ns) {
  const auto window = std::chrono::duration_cast<std::chrono::nanoseconds>(kCommandWindow).count();
  const auto age = now_ns - c.cmd.issued_ns;
  if (age > window || age < -window) return command_verdict::stale;
  return command_verdict::ok;
}
}  // namespace

command_verdict verify_command(const signed_replay_command& c, std::string_view key,
                               std::int64_t now_ns) {
  auto want = command_mac(c.cmd, key);
  if (key.empty() || want.empty() || c.mac.size() != want.size() ||
      CRYPTO_memcmp(want.data(), c.mac.data(), want.size()) != 0)
    return command_verdict::bad_mac;
  return fresh(c, now_ns);
}

command_verdict verify_command(const signed_replay_command& c, std::string_view hmac_key,
                               std::span<const ed25519_public_key> pinned, std::int64_t now_ns) {
  if (pinned.empty()) return verify_command(c, hmac_key, now_ns);
  switch (verify_pinned(pinned, c.key_id, c.sig, kCommandSigDomain, canonical_bytes(c.cmd))) {
    case pinned_verdict::ok: return fresh(c, now_ns);
    case pinned_verdict::unsigned_message: return command_verdict::unsigned_command;
    case pinned_verdict::unknown_key:
    case pinned_verdict::bad_signature: return command_verdict::bad_signature;
  }
  return command_verdict::bad_signature;
}

std::string_view to_string(command_verdict v) noexcept {
  switch (v) {
    case command_verdict::ok: return "ok";
    case command_verdict::bad_mac: return "bad_mac";
    case command_verdict::stale: return "stale";
    case command_verdict::unsigned_command: return "unsigned";
    case command_verdict::bad_signature: return "bad_signature";
  }
  return "bad_mac";
}

std::string new_nonce() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) return {};
  return hex(b, sizeof b);
}

bool load_command_key(const std::filesystem::path& file, std::string& key, std::string& error) {
  std::ifstream f(file, std::ios::binary);
  if (!f) {
    error = file.string() + ": cannot read the command key file";
    return false;
  }
  std::string k((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  while (!k.empty() && (k.back() == '\n' || k.back() == '\r' || k.back() == ' ' || k.back() == '\t'))
    k.pop_back();
  if (k.size() < kCommandKeyMinBytes) {
    error = file.string() + ": the command key must be at least " +
            std::to_string(kCommandKeyMinBytes) + " bytes";
    return false;
  }
  key = std::move(k);
  return true;
}

}  // namespace semilab::schemas
