#include <semilab/schemas/frame.hpp>
#include <semilab/schemas/signing.hpp>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

namespace semilab::schemas {
namespace {

struct pkey_free {
  void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
struct md_ctx_free {
  void operator()(EVP_MD_CTX* p) const noexcept { EVP_MD_CTX_free(p); }
};
struct bio_free {
  void operator()(BIO* p) const noexcept { BIO_free(p); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free>;

// The message an Ed25519 signature covers: domain tag, NUL, the bytes.
std::vector<std::uint8_t> message_of(std::string_view domain, std::span<const std::uint8_t> bytes) {
  std::vector<std::uint8_t> m(domain.begin(), domain.end());
  m.push_back(0);
  m.insert(m.end(), bytes.begin(), bytes.end());
  return m;
}
std::vector<std::uint8_t> message_of(std::span<const std::uint8_t> header) {
  return message_of(kBatchSigDomain, header);
}

bool verify_message(const ed25519_public_key& pub, const std::uint8_t* sig,
                    const std::vector<std::uint8_t>& msg) {
  pkey_ptr key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, pub.data(), pub.size()));
  if (!key) return false;
  std::unique_ptr<EVP_MD_CTX, md_ctx_free> ctx(EVP_MD_CTX_new());
  return ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) == 1 &&
         EVP_DigestVerify(ctx.get(), sig, kEd25519SignatureBytes, msg.data(), msg.size()) == 1;
}

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string public_key_hex(const ed25519_public_key& pub) { return to_hex(pub); }

std::string sha256_hex(std::string_view bytes) {
  std::array<std::uint8_t, 32> d{};
  unsigned int n = 0;
  EVP_Digest(bytes.data(), bytes.size(), d.data(), &n, EVP_sha256(), nullptr);
  return to_hex(d);
}

std::string key_id_of(const ed25519_public_key& pub) {
  std::array<std::uint8_t, 32> d{};
  unsigned int n = 0;
  EVP_Digest(pub.data(), pub.size(), d.data(), &n, EVP_sha256(), nullptr);
  return to_hex(std::span<const std::uint8_t>(d.data(), 8));
}

result<ed25519_public_key> parse_public_key_hex(std::string_view hex) {
  while (!hex.empty() && (hex.back() == '\n' || hex.back() == '\r' || hex.back() == ' '))
    hex.remove_suffix(1);
  if (hex.size() != 2 * kEd25519PublicBytes) return make_error_code(errc::bad_value);
  ed25519_public_key k{};
  for (std::size_t i = 0; i < k.size(); ++i) {
    int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return make_error_code(errc::bad_value);
    k[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return k;
}

struct signing_key::impl {
  pkey_ptr key;
};

signing_key::signing_key() = default;
signing_key::~signing_key() = default;
signing_key::signing_key(signing_key&&) noexcept = default;
signing_key& signing_key::operator=(signing_key&&) noexcept = default;


result<signing_key> signing_key::generate() {
  pkey_ptr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  signing_key k;
  k.impl_ = std::make_unique<impl>();
  std::size_t n = k.pub_.size();
  if (!key || EVP_PKEY_get_raw_public_key(key.get(), k.pub_.data(), &n) != 1 || n != k.pub_.size())
    return make_error_code(errc::bad_value);
  k.impl_->key = std::move(key);
  k.key_id_ = key_id_of(k.pub_);
  return k;
}

result<signing_key> signing_key::load(const std::filesystem::path& file, std::string& error) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    error = "cannot read " + file.string();
    return make_error_code(errc::bad_value);
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string pem = ss.str();
  std::unique_ptr<BIO, bio_free> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  pkey_ptr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  std::fill(pem.begin(), pem.end(), '\0');
  if (!key || EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519) {
    error = file.string() + ": not an Ed25519 private key in PEM";
    return make_error_code(errc::bad_value);
  }
  signing_key k;
  k.impl_ = std::make_unique<impl>();
  std::size_t n = k.pub_.size();
  if (EVP_PKEY_get_raw_public_key(key.get(), k.pub_.data(), &n) != 1 || n != k.pub_.size()) {
    error = file.string() + ": no public key";
    return make_error_code(errc::bad_value);
  }
  k.impl_->key = std::move(key);
  k.key_id_ = key_id_of(k.pub_);
  return k;
}

bool signing_key::save(const std::filesystem::path& file, std::string& error) const {
  if (!impl_ || !impl_->key) {
    error = "no key";
    return false;
  }
  std::unique_ptr<BIO, bio_free> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), impl_->key.get(), nullptr, nullptr, 0, nullptr,
                                       nullptr) != 1) {
    error = "cannot encode the key";
    return false;
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    error = "cannot create " + file.string() + ": " + std::strerror(errno);
    return false;
  }
  bool ok = len > 0 && ::write(fd, data, static_cast<std::size_t>(len)) == static_cast<ssize_t>(len) &&
            ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    error = "cannot write " + file.string();
    std::filesystem::remove(file);
  }
  return ok;
}

std::vector<std::uint8_t> signing_key::sign_header(std::span<const std::uint8_t> header) const {
  std::vector<std::uint8_t> field;
  if (!impl_ || !impl_->key) return field;
  auto msg = message_of(header);
  std::array<std::uint8_t, kEd25519SignatureBytes> sig{};
  std::size_t n = sig.size();
  std::unique_ptr<EVP_MD_CTX, md_ctx_free> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, impl_->key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), sig.data(), &n, msg.data(), msg.size()) != 1 || n != sig.size())
    return field;
  field.reserve(2 + key_id_.size() + sig.size());
  field.push_back(kSigAlgEd25519);
  field.push_back(static_cast<std::uint8_t>(key_id_.size()));
  field.insert(field.end(), key_id_.begin(), key_id_.end());
  field.insert(field.end(), sig.begin(), sig.end());
  return field;
}

ed25519_signature signing_key::sign(std::string_view domain,
                                    std::span<const std::uint8_t> message) const {
  ed25519_signature sig{};
  if (!impl_ || !impl_->key) return sig;
  auto msg = message_of(domain, message);
  std::size_t n = sig.size();
  std::unique_ptr<EVP_MD_CTX, md_ctx_free> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, impl_->key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), sig.data(), &n, msg.data(), msg.size()) != 1 || n != sig.size())
    sig.fill(0);
  return sig;
}

bool verify_detached(const ed25519_public_key& pub, std::string_view domain,
                     std::span<const std::uint8_t> message, const ed25519_signature& sig) {
  return verify_message(pub, sig.data(), message_of(domain, message));
}

result<ed25519_signature> parse_signature_hex(std::string_view hex) {
  if (hex.size() != 2 * kEd25519SignatureBytes) return make_error_code(errc::bad_value);
  ed25519_signature s{};
  for (std::size_t i = 0; i < s.size(); ++i) {
    int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return make_error_code(errc::bad_value);
    s[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return s;
}

std::string_view to_string(pinned_verdict v) noexcept {
  switch (v) {
    case pinned_verdict::ok: return "ok";
    case pinned_verdict::unsigned_message: return "unsigned";
    case pinned_verdict::unknown_key: return "unknown_key";
    case pinned_verdict::bad_signature: return "bad_signature";
  }
  return "bad_signature";
}

pinned_verdict verify_pinned(std::span<const ed25519_public_key> pinned, std::string_view key_id,
                             std::string_view sig_hex, std::string_view domain,
                             std::string_view message) {
  if (key_id.empty() && sig_hex.empty()) return pinned_verdict::unsigned_message;
  auto sig = parse_signature_hex(sig_hex);
  if (!sig) return pinned_verdict::bad_signature;
  for (const auto& pub : pinned) {
    if (key_id_of(pub) != key_id) continue;
    const auto* p = reinterpret_cast<const std::uint8_t*>(message.data());
    return verify_detached(pub, domain, {p, message.size()}, *sig)
               ? pinned_verdict::ok
               : pinned_verdict::bad_signature;
  }
  return pinned_verdict::unknown_key;
}

result<std::vector<ed25519_public_key>> parse_public_key_list(std::string_view list) {
  std::vector<ed25519_public_key> out;
  std::size_t i = 0;
  auto sep = [](char c) { return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (i < list.size()) {
    while (i < list.size() && sep(list[i])) ++i;
    std::size_t j = i;
    while (j < list.size() && !sep(list[j])) ++j;
    if (j > i) {
      auto k = parse_public_key_hex(list.substr(i, j - i));
      if (!k) return k.error();
      out.push_back(*k);
    }
    i = j;
  }
  return out;
}

result<frame_signature> parse_signature_field(std::span<const std::uint8_t> field) {
  if (field.size() < 2) return make_error_code(errc::bad_value);
  frame_signature s;
  s.algorithm = field[0];
  std::size_t id_len = field[1];
  if (s.algorithm != kSigAlgEd25519) return make_error_code(errc::bad_value);
  if (id_len == 0 || id_len > 64 || field.size() != 2 + id_len + kEd25519SignatureBytes)
    return make_error_code(errc::bad_value);
  s.key_id.assign(reinterpret_cast<const char*>(field.data() + 2), id_len);
  for (char c : s.key_id)
    if (hex_digit(c) < 0) return make_error_code(errc::bad_value);
  std::memcpy(s.sig.data(), field.data() + 2 + id_len, s.sig.size());
  return s;
}

std::span<const std::uint8_t> signed_header_bytes(std::span<const std::uint8_t> frame,
                                                  std::uint32_t body_len,
                                                  std::size_t signature_len) {
  std::size_t tail = std::size_t{2} + signature_len + body_len;
  if (frame.size() <= tail) return {};
  return frame.first(frame.size() - tail);
}

bool verify_header_signature(const ed25519_public_key& pub, const frame_signature& sig,
                             std::span<const std::uint8_t> header) {
  if (sig.algorithm != kSigAlgEd25519 || header.empty()) return false;
  return verify_message(pub, sig.sig.data(), message_of(header));
}

}  // namespace semilab::schemas
