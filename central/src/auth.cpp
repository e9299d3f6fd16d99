#include <semilab/central/audit.hpp>
#include <semilab/central/auth.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <charconv>
#include <cmath>

namespace semilab::central {

namespace {

constexpr std::string_view kPrefix = "slc_";
constexpr std::size_t kIdHex = 12, kSecretHex = 64;

std::string hex(const unsigned char* p, std::size_t n) {
  static constexpr char d[] = "0123456789abcdef";
  std::string s(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    s[2 * i] = d[p[i] >> 4];
    s[2 * i + 1] = d[p[i] & 15];
  }
  return s;
}

bool is_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool sha256(std::string_view in, std::array<unsigned char, 32>& out) {
  unsigned int n = 0;
  return EVP_Digest(in.data(), in.size(), out.data(), &n, EVP_sha256(), nullptr) == 1 && n == 32;
}

bool unhex(std::string_view s, std::array<unsigned char, 32>& out) {
  if (s.size() != 64 || !is_hex(s)) return false;
  for (std::size_t i = 0; i < 32; ++i) {
    unsigned v = 0;
    std::from_chars(s.data() + 2 * i, s.data() + 2 * i + 2, v, 16);
    out[i] = static_cast<unsigned char>(v);
  }
  return true;
}

sql_param text_p(std::string v) { return sql_param{true, 0, std::move(v)}; }
sql_param num_p(std::int64_t v) { return sql_param{false, v, {}}; }

}  // namespace

std::string_view to_string(role r) noexcept {
  switch (r) {
    case role::none: return "none";
    case role::viewer: return "viewer";
    case role::engineer: return "engineer";
    case role::admin: return "admin";
  }
  return "none";
}

std::optional<role> parse_role(std::string_view s) noexcept {
  if (s == "viewer") return role::viewer;
  if (s == "engineer") return role::engineer;
  if (s == "admin") return role::admin;
  return std::nullopt;
}

result<new_token> create_token(storage& db, role r, std::string_view name, std::int64_t now,
                               std::string& error) {
  return create_token(db, r, name, now, 0, error);
}

result<new_token> create_token(storage& db, role r, std::string_view name, std::int64_t now,
                               std::int64_t expires_ns, std::string& error) {
  if (r == role::none) {
    error = "a token needs a role: viewer, engineer or admin";
    return make_error_code(errc::store_write_failed);
  }
  if (name.empty() || name.size() > 200) {
    error = "a token needs a name of 1..200 characters";
    return make_error_code(errc::store_write_failed);
  }
  unsigned char id_raw[kIdHex / 2], secret_raw[kSecretHex / 2];
  if (RAND_bytes(id_raw, sizeof id_raw) != 1 || RAND_bytes(secret_raw, sizeof secret_raw) != 1) {
    error = "no randomness from OpenSSL (RAND_bytes failed)";
    return make_error_code(errc::store_write_failed);
  }
  const std::string id = hex(id_raw, sizeof id_raw), secret = hex(secret_raw, sizeof secret_raw);
  std::array<unsigned char, 32> digest{};
  if (!sha256(secret, digest)) {
    error = "SHA-256 failed (OpenSSL)";
    return make_error_code(errc::store_write_failed);
  }
  const sql_param p[] = {text_p(id), text_p(std::string(name)),
                         text_p(std::string(to_string(r))),
                         text_p(hex(digest.data(), digest.size())), num_p(now), num_p(expires_ns)};
  // Without an expiry the column stays NULL (the statement of before; no typed NULL parameter).
  auto n = expires_ns != 0
               ? db.execute("INSERT INTO api_tokens(id, name, role, secret_sha256, created_ns, "
                            "expires_ns) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
                            p)
               : db.execute("INSERT INTO api_tokens(id, name, role, secret_sha256, created_ns) "
                            "VALUES(?1, ?2, ?3, ?4, ?5)",
                            std::span<const sql_param>(p, 5));
  if (!n) {
    error = db.last_error();
    return n.error();
  }
  // Audit trail: the token's id, name and role, never its secret.
  std::string why;
  if (auto ec = audit_record(db,
                             audit_action{"token.create", id, std::nullopt,
                                          "name=" + std::string(name) +
                                              " role=" + std::string(to_string(r)),
                                          {}, {}},
                             now, why)) {
    error = "token created, but the audit entry was not written: " + why;
    return ec;
  }
  return new_token{id, std::string(kPrefix) + id + "_" + secret};
}

result<std::vector<token_row>> list_tokens(storage& db, bool include_revoked) {
  const sql_param p[] = {num_p(include_revoked ? 1 : 0)};
  auto rows = db.query(
      "SELECT id, name, role, created_ns, revoked_ns FROM api_tokens "
      "WHERE ?1 = 1 OR revoked_ns IS NULL ORDER BY created_ns, id",
      p);
  if (!rows) return rows.error();
  std::vector<token_row> out;
  for (const auto& row : *rows) {
    token_row t;
    t.id = row[0].value_or("");
    t.name = row[1].value_or("");
    t.r = parse_role(row[2].value_or("")).value_or(role::none);
    auto i64 = [](const std::string& s) {
      std::int64_t v = 0;
      std::from_chars(s.data(), s.data() + s.size(), v);
      return v;
    };
    t.created_ns = i64(row[3].value_or("0"));
    if (row[4]) t.revoked_ns = i64(*row[4]);
    out.push_back(std::move(t));
  }
  return out;
}

result<std::uint64_t> revoke_token(storage& db, std::string_view id_or_name, std::int64_t now,
                                   std::string& error) {
  const sql_param key[] = {text_p(std::string(id_or_name))};
  auto match = db.query(
      "SELECT id FROM api_tokens WHERE revoked_ns IS NULL AND (id = ?1 OR name = ?1)", key);
  if (!match) {
    error = db.last_error();
    return match.error();
  }
  if (match->empty()) return std::uint64_t{0};
  if (match->size() > 1) {
    error = "several valid tokens are named '" + std::string(id_or_name) + "': revoke by id";
    return make_error_code(errc::store_write_failed);
  }
  const sql_param p[] = {text_p((*match)[0][0].value_or("")), num_p(now)};
  auto n = db.execute("UPDATE api_tokens SET revoked_ns = ?2 WHERE id = ?1 AND revoked_ns IS NULL",
                      p);
  if (!n) error = db.last_error();
  if (n && *n > 0) {
    std::string why;
    if (auto ec = audit_record(
            db, audit_action{"token.revoke", p[0].t, "valid", "revoked", {}, {}}, now, why)) {
      error = "token revoked, but the audit entry was not written: " + why;
      return ec;
    }
  }
  return n;
}

std::optional<presented_token> parse_bearer(std::string_view h) {
  // RFC 6750 §2.1: "Bearer" (case-insensitive scheme) SP token.
  if (h.size() < 7) return std::nullopt;
  std::string scheme(h.substr(0, 6));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c); });
  if (scheme != "bearer" || h[6] != ' ') return std::nullopt;
  auto t = h.substr(7);
  while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  return parse_token(t);
}

std::optional<presented_token> parse_token(std::string_view t) {
  if (!t.starts_with(kPrefix) || t.size() != kPrefix.size() + kIdHex + 1 + kSecretHex ||
      t[kPrefix.size() + kIdHex] != '_')
    return std::nullopt;
  presented_token p{std::string(t.substr(kPrefix.size(), kIdHex)),
                    std::string(t.substr(kPrefix.size() + kIdHex + 1))};
  if (!is_hex(p.id) || !is_hex(p.secret)) return std::nullopt;
  return p;
}

std::string_view cookie_value(std::string_view h, std::string_view name) {
  // RFC 6265 §4.2.1: cookie-pair *( ";" SP cookie-pair ); be lenient about spaces.
  while (!h.empty()) {
    const auto semi = h.find(';');
    auto pair = h.substr(0, semi);
    h = semi == std::string_view::npos ? std::string_view() : h.substr(semi + 1);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    const auto eq = pair.find('=');
    if (eq != std::string_view::npos && pair.substr(0, eq) == name) {
      auto v = pair.substr(eq + 1);
      while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
      return v;
    }
  }
  return {};
}

std::string csrf_token_for(std::string_view secret) {
  std::array<unsigned char, 32> d{};
  std::string in = "semilab-central csrf v1:";
  in += secret;
  if (!sha256(in, d)) return {};
  return hex(d.data(), d.size());
}

bool equal_secret(std::string_view a, std::string_view b) {
  return a.size() == b.size() && !a.empty() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::int64_t token_table::now_ns_wall() noexcept { return now_ns(); }

void token_table::add(const new_token& t, role r, std::int64_t expires_ns) {
  auto p = parse_token(t.token);
  entry e{r, {}, expires_ns};
  if (!p || !sha256(p->secret, e.digest)) return;
  by_id_[p->id] = e;
}

boost::system::error_code token_table::load(storage& db) {
  auto rows = db.query(
      "SELECT id, role, secret_sha256, expires_ns FROM api_tokens WHERE revoked_ns IS NULL", {});
  if (!rows) return rows.error();
  std::unordered_map<std::string, entry> next;
  for (const auto& row : *rows) {
    entry e{};
    auto r = parse_role(row[1].value_or(""));
    if (!r || !unhex(row[2].value_or(""), e.digest)) continue;  // unreadable row: no access
    e.r = *r;
    if (row[3]) {
      const auto& x = *row[3];
      if (std::from_chars(x.data(), x.data() + x.size(), e.expires_ns).ec != std::errc())
        continue;  // unreadable expiry: no access
      if (e.expires_ns == 0) e.expires_ns = 1;  // 0 would mean "never"
    }
    next.emplace(row[0].value_or(""), e);
  }
  by_id_.swap(next);
  return {};
}

std::optional<role> token_table::check(const presented_token& t, std::int64_t now) const {
  auto it = by_id_.find(t.id);
  std::array<unsigned char, 32> d{};
  if (!sha256(t.secret, d)) return std::nullopt;
  if (it == by_id_.end()) return std::nullopt;
  if (CRYPTO_memcmp(d.data(), it->second.digest.data(), d.size()) != 0) return std::nullopt;
  if (it->second.expires_ns != 0 && now >= it->second.expires_ns) return std::nullopt;
  return it->second.r;
}

double rate_limiter::take(const std::string& key, std::int64_t now) {
  if (rate_ <= 0) return 0;
  if (buckets_.size() > 10'000) {
    // Callers seen once (scanners, many addresses): forget the buckets that refilled.
    std::erase_if(buckets_, [&](const auto& kv) {
      return kv.second.tokens + rate_ * static_cast<double>(now - kv.second.at_ns) / 1e9 >= burst_;
    });
  }
  auto [it, fresh] = buckets_.try_emplace(key, bucket{burst_, now});
  auto& b = it->second;
  if (!fresh && now > b.at_ns) {
    b.tokens = std::min(burst_, b.tokens + rate_ * static_cast<double>(now - b.at_ns) / 1e9);
    b.at_ns = now;
  }
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return 0;
  }
  return (1.0 - b.tokens) / rate_;
}

}  // namespace semilab::central
