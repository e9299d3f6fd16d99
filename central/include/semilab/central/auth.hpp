#pragma once
// Access to the HTTP API: roles, bearer tokens kept hashed in the store (api_tokens, both
// backends, so every instance on one PostgreSQL sees the same tokens), and per-caller token
// buckets.
//
// A token reads `slc_<id>_<secret>`: `id` (12 hex digits) is public and names the row; `secret`
// (64 hex digits, 256 random bits from OpenSSL) is known only to its holder. The store keeps the
// hex SHA-256 of the secret; checking compares digests with CRYPTO_memcmp (constant time). A
// plain hash is enough for 256-bit random secrets (a slow KDF protects guessable passwords).
#include <semilab/central/error.hpp>
#include <semilab/central/storage.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace semilab::central {

// Ordered: a route admits every role at or above its minimum. `none` = no credentials needed.
enum class role : int { none = 0, viewer = 1, engineer = 2, admin = 3 };
std::string_view to_string(role r) noexcept;
std::optional<role> parse_role(std::string_view s) noexcept;  // viewer | engineer | admin

struct token_row {
  std::string id, name;
  role r = role::viewer;
  std::int64_t created_ns = 0;
  std::optional<std::int64_t> revoked_ns;
};

// A new token: `token` is the whole bearer string, shown once.
struct new_token {
  std::string id, token;
};
// Sessions of POST /api/v1/login are tokens too, named "session:USER", with an expiry
// (api_tokens.expires_ns, central 0011 / central-pg 0010): every instance on the store
// recognises them, logout revokes them, and the store keeps only the secret's hash.

// Store operations (portable SQL through storage::query / execute; read_write store for the
// writes). `error` gets the reason of a refusal or store failure.
result<new_token> create_token(storage& db, role r, std::string_view name, std::int64_t now,
                               std::string& error);
// The same with an expiry (wall-clock ns; 0 = never).
result<new_token> create_token(storage& db, role r, std::string_view name, std::int64_t now,
                               std::int64_t expires_ns, std::string& error);
result<std::vector<token_row>> list_tokens(storage& db, bool include_revoked);
// Revokes the valid token with this id, or the one valid token with this name; 0 rows = none
// (an ambiguous name is refused with errc::store_write_failed and `error` says so).
result<std::uint64_t> revoke_token(storage& db, std::string_view id_or_name, std::int64_t now,
                                   std::string& error);

// "Bearer slc_..." -> (id, secret) split, or nullopt when the header is not one of ours.
struct presented_token {
  std::string id, secret;
};
std::optional<presented_token> parse_bearer(std::string_view authorization);
// The token itself ("slc_<id>_<secret>", e.g. a session cookie's value) -> (id, secret).
std::optional<presented_token> parse_token(std::string_view token);
// The value of cookie `name` in a Cookie header ("a=1; semilab_session=..."), "" when absent.
std::string_view cookie_value(std::string_view cookie_header, std::string_view name);
// The CSRF token of a session: hex SHA-256 over a fixed label and the session's secret. Only the
// holder of the (HttpOnly) cookie learns it (from the login answer), and every instance can check
// it without storing anything.
std::string csrf_token_for(std::string_view secret);
// Constant-time comparison of two strings (lengths compared openly).
bool equal_secret(std::string_view a, std::string_view b);

// The valid tokens, loaded from the store and checked in memory. Not thread-safe (the api holds
// it under its reader mutex).
class token_table {
 public:
  // Replaces the table with the store's valid tokens.
  boost::system::error_code load(storage& db);
  // The role of a presented token, or nullopt (unknown id, revoked, expired at `now_ns` (wall
  // clock), wrong secret).
  std::optional<role> check(const presented_token& t, std::int64_t now_ns) const;
  std::optional<role> check(const presented_token& t) const { return check(t, now_ns_wall()); }
  bool knows(std::string_view id) const { return by_id_.contains(std::string(id)); }
  // A token this process just created or revoked, before the next load() sees it.
  void add(const new_token& t, role r, std::int64_t expires_ns);
  void forget(std::string_view id) { by_id_.erase(std::string(id)); }
  std::size_t size() const noexcept { return by_id_.size(); }

 private:
  static std::int64_t now_ns_wall() noexcept;
  struct entry {
    role r;
    std::array<unsigned char, 32> digest;
    std::int64_t expires_ns = 0;  // 0 = never
  };
  std::unordered_map<std::string, entry> by_id_;
};

// Token buckets per caller key (token id, or the address of an anonymous caller).
// rate <= 0: unlimited. Not thread-safe.
class rate_limiter {
 public:
  rate_limiter(double rate_per_s, double burst) : rate_(rate_per_s), burst_(burst) {}
  // Takes one token from `key`'s bucket: 0 when admitted, else the seconds until one is there
  // (nothing taken). A bucket starts full (`burst`, at least 1).
  double take(const std::string& key, std::int64_t now_ns);

 private:
  struct bucket {
    double tokens;
    std::int64_t at_ns;
  };
  double rate_, burst_;
  std::unordered_map<std::string, bucket> buckets_;
};

}  // namespace semilab::central
